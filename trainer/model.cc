#include "trainer/model.h"

#include <stdexcept>
#include <vector>

#include "trainer/norm_health.h"
#include "trainer/vocab_parallel_loss.h"

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

Model::Model(const ModelDims& dims, const ParamStore& params, TensorParallel tp)
    : dims_(dims),
      local_(shard_dims(dims, tp.size())),
      tp_(tp),
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

void Model::probe_input(const Norm& n, const Tensor& x, const Tensor* probe, int64_t slot) {
  if (probe && dims_.has_alpha())
    be_.saturation_stats(x, n.p.alpha, kSaturationThreshold, kernels::slice(*probe, 2 * slot, 2));
}

void Model::norm_backward(const Norm& n, const Tensor& x, const Tensor& rstd, const Tensor& dy,
                          const Tensor& dx) {
  be_.norm_backward(kind_, x, n.p, rstd, dy, dx, n.g);
}

const Tensor& Model::column_input(const Tensor& local, ActivationArena& acts) {
  if (!sp_on()) return local;
  tp_.group->allgather_rows(local, acts.gathered);
  return acts.gathered;
}

const Tensor& Model::partial_output(const Tensor& out, ActivationArena& acts) {
  return sp_on() ? acts.partial : out;
}

void Model::sum_partial(const Tensor& out, ActivationArena& acts) {
  if (sp_on())
    tp_.group->reduce_scatter_rows(acts.partial, out);
  else if (tp_on())
    tp_.group->allreduce_sum(out);
}

const Tensor& Model::full_rows_grad(const Tensor& local, ActivationArena& acts) {
  if (!sp_on()) return local;
  tp_.group->allgather_rows(local, acts.dres_full);
  return acts.dres_full;
}

void Model::block_forward(int64_t l, ActivationArena& acts, const Tensor* probe) {
  const Layer& w = layers_[static_cast<size_t>(l)];
  const LayerActs& a = acts.layer(l);
  const AttentionShape shape{acts.batch(), acts.seq_len(), local_.heads, local_.kv_heads};
  const Tensor& x = acts.layer_in(l);

  norm_forward(w.attn_norm, x, a.a1, a.rstd1);
  probe_input(w.attn_norm, x, probe, 2 * l);
  const Tensor& in1 = column_input(a.a1, acts);
  be_.linear_forward(in1, w.q, a.q);
  be_.linear_forward(in1, w.k, a.k);
  be_.linear_forward(in1, w.v, a.v);
  be_.rope_forward(a.q, acts.seq_len(), local_.heads, dims_.rope_theta);
  be_.rope_forward(a.k, acts.seq_len(), local_.kv_heads, dims_.rope_theta);
  be_.attention_forward(a.q, a.k, a.v, shape, a.att, a.lse);
  // x_mid = x + o_proj(att), and the FFN norm of it, in one fused op.
  be_.linear_forward(a.att, w.o, partial_output(a.x_mid, acts));
  sum_partial(a.x_mid, acts);
  be_.residual_norm_forward(kind_, x, a.x_mid, w.ffn_norm.p, eps_, a.x_mid, a.a2, a.rstd2);
  probe_input(w.ffn_norm, a.x_mid, probe, 2 * l + 1);

  const Tensor& in2 = column_input(a.a2, acts);
  be_.linear_forward(in2, w.gate, a.gate);
  be_.linear_forward(in2, w.up, a.up);
  be_.swiglu_forward(a.gate, a.up, a.act);
  const Tensor& out = acts.layer_in(l + 1);
  be_.linear_forward(a.act, w.down, partial_output(out, acts));
  sum_partial(out, acts);
  be_.add_inplace(out, a.x_mid);
}

void Model::block_backward(int64_t l, ActivationArena& acts) {
  const Layer& w = layers_[static_cast<size_t>(l)];
  const LayerActs& a = acts.layer(l);
  const AttentionShape shape{acts.batch(), acts.seq_len(), local_.heads, local_.kv_heads};
  const Tensor& dres = acts.dresid;

  // FFN: out = x_mid + down(silu(gate(a2)) ⊙ up(a2)).
  const Tensor& dout = full_rows_grad(dres, acts);
  be_.linear_backward_input(dout, w.down, acts.dact, false);
  be_.linear_backward_weight(dout, a.act, w.ddown);
  be_.swiglu_backward(a.gate, a.up, acts.dact, acts.dgate, acts.dup);
  const Tensor& in2 = column_input(a.a2, acts);  // re-gathered under sequence parallelism
  const Tensor& dn2 = partial_output(acts.dnorm, acts);
  be_.linear_backward_input(acts.dgate, w.gate, dn2, false);
  be_.linear_backward_input(acts.dup, w.up, dn2, true);
  be_.linear_backward_weight(acts.dgate, in2, w.dgate);
  be_.linear_backward_weight(acts.dup, in2, w.dup);
  sum_partial(acts.dnorm, acts);
  // Through the fused residual + FFN norm: dres += norm's dx.
  be_.residual_norm_backward(kind_, a.x_mid, w.ffn_norm.p, a.rstd2, acts.dnorm, dres, dres,
                             w.ffn_norm.g);

  // Attention: x_mid = x + o_proj(attention(rope(q), rope(k), v)).
  const Tensor& dmid = full_rows_grad(dres, acts);
  be_.linear_backward_input(dmid, w.o, acts.datt, false);
  be_.linear_backward_weight(dmid, a.att, w.d_o);
  be_.attention_backward(a.q, a.k, a.v, a.att, a.lse, acts.datt, shape, acts.dq, acts.dk, acts.dv);
  be_.rope_backward(acts.dq, acts.seq_len(), local_.heads, dims_.rope_theta);
  be_.rope_backward(acts.dk, acts.seq_len(), local_.kv_heads, dims_.rope_theta);
  const Tensor& in1 = column_input(a.a1, acts);
  const Tensor& dn1 = partial_output(acts.dnorm, acts);
  be_.linear_backward_input(acts.dq, w.q, dn1, false);
  be_.linear_backward_input(acts.dk, w.k, dn1, true);
  be_.linear_backward_input(acts.dv, w.v, dn1, true);
  be_.linear_backward_weight(acts.dq, in1, w.dq);
  be_.linear_backward_weight(acts.dk, in1, w.dk);
  be_.linear_backward_weight(acts.dv, in1, w.dv);
  sum_partial(acts.dnorm, acts);
  norm_backward(w.attn_norm, acts.layer_in(l), a.rstd1, acts.dnorm, dres);
}

