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
// so results agree with torch to a few ulps (tests/trainer/optimizer). The
// element update is kernels/optimizer_math.h (explicit fmas), shared with the
// CUDA optimizer, so both give the same bits on any compiler.
// The element loop runs under OpenMP; every element is independent, so the
// result does not depend on the number of threads.
//
// Gradient clipping is not done here: see trainer/grad_norm.h.
#pragma once

#include <cstdint>
#include <vector>

#include "configs/config.h"
#include "kernels/backend.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

class AdamW {
 public:
  // Reads beta1, beta2, adam_eps and weight_decay from `t`; sizes the state
  // to layout.total(). Throws std::invalid_argument on values that
  // config::validate() would reject (β outside [0, 1), ε <= 0, wd < 0).
  AdamW(const ParamLayout& layout, const config::TrainConfig& t);

  // One update of params[0, layout.total()) from grads (same offsets) at
  // learning rate `lr` (usually learning_rate(steps_taken(), t)).
  void step(float* params, const float* grads, double lr);
  // The per-step constants of update number t (1 for the first) at `lr`,
  // which step() hands to the element update; a device backend's AdamW
  // takes the same.
  kernels::AdamWScalars scalars(int64_t t, double lr) const;

  // Completed steps (t of the last update; 0 before the first).
  int64_t steps_taken() const { return steps_; }
  // For resuming from a checkpoint together with exp_avg()/exp_avg_sq().
  void set_steps_taken(int64_t steps);

  std::vector<float>& exp_avg() { return exp_avg_; }
  std::vector<float>& exp_avg_sq() { return exp_avg_sq_; }
  const std::vector<float>& exp_avg() const { return exp_avg_; }
  const std::vector<float>& exp_avg_sq() const { return exp_avg_sq_; }

  double beta1() const { return beta1_; }
  double beta2() const { return beta2_; }
  double eps() const { return eps_; }
  double weight_decay() const { return weight_decay_; }

 private:
  // Maximal runs of consecutive layout entries with the same decay flag.
  struct Segment {
    int64_t begin = 0;
    int64_t end = 0;
    bool decay = false;
  };

  std::vector<Segment> segments_;
  int64_t total_ = 0;
  double beta1_, beta2_, eps_, weight_decay_;
  int64_t steps_ = 0;
  std::vector<float> exp_avg_;
  std::vector<float> exp_avg_sq_;
};

}  // namespace dyt::trainer
