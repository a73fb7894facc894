// The activations of one micro-batch and the backward's scratch, carved from
// buffers allocated once on the backend (one per dtype): nothing is
// allocated inside a step. Sizes come from trainer/activations.h, the figures
// the planner counts.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "trainer/activations.h"
#include "trainer/model_dims.h"

namespace dyt::trainer {

// What one block keeps for its backward. rstd1/rstd2 are empty unless the
// norm is RMSNorm; lse is the attention's per-row log-sum-exp [B, Hq, T].
struct LayerActs {
  kernels::Tensor a1, rstd1, q, k, v, lse, att, x_mid, a2, rstd2, gate, up, act;
};

// How the tensor-parallel group divides a rank's activations: tp > 1 adds
// the vocab-parallel loss's per-row statistics; sequence parallelism keeps
// the norm and residual regions at rows/tp and adds the full-row buffers the
// column- and row-parallel GEMMs read and write.
struct ArenaSplit {
  int tp = 1;
  bool sequence_parallel = false;
};

class ActivationArena {
 public:
  // dims: this rank's shapes (shard_dims); act_dtype: F32, or BF16 on the
  // CUDA backend. Under sequence parallelism tp must divide batch·seq_len.
  ActivationArena(const ModelDims& dims, int64_t batch, int64_t seq_len, bool recompute,
                  kernels::Backend& backend, kernels::DType act_dtype, ArenaSplit split = {});

  int64_t batch() const { return batch_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t rows() const { return batch_ * seq_len_; }
  // Rows of the norm and residual regions: rows()/tp under sequence parallelism.
  int64_t local_rows() const { return split_.sequence_parallel ? rows() / split_.tp : rows(); }
  const ArenaSplit& split() const { return split_; }
  bool recompute() const { return recompute_; }
  kernels::DType act_dtype() const { return act_dtype_; }
  // Bytes held, over every buffer.
  int64_t bytes() const;
  // What an arena of this shape holds, without allocating it (the memory
  // check before a run's first step).
  static int64_t bytes_needed(const ModelDims& dims, int64_t batch, int64_t seq_len,
                              bool recompute, kernels::DType act_dtype, ArenaSplit split = {});

  // The residual stream entering block l (l = layers: entering the final norm).
  const kernels::Tensor& layer_in(int64_t l) const { return layer_in_[static_cast<size_t>(l)]; }
  // Block l's saved set (one shared set under recomputation).
  const LayerActs& layer(int64_t l) const {
    return layer_acts_[recompute_ ? 0 : static_cast<size_t>(l)];
  }

  kernels::Tensor embed_rows, final_a, final_rstd, logits;                   // forward
  kernels::Tensor dresid, dnorm, datt, dq, dk, dv, dgate, dup, dact, dembed;  // backward scratch
  // Sequence parallelism's full-row [rows, d] buffers: a norm output gathered
  // for the column-parallel GEMMs, a row-parallel GEMM's partial output (and
  // in the backward the norm input's partial gradient) before its
  // reduce-scatter, and the residual gradient gathered. Empty otherwise.
  kernels::Tensor gathered, partial, dres_full;
  kernels::Tensor tokens, targets;  // I32 [rows]: this rank's ids (kAbsentToken elsewhere)
  kernels::Tensor loss_sum;         // F64 [1]: losses accumulate here until read
  // The vocab-parallel loss (tp > 1): per-row (max, exp-sum, target logit)
  // of this rank's logits [rows, 3], and the group's (max, sum) [rows, 2].
  kernels::Tensor ce_stats, ce_rows;
  // Losses computed on the host (the vocab-parallel loss) add here.
  double host_loss_sum = 0;

  // Copies a micro-batch's ids to the device (targets may be null).
  void set_batch(const int32_t* host_tokens, const int32_t* host_targets);
  // Reads and clears the loss accumulators (the one host sync of a step).
  double take_loss_sum();

 private:
  // Views of act (activation dtype) and f32 buffers in a fixed order; with
  // null buffers it only counts.
  struct Carving;
  void carve(const ModelDims& dims, Carving& act, Carving& f32);
  // A shell that only counts (bytes_needed).
  ActivationArena(int64_t batch, int64_t seq_len, bool recompute, kernels::DType act_dtype,
                  ArenaSplit split)
      : batch_(batch), seq_len_(seq_len), recompute_(recompute), split_(split), backend_(nullptr),
        act_dtype_(act_dtype) {}

  int64_t batch_, seq_len_;
  bool recompute_;
  ArenaSplit split_;
  kernels::Backend* backend_;
  kernels::DType act_dtype_;
  kernels::Buffer act_, f32_, ids_, f64_;
  std::vector<kernels::Tensor> layer_in_;
  std::vector<LayerActs> layer_acts_;
};

}  // namespace dyt::trainer
