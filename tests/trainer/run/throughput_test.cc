// What the progress line says about speed and memory: the GPU peak table by
// the CUDA runtime's device name, MFU and peak memory in the line and the
// metrics record, and the CPU backend's peak memory (the resident set).
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "kernels/cpu/cpu_backend.h"
#include "trainer/metrics.h"
#include "trainer/throughput.h"

namespace dyt::trainer {
namespace {

TEST(Throughput, GpuPeaksByDeviceName) {
  using kernels::DType;
  EXPECT_EQ(gpu_peak_flops("CUDA NVIDIA H200 (sm_90, device 0)", DType::BF16), 989.4e12);
  EXPECT_EQ(gpu_peak_flops("NVIDIA H100 80GB HBM3", DType::F32), 66.9e12);
  EXPECT_EQ(gpu_peak_flops("NVIDIA A100-SXM4-80GB", DType::BF16), 312e12);
  EXPECT_EQ(gpu_peak_flops("NVIDIA GeForce RTX 4090", DType::BF16), 0.0);  // unknown: no MFU
  EXPECT_EQ(gpu_peak_flops("CPU (fp32, OpenBLAS, 2 threads)", DType::F32), 0.0);
}

TEST(Throughput, TheProgressLineShowsMfuAndPeakMemoryWhenKnown) {
  StepMetrics m;
  m.step = 3;
  std::string line = progress_line(m, 10, 5);
  EXPECT_EQ(line.find("mfu"), std::string::npos) << line;
  EXPECT_EQ(line.find("mem"), std::string::npos) << line;
  m.mfu = 0.4123;
  m.peak_memory_bytes = int64_t{3} << 29;  // 1.5 GiB
  line = progress_line(m, 10, 5);
  EXPECT_NE(line.find(" | mfu 41.2% | mem 1.50 GiB"), std::string::npos) << line;
}

TEST(Throughput, CpuPeakMemoryCountsTouchedBuffers) {
  kernels::Backend& be = kernels::cpu_backend();
  const int64_t before = be.peak_memory_bytes();
  EXPECT_GT(before, 0);
  const int64_t n = int64_t{64} << 20;  // 256 MiB of floats, written so it is resident
  kernels::Buffer b = be.allocate(kernels::DType::F32, n);
  std::memset(b.data(), 1, static_cast<size_t>(n) * 4);
  EXPECT_GE(be.peak_memory_bytes(), before + n * 4 / 2) << "the resident set must grow with the buffer";
}

}  // namespace
}  // namespace dyt::trainer
