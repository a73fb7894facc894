#include "trainer/model.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/cpu_ops.h"
#include "trainer/init.h"

namespace dyt::trainer {

namespace {

using kernels::Tensor;

Tensor mat(const float* p, int64_t rows, int64_t cols) {
  return kernels::cpu_f32(const_cast<float*>(p), {rows, cols});
}
Tensor vec(const float* p, int64_t n) { return kernels::cpu_f32(const_cast<float*>(p), {n}); }
Tensor ids(const int32_t* p, int64_t n) { return kernels::cpu_i32(const_cast<int32_t*>(p), {n}); }

// dW += dyᵀ·x into a view made on the spot.
void weight_grad(const Tensor& dy, const Tensor& x, Tensor dw) { cpu::linear_backward_weight(dy, x, dw); }

}  // namespace

Model::Model(const config::ModelConfig& config, int64_t batch, int64_t seq_len, bool recompute)
    : dims_(model_dims(config)),
      config_(config),
      layout_(dims_),
      batch_(batch),
      seq_len_(seq_len),
      rows_(batch * seq_len),
      recompute_(recompute) {
  if (batch <= 0 || seq_len <= 0) throw std::invalid_argument("Model: batch and seq_len must be > 0");
  params_.assign(layout_.total(), 0.0f);
  grads_.assign(layout_.total(), 0.0f);

  embed_ = layout_.at("model.embed_tokens.weight").offset;
  if (dims_.embed_scale) embed_scale_ = layout_.at("model.embed_scale").offset;
  lm_head_ = layout_.at("lm_head.weight").offset;
  final_norm_ = norm_offsets("model.norm");
  for (int64_t l = 0; l < dims_.layers; ++l) {
    LayerOffsets o;
    o.attn_norm = norm_offsets(layer_name(l, "input_layernorm"));
    o.ffn_norm = norm_offsets(layer_name(l, "post_attention_layernorm"));
    o.q = layout_.at(layer_name(l, "self_attn.q_proj.weight")).offset;
    o.k = layout_.at(layer_name(l, "self_attn.k_proj.weight")).offset;
    o.v = layout_.at(layer_name(l, "self_attn.v_proj.weight")).offset;
    o.o = layout_.at(layer_name(l, "self_attn.o_proj.weight")).offset;
    o.gate = layout_.at(layer_name(l, "mlp.gate_proj.weight")).offset;
    o.up = layout_.at(layer_name(l, "mlp.up_proj.weight")).offset;
    o.down = layout_.at(layer_name(l, "mlp.down_proj.weight")).offset;
    layer_offsets_.push_back(o);
  }

  const ActivationSizes s = activation_sizes(dims_, batch_, seq_len_);
  layer_in_.assign(dims_.layers + 1, std::vector<float>(s.layer.x_in));
  layer_acts_.resize(recompute_ ? 1 : dims_.layers);
  for (LayerActs& a : layer_acts_) {
    const LayerActivationSizes& z = s.layer;
    a.a1.resize(z.a1), a.rstd1.resize(z.rstd1), a.q.resize(z.q), a.k.resize(z.k), a.v.resize(z.v);
    a.lse.resize(z.lse), a.att.resize(z.att), a.x_mid.resize(z.x_mid), a.a2.resize(z.a2);
    a.rstd2.resize(z.rstd2), a.gate.resize(z.gate), a.up.resize(z.up), a.act.resize(z.act);
  }
  embed_rows_.resize(s.embed);
  final_a_.resize(s.final_a);
  final_rstd_.resize(s.final_rstd);
  logits_.resize(s.logits);

  dresid_.resize(rows_ * dims_.d);
  dnorm_.resize(rows_ * dims_.d);
  datt_.resize(rows_ * dims_.q_dim());
  dq_.resize(rows_ * dims_.q_dim());
  dk_.resize(rows_ * dims_.kv_dim());
  dv_.resize(rows_ * dims_.kv_dim());
  dgate_.resize(rows_ * dims_.ffn);
  dup_.resize(rows_ * dims_.ffn);
  dact_.resize(rows_ * dims_.ffn);
  if (dims_.embed_scale) dembed_.resize(rows_ * dims_.d);
}

Model::NormOffsets Model::norm_offsets(const std::string& prefix) const {
  NormOffsets n;
  n.weight = layout_.at(prefix + ".weight").offset;
  if (dims_.has_alpha()) n.alpha = layout_.at(prefix + ".alpha").offset;
  if (dims_.norm_bias) n.bias = layout_.at(prefix + ".bias").offset;
  return n;
}

void Model::init(uint64_t seed) { init_parameters(layout_, config_, seed, params_.data()); }

void Model::zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

void Model::norm_forward(const NormOffsets& off, const float* x, float* y, float* rstd) const {
  const float* P = params_.data();
  const int64_t d = dims_.d;
  Tensor tx = mat(x, rows_, d), ty = mat(y, rows_, d), gamma = vec(P + off.weight, d);
  if (dims_.norm == Norm::RMSNorm) {
    Tensor tr = vec(rstd, rows_);
    cpu::rmsnorm_forward(tx, gamma, static_cast<float>(dims_.norm_eps), ty, tr);
    return;
  }
  Tensor alpha = vec(P + off.alpha, 1);
  Tensor beta = off.bias >= 0 ? vec(P + off.bias, d) : Tensor();
  const Tensor* bp = off.bias >= 0 ? &beta : nullptr;
  if (dims_.norm == Norm::DyT)
    cpu::dyt_forward(tx, alpha, gamma, bp, ty);
  else
    cpu::dyisru_forward(tx, alpha, gamma, bp, ty);
}

void Model::norm_backward(const NormOffsets& off, const float* x, const float* rstd,
                          const float* dy, float* dx) {
  const float* P = params_.data();
  float* G = grads_.data();
  const int64_t d = dims_.d;
  Tensor tx = mat(x, rows_, d), tdy = mat(dy, rows_, d), tdx = mat(dx, rows_, d);
  Tensor gamma = vec(P + off.weight, d), dgamma = vec(G + off.weight, d);
  if (dims_.norm == Norm::RMSNorm) {
    cpu::rmsnorm_backward(tx, gamma, vec(rstd, rows_), tdy, tdx, dgamma);
    return;
  }
  Tensor alpha = vec(P + off.alpha, 1), dalpha = vec(G + off.alpha, 1);
  Tensor dbeta = off.bias >= 0 ? vec(G + off.bias, d) : Tensor();
  Tensor* dbp = off.bias >= 0 ? &dbeta : nullptr;
  if (dims_.norm == Norm::DyT)
    cpu::dyt_backward(tx, alpha, gamma, tdy, tdx, dalpha, dgamma, dbp);
  else
    cpu::dyisru_backward(tx, alpha, gamma, tdy, tdx, dalpha, dgamma, dbp);
}

void Model::block_forward(int64_t l, LayerActs& a, float* out) {
  const LayerOffsets& o = layer_offsets_[l];
  const float* P = params_.data();
  const int64_t n = rows_, d = dims_.d, qd = dims_.q_dim(), kvd = dims_.kv_dim(), f = dims_.ffn;
  const float* x = layer_in_[l].data();

  norm_forward(o.attn_norm, x, a.a1.data(), a.rstd1.data());
  Tensor a1 = mat(a.a1.data(), n, d), q = mat(a.q.data(), n, qd), k = mat(a.k.data(), n, kvd),
         v = mat(a.v.data(), n, kvd);
  cpu::linear_forward(a1, mat(P + o.q, qd, d), q);
  cpu::linear_forward(a1, mat(P + o.k, kvd, d), k);
  cpu::linear_forward(a1, mat(P + o.v, kvd, d), v);
  cpu::rope_forward(q, seq_len_, dims_.heads, dims_.rope_theta);
  cpu::rope_forward(k, seq_len_, dims_.kv_heads, dims_.rope_theta);
  Tensor att = mat(a.att.data(), n, qd);
  Tensor lse = vec(a.lse.data(), static_cast<int64_t>(a.lse.size()));
  cpu::attention_forward(q, k, v, batch_, seq_len_, dims_.heads, dims_.kv_heads, att, lse);
  Tensor x_mid = mat(a.x_mid.data(), n, d);
  cpu::linear_forward(att, mat(P + o.o, d, qd), x_mid);
  cpu::add_inplace(x_mid, mat(x, n, d));

  norm_forward(o.ffn_norm, a.x_mid.data(), a.a2.data(), a.rstd2.data());
  Tensor a2 = mat(a.a2.data(), n, d), gate = mat(a.gate.data(), n, f), up = mat(a.up.data(), n, f),
         act = mat(a.act.data(), n, f);
  cpu::linear_forward(a2, mat(P + o.gate, f, d), gate);
  cpu::linear_forward(a2, mat(P + o.up, f, d), up);
  cpu::swiglu_forward(gate, up, act);
  Tensor y = mat(out, n, d);
  cpu::linear_forward(act, mat(P + o.down, d, f), y);
  cpu::add_inplace(y, x_mid);
}

void Model::block_backward(int64_t l, LayerActs& a, float* dresid) {
  const LayerOffsets& o = layer_offsets_[l];
  const float* P = params_.data();
  float* G = grads_.data();
  const int64_t n = rows_, d = dims_.d, qd = dims_.q_dim(), kvd = dims_.kv_dim(), f = dims_.ffn;
  Tensor dres = mat(dresid, n, d), dnorm = mat(dnorm_.data(), n, d);

  // FFN: out = x_mid + down(silu(gate(a2)) ⊙ up(a2)).
  Tensor dact = mat(dact_.data(), n, f), dgate = mat(dgate_.data(), n, f), dup = mat(dup_.data(), n, f);
  Tensor a2 = mat(a.a2.data(), n, d);
  cpu::linear_backward_input(dres, mat(P + o.down, d, f), dact, false);
  weight_grad(dres, mat(a.act.data(), n, f), mat(G + o.down, d, f));
  cpu::swiglu_backward(mat(a.gate.data(), n, f), mat(a.up.data(), n, f), dact, dgate, dup);
  cpu::linear_backward_input(dgate, mat(P + o.gate, f, d), dnorm, false);
  cpu::linear_backward_input(dup, mat(P + o.up, f, d), dnorm, true);
  weight_grad(dgate, a2, mat(G + o.gate, f, d));
  weight_grad(dup, a2, mat(G + o.up, f, d));
  norm_backward(o.ffn_norm, a.x_mid.data(), a.rstd2.data(), dnorm_.data(), dresid);

  // Attention: x_mid = x + o_proj(attention(rope(q), rope(k), v)).
  Tensor datt = mat(datt_.data(), n, qd), dq = mat(dq_.data(), n, qd), dk = mat(dk_.data(), n, kvd),
         dv = mat(dv_.data(), n, kvd);
  Tensor a1 = mat(a.a1.data(), n, d);
  cpu::linear_backward_input(dres, mat(P + o.o, d, qd), datt, false);
  weight_grad(dres, mat(a.att.data(), n, qd), mat(G + o.o, d, qd));
  cpu::attention_backward(mat(a.q.data(), n, qd), mat(a.k.data(), n, kvd), mat(a.v.data(), n, kvd),
                          mat(a.att.data(), n, qd),
                          vec(a.lse.data(), static_cast<int64_t>(a.lse.size())), datt, batch_,
                          seq_len_, dims_.heads, dims_.kv_heads, dq, dk, dv);
  cpu::rope_backward(dq, seq_len_, dims_.heads, dims_.rope_theta);
  cpu::rope_backward(dk, seq_len_, dims_.kv_heads, dims_.rope_theta);
  cpu::linear_backward_input(dq, mat(P + o.q, qd, d), dnorm, false);
  cpu::linear_backward_input(dk, mat(P + o.k, kvd, d), dnorm, true);
  cpu::linear_backward_input(dv, mat(P + o.v, kvd, d), dnorm, true);
  weight_grad(dq, a1, mat(G + o.q, qd, d));
  weight_grad(dk, a1, mat(G + o.k, kvd, d));
  weight_grad(dv, a1, mat(G + o.v, kvd, d));
  norm_backward(o.attn_norm, layer_in_[l].data(), a.rstd1.data(), dnorm_.data(), dresid);
}

double Model::forward(const int32_t* tokens, const int32_t* targets) {
  const float* P = params_.data();
  const int64_t n = rows_, d = dims_.d;
  Tensor x0 = mat(layer_in_[0].data(), n, d);
  Tensor table = mat(P + embed_, dims_.vocab, d);
  if (dims_.embed_scale) {
    Tensor e = mat(embed_rows_.data(), n, d);
    cpu::embedding_forward(ids(tokens, n), table, e);
    cpu::scale_forward(e, P[embed_scale_], x0);
  } else {
    cpu::embedding_forward(ids(tokens, n), table, x0);
  }
  for (int64_t l = 0; l < dims_.layers; ++l) block_forward(l, acts_for(l), layer_in_[l + 1].data());
  norm_forward(final_norm_, layer_in_[dims_.layers].data(), final_a_.data(), final_rstd_.data());
  Tensor logits = mat(logits_.data(), n, dims_.vocab);
  cpu::linear_forward(mat(final_a_.data(), n, d), mat(P + lm_head_, dims_.vocab, d), logits);
  return targets ? cpu::cross_entropy_forward(logits, ids(targets, n)) : 0.0;
}

double Model::forward_backward(const int32_t* tokens, const int32_t* targets, float grad_scale) {
  const float* P = params_.data();
  float* G = grads_.data();
  const int64_t n = rows_, d = dims_.d;
  forward(tokens, nullptr);

  Tensor logits = mat(logits_.data(), n, dims_.vocab);
  const double loss = cpu::cross_entropy_backward(logits, ids(targets, n), grad_scale, logits);
  Tensor dnorm = mat(dnorm_.data(), n, d);
  cpu::linear_backward_input(logits, mat(P + lm_head_, dims_.vocab, d), dnorm, false);
  weight_grad(logits, mat(final_a_.data(), n, d), mat(G + lm_head_, dims_.vocab, d));
  std::fill(dresid_.begin(), dresid_.end(), 0.0f);
  norm_backward(final_norm_, layer_in_[dims_.layers].data(), final_rstd_.data(), dnorm_.data(),
                dresid_.data());

  for (int64_t l = dims_.layers - 1; l >= 0; --l) {
    // Under recomputation the block's activations are rebuilt from its saved
    // input; the rebuilt output equals layer_in_[l + 1] bit for bit.
    if (recompute_) block_forward(l, acts_for(l), layer_in_[l + 1].data());
    block_backward(l, acts_for(l), dresid_.data());
  }

  Tensor dx0 = mat(dresid_.data(), n, d);
  Tensor dtable = mat(G + embed_, dims_.vocab, d);
  if (dims_.embed_scale) {
    Tensor de = mat(dembed_.data(), n, d);
    cpu::scale_backward(mat(embed_rows_.data(), n, d), dx0, P[embed_scale_], de, G + embed_scale_);
    cpu::embedding_backward(ids(tokens, n), de, dtable);
  } else {
    cpu::embedding_backward(ids(tokens, n), dx0, dtable);
  }
  return loss;
}

}  // namespace dyt::trainer
