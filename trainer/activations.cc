#include "trainer/activations.h"

namespace dyt::trainer {

ActivationSizes activation_sizes(const ModelDims& dims, int64_t batch, int64_t seq_len) {
  const int64_t n = batch * seq_len;
  const int64_t rstd = dims.norm == Norm::RMSNorm ? n : 0;
  ActivationSizes s;
  LayerActivationSizes& l = s.layer;
  l.x_in = l.a1 = l.x_mid = l.a2 = n * dims.d;
  l.rstd1 = l.rstd2 = rstd;
  l.q = l.att = n * dims.q_dim();
  l.k = l.v = n * dims.kv_dim();
  l.lse = batch * dims.heads * seq_len;
  l.gate = l.up = l.act = n * dims.ffn;
  s.layers = dims.layers;
  s.embed = dims.embed_scale ? n * dims.d : 0;
  s.final_x = s.final_a = n * dims.d;
  s.final_rstd = rstd;
  s.logits = n * dims.vocab;
  return s;
}

}  // namespace dyt::trainer
