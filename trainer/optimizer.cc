#include "trainer/optimizer.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "kernels/optimizer_math.h"

namespace dyt::trainer {
namespace {

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

}  // namespace

AdamW::AdamW(const ParamLayout& layout, const config::TrainConfig& t)
    : total_(layout.total()),
      beta1_(t.beta1()),
      beta2_(t.beta2()),
      eps_(t.adam_eps()),
      weight_decay_(t.weight_decay()) {
  if (!(beta1_ >= 0 && beta1_ < 1))
    throw std::invalid_argument("AdamW: train.beta1 must be in [0, 1), got " + num(beta1_));
  if (!(beta2_ >= 0 && beta2_ < 1))
    throw std::invalid_argument("AdamW: train.beta2 must be in [0, 1), got " + num(beta2_));
  if (!(eps_ > 0)) throw std::invalid_argument("AdamW: train.adam_eps must be > 0, got " + num(eps_));
  if (!(weight_decay_ >= 0))
    throw std::invalid_argument("AdamW: train.weight_decay must be >= 0, got " + num(weight_decay_));

  int64_t expect = 0;
  for (const ParamEntry& e : layout.entries()) {
    if (e.offset != expect)
      throw std::invalid_argument("AdamW: layout is not contiguous at " + e.name);
    expect = e.offset + e.numel;
    if (e.numel == 0) continue;
    const bool decay = e.weight_decay();
    if (!segments_.empty() && segments_.back().decay == decay && segments_.back().end == e.offset)
      segments_.back().end = expect;
    else
      segments_.push_back({e.offset, expect, decay});
  }
  if (expect != total_) throw std::invalid_argument("AdamW: layout entries do not cover its total");
  exp_avg_.assign(static_cast<size_t>(total_), 0.0f);
  exp_avg_sq_.assign(static_cast<size_t>(total_), 0.0f);
}

void AdamW::set_steps_taken(int64_t steps) {
  if (steps < 0) throw std::invalid_argument("AdamW: steps taken must be >= 0");
  steps_ = steps;
}

kernels::AdamWScalars AdamW::scalars(int64_t t_step, double lr) const {
  // As torch computes them (Python floats), rounded to float where an fp32
  // kernel consumes them.
  const double t = static_cast<double>(t_step);
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

void AdamW::step(float* params, const float* grads, double lr) {
  ++steps_;
  kernels::AdamWScalars s = scalars(steps_, lr);
  const bool any_decay = weight_decay_ != 0.0;

  float* __restrict m = exp_avg_.data();
  float* __restrict v = exp_avg_sq_.data();
  float* __restrict p = params;
  const float* __restrict g = grads;

  // The element update is kernels/optimizer_math.h's, which the CUDA
  // optimizer shares: its fmas are explicit, so the bits do not depend on
  // what the compiler contracts. Each thread keeps its own copy of the
  // scalars (firstprivate): a shared struct could alias p, m, v for all the
  // compiler knows, which reloads it every element and stops vectorization.
#pragma omp parallel if (total_ > 65536) firstprivate(s)
  for (const Segment& seg : segments_) {
    const bool decay_here = seg.decay && any_decay;
#pragma omp for schedule(static) nowait
    for (int64_t i = seg.begin; i < seg.end; ++i)
      kernels::adamw_update(p[i], m[i], v[i], g[i], s, decay_here);
  }
}

}  // namespace dyt::trainer
