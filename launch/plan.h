// The planner: parameter count, bytes per component and communication volume
// per group for one rank of a configured run, from the model's own layout,
// activation arena and the communicator's counting convention.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "configs/config.h"
#include "parallel/communicator.h"
#include "trainer/model_dims.h"

namespace dyt::launch {

// Per-rank bytes. Per parameter of the rank's tensor-parallel shard, with
// dz = dp under ZeRO-1 and 1 without (Megatron's distributed optimizer):
//   BF16: 2 (bf16 working weights) + 4 (fp32 gradients) + (4 master + 8 AdamW m, v)/dz
//   FP32: 4 (weights, also the master) + 4 (gradients) + 8 (m, v)/dz
// The sharded lines hold ceil(n/dz) elements, n the rank's padded buffer.
struct MemoryPlan {
  int64_t parameters = 0;           // whole model
  int64_t parameters_per_rank = 0;  // after tensor-parallel sharding
  int64_t buffer_elements = 0;      // the rank's parameter buffer, each tensor 64-aligned
  int64_t zero_shard = 0;           // elements of master/optimizer state this rank holds
  int64_t weight_bytes = 0;         // working weights (fp32, or bf16 under BF16)
  int64_t master_bytes = 0;         // fp32 master copy (BF16 only), ZeRO-1 sharded (+ its side buffer)
  int64_t grad_bytes = 0;           // fp32 gradients (the full buffer: reduced before the shard)
  int64_t optimizer_bytes = 0;      // AdamW m and v, fp32, ZeRO-1 sharded over dp when on
  int64_t zero_staging_bytes = 0;   // ZeRO-1 at dp > 1: the reduce-scatter's fp32 output chunk
  int64_t activation_bytes = 0;     // the activation arena for one micro-batch
  int64_t activation_recompute_bytes = 0;  // the same with block recomputation
  // Of the activations: sequence parallelism's three full-row [N, d] buffers
  // (a gathered norm output, a row-parallel GEMM's partial output, the
  // gathered residual gradient).
  int64_t sp_gather_bytes = 0;
  int64_t workspace_bytes = 0;      // cuBLASLt's 32 MiB and the kernels' per-row workspaces
  int64_t state_bytes() const {
    return weight_bytes + master_bytes + grad_bytes + optimizer_bytes + zero_staging_bytes;
  }
  int64_t total_bytes(bool recompute) const {
    return state_bytes() + (recompute ? activation_recompute_bytes : activation_bytes) +
           workspace_bytes;
  }
};

MemoryPlan plan_memory(const config::RunConfig& cfg);

// One step's traffic of rank 0 of its group, by the communicator's
// convention (logical payload, parallel/communicator.h): summing a step's
// stats() difference over the lines of a group gives the group's figure.
struct CommLine {
  std::string group;  // "dp" or "tp"
  std::string what;   // which collective, on what
  parallel::Collective kind;
  parallel::Traffic traffic;
};
struct CommPlan {
  std::vector<CommLine> lines;
  parallel::Traffic total(const std::string& group) const;
};

CommPlan plan_comm(const config::RunConfig& cfg);

std::string plan_table(const config::RunConfig& cfg, const MemoryPlan& plan, const CommPlan& comm);
// `step_time`, when not empty, is a JSON value added as the field "step_time".
std::string plan_json(const config::RunConfig& cfg, const MemoryPlan& plan, const CommPlan& comm,
                      const std::string& step_time = "");

}  // namespace dyt::launch
