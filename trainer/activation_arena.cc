#include "trainer/activation_arena.h"

#include "trainer/param_layout.h"

#include <functional>
#include <initializer_list>

namespace dyt::trainer {

using kernels::DType;
using kernels::Tensor;

// Hands out consecutive views of one buffer, each starting at a multiple of
// kParamAlign elements (aligned for vector loads and cuBLASLt, as the
// parameters are); without a buffer it only counts.
struct ActivationArena::Carving {
  const kernels::Buffer* buffer = nullptr;
  int64_t used = 0;
  Tensor take(std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    Tensor t;
    if (n == 0) return t;
    used = (used + kParamAlign - 1) / kParamAlign * kParamAlign;
    if (buffer) t = buffer->view(shape, used);
    used += n;
    return t;
  }
};

void ActivationArena::carve(const ModelDims& dims, Carving& act, Carving& f32) {
  const ActivationSizes s = activation_sizes(dims, batch_, seq_len_);
  // n: every row (attention, FFN, logits); r: the norm and residual regions.
  const int64_t n = rows(), r = local_rows(), d = dims.d, qd = dims.q_dim(), kvd = dims.kv_dim(),
                f = dims.ffn;
  const int64_t rstd = s.layer.rstd1 > 0 ? r : 0;
  const int64_t sets = recompute_ ? 1 : dims.layers;
  layer_in_.clear();
  layer_acts_.clear();
  for (int64_t l = 0; l <= dims.layers; ++l) layer_in_.push_back(act.take({r, d}));
  for (int64_t l = 0; l < sets; ++l) {
    LayerActs a;
    a.a1 = act.take({r, d});
    a.rstd1 = f32.take({rstd});
    a.q = act.take({n, qd}), a.k = act.take({n, kvd}), a.v = act.take({n, kvd});
    a.lse = f32.take({batch_, dims.heads, seq_len_});
    a.att = act.take({n, qd});
    a.x_mid = act.take({r, d}), a.a2 = act.take({r, d});
    a.rstd2 = f32.take({rstd});
    a.gate = act.take({n, f}), a.up = act.take({n, f}), a.act = act.take({n, f});
    layer_acts_.push_back(a);
  }
  embed_rows = act.take({s.embed > 0 ? r : 0, d});
  final_a = act.take({r, d});
  final_rstd = f32.take({rstd});
  logits = act.take({n, dims.vocab});
  dresid = act.take({r, d}), dnorm = act.take({r, d}), datt = act.take({n, qd});
  dq = act.take({n, qd}), dk = act.take({n, kvd}), dv = act.take({n, kvd});
  dgate = act.take({n, f}), dup = act.take({n, f}), dact = act.take({n, f});
  dembed = act.take({s.embed > 0 ? r : 0, d});
  const int64_t full = split_.sequence_parallel ? n : 0;
  gathered = act.take({full, d}), partial = act.take({full, d}), dres_full = act.take({full, d});
}

ActivationArena::ActivationArena(const ModelDims& dims, int64_t batch, int64_t seq_len,
                                 bool recompute, kernels::Backend& backend, DType act_dtype,
                                 ArenaSplit split)
    : batch_(batch), seq_len_(seq_len), recompute_(recompute), split_(split), backend_(&backend),
      act_dtype_(act_dtype) {
  if (batch <= 0 || seq_len <= 0)
    throw std::invalid_argument("ActivationArena: batch and seq_len must be > 0");
  if (split.tp < 1 || (split.sequence_parallel && (batch * seq_len) % split.tp != 0))
    throw std::invalid_argument("ActivationArena: sequence parallelism needs tp (" +
                                std::to_string(split.tp) + ") to divide the micro-batch's " +
                                std::to_string(batch * seq_len) + " tokens");
  // Two passes over the same carving: the first counts, the second views.
  Carving count_act, count_f32;
  carve(dims, count_act, count_f32);
  act_ = backend.allocate(act_dtype, count_act.used);
  f32_ = backend.allocate(DType::F32, count_f32.used);
  Carving act{&act_}, f32{&f32_};
  carve(dims, act, f32);

  const int64_t n = rows();
  ids_ = backend.allocate(DType::I32, 2 * n);
  tokens = ids_.view({n}, 0);
  targets = ids_.view({n}, n);
  const int64_t ce = split.tp > 1 ? 5 * n : 0;
  f64_ = backend.allocate(DType::F64, 1 + ce);
  loss_sum = f64_.view({1});
  if (ce > 0) {
    ce_stats = f64_.view({n, 3}, 1);
    ce_rows = f64_.view({n, 2}, 1 + 3 * n);
  }
}

int64_t ActivationArena::bytes_needed(const ModelDims& dims, int64_t batch, int64_t seq_len,
                                      bool recompute, DType act_dtype, ArenaSplit split) {
  // The same carving on a shell that holds no memory.
  ActivationArena shell(batch, seq_len, recompute, act_dtype, split);
  Carving act, f32;
  shell.carve(dims, act, f32);
  const int64_t n = batch * seq_len, ce = split.tp > 1 ? 5 * n : 0;
  return act.used * kernels::dtype_size(act_dtype) + f32.used * 4 + 2 * n * 4 + 8 * (1 + ce);
}

int64_t ActivationArena::bytes() const {
  return act_.bytes() + f32_.bytes() + ids_.bytes() + f64_.bytes();
}

void ActivationArena::set_batch(const int32_t* host_tokens, const int32_t* host_targets) {
  backend_->upload(host_tokens, tokens);
  if (host_targets) backend_->upload(host_targets, targets);
}

double ActivationArena::take_loss_sum() {
  double v = 0;
  backend_->download(loss_sum, &v);
  backend_->zero(loss_sum);
  v += host_loss_sum;
  host_loss_sum = 0;
  return v;
}

}  // namespace dyt::trainer
