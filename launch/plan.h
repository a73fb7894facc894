// The memory planner: parameter count and bytes per component for one rank
// of a configured run, from the model's own layout and activation list.
#pragma once

#include <cstdint>
#include <string>

#include "configs/config.h"

namespace dyt::launch {

struct MemoryPlan {
  int64_t parameters = 0;           // whole model
  int64_t parameters_per_rank = 0;  // after tensor-parallel sharding
  int64_t weight_bytes = 0;         // working weights (fp32, or bf16 under BF16)
  int64_t master_bytes = 0;         // fp32 master copy (BF16 only)
  int64_t grad_bytes = 0;           // fp32 gradients
  int64_t optimizer_bytes = 0;      // AdamW m and v, fp32, ZeRO-1 sharded over dp when on
  int64_t activation_bytes = 0;     // one micro-batch, all blocks' activations kept
  int64_t activation_recompute_bytes = 0;  // one micro-batch with block recomputation
  int64_t state_bytes() const { return weight_bytes + master_bytes + grad_bytes + optimizer_bytes; }
};

MemoryPlan plan_memory(const config::RunConfig& cfg);

std::string plan_table(const config::RunConfig& cfg, const MemoryPlan& plan);
std::string plan_json(const config::RunConfig& cfg, const MemoryPlan& plan);

}  // namespace dyt::launch
