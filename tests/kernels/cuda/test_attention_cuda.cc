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

#ifdef DYT_TEST_CPU_ATTENTION
#include "kernels/cpu_ops.h"
#endif
#include "kernels/cuda/attention.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dyt::cuda_test {
namespace {

using kernels::AttentionShape;

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
  v.push_back({1, 8192, 4, 2, 128});  // the longest sequence the contract asks for (rows sampled)
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

// Score of query (b, h, t) against key j, and its magnitude scale·Σ|q k|.
double score(const Layout& L, const Vec& q, const Vec& k, int64_t b, int64_t h, int64_t t,
             int64_t j, double& sbar) {
  double dot = 0, mag = 0;
  for (int64_t x = 0; x < L.c.hd; ++x) {
    const double p = double(q[L.qi(b, t, h, x)]) * k[L.ki(b, j, h, x)];
    dot += p;
    mag += std::fabs(p);
  }
  const double scale = scale_of(L.c.hd);
  sbar = std::max(sbar, scale * mag);
  return scale * dot;
}

// Reference values of some rows, each element with M (the magnitude of its
// terms that carry a bf16 rounding) and A (that of its fp32 terms): the
// inputs of the bf16 bound below. Index: the output's own.
struct Part {
  std::vector<int64_t> at;
  std::vector<double> val, M, A;
  void add(int64_t i, double v, double m, double a) {
    at.push_back(i), val.push_back(v), M.push_back(m), A.push_back(a);
  }
};
struct Ref {
  Part out, lse, dq, dk, dv;
  double sbar = 0;  // max over (i, j) of scale·Σ_c |q_ic k_jc|
};

// Forward of query row (b, h, t): out (M = A = Σ_j P_ij |v_jc|) and lse.
void forward_row(const Case& c, const Vec& q, const Vec& k, const Vec& v, int64_t b, int64_t h,
                 int64_t t, Ref& r) {
  const Layout L{c};
  std::vector<double> s(t + 1);
  for (int64_t j = 0; j <= t; ++j) s[j] = score(L, q, k, b, h, t, j, r.sbar);
  double m = s[0];
  for (double x : s) m = std::max(m, x);
  double l = 0;
  for (double x : s) l += std::exp(x - m);
  r.lse.add(L.li(b, h, t), m + std::log(l), 0, 0);
  for (int64_t x = 0; x < c.hd; ++x) {
    double o = 0, o_abs = 0;
    for (int64_t j = 0; j <= t; ++j) {
      const double p = std::exp(s[j] - m) / l, vv = v[L.ki(b, j, h, x)];
      o += p * vv;
      o_abs += p * std::fabs(vv);
    }
    r.out.add(L.qi(b, t, h, x), o, o_abs, o_abs);
  }
}

// The backward's pieces for query (b, h, i) and key j (given the kernel's
// inputs out, lse, dout): P_ij, dS_ij = P(dP − D) and dS̄_ij = P·(Σ|dO||v| +
// Σ|dO||out|), the size of dS's fp32 terms.
struct Pair {
  double p, ds, ds_bar;
};
Pair pair_terms(const Case& c, const Vec& q, const Vec& k, const Vec& v, const Vec& out,
                const Vec& lse, const Vec& dout, int64_t b, int64_t h, int64_t i, int64_t j,
                double& sbar) {
  const Layout L{c};
  const double p = std::exp(score(L, q, k, b, h, i, j, sbar) - double(lse[L.li(b, h, i)]));
  double dp = 0, dp_abs = 0, D = 0, D_abs = 0;
  for (int64_t x = 0; x < c.hd; ++x) {
    const double g = dout[L.qi(b, i, h, x)];
    dp += g * v[L.ki(b, j, h, x)];
    dp_abs += std::fabs(g * v[L.ki(b, j, h, x)]);
    D += g * out[L.qi(b, i, h, x)];
    D_abs += std::fabs(g * out[L.qi(b, i, h, x)]);
  }
  return {p, p * (dp - D), p * (dp_abs + D_abs)};
}

// dq of query row (b, h, i): scale·Σ_{j≤i} dS_ij k_j.
void dq_row(const Case& c, const Vec& q, const Vec& k, const Vec& v, const Vec& out,
            const Vec& lse, const Vec& dout, int64_t b, int64_t h, int64_t i, Ref& r) {
  const Layout L{c};
  const double scale = scale_of(c.hd);
  std::vector<double> acc(c.hd, 0.0), m(c.hd, 0.0), a(c.hd, 0.0);
  for (int64_t j = 0; j <= i; ++j) {
    const Pair pr = pair_terms(c, q, k, v, out, lse, dout, b, h, i, j, r.sbar);
    for (int64_t x = 0; x < c.hd; ++x) {
      const double kk = k[L.ki(b, j, h, x)];
      acc[x] += scale * pr.ds * kk;
      m[x] += scale * std::fabs(pr.ds * kk);
      a[x] += scale * pr.ds_bar * std::fabs(kk);
    }
  }
  for (int64_t x = 0; x < c.hd; ++x) r.dq.add(L.qi(b, i, h, x), acc[x], m[x], a[x]);
}

// dk, dv of key row (b, KV head g, j): sums over the group's query heads and
// the queries i ≥ j of scale·dS_ij q_i and P_ij dO_i.
void dkv_row(const Case& c, const Vec& q, const Vec& k, const Vec& v, const Vec& out,
             const Vec& lse, const Vec& dout, int64_t b, int64_t g, int64_t j, Ref& r) {
  const Layout L{c};
  const double scale = scale_of(c.hd);
  std::vector<double> dk(c.hd, 0.0), mk(c.hd, 0.0), ak(c.hd, 0.0), dv(c.hd, 0.0), mv(c.hd, 0.0);
  for (int64_t h = g * L.group(); h < (g + 1) * L.group(); ++h)
    for (int64_t i = j; i < c.T; ++i) {
      const Pair pr = pair_terms(c, q, k, v, out, lse, dout, b, h, i, j, r.sbar);
      for (int64_t x = 0; x < c.hd; ++x) {
        const double qq = q[L.qi(b, i, h, x)], g_ = dout[L.qi(b, i, h, x)];
        dk[x] += scale * pr.ds * qq;
        mk[x] += scale * std::fabs(pr.ds * qq);
        ak[x] += scale * pr.ds_bar * std::fabs(qq);
        dv[x] += pr.p * g_;
        mv[x] += pr.p * std::fabs(g_);
      }
    }
  const int64_t h0 = g * L.group();  // L.ki takes a query head of the group
  for (int64_t x = 0; x < c.hd; ++x) {
    r.dk.add(L.ki(b, j, h0, x), dk[x], mk[x], ak[x]);
    r.dv.add(L.ki(b, j, h0, x), dv[x], mv[x], mv[x]);
  }
}

// Rows of every kind: all of them (`every`), or a sample for long sequences
// (the first and last 16 of each head and batch, and 16 drawn at random).
std::vector<int64_t> rows_to_check(const Case& c, bool every) {
  std::vector<int64_t> t;
  if (every || c.T <= 48) {
    for (int64_t i = 0; i < c.T; ++i) t.push_back(i);
    return t;
  }
  for (int64_t i = 0; i < 16; ++i) t.push_back(i), t.push_back(c.T - 1 - i);
  std::uniform_int_distribution<int64_t> pick(16, c.T - 17);
  for (int i = 0; i < 16; ++i) t.push_back(pick(rng()));
  return t;
}

Ref reference_forward(const Case& c, const Vec& q, const Vec& k, const Vec& v,
                      const std::vector<int64_t>& rows) {
  Ref r;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t t : rows) forward_row(c, q, k, v, b, h, t, r);
  return r;
}
Ref reference_backward(const Case& c, const Vec& q, const Vec& k, const Vec& v, const Vec& out,
                       const Vec& lse, const Vec& dout, const std::vector<int64_t>& rows) {
  Ref r;
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i : rows) dq_row(c, q, k, v, out, lse, dout, b, h, i, r);
    for (int64_t g = 0; g < c.Hkv; ++g)
      for (int64_t j : rows) dkv_row(c, q, k, v, out, lse, dout, b, g, j, r);
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

