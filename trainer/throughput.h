// What a step's speed means against the hardware: the model FLOPs per
// trained token (PaLM's count, the MFU numerator every peer reports) and the
// dense peak of a known GPU. dyt-train's progress line shows MFU from these
// on the GPU; dyt-plan and the step benchmark use the same numbers.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/tensor.h"
#include "trainer/model_dims.h"

namespace dyt::trainer {

// FLOPs per trained token by PaLM's count (Chowdhery et al. 2022, app. B):
// 6·N for the matmul weights (forward 2·N, backward 4·N) plus 12·L·H·Q·T for
// attention's two products (H·Q = heads · head_dim), T the sequence length.
// N here = the weights of the block GEMMs (q, k, v, o, gate, up, down) of all
// L layers plus the LM head (vocab · d); the embedding (a gather, not a
// matmul), norm γ/α and the embedding scale are left out. PaLM's attention
// term is that of full, not causal, attention; `causal_attention` halves it
// (what a causal kernel computes; the FlashAttention papers' count).
struct StepFlops {
  int64_t matmul_params = 0;         // N
  double per_token_matmul = 0;       // 6·N
  double per_token_attention = 0;    // 12·L·H·Q·T
  double per_token() const { return per_token_matmul + per_token_attention; }
  double per_token_causal() const { return per_token_matmul + per_token_attention / 2; }
};
StepFlops step_flops(const ModelDims& dims, int64_t seq_len);

// Model FLOPs utilization: tokens/s · FLOPs per token over the peak in FLOP/s.
inline double mfu(double tokens_per_s, double flops_per_token, double peak_flops) {
  return tokens_per_s * flops_per_token / peak_flops;
}

// Dense peaks (no sparsity) in FLOP/s of the GPUs the planner knows. The CUDA
// backend's FP32 GEMMs refuse TF32 (kernels/cuda/gemm.cc), so FP32 runs are
// held to the plain fp32 rate.
struct GpuPeak {
  double bf16_flops = 0;
  double fp32_flops = 0;
};
inline constexpr GpuPeak kH100Peak{989.4e12, 66.9e12};  // H100 / H200 SXM (one chip)
inline constexpr GpuPeak kA100Peak{312e12, 19.5e12};    // A100 SXM4
// The peak of the GPU the CUDA runtime names (e.g. "NVIDIA H200"), for the
// compute dtype; 0 for a device this table does not know.
double gpu_peak_flops(const std::string& device_name, kernels::DType dtype);

}  // namespace dyt::trainer
