#include "trainer/model.h"

#include <stdexcept>

namespace dyt::trainer {

using kernels::AttentionShape;
using kernels::Tensor;

namespace {

kernels::NormKind norm_kind(trainer::Norm n) {
  switch (n) {
    case trainer::Norm::RMSNorm: return kernels::NormKind::RMSNorm;
    case trainer::Norm::DyISRU: return kernels::NormKind::DyISRU;
    case trainer::Norm::DyT: break;
  }
  return kernels::NormKind::DyT;
}

}  // namespace

Model::Model(const ModelDims& dims, const ParamStore& params)
    : dims_(dims),
      params_(params),
      be_(params.backend()),
      kind_(norm_kind(dims.norm)),
      eps_(static_cast<float>(dims.norm_eps)) {
  embed_ = params.weight("model.embed_tokens.weight");
  dembed_ = params.grad("model.embed_tokens.weight");
  if (dims.embed_scale) {
    embed_scale_ = params.f32_param("model.embed_scale");
    dembed_scale_ = params.grad("model.embed_scale");
  }
  lm_head_ = params.weight("lm_head.weight");
  dlm_head_ = params.grad("lm_head.weight");
  final_norm_ = norm("model.norm");
  for (int64_t l = 0; l < dims.layers; ++l) {
    Layer y;
    y.attn_norm = norm(layer_name(l, "input_layernorm"));
    y.ffn_norm = norm(layer_name(l, "post_attention_layernorm"));
    const auto w = [&](const char* suffix, Tensor& value, Tensor& grad) {
      value = params.weight(layer_name(l, suffix));
      grad = params.grad(layer_name(l, suffix));
    };
    w("self_attn.q_proj.weight", y.q, y.dq);
    w("self_attn.k_proj.weight", y.k, y.dk);
    w("self_attn.v_proj.weight", y.v, y.dv);
    w("self_attn.o_proj.weight", y.o, y.d_o);
    w("mlp.gate_proj.weight", y.gate, y.dgate);
    w("mlp.up_proj.weight", y.up, y.dup);
    w("mlp.down_proj.weight", y.down, y.ddown);
    layers_.push_back(y);
  }
}

Model::Norm Model::norm(const std::string& prefix) const {
  Norm n;
  n.p.gamma = params_.f32_param(prefix + ".weight");
  n.g.gamma = params_.grad(prefix + ".weight");
  if (dims_.has_alpha()) {
    n.p.alpha = params_.f32_param(prefix + ".alpha");
    n.g.alpha = params_.grad(prefix + ".alpha");
  }
  if (dims_.norm_bias) {
    n.p.beta = params_.f32_param(prefix + ".bias");
    n.g.beta = params_.grad(prefix + ".bias");
  }
  return n;
}

void Model::norm_forward(const Norm& n, const Tensor& x, const Tensor& y, const Tensor& rstd) {
  be_.norm_forward(kind_, x, n.p, eps_, y, rstd);
}

void Model::norm_backward(const Norm& n, const Tensor& x, const Tensor& rstd, const Tensor& dy,
                          const Tensor& dx) {
  be_.norm_backward(kind_, x, n.p, rstd, dy, dx, n.g);
}

void Model::block_forward(int64_t l, ActivationArena& acts) {
  const Layer& w = layers_[static_cast<size_t>(l)];
  const LayerActs& a = acts.layer(l);
  const AttentionShape shape{acts.batch(), acts.seq_len(), dims_.heads, dims_.kv_heads};
  const Tensor& x = acts.layer_in(l);

  norm_forward(w.attn_norm, x, a.a1, a.rstd1);
  be_.linear_forward(a.a1, w.q, a.q);
  be_.linear_forward(a.a1, w.k, a.k);
  be_.linear_forward(a.a1, w.v, a.v);
  be_.rope_forward(a.q, acts.seq_len(), dims_.heads, dims_.rope_theta);
  be_.rope_forward(a.k, acts.seq_len(), dims_.kv_heads, dims_.rope_theta);
  be_.attention_forward(a.q, a.k, a.v, shape, a.att, a.lse);
  // x_mid = x + o_proj(att), and the FFN norm of it, in one fused op.
  be_.linear_forward(a.att, w.o, a.x_mid);
  be_.residual_norm_forward(kind_, x, a.x_mid, w.ffn_norm.p, eps_, a.x_mid, a.a2, a.rstd2);

  be_.linear_forward(a.a2, w.gate, a.gate);
  be_.linear_forward(a.a2, w.up, a.up);
  be_.swiglu_forward(a.gate, a.up, a.act);
  const Tensor& out = acts.layer_in(l + 1);
  be_.linear_forward(a.act, w.down, out);
  be_.add_inplace(out, a.x_mid);
}

void Model::block_backward(int64_t l, ActivationArena& acts) {
  const Layer& w = layers_[static_cast<size_t>(l)];
  const LayerActs& a = acts.layer(l);
  const AttentionShape shape{acts.batch(), acts.seq_len(), dims_.heads, dims_.kv_heads};
  const Tensor& dres = acts.dresid;

  // FFN: out = x_mid + down(silu(gate(a2)) ⊙ up(a2)).
  be_.linear_backward_input(dres, w.down, acts.dact, false);
  be_.linear_backward_weight(dres, a.act, w.ddown);
  be_.swiglu_backward(a.gate, a.up, acts.dact, acts.dgate, acts.dup);
  be_.linear_backward_input(acts.dgate, w.gate, acts.dnorm, false);
  be_.linear_backward_input(acts.dup, w.up, acts.dnorm, true);
  be_.linear_backward_weight(acts.dgate, a.a2, w.dgate);
  be_.linear_backward_weight(acts.dup, a.a2, w.dup);
  // Through the fused residual + FFN norm: dres += norm's dx.
  be_.residual_norm_backward(kind_, a.x_mid, w.ffn_norm.p, a.rstd2, acts.dnorm, dres, dres,
                             w.ffn_norm.g);

  // Attention: x_mid = x + o_proj(attention(rope(q), rope(k), v)).
  be_.linear_backward_input(dres, w.o, acts.datt, false);
  be_.linear_backward_weight(dres, a.att, w.d_o);
  be_.attention_backward(a.q, a.k, a.v, a.att, a.lse, acts.datt, shape, acts.dq, acts.dk, acts.dv);
  be_.rope_backward(acts.dq, acts.seq_len(), dims_.heads, dims_.rope_theta);
  be_.rope_backward(acts.dk, acts.seq_len(), dims_.kv_heads, dims_.rope_theta);
  be_.linear_backward_input(acts.dq, w.q, acts.dnorm, false);
  be_.linear_backward_input(acts.dk, w.k, acts.dnorm, true);
  be_.linear_backward_input(acts.dv, w.v, acts.dnorm, true);
  be_.linear_backward_weight(acts.dq, a.a1, w.dq);
  be_.linear_backward_weight(acts.dk, a.a1, w.dk);
  be_.linear_backward_weight(acts.dv, a.a1, w.dv);
  norm_backward(w.attn_norm, acts.layer_in(l), a.rstd1, acts.dnorm, dres);
}

void Model::forward(ActivationArena& acts, bool with_loss) {
  const Tensor& x0 = acts.layer_in(0);
  if (dims_.embed_scale) {
    be_.embedding_forward(acts.tokens, embed_, acts.embed_rows);
    be_.scale_forward(acts.embed_rows, embed_scale_, x0);
  } else {
    be_.embedding_forward(acts.tokens, embed_, x0);
  }
  for (int64_t l = 0; l < dims_.layers; ++l) block_forward(l, acts);
  norm_forward(final_norm_, acts.layer_in(dims_.layers), acts.final_a, acts.final_rstd);
  be_.linear_forward(acts.final_a, lm_head_, acts.logits);
  if (with_loss) be_.cross_entropy(acts.logits, acts.targets, 0.0f, nullptr, acts.loss_sum);
}

void Model::forward_backward(ActivationArena& acts, float grad_scale) {
  forward(acts, false);

  // The loss and dlogits in one pass, in place of the logits.
  be_.cross_entropy(acts.logits, acts.targets, grad_scale, &acts.logits, acts.loss_sum);
  be_.linear_backward_input(acts.logits, lm_head_, acts.dnorm, false);
  be_.linear_backward_weight(acts.logits, acts.final_a, dlm_head_);
  be_.zero(acts.dresid);
  norm_backward(final_norm_, acts.layer_in(dims_.layers), acts.final_rstd, acts.dnorm, acts.dresid);

  for (int64_t l = dims_.layers - 1; l >= 0; --l) {
    // Under recomputation the block's activations are rebuilt from its saved
    // input; the rebuilt output equals layer_in(l + 1) bit for bit.
    if (acts.recompute()) block_forward(l, acts);
    block_backward(l, acts);
  }

  if (dims_.embed_scale) {
    be_.scale_backward(acts.embed_rows, acts.dresid, embed_scale_, acts.dembed, dembed_scale_);
    be_.embedding_backward(acts.tokens, acts.dembed, dembed_);
  } else {
    be_.embedding_backward(acts.tokens, acts.dresid, dembed_);
  }
}

}  // namespace dyt::trainer