// The sampled elements of `actual` against the reference part: fp32 within
// 1e-5 relative, bf16 within the bound above; and every element of `actual`
// finite (outputs are NaN-poisoned before the call, so this catches an
// element left unwritten anywhere, sampled or not).
void expect_output(DType dt, const Vec& actual, const Part& ref, double eta,
                   const std::string& what) {
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_TRUE(std::isfinite(actual[i])) << what << ": element " << i << " of " << actual.size()
                                          << " is " << actual[i] << " (unwritten?)";
  Vec got(ref.at.size());
  for (size_t i = 0; i < got.size(); ++i) got[i] = actual[ref.at[i]];
  if (rms_of(ref.val) == 0) {
    // All exact zeros (T = 1: dS = P·(dP − D) with P = 1 and out = v):
    // what is left is fp32 rounding of dP − D, at most η·A.
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_LE(std::fabs(double(got[i])), eta * ref.A[i]) << what << " at " << ref.at[i];
    return;
  }
  if (dt == DType::BF16) {
    const Vec rv(ref.val.begin(), ref.val.end());
    const std::vector<double> e = bound_terms(ref.M, ref.A, eta);
    // How much of the bound is used (docs/cuda_kernels.md quotes these).
    std::cout << "[ bf16     ] " << what << ": worst element at "
              << bf16_bound_ratio(got, rv, e).worst_ratio << " of the bound" << std::endl;
    expect_bf16_within(got, rv, e, what);
  } else
    expect_close(to_d(got), ref.val, 1e-5, what);
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

// Every row up to T = 300; beyond, a sample (rows_to_check).
bool check_every_row(const Case& c) { return c.T <= 300; }

TEST(Attention, ForwardMatchesReference) {
  reseed("Attention.ForwardMatchesReference");  // the same inputs alone or in the full run
  DYT_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::BF16})
    for (const Case& c : cases()) {
      const Inputs in(c, dt);
      Vec out, lse;
      run_forward(c, dt, in, out, lse);
      const Ref r = reference_forward(c, in.q, in.k, in.v, rows_to_check(c, check_every_row(c)));
      expect_output(dt, out, r.out, eta(c, r.sbar), label("out", dt, c));
      // lse is F32 in both modes, computed in fp32 from the same inputs.
      expect_output(DType::F32, lse, r.lse, 0, label("lse", dt, c));
    }
}

