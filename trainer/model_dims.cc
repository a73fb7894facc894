#include "trainer/model_dims.h"

namespace dyt::trainer {

ModelDims model_dims(const config::ModelConfig& m) {
  ModelDims d;
  d.vocab = m.vocab_size();
  d.d = m.d_model();
  d.layers = m.n_layers();
  d.heads = m.n_heads();
  d.kv_heads = config::kv_heads(m);
  d.head_dim = config::head_dim(m);
  d.ffn = m.ffn_hidden();
  switch (m.norm()) {
    case config::RMSNORM: d.norm = Norm::RMSNorm; break;
    case config::DYISRU: d.norm = Norm::DyISRU; break;
    default: d.norm = Norm::DyT; break;
  }
  d.norm_bias = m.norm_bias() && d.norm != Norm::RMSNorm;
  d.embed_scale = config::embed_scale_on(m);
  d.norm_eps = m.norm_eps();
  d.rope_theta = m.rope_theta();
  d.max_seq_len = m.max_seq_len();
  d.init_std = m.init_std();
  d.alpha0 = config::resolve_alpha(m);
  return d;
}

const char* norm_name(Norm n) {
  switch (n) {
    case Norm::RMSNorm: return "rmsnorm";
    case Norm::DyISRU: return "dyisru";
    case Norm::DyT: break;
  }
  return "dyt";
}

}  // namespace dyt::trainer
