// Flash attention on the GPU (kernels/cuda/attention.h) against a
// double-precision causal GQA attention with lse and its backward, written
// here, and `out` against the CPU op (kernels/cpu_ops.h) in fp32. Inputs
// are fresh random values (never zero; DYT_TEST_SEED), outputs NaN-poisoned
// before every call. F32 to 1e-5 relative; BF16 within a bound derived from
// bf16 rounding (below). Tests that need a device skip without one; under
// the emulator (DYT_CUDA_EMU) only the small shapes run.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu_ops.h"
#include "kernels/cuda/attention.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dyt::cuda_test {
namespace {

using kernels::AttentionShape;
using kernels::cpu_f32;

struct Case {
  int64_t B, T, Hq, Hkv, hd;
};
std::string label(const char* what, DType dt, const Case& c) {
  return std::string(what) + " " + (dt == DType::BF16 ? "bf16" : "f32") + " B=" +
         std::to_string(c.B) + " T=" + std::to_string(c.T) + " Hq=" + std::to_string(c.Hq) +
         " Hkv=" + std::to_string(c.Hkv) + " hd=" + std::to_string(c.hd);
}
AttentionShape shape_of(const Case& c) { return {c.B, c.T, c.Hq, c.Hkv}; }

// Tails of every kind (T below, between and across tiles of 16 and 32 rows),
// GQA groups of 2, MHA, one KV head for 8 query heads, every head size.
std::vector<Case> cases() {
  std::vector<Case> v = {
      {2, 5, 4, 2, 32}, {2, 17, 4, 2, 32}, {2, 33, 4, 2, 32}, {3, 1, 2, 1, 32},
      {1, 70, 2, 2, 128}, {1, 70, 8, 1, 128}, {1, 40, 2, 1, 64},
  };
#ifndef DYT_CUDA_EMU
  // Longer sequences: many tiles per block, on the GPU only.
  v.push_back({2, 300, 4, 2, 128});
  v.push_back({1, 1000, 4, 4, 64});
  v.push_back({1, 2049, 2, 1, 128});
#endif
  return v;
}

std::mt19937& rng() {
  static std::mt19937 gen(run_seed());
  return gen;
}
void reseed(const std::string& test) {
  uint32_t h = 2166136261u;  // FNV-1a of the name
  for (unsigned char ch : test) h = (h ^ ch) * 16777619u;
  std::seed_seq seq{run_seed(), h};
  rng().seed(seq);
}
class Attention : public ::testing::Test {
 protected:
  void SetUp() override { reseed(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
};

// The kernel's scale: 1/sqrt(hd) rounded to float (as the CPU op).
double scale_of(int64_t hd) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd))); }

// ---- the double-precision reference ---------------------------------------------------------
//
// Besides the results it gathers the magnitudes the bf16 bound needs (per
// output element, sums of absolute values of the terms that carry a bf16
// rounding or an fp32 error).
struct Layout {
  Case c;
  int64_t group() const { return c.Hq / c.Hkv; }
  int64_t qi(int64_t b, int64_t t, int64_t h, int64_t x) const {
    return ((b * c.T + t) * c.Hq + h) * c.hd + x;
  }
  int64_t ki(int64_t b, int64_t t, int64_t h, int64_t x) const {  // h: the query head
    return ((b * c.T + t) * c.Hkv + h / group()) * c.hd + x;
  }
  int64_t li(int64_t b, int64_t h, int64_t t) const { return (b * c.Hq + h) * c.T + t; }
};

struct FwdRef {
  std::vector<double> out, lse;
  std::vector<double> pv_abs;  // Σ_j P_ij |v_jc| per out element
  double sbar = 0;             // max over (i, j) of scale·Σ_c |q_ic k_jc|
};

// Scores of row (b, h, t) against keys 0..t, and their magnitudes.
void scores(const Layout& L, const Vec& q, const Vec& k, int64_t b, int64_t h, int64_t t,
            std::vector<double>& s, double& sbar) {
  const double scale = scale_of(L.c.hd);
  s.assign(t + 1, 0.0);
  for (int64_t j = 0; j <= t; ++j) {
    double dot = 0, mag = 0;
    for (int64_t x = 0; x < L.c.hd; ++x) {
      const double p = double(q[L.qi(b, t, h, x)]) * k[L.ki(b, j, h, x)];
      dot += p;
      mag += std::fabs(p);
    }
    s[j] = scale * dot;
    sbar = std::max(sbar, scale * mag);
  }
}

