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
#include "trainer/throughput.h"

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

// The FLOP count and MFU live in trainer/throughput.h (dyt-train's
// progress line shows MFU too); the names stay here for the benchmarks.
using trainer::StepFlops;
using trainer::step_flops;
using trainer::mfu;

// Dense BF16 peak of the H100 / H200 SXM (no sparsity): 989.4 TFLOP/s.
inline constexpr double kHopperBf16PeakFlops = trainer::kH100Peak.bf16_flops;

}  // namespace dyt::bench
