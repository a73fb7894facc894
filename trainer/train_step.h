// One optimizer step on the backend: the micro-batches' forward and
// backward, the data-parallel sum of gradients and loss, the global gradient
// norm, the non-finite guard, clipping and the AdamW update. A few scalars
// cross to the host per step (the loss and the norm); the gradients cross
// only when the communicator needs host memory.
#pragma once

#include <cstdint>
#include <vector>

#include "configs/config.h"
#include "parallel/communicator.h"
#include "trainer/data/loader.h"
#include "trainer/model_instance.h"
#include "trainer/optimizer.h"

namespace dyt::trainer {

struct StepResult {
  double loss = 0;       // mean over the global batch's tokens
  double grad_norm = 0;  // before clipping
  bool skipped = false;  // non-finite loss or norm: no update
};

class TrainStep {
 public:
  TrainStep(ModelInstance& model, AdamW& optimizer, const data::BatchSampler& sampler,
            parallel::Communicator& comm, const config::TrainConfig& t);

  // Step `step` (0-based) at learning rate lr.
  StepResult run(int64_t step, double lr);
  int64_t tokens_per_step() const { return tokens_per_step_; }

 private:
  // Gradients summed over the data-parallel ranks (fixed rank order).
  void allreduce_grads();
  double grad_norm();

  ModelInstance& model_;
  AdamW& optimizer_;
  const data::BatchSampler& sampler_;
  parallel::Communicator& comm_;
  double grad_clip_;
  int64_t tokens_per_step_;
  std::vector<int32_t> tokens_, targets_;
  std::vector<float> host_grads_;   // staging for device gradients (empty on the CPU)
  kernels::Buffer norm_sum_;        // F64 [1]
};

// Mean validation loss over the fixed validation batches, which the
// data-parallel ranks share out (batch j on rank j mod dp).
double evaluate(ModelInstance& model, const data::EvalBatches& batches, int dp_rank, int dp,
                parallel::Communicator& comm);

}  // namespace dyt::trainer
