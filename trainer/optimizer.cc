#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace dyt::trainer {
namespace {

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

}  // namespace

AdamW::AdamW(const ParamLayout& layout, const config::TrainConfig& t, kernels::Backend& backend)
    : AdamW(layout, t, backend, FlatRange{0, layout.total()}) {}

AdamW::AdamW(const ParamLayout& layout, const config::TrainConfig& t, kernels::Backend& backend,
             FlatRange range)
    : backend_(backend),
      total_(layout.total()),
      range_(range),
      beta1_(t.beta1()),
      beta2_(t.beta2()),
      eps_(t.adam_eps()),
      weight_decay_(t.weight_decay()),
      alpha_lr_multiplier_(t.alpha_lr_multiplier()) {
  if (!(beta1_ >= 0 && beta1_ < 1))
    throw std::invalid_argument("AdamW: train.beta1 must be in [0, 1), got " + num(beta1_));
  if (!(beta2_ >= 0 && beta2_ < 1))
    throw std::invalid_argument("AdamW: train.beta2 must be in [0, 1), got " + num(beta2_));
  if (!(eps_ > 0)) throw std::invalid_argument("AdamW: train.adam_eps must be > 0, got " + num(eps_));
  if (!(weight_decay_ >= 0))
    throw std::invalid_argument("AdamW: train.weight_decay must be >= 0, got " + num(weight_decay_));
  if (!(alpha_lr_multiplier_ > 0) || !std::isfinite(alpha_lr_multiplier_))
    throw std::invalid_argument("AdamW: train.alpha_lr_multiplier must be > 0 and finite, got " +
                                num(alpha_lr_multiplier_));

  if (range.begin < 0 || range.end < range.begin || range.end > total_)
    throw std::invalid_argument("AdamW: range [" + std::to_string(range.begin) + ", " +
                                std::to_string(range.end) + ") lies outside the layout's [0, " +
                                std::to_string(total_) + ")");

  // One segment per maximal run of adjacent tensors with one decay flag; the
  // gaps of the aligned layout are left out (they stay as they are: zero).
  // Each tensor is clipped to the range, so a tensor cut by a shard boundary
  // keeps its flag on both sides; offsets become relative to range.begin.
  // With an α learning-rate multiplier the α's go to segments of their own,
  // updated by a second call at the scaled rate; at 1 they stay among the
  // rest, so runs without it keep their bits.
  const bool own_alpha_rate = alpha_lr_multiplier_ != 1.0;
  int64_t end = 0;
  for (const ParamEntry& e : layout.entries()) {
    if (e.offset < end)
      throw std::invalid_argument("AdamW: layout entries overlap at " + e.name);
    end = e.offset + e.numel;
    const int64_t b = std::max(e.offset, range.begin), x = std::min(end, range.end);
    if (x <= b) continue;
    const bool decay = e.weight_decay() && weight_decay_ != 0.0;
    const int64_t rb = b - range.begin, rx = x - range.begin;
    std::vector<kernels::ParamSegment>& into =
        own_alpha_rate && e.kind == ParamKind::NormAlpha ? alpha_segments_ : segments_;
    if (!into.empty() && into.back().decay == decay && into.back().end == rb)
      into.back().end = rx;
    else
      into.push_back({rb, rx, decay});
  }
  if (end > total_) throw std::invalid_argument("AdamW: layout entries exceed its total");
  exp_avg_ = backend.allocate(kernels::DType::F32, range.size());
  exp_avg_sq_ = backend.allocate(kernels::DType::F32, range.size());
}

void AdamW::set_steps_taken(int64_t steps) {
  if (steps < 0) throw std::invalid_argument("AdamW: steps taken must be >= 0");
  steps_ = steps;
}

kernels::AdamWScalars AdamW::scalars(int64_t steps, double lr) const {
  // As torch computes them (Python floats), rounded to float where an fp32
  // kernel consumes them.
  const double t = static_cast<double>(steps);
  const double bias_correction1 = 1.0 - std::pow(beta1_, t);
  const double bias_correction2 = 1.0 - std::pow(beta2_, t);
  kernels::AdamWScalars s;
  s.neg_step_size = static_cast<float>(-(lr / bias_correction1));
  s.bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  s.decay = static_cast<float>(1.0 - lr * weight_decay_);
  s.beta1 = static_cast<float>(beta1_);
  s.one_minus_beta1 = static_cast<float>(1.0 - beta1_);
  s.beta2 = static_cast<float>(beta2_);
  s.one_minus_beta2 = static_cast<float>(1.0 - beta2_);
  s.eps = static_cast<float>(eps_);
  return s;
}

void AdamW::update(const kernels::Tensor& params, const kernels::Tensor& grads,
                   const kernels::Tensor* work, double lr) {
  ++steps_;
  if (!segments_.empty())
    backend_.adamw_step(params, grads, exp_avg(), exp_avg_sq(), segments_, scalars(steps_, lr), work);
  if (!alpha_segments_.empty())
    backend_.adamw_step(params, grads, exp_avg(), exp_avg_sq(), alpha_segments_,
                        scalars(steps_, lr * alpha_lr_multiplier_), work);
}

void AdamW::step(ParamStore& params, double lr) {
  if (&params.backend() != &backend_)
    throw std::invalid_argument("AdamW::step: parameters and optimizer state are on different backends");
  if (params.total() != total_)
    throw std::invalid_argument("AdamW::step: the store holds " + std::to_string(params.total()) +
                                " elements, the optimizer's layout " + std::to_string(total_));
  const int64_t b = range_.begin, n = range_.size();
  // A sharded master holds its range only (ParamStore::master_range()).
  const FlatRange held = params.master_range();
  if (b < held.begin || range_.end > held.end)
    throw std::invalid_argument("AdamW::step: the optimizer updates [" + std::to_string(b) + ", " +
                                std::to_string(range_.end) + "), the master holds [" + std::to_string(held.begin) +
                                ", " + std::to_string(held.end) + ")");
  const kernels::Tensor work = params.has_work_copy() ? kernels::slice(params.work(), b, n) : kernels::Tensor{};
  update(kernels::slice(params.master(), b - held.begin, n), kernels::slice(params.grads(), b, n),
         params.has_work_copy() ? &work : nullptr, lr);
}

void AdamW::step(float* params, const float* grads, double lr) {
  if (backend_.device() != kernels::Device::CPU)
    throw std::logic_error("AdamW::step(float*): host buffers need the CPU backend");
  const int64_t b = range_.begin, n = range_.size();
  update(kernels::cpu_f32(params + b, {n}), kernels::cpu_f32(const_cast<float*>(grads) + b, {n}),
         nullptr, lr);
}

std::vector<float> AdamW::exp_avg_to_host() const {
  std::vector<float> out(static_cast<size_t>(range_.size()));
  backend_.download(exp_avg(), out.data());
  return out;
}

std::vector<float> AdamW::exp_avg_sq_to_host() const {
  std::vector<float> out(static_cast<size_t>(range_.size()));
  backend_.download(exp_avg_sq(), out.data());
  return out;
}

void AdamW::set_moments(const float* exp_avg_host, const float* exp_avg_sq_host) {
  set_range_moments(exp_avg_host + range_.begin, exp_avg_sq_host + range_.begin);
}

void AdamW::set_range_moments(const float* exp_avg_host, const float* exp_avg_sq_host) {
  backend_.upload(exp_avg_host, exp_avg());
  backend_.upload(exp_avg_sq_host, exp_avg_sq());
}

}  // namespace dyt::trainer