void Model::embed_forward(ActivationArena& acts) {
  // The vocab-parallel lookup gives each row on the rank that holds its
  // token and zeros elsewhere; the sum over the group is the embedding.
  const Tensor& x0 = acts.layer_in(0);
  const Tensor& rows = dims_.embed_scale ? acts.embed_rows : x0;
  be_.embedding_forward(acts.tokens, embed_, partial_output(rows, acts));
  sum_partial(rows, acts);
  if (dims_.embed_scale) be_.scale_forward(acts.embed_rows, embed_scale_, x0);
}

void Model::embed_backward(ActivationArena& acts) {
  const Tensor* d = &acts.dresid;
  if (dims_.embed_scale) {
    be_.scale_backward(acts.embed_rows, acts.dresid, embed_scale_, acts.dembed, dembed_scale_);
    d = &acts.dembed;
  }
  be_.embedding_backward(acts.tokens, full_rows_grad(*d, acts), dembed_);
}

void Model::loss(ActivationArena& acts, float grad_scale, bool with_grad) {
  if (!tp_on()) {
    // The loss (and dlogits, in place of the logits) in one pass.
    be_.cross_entropy(acts.logits, acts.targets, grad_scale, with_grad ? &acts.logits : nullptr,
                      acts.loss_sum);
    return;
  }
  be_.cross_entropy_stats(acts.logits, acts.targets, acts.ce_stats);
  const int64_t n = acts.rows();
  std::vector<double> stats(static_cast<size_t>(3 * n)), rows(static_cast<size_t>(2 * n));
  be_.download(acts.ce_stats, stats.data());
  acts.host_loss_sum += combine_vocab_parallel(tp_.group->comm(), stats.data(), n, rows.data());
  if (!with_grad) return;
  be_.upload(rows.data(), acts.ce_rows);
  be_.cross_entropy_grad(acts.logits, acts.targets, acts.ce_rows, grad_scale);
}

void Model::forward(ActivationArena& acts, bool with_loss) {
  const Tensor* probe = probe_;
  embed_forward(acts);
  for (int64_t l = 0; l < dims_.layers; ++l) block_forward(l, acts, probe);
  norm_forward(final_norm_, acts.layer_in(dims_.layers), acts.final_a, acts.final_rstd);
  probe_input(final_norm_, acts.layer_in(dims_.layers), probe, 2 * dims_.layers);
  be_.linear_forward(column_input(acts.final_a, acts), lm_head_, acts.logits);
  if (with_loss) loss(acts, 0.0f, false);
}

void Model::forward_backward(ActivationArena& acts, float grad_scale, const GradsReady* ready) {
  const auto done = [&](int64_t stage) {
    if (ready) (*ready)(static_cast<int>(stage));
  };
  forward(acts, false);
  loss(acts, grad_scale, true);

  // acts.gathered still holds the final norm's gathered rows (sequence parallelism).
  const Tensor& final_in = sp_on() ? acts.gathered : acts.final_a;
  const Tensor& dn = partial_output(acts.dnorm, acts);
  be_.linear_backward_input(acts.logits, lm_head_, dn, false);
  be_.linear_backward_weight(acts.logits, final_in, dlm_head_);
  sum_partial(acts.dnorm, acts);
  be_.zero(acts.dresid);
  norm_backward(final_norm_, acts.layer_in(dims_.layers), acts.final_rstd, acts.dnorm, acts.dresid);
  done(0);

  for (int64_t l = dims_.layers - 1; l >= 0; --l) {
    // Under recomputation the block's activations are rebuilt from its saved
    // input; the rebuilt output equals layer_in(l + 1) bit for bit.
    if (acts.recompute()) block_forward(l, acts);
    block_backward(l, acts);
    done(dims_.layers - l);
  }
  embed_backward(acts);
  done(dims_.layers + 1);
}

}  // namespace dyt::trainer