FwdRef reference_forward(const Case& c, const Vec& q, const Vec& k, const Vec& v) {
  const Layout L{c};
  FwdRef r;
  r.out.assign(q.size(), 0.0);
  r.pv_abs.assign(q.size(), 0.0);
  r.lse.assign(c.B * c.Hq * c.T, 0.0);
  std::vector<double> s;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t t = 0; t < c.T; ++t) {
        scores(L, q, k, b, h, t, s, r.sbar);
        double m = s[0];
        for (double x : s) m = std::max(m, x);
        double l = 0;
        for (double x : s) l += std::exp(x - m);
        r.lse[L.li(b, h, t)] = m + std::log(l);
        for (int64_t j = 0; j <= t; ++j) {
          const double p = std::exp(s[j] - m) / l;
          for (int64_t x = 0; x < c.hd; ++x) {
            const double vv = v[L.ki(b, j, h, x)];
            r.out[L.qi(b, t, h, x)] += p * vv;
            r.pv_abs[L.qi(b, t, h, x)] += p * std::fabs(vv);
          }
        }
      }
  return r;
}

struct BwdRef {
  std::vector<double> dq, dk, dv;
  // Magnitudes: Σ P|dO| (dv); scale·Σ |dS||·| and scale·Σ dS̄|·| (dq, dk) with
  // dS̄ = P·(Σ|dO||v| + Σ|dO||out|), the size of dS's fp32 terms.
  std::vector<double> dv_abs, dq_ds, dq_bar, dk_ds, dk_bar;
  double sbar = 0;
};

// Given the same q, k, v, out, lse and dout as the kernel.
BwdRef reference_backward(const Case& c, const Vec& q, const Vec& k, const Vec& v,
                          const Vec& out, const Vec& lse, const Vec& dout) {
  const Layout L{c};
  const double scale = scale_of(c.hd);
  BwdRef r;
  for (auto* a : {&r.dq, &r.dq_ds, &r.dq_bar}) a->assign(q.size(), 0.0);
  for (auto* a : {&r.dk, &r.dv, &r.dv_abs, &r.dk_ds, &r.dk_bar}) a->assign(k.size(), 0.0);
  std::vector<double> s;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t t = 0; t < c.T; ++t) {
        scores(L, q, k, b, h, t, s, r.sbar);
        double D = 0, D_abs = 0;
        for (int64_t x = 0; x < c.hd; ++x) {
          D += double(dout[L.qi(b, t, h, x)]) * out[L.qi(b, t, h, x)];
          D_abs += std::fabs(double(dout[L.qi(b, t, h, x)]) * out[L.qi(b, t, h, x)]);
        }
        for (int64_t j = 0; j <= t; ++j) {
          const double p = std::exp(s[j] - double(lse[L.li(b, h, t)]));
          double dp = 0, dp_abs = 0;
          for (int64_t x = 0; x < c.hd; ++x) {
            dp += double(dout[L.qi(b, t, h, x)]) * v[L.ki(b, j, h, x)];
            dp_abs += std::fabs(double(dout[L.qi(b, t, h, x)]) * v[L.ki(b, j, h, x)]);
          }
          const double ds = p * (dp - D), ds_bar = p * (dp_abs + D_abs);
          for (int64_t x = 0; x < c.hd; ++x) {
            const int64_t iq = L.qi(b, t, h, x), ik = L.ki(b, j, h, x);
            r.dq[iq] += scale * ds * k[ik];
            r.dq_ds[iq] += scale * std::fabs(ds * k[ik]);
            r.dq_bar[iq] += scale * ds_bar * std::fabs(k[ik]);
            r.dk[ik] += scale * ds * q[iq];
            r.dk_ds[ik] += scale * std::fabs(ds * q[iq]);
            r.dk_bar[ik] += scale * ds_bar * std::fabs(q[iq]);
            r.dv[ik] += p * dout[iq];
            r.dv_abs[ik] += p * std::fabs(double(dout[iq]));
          }
        }
      }
  return r;
}

