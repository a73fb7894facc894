// A training run's state in a checkpoint: which tensors make it up, putting
// them back, and whether a checkpoint belongs to the run being started.
#pragma once

#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "configs/config.h"
#include "trainer/optimizer.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

// Parameters under their Hugging Face names, AdamW's moments under
// "optimizer.exp_avg.<name>" and "optimizer.exp_avg_sq.<name>".
// All three are host buffers of layout.total() floats.
std::vector<checkpoint::TensorRef> run_state_tensors(const ParamLayout& layout, const float* params,
                                                     const float* exp_avg, const float* exp_avg_sq);

// Puts parameters (into the host buffer `params`) and optimizer state
// (moments and update count, onto the optimizer's backend) back from `ck`. Throws checkpoint::CheckpointError naming the checkpoint and the
// tensor that is missing, extra or of another shape.
void restore_run_state(const checkpoint::Checkpoint& ck, const ParamLayout& layout, float* params,
                       AdamW& optimizer);

// Throws config::ConfigError when `ck` was saved by a run that `cfg` would
// not continue unchanged: a different model, data, seed, batch, schedule or
// optimizer setting. The message names the first such field with both
// values. Settings that leave the trajectory alone may differ: logging,
// evaluation, run_dir, metrics_file, recompute, micro_batch (only the
// summation order of micro-batches changes), max_nonfinite_steps,
// data.val_shards, data.tokenizer, checkpoint.*, parallel.* (a run may go
// on under another number of data-parallel ranks).
void check_resumable(const checkpoint::Checkpoint& ck, const config::RunConfig& cfg);

}  // namespace dyt::trainer
