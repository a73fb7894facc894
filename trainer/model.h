// The LLaMA-DyT decoder's math: explicit forward and backward through the ops
// of a kernels::Backend. It owns no storage: parameters and gradients live in
// a ParamStore, activations in an ActivationArena, both on the same backend.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "parallel/tensor_collectives.h"
#include "trainer/activation_arena.h"
#include "trainer/model_dims.h"
#include "trainer/param_store.h"

namespace dyt::trainer {

// Megatron's tensor parallelism (docs/parallel.md): this rank holds its
// block of every tensor (ParamLayout); q/k/v, gate and up are
// column-parallel, o_proj and down row-parallel, the embedding and the LM
// head vocab-parallel with a vocab-parallel loss. Without sequence
// parallelism every rank holds the whole residual stream and the
// row-parallel outputs (and in the backward the norm inputs' gradients) are
// all-reduced; with it the norm and residual regions hold rows/tp rows,
// all-gathered before the column-parallel GEMMs and reduce-scattered after
// the row-parallel ones. The gradients of what several ranks hold alike
// (norm parameters under sequence parallelism, replicated KV heads) are
// partial here and summed over the group by the step (tp_grad_sync.h).
struct TensorParallel {
  parallel::TensorCollectives* group = nullptr;  // null: tp = 1
  bool sequence_parallel = false;
  int size() const { return group ? group->size() : 1; }
  int rank() const { return group ? group->rank() : 0; }
};

// Called with a backward stage whose gradients are final (Model::forward_backward).
using GradsReady = std::function<void(int stage)>;

class Model {
 public:
  // dims: the whole model's; params: this rank's blocks (params.layout()).
  Model(const ModelDims& dims, const ParamStore& params, TensorParallel tp = {});

  const ModelDims& dims() const { return dims_; }
  // This rank's shapes (its heads, FFN columns and vocabulary).
  const ModelDims& local_dims() const { return local_; }

  // Forward of the micro-batch in acts.tokens; with targets, adds the sum of
  // its per-token cross-entropy losses to acts.loss_sum.
  void forward(ActivationArena& acts, bool with_loss);
  // Forward, then the backward of grad_scale · (loss sum), ACCUMULATING into
  // the gradients (micro-batches add up); the loss sum goes to acts.loss_sum.
  // ready, when set, is told each stage of the backward as its gradients
  // become final (trainer/grad_buckets.h: 0 after the LM head and final
  // norm, layers − l after block l, layers + 1 after the embedding), so the
  // caller can start reducing them while the backward goes on.
  void forward_backward(ActivationArena& acts, float grad_scale, const GradsReady* ready = nullptr);

  // While stats is set (F64 [2·(2·layers + 1)] on the backend; null stops)
  // and the model has DyT/DyISRU norms, every forward adds each norm input's
  // saturation statistics (Backend::saturation_stats) into its slot
  // (trainer/norm_health.h's order). The recomputation in the backward does
  // not add them again.
  void set_norm_probe(const kernels::Tensor* stats) { probe_ = stats; }

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
  // Block l from acts.layer_in(l) to acts.layer_in(l + 1); with probe, its
  // two norms' input statistics into slots 2l and 2l + 1.
  void block_forward(int64_t l, ActivationArena& acts, const kernels::Tensor* probe = nullptr);
  void probe_input(const Norm& n, const kernels::Tensor& x, const kernels::Tensor* probe,
                   int64_t slot);
  // Backward of block l; acts.dresid holds d(out) on entry and d(x) on exit.
  void block_backward(int64_t l, ActivationArena& acts);
  void embed_forward(ActivationArena& acts);
  void embed_backward(ActivationArena& acts);
  void loss(ActivationArena& acts, float grad_scale, bool with_grad);

  // The tensor-parallel mappings (identities at tp = 1).
  // A column-parallel GEMM's input: the norm output itself, or under
  // sequence parallelism its rows gathered into acts.gathered.
  const kernels::Tensor& column_input(const kernels::Tensor& local, ActivationArena& acts);
  // Where a row-parallel GEMM (or the embedding) writes its partial sum, and
  // the sum over the group into `out` (all-reduce, or reduce-scatter of
  // acts.partial into out's rows).
  const kernels::Tensor& partial_output(const kernels::Tensor& out, ActivationArena& acts);
  void sum_partial(const kernels::Tensor& out, ActivationArena& acts);
  // A residual-stream gradient as the row-parallel GEMMs' backward reads it.
  const kernels::Tensor& full_rows_grad(const kernels::Tensor& local, ActivationArena& acts);
  bool tp_on() const { return tp_.size() > 1; }
  bool sp_on() const { return tp_on() && tp_.sequence_parallel; }

  ModelDims dims_, local_;
  TensorParallel tp_;
  const ParamStore& params_;
  kernels::Backend& be_;
  kernels::NormKind kind_;
  float eps_;
  const kernels::Tensor* probe_ = nullptr;  // set_norm_probe's target
  std::vector<Layer> layers_;
  Norm final_norm_;
  kernels::Tensor embed_, embed_scale_, lm_head_;      // parameters
  kernels::Tensor dembed_, dembed_scale_, dlm_head_;   // gradients
};

}  // namespace dyt::trainer
