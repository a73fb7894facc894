// The LLaMA-DyT decoder on the CPU: explicit forward and backward through the
// ops of kernels/cpu_ops.h over one flat parameter buffer and one flat
// gradient buffer laid out by ParamLayout.
#pragma once

#include <cstdint>
#include <vector>

#include "configs/config.h"
#include "trainer/activations.h"
#include "trainer/model_dims.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

class Model {
 public:
  // Buffers are sized for micro-batches of `batch` sequences of `seq_len`.
  Model(const config::ModelConfig& config, int64_t batch, int64_t seq_len, bool recompute);

  const ModelDims& dims() const { return dims_; }
  const ParamLayout& layout() const { return layout_; }
  int64_t batch() const { return batch_; }
  int64_t seq_len() const { return seq_len_; }

  std::vector<float>& params() { return params_; }
  const std::vector<float>& params() const { return params_; }
  std::vector<float>& grads() { return grads_; }
  const std::vector<float>& grads() const { return grads_; }

  void init(uint64_t seed);
  void zero_grads();

  // tokens and targets are [batch · seq_len] ids in [0, vocab). Returns the sum
  // of the per-token cross-entropy losses (in double).
  double forward(const int32_t* tokens, const int32_t* targets);
  // Forward, then backward of grad_scale · (loss sum), ACCUMULATING into the
  // gradient buffer (micro-batches add up). Returns the loss sum.
  double forward_backward(const int32_t* tokens, const int32_t* targets, float grad_scale);

 private:
  struct NormOffsets {
    int64_t weight = -1, alpha = -1, bias = -1;
  };
  struct LayerOffsets {
    NormOffsets attn_norm, ffn_norm;
    int64_t q = -1, k = -1, v = -1, o = -1, gate = -1, up = -1, down = -1;
  };
  struct LayerActs {
    std::vector<float> a1, rstd1, q, k, v, lse, att, x_mid, a2, rstd2, gate, up, act;
  };

  NormOffsets norm_offsets(const std::string& prefix) const;
  void norm_forward(const NormOffsets& off, const float* x, float* y, float* rstd) const;
  void norm_backward(const NormOffsets& off, const float* x, const float* rstd, const float* dy,
                     float* dx);
  // Block l from its input x (layer_in_[l]) to out (the next block's input).
  void block_forward(int64_t l, LayerActs& acts, float* out);
  // Backward of block l; dresid holds d(out) on entry and d(x) on exit.
  void block_backward(int64_t l, LayerActs& acts, float* dresid);
  LayerActs& acts_for(int64_t l) { return recompute_ ? layer_acts_[0] : layer_acts_[l]; }

  ModelDims dims_;
  config::ModelConfig config_;
  ParamLayout layout_;
  int64_t batch_, seq_len_, rows_;
  bool recompute_;

  std::vector<float> params_, grads_;
  std::vector<LayerOffsets> layer_offsets_;
  NormOffsets final_norm_;
  int64_t embed_ = -1, embed_scale_ = -1, lm_head_ = -1;

  // Activations (sizes from activation_sizes()).
  std::vector<std::vector<float>> layer_in_;  // layers + 1 residual streams; the last feeds the final norm
  std::vector<LayerActs> layer_acts_;         // one per block, or one shared under recompute
  std::vector<float> embed_rows_, final_a_, final_rstd_, logits_;
  // Backward scratch.
  std::vector<float> dresid_, dnorm_, datt_, dq_, dk_, dv_, dgate_, dup_, dact_, dembed_;
};

}  // namespace dyt::trainer