TEST(Attention, BackwardMatchesReference) {
  reseed("Attention.BackwardMatchesReference");  // the same inputs alone or in the full run
  DYT_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::BF16})
    for (const Case& c : cases()) {
      const Inputs in(c, dt);
      // The backward's inputs out and lse come from the forward kernel
      // (checked above); the reference takes the same ones.
      Vec out, lse;
      run_forward(c, dt, in, out, lse);
      const Grads g = run_backward(c, dt, in, out, lse, /*own_workspace=*/c.T % 2 == 1);
      const Ref r = reference_backward(c, in.q, in.k, in.v, out, lse, in.dout,
                                       rows_to_check(c, check_every_row(c)));
      const double e = eta(c, r.sbar);
      expect_output(dt, g.dq, r.dq, e, label("dq", dt, c));
      expect_output(dt, g.dk, r.dk, e, label("dk", dt, c));
      expect_output(dt, g.dv, r.dv, e, label("dv", dt, c));
    }
}

#ifdef DYT_TEST_CPU_ATTENTION  // the standalone GPU build has no CPU attention (no BLAS)
// `out` against the CPU op as it is today (fp32, probabilities materialised).
// The CPU op (the CPU backend's attention, same lse contract): out, lse and
// the backward's dq, dk, dv in F32.
TEST(Attention, F32MatchesCpuOp) {
  using kernels::cpu_f32;
  reseed("Attention.F32MatchesCpuOp");  // the same inputs alone or in the full run
  DYT_REQUIRE_CUDA();
  for (const Case& c : cases()) {
    if (c.B * c.Hq * c.T * c.T > (int64_t{1} << 26)) continue;  // keep the CPU's share small
    const Inputs in(c, DType::F32);
    Vec out, lse;
    run_forward(c, DType::F32, in, out, lse);
    const Grads g = run_backward(c, DType::F32, in, out, lse, false);
    const int64_t rows = c.B * c.T;
    const int64_t qw = c.Hq * c.hd, kw = c.Hkv * c.hd;
    auto view = [](const Vec& v, int64_t r, int64_t w) {
      return cpu_f32(const_cast<float*>(v.data()), {r, w});
    };
    Vec cpu_out(in.q.size()), cpu_lse(size_t(c.B * c.Hq * c.T));
    Tensor to = view(cpu_out, rows, qw), tl = cpu_f32(cpu_lse.data(), {c.B, c.Hq, c.T});
    cpu::attention_forward(view(in.q, rows, qw), view(in.k, rows, kw), view(in.v, rows, kw), c.B,
                           c.T, c.Hq, c.Hkv, to, tl);
    expect_close(out, cpu_out, 1e-5, label("out vs cpu::attention_forward", DType::F32, c));
    expect_close(lse, cpu_lse, 1e-5, label("lse vs cpu::attention_forward", DType::F32, c));
    Vec dq(in.q.size()), dk(in.k.size()), dv(in.k.size());
    Tensor tdq = view(dq, rows, qw), tdk = view(dk, rows, kw), tdv = view(dv, rows, kw);
    cpu::attention_backward(view(in.q, rows, qw), view(in.k, rows, kw), view(in.v, rows, kw), to,
                            tl, view(in.dout, rows, qw), c.B, c.T, c.Hq, c.Hkv, tdq, tdk, tdv);
    // At T = 1 dq and dk are exactly zero (one key: p = 1, dP − D = 0); both
    // sides hold only their rounding there, which the double reference checks.
    if (c.T > 1) {
      expect_close(g.dq, dq, 1e-5, label("dq vs cpu::attention_backward", DType::F32, c));
      expect_close(g.dk, dk, 1e-5, label("dk vs cpu::attention_backward", DType::F32, c));
    }
    expect_close(g.dv, dv, 1e-5, label("dv vs cpu::attention_backward", DType::F32, c));
  }
}
#endif

// The same inputs give the same bits (no float atomics, fixed orders).
TEST(Attention, BitwiseRepeatable) {
  reseed("Attention.BitwiseRepeatable");  // the same inputs alone or in the full run
  DYT_REQUIRE_CUDA();
#ifdef DYT_CUDA_EMU
  const Case c = {2, 33, 4, 2, 32};
#else
  const Case c = {2, 1000, 8, 2, 128};  // many blocks in flight on a GPU
#endif
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
