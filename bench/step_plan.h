// The arithmetic of dyt-bench-step-cuda that needs no GPU, kept apart so it
// is unit-tested on any machine (tests/bench/test_step_plan.cc): the model it
// times, how many layers of it fit in a memory budget, and the FLOP count
// behind its MFU figure.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "configs/config.h"
#include "trainer/model_dims.h"

namespace dyt::bench {

// LLaMA-7B's shape (d 4096, 32 heads, 32 KV heads, SwiGLU 11008, vocab
// 32000, DyT in all three slots, α₀ 0.8/0.2/0.2, untied LM head) with
// `layers` blocks, trained on one sequence of `seq_len` tokens per step
// (micro_batch 1, global batch = seq_len tokens) on CUDA in BF16, no
// recompute. `tiny` swaps in a small shape of the same structure (d 256,
// 4 heads of 64, SwiGLU 704, vocab 512) for dry runs (the emulator, CI).
config::RunConfig llama7b_shaped(int64_t layers, int64_t seq_len, bool tiny = false);

// The largest L in [1, max_layers] with need(L) <= budget, by binary search
// (need must not decrease with L); 0 when even need(1) exceeds the budget.
int64_t fit_layers(const std::function<int64_t(int64_t)>& need, int64_t budget, int64_t max_layers);

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
StepFlops step_flops(const trainer::ModelDims& dims, int64_t seq_len);

// Model FLOPs utilization: tokens/s · FLOPs per token over the peak in FLOP/s.
inline double mfu(double tokens_per_s, double flops_per_token, double peak_flops) {
  return tokens_per_s * flops_per_token / peak_flops;
}

// Dense BF16 peak of the H100 / H200 SXM (no sparsity): 989.4 TFLOP/s.
inline constexpr double kHopperBf16PeakFlops = 989.4e12;

}  // namespace dyt::bench