// ---- the bf16 bound ---------------------------------------------------------------------------
//
// With bf16 activations both sides start from the same bf16 inputs; the
// kernel multiplies them exactly into fp32 accumulators (tensor cores), keeps
// the softmax in fp32 and rounds to bf16 (unit roundoff u = 2⁻⁸): P before
// P·V and dV's Pᵀ·dO; dS before dS·K and dSᵀ·Q; each output once. So, per
// element, with r the exact value (the reference):
//
//   |kernel − r| ≤ u·|r| + (1 + u)·e,
//   e = u·M + η·A     (cuda_test_util.h's bf16 bound, expect_bf16_within)
//
// where M sums the magnitudes of the terms that carry a bf16 rounding
// (Σ_j P_ij|v_jc| for out, Σ_i P_ij|dO_ic| for dv, scale·Σ|dS||k| for dq,
// scale·Σ|dS||q| for dk) and A those of the fp32 terms (the same for out and
// dv; scale·Σ dS̄|·| for dq and dk, dS̄ = P·(Σ|dO||v| + Σ|dO||out|) bounding
// dP and D's terms). η bounds the relative fp32 error of what is not
// rounded to bf16: a score of hd terms, any summation order, is off by at
// most hd·2⁻²⁴·s̄ (s̄ = scale·Σ|q||k|, the largest over the case), and the max
// or lse it is compared with likewise: 2·hd·2⁻²⁴·s̄ on exp's argument; dP and
// D carry hd·2⁻²⁴ of their term magnitudes each (in A); the sums over keys
// or queries (l, P·V, the accumulators, the online rescaling) at most
// (T + 16)·2⁻²⁴, expf and the scale a few ulps: η = 2⁻²⁴·(2·hd·s̄ + 2·hd + T + 16).
// These fp32 terms are worst cases (random-sign roundings grow like √n);
// at hd = 128 they add a few percent to the u·M term that dominates.
double eta(const Case& c, double sbar) {
  return 0x1p-24 * (2.0 * c.hd * sbar + 2.0 * c.hd + double(c.T) + 16.0);
}
std::vector<double> bound_terms(const std::vector<double>& M, const std::vector<double>& A,
                                double eta) {
  std::vector<double> e(M.size());
  for (size_t i = 0; i < e.size(); ++i) e[i] = kBf16Unit * M[i] + eta * A[i];
  return e;
}
Vec to_f(const std::vector<double>& v) { return Vec(v.begin(), v.end()); }

// fp32 within 1e-5 relative; bf16 within the bound above.
void expect_output(DType dt, const Vec& actual, const std::vector<double>& ref,
                   const std::vector<double>& M, const std::vector<double>& A, double eta,
                   const std::string& what) {
  if (rms_of(ref) == 0) {
    // All exact zeros (T = 1: dS = P·(dP − D) with P = 1 and out = v):
    // what is left is fp32 rounding of dP − D, at most η·A.
    ASSERT_EQ(actual.size(), ref.size()) << what;
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_LE(std::fabs(double(actual[i])), eta * A[i]) << what << " at " << i;
    return;
  }
  if (dt == DType::BF16) expect_bf16_within(actual, to_f(ref), bound_terms(M, A, eta), what);
  else expect_close(to_d(actual), ref, 1e-5, what);
}

struct Inputs {
  Vec q, k, v, dout;
  Inputs(const Case& c, DType dt) {
    const size_t nq = c.B * c.T * c.Hq * c.hd, nk = c.B * c.T * c.Hkv * c.hd;
    // Scores up to a few units: peaked and flat rows, a max that moves.
    q = round_to(dt, random_vec(nq, rng(), -2.0f, 2.0f));
    k = round_to(dt, random_vec(nk, rng(), -2.0f, 2.0f));
    v = round_to(dt, random_vec(nk, rng()));
    dout = round_to(dt, random_vec(nq, rng()));
  }
};

// out, lse from the kernel (both poisoned first).
void run_forward(const Case& c, DType dt, const Inputs& in, Vec& out, Vec& lse) {
  const int64_t rows = c.B * c.T;
  DevBuf bq(in.q, dt), bk(in.k, dt), bv(in.v, dt), bo(in.q.size(), dt),
      bl(size_t(c.B * c.Hq * c.T), DType::F32);
  bo.poison();
  bl.poison();
  cuda::attention_forward(bq.view({rows, c.Hq * c.hd}), bk.view({rows, c.Hkv * c.hd}),
                          bv.view({rows, c.Hkv * c.hd}), shape_of(c), bo.view({rows, c.Hq * c.hd}),
                          bl.view({c.B, c.Hq, c.T}), nullptr);
  out = bo.download();
  lse = bl.download();
}

