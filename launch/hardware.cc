#include "launch/hardware.h"

#include <stdexcept>

#include "trainer/throughput.h"

namespace dyt::launch {

namespace {

constexpr double kGB = 1e9;
constexpr int64_t kGiB = 1ll << 30;

// H100 SXM5 80 GB (DGX H100 / HGX H100): 989.4 TFLOP/s dense BF16, 66.9
// TFLOP/s FP32, 3.35 TB/s HBM3, NVLink 4 at 900 GB/s (both directions), one
// 400 Gb/s ConnectX-7 InfiniBand NIC per GPU.
HardwareProfile h100() {
  HardwareProfile h;
  h.name = "h100";
  h.gpus_per_node = 8;
  h.peak_bf16_flops = trainer::kH100Peak.bf16_flops;
  h.peak_fp32_flops = trainer::kH100Peak.fp32_flops;
  h.memory_bytes = 80 * kGiB;
  h.hbm_bytes_per_s = 3.35e12;
  h.nvlink_bytes_per_s = 900 * kGB / 2;
  h.ib_bytes_per_s = 400e9 / 8;
  return h;
}

}  // namespace

HardwareProfile hardware_profile(const std::string& name) {
  if (name == "h100") return h100();
  if (name == "h200") {
    // H200 SXM: the H100's chip and links with 141 GB of HBM3e at 4.8 TB/s
    // (the runtime reports ~140 GiB).
    HardwareProfile h = h100();
    h.name = "h200";
    h.memory_bytes = 140 * kGiB;
    h.hbm_bytes_per_s = 4.8e12;
    return h;
  }
  if (name == "a100") {
    // A100 SXM4 80 GB (DGX A100): 312 TFLOP/s dense BF16, 19.5 FP32, 2.039
    // TB/s HBM2e, NVLink 3 at 600 GB/s (both directions), 200 Gb/s HDR per GPU.
    HardwareProfile h;
    h.name = "a100";
    h.gpus_per_node = 8;
    h.peak_bf16_flops = trainer::kA100Peak.bf16_flops;
    h.peak_fp32_flops = trainer::kA100Peak.fp32_flops;
    h.memory_bytes = 80 * kGiB;
    h.hbm_bytes_per_s = 2.039e12;
    h.nvlink_bytes_per_s = 600 * kGB / 2;
    h.ib_bytes_per_s = 200e9 / 8;
    return h;
  }
  std::string known;
  for (const std::string& n : hardware_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown GPU '" + name + "' (known: " + known + ")");
}

std::vector<std::string> hardware_names() { return {"h100", "h200", "a100"}; }

}  // namespace dyt::launch
