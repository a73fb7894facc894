// Helpers for the CUDA kernel tests: device detection (tests skip without a
// GPU), device buffers that upload/download F32 or BF16 with conversion,
// NaN poisoning, random data that is never zero, bf16 rounding on the host,
// and the relative comparison the CPU tests use.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#ifdef DYT_CUDA_EMU
#include "tests/kernels/cuda/emu/emu_options.h"
#endif

namespace dyt::cuda_test {

using kernels::Device;
using kernels::DType;
using kernels::Tensor;
using Vec = std::vector<float>;

inline bool cuda_available() {
  static const bool ok = [] {
    int n = 0;
    const bool found = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
    (void)cudaGetLastError();  // clear the error a machine without a driver leaves
    return found;
  }();
  return ok;
}

#define DYT_REQUIRE_CUDA()                                                            \
  do {                                                                                \
    if (!::dyt::cuda_test::cuda_available()) GTEST_SKIP() << "no CUDA device present"; \
  } while (0)

// The seed of this run's random inputs: a fixed default, so every run draws
// the same inputs and a failure replays exactly; $DYT_TEST_SEED=N draws other
// inputs (and replays a run made with N). Printed once; every failure message
// carries it (with, under the emulator, its thread order and shuffle seed).
inline constexpr uint32_t kDefaultSeed = 20240520;
inline uint32_t run_seed() {
  static const uint32_t seed = [] {
    const char* env = std::getenv("DYT_TEST_SEED");
    uint32_t s = kDefaultSeed;
    if (env) {
      char* end = nullptr;
      const unsigned long v = std::strtoul(env, &end, 10);
      if (end == env || *end != '\0' || v > 0xffffffffUL) {
        std::cerr << "DYT_TEST_SEED=" << env << ": expected an unsigned 32-bit integer" << std::endl;
        std::exit(2);
      }
      s = static_cast<uint32_t>(v);
    }
    std::cout << "[ seed     ] DYT_TEST_SEED=" << s << (env ? " (from the environment)" : " (default)")
              << std::endl;
    return s;
  }();
  return seed;
}
// What replays this run, for failure messages.
inline std::string replay() {
  std::string r = "DYT_TEST_SEED=" + std::to_string(run_seed());
#ifdef DYT_CUDA_EMU
  r += " " + emu::describe_options();
#endif
  return r;
}

// One generator, reseeded at the start of each test from (run seed, test
// name): a test draws the same inputs whether it runs alone (--gtest_filter)
// or after others, so a failure replays exactly.
inline std::mt19937& rng() {
  static std::mt19937 gen(run_seed());
  return gen;
}
inline void reseed(const std::string& test) {
  uint32_t h = 2166136261u;  // FNV-1a of the name
  for (unsigned char c : test) h = (h ^ c) * 16777619u;
  std::seed_seq seq{run_seed(), h};
  rng().seed(seq);
}

// Uniform in [lo, hi] with |v| >= 0.05: no input sits at a trivial zero.
inline Vec random_vec(size_t n, std::mt19937& gen, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (float& x : v) do
      x = dist(gen);
    while (std::fabs(x) < 0.05f);
  return v;
}

// ---- bf16 on the host (round to nearest even, as __float2bfloat16_rn) ------------
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float round_to(DType dt, float v) {
  return dt == DType::BF16 ? bf16_to_f32(f32_to_bf16(v)) : v;
}
inline Vec round_to(DType dt, Vec v) {
  for (float& x : v) x = round_to(dt, x);
  return v;
}
inline const char* dtype_name(DType dt) { return dt == DType::BF16 ? "bf16" : "f32"; }

// ---- device buffers -------------------------------------------------------------------

class DevBuf {
 public:
  DevBuf() = default;
  // n elements of dtype dt, plus `pad` spare elements in front so that a view
  // can start misaligned (offset elements in).
  DevBuf(size_t n, DType dt, size_t offset = 0) : n_(n), dt_(dt), offset_(offset) {
    DYT_CUDA_CHECK(cudaMalloc(&base_, std::max<size_t>(1, (n + offset) * esize())));
  }
  DevBuf(const Vec& host, DType dt, size_t offset = 0) : DevBuf(host.size(), dt, offset) {
    upload(host);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept { *this = std::move(o); }
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(base_, o.base_);
    n_ = o.n_, dt_ = o.dt_, offset_ = o.offset_;
    return *this;
  }
  ~DevBuf() {
    if (base_) cudaFree(base_);
  }

  size_t esize() const { return dt_ == DType::BF16 ? 2 : 4; }
  void* data() const { return static_cast<char*>(base_) + offset_ * esize(); }
  size_t bytes() const { return n_ * esize(); }
  Tensor view(std::initializer_list<int64_t> dims) const {
    return Tensor(data(), dt_, Device::CUDA, dims);
  }

