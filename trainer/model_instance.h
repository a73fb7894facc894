// A model ready to run on one backend: its shape and layout, its parameters
// (ParamStore), its activations (ActivationArena) and the math (Model), each
// owned by the class whose one job it is. Programs, benchmarks and tests
// start from here.
#pragma once

#include <cstdint>
#include <vector>

#include "configs/config.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "trainer/activation_arena.h"
#include "trainer/model.h"
#include "trainer/model_dims.h"
#include "trainer/param_layout.h"
#include "trainer/param_store.h"

namespace dyt::trainer {

class ModelInstance {
 public:
  // Micro-batches of `batch` sequences of `seq_len`; compute_dtype F32, or
  // BF16 (working copy and activations) on a backend that has it.
  // Under tensor parallelism (tp.group) this is one rank's part of the
  // model: every rank of the group calls every method with the same ids.
  // shard: ZeRO-1's dp group (ParamStore): with dp > 1 the buffers are
  // padded for its collectives and, under BF16, the fp32 master sharded.
  ModelInstance(const config::ModelConfig& config, int64_t batch, int64_t seq_len, bool recompute,
                kernels::Backend& backend = kernels::cpu_backend(),
                kernels::DType compute_dtype = kernels::DType::F32, TensorParallel tp = {},
                DpShard shard = {});
  ModelInstance(const ModelInstance&) = delete;
  ModelInstance& operator=(const ModelInstance&) = delete;

  const config::ModelConfig& config() const { return config_; }
  const ModelDims& dims() const { return dims_; }
  const TensorParallel& tensor_parallel() const { return tp_; }
  const ParamLayout& layout() const { return layout_; }
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  ActivationArena& acts() { return acts_; }
  kernels::Backend& backend() const { return params_.backend(); }
  int64_t batch() const { return acts_.batch(); }
  int64_t seq_len() const { return acts_.seq_len(); }

  // Parameters drawn as trainer/init.h does (on the host; this rank's
  // blocks of the tp = 1 values), then uploaded.
  void init(uint64_t seed);

  // tokens and targets are host arrays of batch · seq_len ids in [0, vocab).
  // The loss sum of the micro-batch (one host sync).
  double forward(const int32_t* tokens, const int32_t* targets);
  // Forward and backward of grad_scale · (loss sum), gradients accumulating;
  // returns the loss sum (one host sync).
  double forward_backward(const int32_t* tokens, const int32_t* targets, float grad_scale);
  // The same, leaving the loss in acts().loss_sum (no sync): the step loop's call.
  // ready: told each backward stage as its gradients become final (Model).
  void accumulate(const int32_t* tokens, const int32_t* targets, float grad_scale,
                  const GradsReady* ready = nullptr);

  // From probe_norms(true) (which zeroes the sums) to probe_norms(false),
  // every forward also adds up each DyT/DyISRU input's saturation statistics
  // (Model::set_norm_probe; nothing without such norms); norm_probe() reads
  // them: (Σ x², count of |α·x| > 3) per norm slot of trainer/norm_health.h,
  // over this rank's rows.
  void probe_norms(bool on);
  std::vector<double> norm_probe() const;

 private:
  // Uploads the ids, mapped to this rank's vocabulary slice under tp.
  void set_batch(const int32_t* tokens, const int32_t* targets);

  config::ModelConfig config_;
  ModelDims dims_;
  TensorParallel tp_;
  std::vector<int32_t> local_tokens_, local_targets_;
  ParamLayout layout_;
  ParamStore params_;
  ActivationArena acts_;
  Model model_;
  kernels::Buffer norm_probe_;  // F64 [2 · norm slots], for DyT/DyISRU models
  kernels::Tensor norm_probe_view_;  // all of it: what the model writes into
};

}  // namespace dyt::trainer
