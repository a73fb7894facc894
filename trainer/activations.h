// What the forward pass keeps for the backward, in elements per micro-batch.
// The model allocates exactly these buffers and the planner counts them, so
// the planner's activation figure is the model's, not an estimate.
#pragma once

#include <cstdint>

#include "trainer/model_dims.h"

namespace dyt::trainer {

struct LayerActivationSizes {
  int64_t x_in = 0;   // residual stream entering the block [N, d]
  int64_t a1 = 0;     // attention-norm output [N, d]
  int64_t rstd1 = 0;  // RMSNorm 1/rms per row [N] (RMSNorm only)
  int64_t q = 0, k = 0, v = 0;  // projections after RoPE [N, Hq·hd], [N, Hkv·hd] ×2
  int64_t lse = 0;    // attention's per-row log-sum-exp [B, Hq, T], all it keeps
  int64_t att = 0;    // attention output before o_proj [N, Hq·hd]
  int64_t x_mid = 0;  // residual stream after attention [N, d]
  int64_t a2 = 0;     // FFN-norm output [N, d]
  int64_t rstd2 = 0;
  int64_t gate = 0, up = 0, act = 0;  // SwiGLU gate, up and silu(gate)·up [N, F]

  int64_t total() const {
    return x_in + a1 + rstd1 + q + k + v + lse + att + x_mid + a2 + rstd2 + gate + up + act;
  }
};

struct ActivationSizes {
  LayerActivationSizes layer;
  int64_t layers = 0;
  int64_t embed = 0;       // unscaled embedding rows, kept when the embedding scale is learnable
  int64_t final_x = 0;     // residual stream entering the final norm
  int64_t final_a = 0;     // final-norm output
  int64_t final_rstd = 0;
  int64_t logits = 0;      // [N, V], reused for their gradient

  int64_t head_total() const { return embed + final_x + final_a + final_rstd + logits; }
  // Without recomputation every block keeps its full set; with it, blocks keep
  // only their input and one block's set is rebuilt at a time in the backward.
  int64_t total(bool recompute) const {
    return recompute ? layers * layer.x_in + layer.total() + head_total()
                     : layers * layer.total() + head_total();
  }
};

ActivationSizes activation_sizes(const ModelDims& dims, int64_t batch, int64_t seq_len);

}  // namespace dyt::trainer
