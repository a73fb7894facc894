// RMSNorm, DyT and DyISRU: forward against double loops, every gradient
// (dx, dα, dγ, dβ) against finite differences, all with "+=" semantics.
#include <cstdio>

#include "tests/kernels/dyt_outliers.h"
#include "tests/kernels/test_util.h"

namespace dyt::test {
namespace {

constexpr int64_t N = 10, D = 33;

DVec rms_ref(const DVec& x, const DVec& g, double eps, DVec* rstd = nullptr) {
  DVec y(x.size());
  for (int64_t r = 0; r < N; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < D; ++i) ss += x[r * D + i] * x[r * D + i];
    const double rs = 1.0 / std::sqrt(ss / D + eps);
    if (rstd) (*rstd)[r] = rs;
    for (int64_t i = 0; i < D; ++i) y[r * D + i] = g[i] * x[r * D + i] * rs;
  }
  return y;
}

TEST(RMSNorm, ForwardMatchesDouble) {
  const float eps = 1e-5f;
  Vec x = random_vec(N * D, 1, -2, 2), g = random_vec(D, 2, 0.5f, 1.5f);
  Vec y = nan_vec(N * D), rstd = nan_vec(N);
  Tensor ty = view(y, {N, D}), tr = view(rstd, {N});
  cpu::rmsnorm_forward(view(x, {N, D}), view(g, {D}), eps, ty, tr);
  DVec rref(N);
  const DVec yref = rms_ref(to_d(x), to_d(g), eps, &rref);
  expect_close(y, yref, kFwdTol, "y");
  expect_close(rstd, rref, kFwdTol, "rstd");
}

TEST(RMSNorm, BackwardMatchesFiniteDifferences) {
  const float eps = 1e-5f;
  Vec x = random_vec(N * D, 3, -2, 2), g = random_vec(D, 4, 0.5f, 1.5f), r = random_vec(N * D, 5);
  const DVec xd = to_d(x), gd = to_d(g), rd = to_d(r);
  const DVec fx = fd_grad([&](const DVec& v) { return dot(rd, rms_ref(v, gd, eps)); }, xd);
  const DVec fg = fd_grad([&](const DVec& v) { return dot(rd, rms_ref(xd, v, eps)); }, gd);

  Vec y(N * D), rstd(N);
  Tensor ty = view(y, {N, D}), tr = view(rstd, {N});
  cpu::rmsnorm_forward(view(x, {N, D}), view(g, {D}), eps, ty, tr);
  const Vec dx0 = random_vec(N * D, 6), dg0 = random_vec(D, 7);
  Vec dx = dx0, dg = dg0;
  Tensor tdx = view(dx, {N, D}), tdg = view(dg, {D});
  cpu::rmsnorm_backward(view(x, {N, D}), view(g, {D}), tr, view(r, {N, D}), tdx, tdg);
  expect_close(delta(dx, dx0), fx, kBwdTol, "dx (+=)");
  expect_close(delta(dg, dg0), fg, kBwdTol, "dgamma (+=)");
}

// DyT and DyISRU differ only in the activation f(u), u = α·x.
struct Act {
  const char* name;
  double (*f)(double);
  decltype(&cpu::dyt_forward) forward;
  decltype(&cpu::dyt_backward) backward;
};
const Act kActs[] = {
    {"DyT", [](double u) { return std::tanh(u); }, cpu::dyt_forward, cpu::dyt_backward},
    {"DyISRU", [](double u) { return u / std::sqrt(1 + u * u); }, cpu::dyisru_forward,
     cpu::dyisru_backward},
};

DVec act_ref(const Act& a, const DVec& x, double alpha, const DVec& g, const DVec* b) {
  DVec y(x.size());
  for (int64_t r = 0; r < N; ++r)
    for (int64_t i = 0; i < D; ++i)
      y[r * D + i] = g[i] * a.f(alpha * x[r * D + i]) + (b ? (*b)[i] : 0.0);
  return y;
}

class DynamicAct : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(DynamicAct, ForwardMatchesDouble) {
  const Act& a = kActs[std::get<0>(GetParam())];
  const bool with_beta = std::get<1>(GetParam());
  // |x| up to 3 with α = 0.8: both the linear and the saturated regime.
  Vec x = random_vec(N * D, 11, -3, 3), alpha = {0.8f}, g = random_vec(D, 12),
      b = random_vec(D, 13);
  Vec y = nan_vec(N * D);
  Tensor ty = view(y, {N, D}), tb = view(b, {D});
  a.forward(view(x, {N, D}), view(alpha, {1}), view(g, {D}), with_beta ? &tb : nullptr, ty);
  const DVec bd = to_d(b);
  expect_close(y, act_ref(a, to_d(x), alpha[0], to_d(g), with_beta ? &bd : nullptr), kFwdTol,
               a.name);
}

TEST_P(DynamicAct, BackwardMatchesFiniteDifferences) {
  const Act& a = kActs[std::get<0>(GetParam())];
  const bool with_beta = std::get<1>(GetParam());
  Vec x = random_vec(N * D, 21, -3, 3), alpha = {0.8f}, g = random_vec(D, 22),
      b = random_vec(D, 23), r = random_vec(N * D, 24);
  const DVec xd = to_d(x), gd = to_d(g), bd = to_d(b), rd = to_d(r);
  const DVec* bp = with_beta ? &bd : nullptr;
  const double al = alpha[0];
  const DVec fx = fd_grad([&](const DVec& v) { return dot(rd, act_ref(a, v, al, gd, bp)); }, xd);
  const DVec fa =
      fd_grad([&](const DVec& v) { return dot(rd, act_ref(a, xd, v[0], gd, bp)); }, {al});
  const DVec fg = fd_grad([&](const DVec& v) { return dot(rd, act_ref(a, xd, al, v, bp)); }, gd);
  const DVec fb = fd_grad([&](const DVec& v) { return dot(rd, act_ref(a, xd, al, gd, &v)); }, bd);

  const Vec dx0 = random_vec(N * D, 25), da0 = {0.3f}, dg0 = random_vec(D, 26),
            db0 = random_vec(D, 27);
  Vec dx = dx0, da = da0, dg = dg0, db = db0;
  Tensor tdx = view(dx, {N, D}), tda = view(da, {1}), tdg = view(dg, {D}), tdb = view(db, {D});
  a.backward(view(x, {N, D}), view(alpha, {1}), view(g, {D}), view(r, {N, D}), tdx, tda, tdg,
             with_beta ? &tdb : nullptr);
  expect_close(delta(dx, dx0), fx, kBwdTol, std::string(a.name) + " dx (+=)");
  expect_close(delta(da, da0), fa, kBwdTol, std::string(a.name) + " dalpha (+=)");
  expect_close(delta(dg, dg0), fg, kBwdTol, std::string(a.name) + " dgamma (+=)");
  if (with_beta) expect_close(delta(db, db0), fb, kBwdTol, std::string(a.name) + " dbeta (+=)");
}

// dα with LLaMA-style outliers (α = 0.05, the 70B FFN α₀; 4% of the inputs
// at |αx| from 8 to 1e4) against float64 within the float path's own error
// budget, and a check that a 2⁻²¹ slope floor (the old tanh) would exceed
// that budget tenfold: tests/kernels/dyt_outliers.h, shared with the CUDA test.
TEST(DyT, AlphaGradientWithOutliersMatchesDouble) {
  constexpr int64_t n = 64, d = 256;
  std::mt19937 gen(2024);
  const float alpha = 0.05f;
  const Vec x = test_outliers::outlier_inputs(n * d, alpha, gen);
  const Vec g = random_vec(d, 31);
  Vec dy = random_vec(n * d, 32);
  test_outliers::align_outlier_gradients(x, g, alpha, dy);
  Vec dx(n * d, 0.0f), da = {0.0f}, dg(d, 0.0f);
  Tensor tdx = view(dx, {n, d}), tda = view(da, {1}), tdg = view(dg, {d});
  const Vec av = {alpha};
  cpu::dyt_backward(view(x, {n, d}), view(av, {1}), view(g, {d}), view(dy, {n, d}), tdx, tda, tdg,
                    nullptr);

  const test_outliers::AlphaReference r = test_outliers::alpha_reference(x, dy, g, alpha);
  ASSERT_GT(r.saturated, n * d / 50);
  ASSERT_GT(std::fabs(r.floor_bias), 10 * r.budget) << "the outliers would not reveal a slope floor";
  EXPECT_NEAR(da[0], r.want, r.budget) << r.saturated << " saturated inputs";
  std::printf("dα %.9g, float64 %.9g, budget %.3g, a 2^-21 floor would add %.3g\n", da[0], r.want,
              r.budget, r.floor_bias);
}

INSTANTIATE_TEST_SUITE_P(Norms, DynamicAct,
                         ::testing::Combine(::testing::Values(0, 1), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(kActs[std::get<0>(info.param)].name) +
                                  (std::get<1>(info.param) ? "_Bias" : "_NoBias");
                         });

// The health statistic of a DyT input (trainer/norm_health.h): Σ x² bit for
// bit as sum_squares sums it (and within 1e-12 of a long-double sum), the
// count of |α·x| > threshold exactly a scalar loop's, on 1 and 3 threads,
// across the sum's chunks (kSumSquaresChunk); an element on the threshold is
// not counted, and a NaN is not counted but makes the sum NaN.
TEST(SaturationStats, SumOfSquaresAndCountMatchLoops) {
  const int64_t c = kernels::kSumSquaresChunk;
  const float alpha = 0.75f, threshold = 3.0f;
  for (int64_t n : {int64_t{1}, int64_t{33}, c - 1, c + 1, 3 * c + 7}) {
    Vec x = random_vec(static_cast<size_t>(n), 11, -8, 8);
    x[0] = 4.0f;  // α·x = 3 exactly
    long double ref = 0;
    int64_t count = 0;
    for (float v : x) {
      ref += static_cast<long double>(v) * v;
      count += std::fabs(alpha * v) > threshold;
    }
    if (n > 1) ASSERT_GT(count, 0);  // the random values do saturate (n = 1 holds only the threshold)
    for (int threads : {1, 3}) {
      omp_set_num_threads(threads);
      double sum_sq = -1;
      int64_t saturated = -1;
      cpu::saturation_stats(view(x, {n}), alpha, threshold, &sum_sq, &saturated);
      EXPECT_EQ(saturated, count) << "n = " << n << ", threads " << threads;
      EXPECT_EQ(sum_sq, cpu::sum_squares(x.data(), n)) << "n = " << n;
      EXPECT_LE(std::fabs(static_cast<double>((sum_sq - ref) / ref)), 1e-12) << "n = " << n;
    }
    omp_set_num_threads(omp_get_num_procs());
    if (n > 2) {
      const bool was_counted = std::fabs(alpha * x[1]) > threshold;
      x[1] = std::nanf("");
      double sum_sq = 0;
      int64_t saturated = 0;
      cpu::saturation_stats(view(x, {n}), alpha, threshold, &sum_sq, &saturated);
      EXPECT_TRUE(std::isnan(sum_sq)) << "n = " << n;
      EXPECT_EQ(saturated, count - was_counted) << "n = " << n;
    }
  }
}

}  // namespace
}  // namespace dyt::test