struct Grads {
  Vec dq, dk, dv;
};
Grads run_backward(const Case& c, DType dt, const Inputs& in, const Vec& out, const Vec& lse,
                   bool own_workspace) {
  const int64_t rows = c.B * c.T;
  const int64_t qw = c.Hq * c.hd, kw = c.Hkv * c.hd;
  DevBuf bq(in.q, dt), bk(in.k, dt), bv(in.v, dt), bo(out, dt), bl(lse, DType::F32),
      bdo(in.dout, dt), bdq(in.q.size(), dt), bdk(in.k.size(), dt), bdv(in.k.size(), dt);
  bdq.poison();
  bdk.poison();
  bdv.poison();
  const size_t ws_bytes = cuda::attention_backward_workspace_bytes(shape_of(c));
  DevBuf ws(ws_bytes / 4 + 4, DType::F32);
  ws.poison();  // D is written before it is read
  const cuda::Workspace w{ws.data(), ws_bytes};
  cuda::attention_backward(bq.view({rows, qw}), bk.view({rows, kw}), bv.view({rows, kw}),
                           bo.view({rows, qw}), bl.view({c.B, c.Hq, c.T}), bdo.view({rows, qw}),
                           shape_of(c), bdq.view({rows, qw}), bdk.view({rows, kw}),
                           bdv.view({rows, kw}), nullptr, own_workspace ? &w : nullptr);
  return {bdq.download(), bdk.download(), bdv.download()};
}

TEST_F(Attention, ForwardMatchesReference) {
  DYT_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::BF16})
    for (const Case& c : cases()) {
      const Inputs in(c, dt);
      Vec out, lse;
      run_forward(c, dt, in, out, lse);
      const FwdRef r = reference_forward(c, in.q, in.k, in.v);
      const double e = eta(c, r.sbar);
      expect_output(dt, out, r.out, r.pv_abs, r.pv_abs, e, label("out", dt, c));
      // lse is F32 in both modes, computed in fp32 from the same inputs.
      expect_close(to_d(lse), r.lse, 1e-5, label("lse", dt, c));
    }
}

TEST_F(Attention, BackwardMatchesReference) {
  DYT_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::BF16})
    for (const Case& c : cases()) {
      const Inputs in(c, dt);
      // The backward's own inputs: the exact forward, stored as the forward
      // stores it (out in the activation dtype, lse in F32).
      const FwdRef f = reference_forward(c, in.q, in.k, in.v);
      const Vec out = round_to(dt, to_f(f.out)), lse = to_f(f.lse);
      const Grads g = run_backward(c, dt, in, out, lse, /*own_workspace=*/c.T % 2 == 1);
      const BwdRef r = reference_backward(c, in.q, in.k, in.v, out, lse, in.dout);
      const double e = eta(c, r.sbar);
      expect_output(dt, g.dq, r.dq, r.dq_ds, r.dq_bar, e, label("dq", dt, c));
      expect_output(dt, g.dk, r.dk, r.dk_ds, r.dk_bar, e, label("dk", dt, c));
      expect_output(dt, g.dv, r.dv, r.dv_abs, r.dv_abs, e, label("dv", dt, c));
    }
}

// `out` against the CPU op as it is today (fp32, probabilities materialised).
TEST_F(Attention, ForwardF32MatchesCpuOp) {
  DYT_REQUIRE_CUDA();
  for (const Case& c : cases()) {
    const Inputs in(c, DType::F32);
    Vec out, lse;
    run_forward(c, DType::F32, in, out, lse);
    const int64_t rows = c.B * c.T;
    Vec cpu_out(in.q.size()), probs(size_t(c.B * c.Hq * c.T * c.T));
    Tensor to = cpu_f32(cpu_out.data(), {rows, c.Hq * c.hd});
    Tensor tp = cpu_f32(probs.data(), {c.B, c.Hq, c.T, c.T});
    cpu::attention_forward(cpu_f32(const_cast<float*>(in.q.data()), {rows, c.Hq * c.hd}),
                           cpu_f32(const_cast<float*>(in.k.data()), {rows, c.Hkv * c.hd}),
                           cpu_f32(const_cast<float*>(in.v.data()), {rows, c.Hkv * c.hd}), c.B,
                           c.T, c.Hq, c.Hkv, to, tp);
    expect_close(out, cpu_out, 1e-5, label("out vs cpu::attention_forward", DType::F32, c));
  }
}

