// The shape of a LLaMA-DyT model, resolved once from its config so the model,
// the layout and the planner all read the same numbers.
#pragma once

#include <cstdint>

#include "configs/config.h"

namespace dyt::trainer {

enum class Norm { RMSNorm, DyT, DyISRU };

struct ModelDims {
  int64_t vocab = 0;
  int64_t d = 0;        // residual width
  int64_t layers = 0;
  int64_t heads = 0;    // query heads
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn = 0;      // SwiGLU inner width
  Norm norm = Norm::DyT;
  bool norm_bias = false;   // β in DyT / DyISRU
  bool embed_scale = false; // learnable scalar on the embedding output
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  int64_t max_seq_len = 4096;  // longest sequence (Hugging Face's max_position_embeddings)
  double init_std = 0.02;      // weight matrices' init (initializer_range)
  config::AlphaInitValues alpha0{1.0, 1.0, 1.0};  // α₀ per norm slot, resolved

  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
  bool has_alpha() const { return norm != Norm::RMSNorm; }
};

ModelDims model_dims(const config::ModelConfig& m);

const char* norm_name(Norm n);  // "rmsnorm", "dyt", "dyisru"

}  // namespace dyt::trainer
