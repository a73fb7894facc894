// Schedule shape, deterministic gradient norm, clipping factor, and AdamW
// against a hand-written double-precision reference.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <numbers>
#include <vector>

#include "configs/config.h"
#include "trainer/grad_norm.h"
#include "trainer/optimizer.h"
#include "trainer/param_layout.h"
#include "trainer/schedule.h"

namespace dyt::trainer {
namespace {

config::TrainConfig train_config(int64_t steps, int64_t warmup, double lr, double min_ratio) {
  config::TrainConfig t;
  t.set_steps(steps);
  t.set_warmup_steps(warmup);
  t.set_lr(lr);
  t.set_min_lr_ratio(min_ratio);
  return t;
}

// ---- schedule ---------------------------------------------------------------

TEST(Schedule, QuadraticWarmupReachesPeakAtLastWarmupStep) {
  const auto t = train_config(1000, 10, 3e-4, 0.1);
  for (int64_t s = 0; s < 10; ++s) {
    const double r = (s + 1) / 10.0;
    EXPECT_DOUBLE_EQ(learning_rate(s, t), 3e-4 * r * r) << "step " << s;
  }
  EXPECT_DOUBLE_EQ(learning_rate(0, t), 3e-4 * 0.01);
  EXPECT_DOUBLE_EQ(learning_rate(9, t), 3e-4);   // last warmup step: peak
  EXPECT_DOUBLE_EQ(learning_rate(10, t), 3e-4);  // cosine starts at the peak
  // Strictly increasing and convex during warmup.
  for (int64_t s = 1; s < 9; ++s) {
    const double a = learning_rate(s - 1, t), b = learning_rate(s, t), c = learning_rate(s + 1, t);
    EXPECT_LT(a, b);
    EXPECT_GT(c - b, b - a);
  }
}

TEST(Schedule, CosineDecaysToFloorAtSteps) {
  const auto t = train_config(1000, 10, 3e-4, 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(1000, t), 3e-5);
  EXPECT_DOUBLE_EQ(learning_rate(5000, t), 3e-5);  // clamped past the end
  EXPECT_GT(learning_rate(999, t), 3e-5);
  // Half way through the decay: the mean of peak and floor.
  EXPECT_NEAR(learning_rate(10 + 495, t), 0.5 * (3e-4 + 3e-5), 1e-15);
  // Explicit formula at an arbitrary step.
  const double p = (700.0 - 10) / 990.0;
  EXPECT_DOUBLE_EQ(learning_rate(700, t),
                   3e-5 + (3e-4 - 3e-5) * 0.5 * (1 + std::cos(std::numbers::pi * p)));
  for (int64_t s = 10; s < 1000; ++s) EXPECT_GE(learning_rate(s, t), learning_rate(s + 1, t));
}

TEST(Schedule, WarmupRuleWhenUnset) {
  // min(2000, steps/20)
  auto t = train_config(1000, -1, 1e-3, 0.1);
  EXPECT_EQ(config::warmup_steps(t), 50);
  EXPECT_DOUBLE_EQ(learning_rate(0, t), 1e-3 / 2500.0);
  EXPECT_DOUBLE_EQ(learning_rate(49, t), 1e-3);
  EXPECT_LT(learning_rate(48, t), 1e-3);

  t.set_steps(100000);
  EXPECT_EQ(config::warmup_steps(t), 2000);
  EXPECT_DOUBLE_EQ(learning_rate(1999, t), 1e-3);
  EXPECT_LT(learning_rate(1998, t), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(100000, t), 1e-4);

  t.set_steps(10);  // steps/20 = 0: no warmup
  EXPECT_EQ(config::warmup_steps(t), 0);
  EXPECT_DOUBLE_EQ(learning_rate(0, t), 1e-3);
}

TEST(Schedule, NoWarmupAndDegenerateLengths) {
  auto t = train_config(100, 0, 1e-3, 0.0);
  EXPECT_DOUBLE_EQ(learning_rate(0, t), 1e-3);
  EXPECT_NEAR(learning_rate(100, t), 0.0, 1e-18);
  // Warmup as long as the run: the cosine span is clamped to 1 step.
  t = train_config(5, 5, 1e-3, 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(4, t), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(5, t), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(6, t), 1e-4);
  // min_lr_ratio 1: constant after warmup.
  t = train_config(50, 5, 2e-3, 1.0);
  for (int64_t s = 4; s < 60; ++s) EXPECT_DOUBLE_EQ(learning_rate(s, t), 2e-3);
  EXPECT_THROW(learning_rate(-1, t), std::invalid_argument);
}

// ---- gradient norm and clipping -------------------------------------------------

std::vector<float> pattern(int64_t n, double scale) {
  std::vector<float> g(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    g[static_cast<size_t>(i)] = static_cast<float>(scale * std::sin(0.001 * i * i + 0.3 * i));
  return g;
}

TEST(GradNorm, MatchesLongDoubleReference) {
  const auto g = pattern(3 * kNormChunk + 17, 0.7);
  long double ref = 0;
  for (float x : g) ref += static_cast<long double>(x) * x;
  const double norm = global_grad_norm(g.data(), static_cast<int64_t>(g.size()));
  EXPECT_NEAR(norm, std::sqrt(static_cast<double>(ref)), 1e-12 * norm);
  EXPECT_EQ(global_grad_norm(g.data(), 0), 0.0);
  const float one[3] = {3.0f, 4.0f, 12.0f};
  EXPECT_EQ(global_grad_norm(one, 3), 13.0);
}

TEST(GradNorm, BitwiseIdenticalAcrossThreadCounts) {
  const int64_t n = 37 * kNormChunk + 12345;
  const auto g = pattern(n, 1e-3);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double ref = grad_sum_squares(g.data(), n);
  for (int threads : {2, 3, 4, 7, 16}) {
    omp_set_num_threads(threads);
    const double s = grad_sum_squares(g.data(), n);
    EXPECT_EQ(std::memcmp(&s, &ref, sizeof s), 0) << threads << " threads: " << s << " vs " << ref;
  }
  omp_set_num_threads(saved);
}

TEST(GradNorm, NonFiniteDetected) {
  auto g = pattern(2 * kNormChunk + 5, 1.0);
  const int64_t n = static_cast<int64_t>(g.size());
  EXPECT_TRUE(all_finite(g.data(), n));
  g[kNormChunk + 3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(all_finite(g.data(), n));
  EXPECT_TRUE(std::isnan(global_grad_norm(g.data(), n)));
  g[kNormChunk + 3] = -std::numeric_limits<float>::infinity();
  EXPECT_FALSE(all_finite(g.data(), n));
  EXPECT_TRUE(std::isinf(global_grad_norm(g.data(), n)));
  // Largest finite floats do not overflow the double sum.
  std::vector<float> big(100, std::numeric_limits<float>::max());
  EXPECT_TRUE(std::isfinite(global_grad_norm(big.data(), 100)));
  // A non-finite norm is never turned into a clip factor.
  EXPECT_EQ(clip_coefficient(std::numeric_limits<double>::infinity(), 1.0), 1.0);
  EXPECT_EQ(clip_coefficient(std::nan(""), 1.0), 1.0);
}

TEST(GradClip, CoefficientLikeTorch) {
  EXPECT_DOUBLE_EQ(clip_coefficient(4.0, 1.0), 1.0 / (4.0 + 1e-6));
  EXPECT_EQ(clip_coefficient(0.5, 1.0), 1.0);
  // At exactly max_norm torch still scales by 1/(1 + 1e-6).
  EXPECT_DOUBLE_EQ(clip_coefficient(1.0, 1.0), 1.0 / (1.0 + 1e-6));
  EXPECT_EQ(clip_coefficient(123.0, 0.0), 1.0);  // grad_clip 0 = off
}

TEST(GradClip, ScalesOnlyAboveThreshold) {
  std::vector<float> g = {3.0f, 4.0f};  // norm 5
  double norm = clip_grad_norm(g.data(), 2, 1.0);
  EXPECT_EQ(norm, 5.0);
  const float c = static_cast<float>(1.0 / (5.0 + 1e-6));
  EXPECT_EQ(g[0], 3.0f * c);
  EXPECT_EQ(g[1], 4.0f * c);
  EXPECT_NEAR(global_grad_norm(g.data(), 2), 1.0, 1e-6);

  g = {0.3f, 0.4f};  // norm 0.5 < 1: untouched
  norm = clip_grad_norm(g.data(), 2, 1.0);
  EXPECT_NEAR(norm, 0.5, 1e-7);
  EXPECT_EQ(g[0], 0.3f);
  EXPECT_EQ(g[1], 0.4f);

  g = {30.0f, 40.0f};  // grad_clip 0 = off
  EXPECT_EQ(clip_grad_norm(g.data(), 2, 0.0), 50.0);
  EXPECT_EQ(g[0], 30.0f);

  // An externally supplied (e.g. all-reduced) norm decides the factor.
  g = {0.3f, 0.4f};
  EXPECT_DOUBLE_EQ(clip_grads(g.data(), 2, 10.0, 2.0), 2.0 / (10.0 + 1e-6));
  EXPECT_FLOAT_EQ(g[0], 0.3f * 0.2f);
}

// ---- AdamW --------------------------------------------------------------------

ModelDims tiny_dims() {
  ModelDims d;
  d.vocab = 11;
  d.d = 8;
  d.layers = 2;
  d.heads = 2;
  d.kv_heads = 1;
  d.head_dim = 4;
  d.ffn = 12;
  d.norm = Norm::DyT;
  d.norm_bias = true;
  d.embed_scale = true;
  return d;
}

TEST(AdamW, MatchesDoubleReferenceAndDecaysOnlyMatrices) {
  const ParamLayout layout(tiny_dims());
  const int64_t n = layout.total();
  config::TrainConfig t;
  t.set_weight_decay(0.1);
  AdamW opt(layout, t);
  EXPECT_EQ(opt.steps_taken(), 0);
  ASSERT_EQ(opt.exp_avg().numel(), n);

  std::vector<float> p(static_cast<size_t>(n)), g(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(0.5 * std::cos(0.37 * i));
  std::vector<double> rp(p.begin(), p.end()), rm(n, 0.0), rv(n, 0.0);
  // The layout's alignment gaps belong to no tensor: AdamW leaves them alone.
  std::vector<bool> decays(static_cast<size_t>(n)), inside(static_cast<size_t>(n));
  for (const auto& e : layout.entries())
    for (int64_t i = 0; i < e.numel; ++i) decays[e.offset + i] = e.weight_decay(), inside[e.offset + i] = true;

  for (int step = 1; step <= 5; ++step) {
    const double lr = 1e-2 / step;
    for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>(std::sin(0.11 * i * step + step));
    opt.step(p.data(), g.data(), lr);
    const double bc1 = 1 - std::pow(0.9, step), bc2 = 1 - std::pow(0.95, step);
    for (int64_t i = 0; i < n; ++i) {
      if (!inside[i]) continue;
      if (decays[i]) rp[i] *= 1 - lr * 0.1;
      rm[i] = 0.9 * rm[i] + 0.1 * g[i];
      rv[i] = 0.95 * rv[i] + 0.05 * double(g[i]) * g[i];
      rp[i] -= lr / bc1 * rm[i] / (std::sqrt(rv[i]) / std::sqrt(bc2) + 1e-8);
    }
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(p[i], rp[i], 1e-6) << "step " << step << " element " << i;
      ASSERT_NEAR(opt.exp_avg().f32()[i], rm[i], 1e-6);
      ASSERT_NEAR(opt.exp_avg_sq().f32()[i], rv[i], 1e-6);
    }
  }
  EXPECT_EQ(opt.steps_taken(), 5);

  // Zero gradients and empty state: only decay moves a parameter, and only
  // where the layout says it decays.
  AdamW fresh(layout, t);
  std::vector<float> q(static_cast<size_t>(n), 1.0f), zero(static_cast<size_t>(n), 0.0f);
  fresh.step(q.data(), zero.data(), 0.5);
  for (const auto& e : layout.entries()) {
    const float want = e.weight_decay() ? static_cast<float>(1.0 - 0.5 * 0.1) : 1.0f;
    EXPECT_EQ(q[e.offset], want) << e.name;
  }
  EXPECT_EQ(q[layout.at("model.embed_scale").offset], 1.0f);
  EXPECT_EQ(q[layout.at("model.layers.0.input_layernorm.alpha").offset], 1.0f);
  EXPECT_EQ(q[layout.at("model.norm.bias").offset], 1.0f);
  EXPECT_EQ(q[layout.at("model.norm.weight").offset], 1.0f);
  EXPECT_LT(q[layout.at("lm_head.weight").offset], 1.0f);
  EXPECT_LT(q[layout.at("model.embed_tokens.weight").offset], 1.0f);
}

TEST(AdamW, BitwiseIdenticalAcrossThreadCounts) {
  ModelDims d = tiny_dims();
  d.d = 64;
  d.ffn = 256;
  d.vocab = 1000;
  d.head_dim = 32;
  const ParamLayout layout(d);
  const int64_t n = layout.total();
  ASSERT_GT(n, 65536);  // large enough to run threaded
  config::TrainConfig t;
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    AdamW opt(layout, t);
    std::vector<float> p(static_cast<size_t>(n)), g(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(std::cos(0.01 * i));
    for (int s = 0; s < 3; ++s) {
      for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>(std::sin(0.3 * i + s));
      opt.step(p.data(), g.data(), 1e-3);
    }
    return p;
  };
  const int saved = omp_get_max_threads();
  const auto a = run(1), b = run(5);
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// train.alpha_lr_multiplier: every α moves as plain AdamW would at lr·k (the
// same bits), everything else as at lr; at k = 1 the bits of the single
// rate. Also with a range that cuts the layout (ZeRO-1's shards).
TEST(AdamW, AlphaLearningRateMultiplierScalesOnlyTheAlphas) {
  const ParamLayout layout(tiny_dims());
  const int64_t n = layout.total();
  std::vector<float> p0(static_cast<size_t>(n)), g(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p0[i] = static_cast<float>(0.5 * std::cos(0.37 * i));
  for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>(std::sin(0.11 * i + 1));
  const double lr = 3e-3, k = 10;
  auto run = [&](double multiplier, double rate, FlatRange range) {
    config::TrainConfig t;
    t.set_alpha_lr_multiplier(multiplier);
    AdamW opt(layout, t, kernels::cpu_backend(), range);
    std::vector<float> p = p0;
    for (int s = 0; s < 3; ++s) opt.step(p.data(), g.data(), rate);
    return p;
  };
  const FlatRange all{0, n};
  const std::vector<float> plain = run(1, lr, all), fast = run(1, lr * k, all), mixed = run(k, lr, all);
  int alphas = 0;
  for (const auto& e : layout.entries()) {
    const std::vector<float>& want = e.kind == ParamKind::NormAlpha ? fast : plain;
    alphas += e.kind == ParamKind::NormAlpha;
    for (int64_t i = e.offset; i < e.offset + e.numel; ++i) ASSERT_EQ(mixed[i], want[i]) << e.name;
  }
  EXPECT_EQ(alphas, 2 * 2 + 1);  // two per block, the final norm's
  EXPECT_NE(plain[layout.at("model.norm.alpha").offset], fast[layout.at("model.norm.alpha").offset]);

  // A shard that starts inside the layout and ends past an α.
  const FlatRange part{layout.at("model.layers.0.input_layernorm.alpha").offset - 3, n / 2};
  const std::vector<float> shard = run(k, lr, part);
  for (int64_t i = part.begin; i < part.end; ++i) ASSERT_EQ(shard[i], mixed[i]) << "element " << i;
  for (int64_t i = part.end; i < n; ++i) ASSERT_EQ(shard[i], p0[i]) << "element " << i;

  config::TrainConfig bad;
  bad.set_alpha_lr_multiplier(0);
  EXPECT_THROW(AdamW(layout, bad), std::invalid_argument);
}

TEST(AdamW, RejectsBadHyperparametersAndResumes) {
  const ParamLayout layout(tiny_dims());
  config::TrainConfig t;
  t.set_beta2(1.0);
  EXPECT_THROW(AdamW(layout, t), std::invalid_argument);
  t = config::TrainConfig();
  t.set_adam_eps(0.0);
  EXPECT_THROW(AdamW(layout, t), std::invalid_argument);
  t = config::TrainConfig();
  t.set_weight_decay(-0.1);
  EXPECT_THROW(AdamW(layout, t), std::invalid_argument);

  // Resuming = restoring m, v and the step count gives identical updates.
  t = config::TrainConfig();
  const int64_t n = layout.total();
  std::vector<float> p(static_cast<size_t>(n), 0.25f), g(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>(std::sin(1.0 * i));
  AdamW a(layout, t);
  a.step(p.data(), g.data(), 1e-3);
  AdamW b(layout, t);
  b.set_moments(a.exp_avg_to_host().data(), a.exp_avg_sq_to_host().data());
  b.set_steps_taken(a.steps_taken());
  std::vector<float> pa = p, pb = p;
  a.step(pa.data(), g.data(), 1e-3);
  b.step(pb.data(), g.data(), 1e-3);
  EXPECT_EQ(pa, pb);
  EXPECT_EQ(b.steps_taken(), 2);
}

}  // namespace
}  // namespace dyt::trainer
