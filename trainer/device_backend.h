// The backend a run asks for (train.device, train.precision), checked before
// any work: a CUDA run in a build without CUDA, on a machine without a usable
// GPU, with a head size the kernels lack, or one whose buffers would not fit
// in the GPU's free memory, is a config error (exit 2) that names the field
// and says what was found.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "configs/config.h"
#include "kernels/backend.h"
#include "trainer/activation_arena.h"
#include "trainer/model_dims.h"

namespace dyt::trainer {

// Throws config::ConfigError naming train.device, train.precision or the
// model field at fault.
std::unique_ptr<kernels::Backend> make_backend(const config::RunConfig& cfg);

// The dtype of activations and of the working copy of the weights.
kernels::DType compute_dtype(const config::TrainConfig& t);

// Every buffer a run allocates up front on its device, in bytes.
struct MemoryNeed {
  int64_t parameters = 0;  // master, working copy, gradients
  int64_t optimizer = 0;   // AdamW's moments
  int64_t activations = 0; // the activation arena
  int64_t workspaces = 0;  // cuBLASLt's and the kernels' (an upper bound)
  int64_t total() const { return parameters + optimizer + activations + workspaces; }
  std::string describe() const;  // "12.3 GiB (parameters 1.0 GiB, ...)"
};
MemoryNeed memory_need(const config::RunConfig& cfg);
// The same for one rank's shapes (the planner passes tensor-parallel shard
// dims), so the check before a run and dyt-plan share one formula. zero_dp:
// the dp size under ZeRO-1 (1 without), which shards AdamW's moments and,
// under BF16, the fp32 master (ParamStore): per parameter 2 (bf16 copy) +
// 4 (gradients) + 12/zero_dp (master, m, v), plus the side buffer's 4 per
// norm parameter when sharded; under FP32 4 + 4 + 8/zero_dp.
MemoryNeed memory_need(const ModelDims& dims, int64_t micro_batch, int64_t seq_len, bool recompute,
                       kernels::DType dt, ArenaSplit split = {}, int zero_dp = 1);

}  // namespace dyt::trainer