// The same inputs give the same bits (no float atomics, fixed orders).
TEST_F(Attention, BitwiseRepeatable) {
  DYT_REQUIRE_CUDA();
  const Case c = {2, 33, 4, 2, 32};
  for (DType dt : {DType::F32, DType::BF16}) {
    const Inputs in(c, dt);
    Vec out1, lse1, out2, lse2;
    run_forward(c, dt, in, out1, lse1);
    run_forward(c, dt, in, out2, lse2);
    const Grads g1 = run_backward(c, dt, in, out1, lse1, false);
    const Grads g2 = run_backward(c, dt, in, out1, lse1, true);
    auto same = [](const Vec& a, const Vec& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
    };
    EXPECT_TRUE(same(out1, out2) && same(lse1, lse2)) << label("forward", dt, c);
    EXPECT_TRUE(same(g1.dq, g2.dq) && same(g1.dk, g2.dk) && same(g1.dv, g2.dv))
        << label("backward", dt, c);
  }
}

// Bad arguments: one std::invalid_argument naming the op and the argument,
// before any device work (so this runs without a GPU too).
TEST(AttentionArgs, RejectsBadArguments) {
  alignas(16) static float fake[64];
  auto t = [](DType dt, std::initializer_list<int64_t> dims, size_t off = 0) {
    return Tensor(reinterpret_cast<char*>(fake) + off, dt, Device::CUDA, dims);
  };
  const AttentionShape s{1, 2, 2, 1};  // B=1, T=2, Hq=2, Hkv=1, hd=32
  auto fwd_msg = [&](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                     const Tensor& l, const AttentionShape& sh) -> std::string {
    try {
      cuda::attention_forward(q, k, v, sh, o, l, nullptr);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(no error)";
  };
  const DType F = DType::F32, H = DType::BF16;
  auto expect_rejected = [](const std::string& msg, const char* part) {
    EXPECT_TRUE(msg.find("attention_forward: ") == 0 && msg.find(part) != std::string::npos)
        << "expected \"attention_forward: ..." << part << "...\", got: " << msg;
  };
  expect_rejected(fwd_msg(t(F, {2, 48}), t(F, {2, 24}), t(F, {2, 24}), t(F, {2, 48}),
                          t(F, {1, 2, 2}), s),
                  "head size 24");
  expect_rejected(fwd_msg(t(F, {2, 64}), t(F, {2, 32}), t(F, {2, 32}), t(F, {2, 64}),
                          t(F, {1, 2, 2}), {1, 2, 2, 3}),
                  "not a multiple of kv_heads");
  expect_rejected(fwd_msg(t(F, {2, 64}), t(H, {2, 32}), t(F, {2, 32}), t(F, {2, 64}),
                          t(F, {1, 2, 2}), s),
                  "k is BF16");
  expect_rejected(fwd_msg(t(F, {2, 64}), t(F, {2, 32}), t(F, {2, 32}), t(F, {2, 64}),
                          t(F, {1, 2, 3}), s),
                  "lse has shape");
  expect_rejected(fwd_msg(t(F, {2, 64}), t(F, {2, 32}), t(F, {2, 32}), t(F, {2, 64}, 4),
                          t(F, {1, 2, 2}), s),
                  "out must be 16-byte aligned");
  expect_rejected(fwd_msg(t(F, {2, 64}), t(F, {2, 32}), t(F, {2, 32}), t(F, {2, 64}),
                          t(F, {1, 2, 2}), {1, 0, 2, 1}),
                  "must be positive");
  try {
    const Tensor q = t(F, {2, 64}), kv = t(F, {2, 32});
    cuda::attention_backward(q, kv, kv, q, t(F, {1, 2, 2}), q, s, q, kv, t(F, {2, 16}), nullptr);
    ADD_FAILURE() << "attention_backward accepted dv of the wrong width";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("attention_backward: dv"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dyt::cuda_test