  void upload(const Vec& host) {
    if (dt_ == DType::BF16) {
      std::vector<uint16_t> h(host.size());
      for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_bf16(host[i]);
      DYT_CUDA_CHECK(cudaMemcpy(data(), h.data(), bytes(), cudaMemcpyHostToDevice));
    } else {
      DYT_CUDA_CHECK(cudaMemcpy(data(), host.data(), bytes(), cudaMemcpyHostToDevice));
    }
  }
  Vec download() const {
    DYT_CUDA_CHECK(cudaDeviceSynchronize());
    Vec out(n_);
    if (dt_ == DType::BF16) {
      std::vector<uint16_t> h(n_);
      DYT_CUDA_CHECK(cudaMemcpy(h.data(), data(), bytes(), cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < n_; ++i) out[i] = bf16_to_f32(h[i]);
    } else {
      DYT_CUDA_CHECK(cudaMemcpy(out.data(), data(), bytes(), cudaMemcpyDeviceToHost));
    }
    return out;
  }
  std::vector<unsigned char> raw() const {
    DYT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<unsigned char> out(bytes());
    DYT_CUDA_CHECK(cudaMemcpy(out.data(), data(), bytes(), cudaMemcpyDeviceToHost));
    return out;
  }
  // All bits set: a NaN in F32 and in BF16, so an unwritten element fails.
  void poison() { DYT_CUDA_CHECK(cudaMemset(data(), 0xff, bytes())); }

 private:
  void* base_ = nullptr;
  size_t n_ = 0;
  DType dt_ = DType::F32;
  size_t offset_ = 0;
};

// ---- comparison ------------------------------------------------------------------------

// The worst element of a comparison: max over i of |a_i − e_i| / bound_i
// (NaN counts as infinite), and where.
struct BoundResult {
  double worst_ratio = -1.0;
  size_t worst = 0;
};
inline double rms_of(const std::vector<double>& v) {
  double ss = 0.0;
  for (double e : v) ss += e * e;
  return std::sqrt(ss / std::max<size_t>(1, v.size()));
}
// bound_i = rtol · (|e_i| + rms(e)).
inline BoundResult close_ratio(const std::vector<double>& actual,
                               const std::vector<double>& expected, double rtol) {
  const double rms = rms_of(expected);
  BoundResult res;
  for (size_t i = 0; i < actual.size(); ++i) {
    double ratio = std::fabs(actual[i] - expected[i]) / (rtol * (std::fabs(expected[i]) + rms));
    if (std::isnan(ratio)) ratio = std::numeric_limits<double>::infinity();
    if (ratio > res.worst_ratio) res.worst_ratio = ratio, res.worst = i;
  }
  return res;
}

// |a_i − e_i| <= rtol · (|e_i| + rms(e)) for every i; NaN never passes.
inline void expect_close(const std::vector<double>& actual, const std::vector<double>& expected,
                         double rtol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  ASSERT_GT(rms_of(expected), 0.0) << what << ": expected values are all zero, the check would be empty";
  const BoundResult r = close_ratio(actual, expected, rtol);
  EXPECT_LE(r.worst_ratio, 1.0) << what << ": worst at index " << r.worst << " of " << actual.size()
                                << ", got " << actual[r.worst] << ", expected " << expected[r.worst]
                                << " (rtol " << rtol << "; replay with " << replay() << ")";
}
inline std::vector<double> to_d(const Vec& v) { return {v.begin(), v.end()}; }
inline void expect_close(const Vec& actual, const Vec& expected, double rtol,
                         const std::string& what) {
  expect_close(to_d(actual), to_d(expected), rtol, what);
}
// For "+=" outputs: compare the increments (after − before) of both, in double.
inline void expect_close_delta(const Vec& actual, const Vec& expected, const Vec& before,
                               double rtol, const std::string& what) {
  ASSERT_EQ(actual.size(), before.size()) << what;
  ASSERT_EQ(expected.size(), before.size()) << what;
  std::vector<double> a(before.size()), e(before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    a[i] = double(actual[i]) - double(before[i]);
    e[i] = double(expected[i]) - double(before[i]);
  }
  expect_close(a, e, rtol, what);
}

// ---- bf16 activations: a bound derived from bf16's unit roundoff -----------------------
//
// A bf16 kernel loads bf16, computes in fp32 and rounds each output once to
// bf16 (round to nearest even). Its reference is the CPU op, in fp32, on the
// same bf16-rounded inputs and the same fp32 parameters. With k the kernel's
// fp32 value before the store and r the reference, element by element:
//
//   |bf16(k) − r| ≤ |bf16(k) − k| + |k − r| ≤ u·|k| + t + e ≤ u·|r| + (1 + u)·e + t
//
// - u = 2⁻⁸, bf16's unit roundoff: it keeps 8 significant bits (7 stored),
//   so the spacing at 1 is 2⁻⁷ and rounding to nearest moves a value by at
//   most half a spacing, 2⁻⁸ relative; t = 2⁻¹³⁴ is that half spacing below
//   bf16's normal range (subnormal spacing 2⁻¹³³).
// - e bounds |k − r|, two fp32 evaluations of one formula on the same inputs.
//   The elementwise math is shared to the bit (kernels/elementwise.h:
//   tanh_f32, div_f32 and the slopes give the same bits on both devices), so
//   they differ only where a compiler contracts a·b + c into an fma and the
//   other does not, or in the order of a sum: the caller derives e for its
//   op (fp32_terms below covers the elementwise ones).
//
// Nothing else fits: a kernel that keeps an intermediate in bf16 adds up to
// u·|that term| more, and the output's own rounding already uses up to u·|r|
// (measured on the real kernels: worst element at 0.99 of the bound),
// so on a few thousand elements some exceed the bound
// (tests/kernels/cuda/emu/test_bf16_bound.cc plants such a kernel and checks
// that it is rejected, while the old 1e-2·(|r| + rms) tolerance passes it).
inline constexpr double kBf16Unit = 0x1p-8;
inline constexpr double kBf16Tiny = 0x1p-134;
// e for a formula of at most 3 fp32 roundings that may differ between the two
// compilers (a product, a product-add contracted or not): each moves the
// result by at most 2⁻²⁴ of the magnitude m of the terms it combines, so
// e = 3·2⁻²⁴·m, with m the sum of the terms' magnitudes.
inline std::vector<double> fp32_terms(const std::vector<double>& m) {
  std::vector<double> e(m.size());
  for (size_t i = 0; i < m.size(); ++i) e[i] = 3 * 0x1p-24 * m[i];
  return e;
}

inline BoundResult bf16_bound_ratio(const Vec& actual, const Vec& ref, const std::vector<double>& e) {
  BoundResult res;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double bound = kBf16Unit * std::fabs(double(ref[i])) + (1 + kBf16Unit) * e[i] + kBf16Tiny;
    double ratio = std::fabs(double(actual[i]) - double(ref[i])) / bound;
    if (std::isnan(ratio)) ratio = std::numeric_limits<double>::infinity();
    if (ratio > res.worst_ratio) res.worst_ratio = ratio, res.worst = i;
  }
  return res;
}
inline void expect_bf16_within(const Vec& actual, const Vec& ref, const std::vector<double>& e,
                               const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  ASSERT_EQ(e.size(), ref.size()) << what;
  const BoundResult r = bf16_bound_ratio(actual, ref, e);
  if (actual.empty()) return;
  EXPECT_LE(r.worst_ratio, 1.0) << what << ": worst at index " << r.worst << " of " << actual.size()
                                << ", got " << actual[r.worst] << ", expected " << ref[r.worst]
                                << ", bound 2^-8·|expected| + (1 + 2^-8)·" << e[r.worst]
                                << " exceeded " << r.worst_ratio << "× (replay with " << replay()
                                << ")";
}
// An activation output: fp32 to 1e-5 relative (the comparison above), bf16
// within the bound from bf16's unit roundoff, with e its fp32 discrepancy.
inline void expect_act(DType dt, const Vec& actual, const Vec& ref, const std::vector<double>& e,
                       const std::string& what) {
  if (dt == DType::BF16) expect_bf16_within(actual, ref, e, what);
  else expect_close(actual, ref, 1e-5, what);
}

// e for y = γ·f(αh) + β: f is shared to the bit, so only γ·v + β's roundings
// (|v| ≤ 1 for both activations) may differ: terms |γ| and |β|.
inline std::vector<double> dyn_forward_e(const Vec& gamma, const Vec* beta, int64_t rows) {
  const size_t d = gamma.size();
  std::vector<double> m(rows * d);
  for (size_t i = 0; i < m.size(); ++i)
    m[i] = std::fabs(double(gamma[i % d])) + (beta ? std::fabs(double((*beta)[i % d])) : 0.0);
  return fp32_terms(m);
}
// e for a sum a + b (the residual sum, add_inplace).
inline std::vector<double> sum_e(const Vec& a, const Vec& b) {
  std::vector<double> m(a.size());
  for (size_t i = 0; i < m.size(); ++i) m[i] = std::fabs(double(a[i])) + std::fabs(double(b[i]));
  return fp32_terms(m);
}
// e for dx = dx0 + dy·γ·s·α (slope s ≤ 1, shared to the bit).
inline std::vector<double> dyn_dx_e(const Vec& dx0, const Vec& dy, const Vec& gamma, float alpha) {
  const size_t d = gamma.size();
  std::vector<double> m(dx0.size());
  for (size_t i = 0; i < m.size(); ++i)
    m[i] = std::fabs(double(dx0[i])) + std::fabs(double(dy[i]) * gamma[i % d] * alpha);
  return fp32_terms(m);
}
// ---- host-side contracts (no GPU needed) ----------------------------------------------

// A tensor marked CUDA at a stand-in address: for argument checks, which must
// throw before anything is launched.
inline Tensor fake(DType dt, std::initializer_list<int64_t> dims, Device dev = Device::CUDA) {
  alignas(16) static float dummy[4];
  return Tensor(dummy, dt, dev, dims);
}
// fn() must throw std::invalid_argument whose message names `op`.
template <class Fn>
void expect_invalid(Fn&& fn, const std::string& op, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << op << ": expected std::invalid_argument (" << what << ")";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << e.what();
  }
}

}  // namespace dyt::cuda_test
