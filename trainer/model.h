// The LLaMA-DyT decoder's math: explicit forward and backward through the ops
// of a kernels::Backend. It owns no storage: parameters and gradients live in
// a ParamStore, activations in an ActivationArena, both on the same backend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "trainer/activation_arena.h"
#include "trainer/model_dims.h"
#include "trainer/param_store.h"

namespace dyt::trainer {

class Model {
 public:
  Model(const ModelDims& dims, const ParamStore& params);

  const ModelDims& dims() const { return dims_; }

  // Forward of the micro-batch in acts.tokens; with targets, adds the sum of
  // its per-token cross-entropy losses to acts.loss_sum.
  void forward(ActivationArena& acts, bool with_loss);
  // Forward, then the backward of grad_scale · (loss sum), ACCUMULATING into
  // the gradients (micro-batches add up); the loss sum goes to acts.loss_sum.
  void forward_backward(ActivationArena& acts, float grad_scale);

 private:
  struct Norm {
    kernels::NormParams p, g;  // parameters and their gradients
  };
  struct Layer {
    Norm attn_norm, ffn_norm;
    kernels::Tensor q, k, v, o, gate, up, down;         // weights (working copy)
    kernels::Tensor dq, dk, dv, d_o, dgate, dup, ddown;  // their gradients (F32)
  };

  Norm norm(const std::string& prefix) const;
  void norm_forward(const Norm& n, const kernels::Tensor& x, const kernels::Tensor& y,
                    const kernels::Tensor& rstd);
  void norm_backward(const Norm& n, const kernels::Tensor& x, const kernels::Tensor& rstd,
                     const kernels::Tensor& dy, const kernels::Tensor& dx);
  // Block l from acts.layer_in(l) to acts.layer_in(l + 1).
  void block_forward(int64_t l, ActivationArena& acts);
  // Backward of block l; acts.dresid holds d(out) on entry and d(x) on exit.
  void block_backward(int64_t l, ActivationArena& acts);

  ModelDims dims_;
  const ParamStore& params_;
  kernels::Backend& be_;
  kernels::NormKind kind_;
  float eps_;
  std::vector<Layer> layers_;
  Norm final_norm_;
  kernels::Tensor embed_, embed_scale_, lm_head_;      // parameters
  kernels::Tensor dembed_, dembed_scale_, dlm_head_;   // gradients
};

}  // namespace dyt::trainer
