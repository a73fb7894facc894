// "The fastest layout that fits": for a world of `gpus`, every dp × tp
// (tp a power of two dividing the world, and what config::validate accepts:
// heads, KV heads, ffn, vocabulary, the global batch), sequence parallelism
// (tp > 1), ZeRO-1 (dp > 1), recompute, and micro-batch sizes; each judged by
// plan_memory against the GPU's usable memory and by predict_step's tokens/s.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "configs/config.h"
#include "launch/hardware.h"
#include "launch/step_time.h"

namespace dyt::launch {

struct Layout {
  int64_t tp = 1, dp = 1, micro_batch = 1;
  bool sequence_parallel = false, zero1 = false, recompute = false;
  // The --set overrides that give a config this layout.
  std::vector<std::string> overrides() const;
  std::string describe() const;  // "tp 2 dp 32 sp zero1 rc mb 1"
};

struct Candidate {
  Layout layout;
  int64_t memory_bytes = 0;  // plan_memory's total for the layout's recompute setting
  bool fits = false;         // memory_bytes <= usable_memory(hw)
  StepTime time;
};

// `base` with the layout's fields set.
config::RunConfig with_layout(const config::RunConfig& base, const Layout& l);

// Every layout of `gpus` that validate() accepts, in a fixed order (tp, then
// micro-batch, sequence parallel, ZeRO-1, recompute ascending), each
// judged. std::invalid_argument when gpus < 1 or micro_batches is empty or
// holds a size < 1.
std::vector<Candidate> enumerate_layouts(const config::RunConfig& base, int64_t gpus,
                                         const HardwareProfile& hw, const StepTimeOptions& options = {},
                                         const std::vector<int64_t>& micro_batches = {1, 2, 4, 8});

// The candidates that fit, fastest first (ties: less memory, then the
// enumeration order). Empty when none fits.
std::vector<Candidate> rank_fitting(std::vector<Candidate> candidates);

std::string search_table(const std::vector<Candidate>& ranked, size_t top, const HardwareProfile& hw,
                         int64_t gpus, size_t considered);

}  // namespace dyt::launch
