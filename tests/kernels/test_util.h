// Helpers for the CPU kernel tests: random data, double-precision checks and
// central finite differences. Every op is checked twice: its forward against a
// plain double loop written in the test, and its backward against finite
// differences of L = Σ r ⊙ y computed in double on that same loop.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu_ops.h"

namespace dyt::test {

using kernels::cpu_f32;
using kernels::cpu_i32;
using kernels::Tensor;
using Vec = std::vector<float>;
using DVec = std::vector<double>;

// Uniform in [lo, hi] with |v| >= 0.05, so no input sits at a trivial zero.
inline Vec random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (float& x : v) do
      x = dist(gen);
    while (std::fabs(x) < 0.05f);
  return v;
}

inline std::vector<int32_t> random_ids(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(gen);
  return v;
}

// A view of test data; ops only read through const Tensor&, outputs get a named view.
inline Tensor view(const Vec& v, std::initializer_list<int64_t> dims) {
  return cpu_f32(const_cast<float*>(v.data()), dims);
}
inline Tensor ids(const std::vector<int32_t>& v, std::initializer_list<int64_t> dims) {
  return cpu_i32(const_cast<int32_t*>(v.data()), dims);
}

inline DVec to_d(const Vec& v) { return DVec(v.begin(), v.end()); }
inline Vec nan_vec(size_t n) { return Vec(n, std::numeric_limits<float>::quiet_NaN()); }

inline double dot(const DVec& a, const DVec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Elementwise: |a_i − e_i| <= rtol · (|e_i| + rms(e)). The rms term keeps the
// bound meaningful for entries that happen to be near zero.
inline void expect_close(const DVec& actual, const DVec& expected, double rtol,
                         const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double ss = 0.0;
  for (double e : expected) ss += e * e;
  const double rms = std::sqrt(ss / std::max<size_t>(1, expected.size()));
  ASSERT_GT(rms, 0.0) << what << ": expected values are all zero, the check would be empty";
  size_t worst = 0;
  double worst_ratio = -1.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double bound = rtol * (std::fabs(expected[i]) + rms);
    double ratio = std::fabs(actual[i] - expected[i]) / bound;
    if (std::isnan(ratio)) ratio = std::numeric_limits<double>::infinity();
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  EXPECT_LE(worst_ratio, 1.0) << what << ": worst at index " << worst << ", got " << actual[worst]
                              << ", expected " << expected[worst] << " (rtol " << rtol << ")";
}
inline void expect_close(const Vec& actual, const DVec& expected, double rtol,
                         const std::string& what) {
  expect_close(to_d(actual), expected, rtol, what);
}

// actual − before, for checking "+=" outputs.
inline DVec delta(const Vec& after, const Vec& before) {
  DVec d(after.size());
  for (size_t i = 0; i < after.size(); ++i) d[i] = double(after[i]) - double(before[i]);
  return d;
}

// ∂f/∂x by central differences in double, every coordinate.
inline DVec fd_grad(const std::function<double(const DVec&)>& f, DVec x, double h = 1e-6) {
  DVec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// Runs fn and checks it throws std::invalid_argument whose message names op.
template <class Fn>
void expect_invalid(Fn&& fn, const std::string& op) {
  try {
    fn();
    ADD_FAILURE() << op << ": expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << e.what();
  }
}

// Runs fn on 1, 2 and 3 threads (omp_set_num_threads, in this process), each
// time on fresh copies of `init`, and expects every output buffer to match
// the 1-thread bits.
inline void expect_same_bits(const std::vector<Vec>& init,
                             const std::function<void(std::vector<Vec>&)>& fn,
                             const std::string& what) {
  const int saved = omp_get_max_threads();
  std::vector<Vec> first;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    std::vector<Vec> bufs = init;
    fn(bufs);
    if (threads == 1) {
      first = bufs;
      continue;
    }
    for (size_t b = 0; b < bufs.size(); ++b)
      EXPECT_EQ(0, std::memcmp(bufs[b].data(), first[b].data(), bufs[b].size() * sizeof(float)))
          << what << ": buffer " << b << " differs on " << threads << " threads";
  }
  omp_set_num_threads(saved);
}

inline constexpr double kFwdTol = 1e-5;
inline constexpr double kBwdTol = 1e-4;

}  // namespace dyt::test
