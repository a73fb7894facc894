// A cluster's hardware as the step-time model sees it (launch/step_time.h):
// peak arithmetic, memory capacity and bandwidth, and the two links a
// collective can run over. Figures are vendor datasheet figures; what a run
// can reach of them is stated where the model uses them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dyt::launch {

struct HardwareProfile {
  std::string name;
  int64_t gpus_per_node = 8;
  // Dense peaks (no sparsity), FLOP/s. The CUDA backend's FP32 GEMMs use
  // CUBLAS_COMPUTE_32F with TF32 refused (kernels/cuda/gemm.cc), so an FP32
  // run is held to the plain fp32 rate, not TF32's.
  double peak_bf16_flops = 0;
  double peak_fp32_flops = 0;
  int64_t memory_bytes = 0;  // HBM capacity as the CUDA runtime reports it
  double hbm_bytes_per_s = 0;
  // Bus bandwidth per GPU per direction, in NCCL's sense (nccl-tests' busbw):
  // a collective whose per-rank payload by the communicator's convention
  // (docs/parallel.md: a ring all-reduce of n sends 2·(p−1)/p·n) is B bytes
  // takes B / bus_bandwidth. The datasheet's "900 GB/s NVLink" is both
  // directions together, so NVLink here is half of it; InfiniBand is the
  // per-GPU NIC rate (400 Gb/s = 50 GB/s).
  double nvlink_bytes_per_s = 0;
  double ib_bytes_per_s = 0;
};

// "h100" (default), "h200", "a100"; std::invalid_argument naming the
// unknown name and the known ones otherwise.
HardwareProfile hardware_profile(const std::string& name);
std::vector<std::string> hardware_names();

// Bytes the planner lets a layout use on one GPU: capacity less a reserve for
// the CUDA context, NCCL's buffers and the allocator (kMemoryReserveBytes).
inline constexpr int64_t kMemoryReserveBytes = 4ll << 30;
inline int64_t usable_memory(const HardwareProfile& hw) { return hw.memory_bytes - kMemoryReserveBytes; }

}  // namespace dyt::launch
