// AdamW over the flat parameter buffer, as torch.optim.AdamW (torch 1.13,
// single-tensor fp32 path, amsgrad off, maximize off).
//
// One call of step(params, grads, lr), with t = steps_taken() + 1:
//   p ← p · (1 − lr·wd)                     decoupled decay, only in tensors whose
//                                           ParamEntry::weight_decay() is true
//                                           (matrices and the embedding; never α,
//                                           γ, β or the embedding scale)
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + ε)
//
// State m (exp_avg) and v (exp_avg_sq) are fp32 buffers with the layout's
// offsets, starting at zero. Per-step scalars (bias corrections, step size,
// decay factor) are computed in double as torch does in Python, then rounded
// to float; the per-element arithmetic is fp32 in torch's operation order,
// so results agree with torch to a few ulps (tests/trainer/optimizer).
// The element loop is the backend's (kernels::Backend::adamw_step): on the
// CPU under OpenMP, every element independent, so the result does not depend
// on the number of threads; on CUDA the same fp32 operations per element.
// The moments live on the backend beside the parameters.
//
// ZeRO-1: an optimizer may hold only a range of the flat buffer (the dp
// rank's dp_partition, trainer/dp_partition.h). Its moments then have
// range.size() elements (element i is the layout's element range.begin + i),
// the segments are clipped to the range (each tensor keeps its decay flag),
// and step() updates the master weights (and BF16 copy) of the range only;
// the caller gathers the rest (TrainStep). The store's master may hold that
// range only (a sharded master, ParamStore::master_range()). The full range
// is plain AdamW.
//
// train.alpha_lr_multiplier scales the learning rate of every DyT/DyISRU α
// (ParamKind::NormAlpha); everything else in the update is the same.
//
// Gradient clipping is not done here: see trainer/grad_norm.h.
#pragma once

#include <cstdint>
#include <vector>

#include "configs/config.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "trainer/dp_partition.h"
#include "trainer/param_layout.h"
#include "trainer/param_store.h"

namespace dyt::trainer {

class AdamW {
 public:
  // Reads beta1, beta2, adam_eps and weight_decay from `t`; allocates the
  // state (zeros) for layout.total() parameters on `backend`. Throws
  // std::invalid_argument on values that config::validate() would reject
  // (β outside [0, 1), ε <= 0, wd < 0), or a range outside [0, total].
  AdamW(const ParamLayout& layout, const config::TrainConfig& t,
        kernels::Backend& backend = kernels::cpu_backend());
  // State for `range` of the flat buffer only (ZeRO-1's shard).
  AdamW(const ParamLayout& layout, const config::TrainConfig& t, kernels::Backend& backend,
        FlatRange range);

  // One update of the store's master weights from its gradients at learning
  // rate `lr` (usually learning_rate(steps_taken(), t)); the BF16 working
  // copy, when there is one, receives the result in the same pass. Only
  // range() is read and written.
  void step(ParamStore& params, double lr);
  // The same on host buffers of layout.total() floats (CPU backend only).
  void step(float* params, const float* grads, double lr);

  // The part of the flat buffer whose state this optimizer holds
  // ([0, layout.total()) unless sharded).
  FlatRange range() const { return range_; }
  bool sharded() const { return range_.begin != 0 || range_.end != total_; }

  // The scalars of update number t (1-based) at learning rate lr.
  kernels::AdamWScalars scalars(int64_t t, double lr) const;

  // Completed steps (t of the last update; 0 before the first).
  int64_t steps_taken() const { return steps_; }
  // For resuming from a checkpoint together with set_moments().
  void set_steps_taken(int64_t steps);

  // The moments of range() on the backend (F32 [range().size()]), and on
  // the host (what a sharded checkpoint writes for this rank).
  kernels::Tensor exp_avg() const { return exp_avg_.flat(); }
  kernels::Tensor exp_avg_sq() const { return exp_avg_sq_.flat(); }
  std::vector<float> exp_avg_to_host() const;
  std::vector<float> exp_avg_sq_to_host() const;
  // Both moments from host buffers of layout.total() floats (a whole
  // checkpoint's); only range() is kept.
  void set_moments(const float* exp_avg, const float* exp_avg_sq);
  // Both moments of range() only, from host buffers of range().size() floats.
  void set_range_moments(const float* exp_avg, const float* exp_avg_sq);

  double beta1() const { return beta1_; }
  double beta2() const { return beta2_; }
  double eps() const { return eps_; }
  double weight_decay() const { return weight_decay_; }
  double alpha_lr_multiplier() const { return alpha_lr_multiplier_; }

 private:
  void update(const kernels::Tensor& params, const kernels::Tensor& grads,
              const kernels::Tensor* work, double lr);

  kernels::Backend& backend_;
  // Maximal runs of consecutive layout entries with the same decay flag
  // (decay false everywhere when weight_decay is 0), clipped to range_ and
  // relative to range_.begin.
  std::vector<kernels::ParamSegment> segments_;
  // The DyT/DyISRU α's when train.alpha_lr_multiplier != 1 (else empty):
  // updated at lr · alpha_lr_multiplier_ (the same relative offsets).
  std::vector<kernels::ParamSegment> alpha_segments_;
  int64_t total_ = 0;
  FlatRange range_;
  double beta1_, beta2_, eps_, weight_decay_, alpha_lr_multiplier_;
  int64_t steps_ = 0;
  kernels::Buffer exp_avg_, exp_avg_sq_;
};

}  // namespace dyt::trainer
