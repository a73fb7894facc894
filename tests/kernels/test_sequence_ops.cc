// RoPE and causal grouped-query attention.
#include "tests/kernels/test_util.h"

namespace dyt::test {
namespace {

constexpr int64_t B = 2, T = 5, HD = 6;

// ---- RoPE (rotate-half, θ = 10000) ------------------------------------------------

DVec rope_ref(const DVec& x, int64_t heads, double theta) {
  DVec y = x;
  const int64_t w = heads * HD, half = HD / 2;
  for (int64_t row = 0; row < B * T; ++row)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double ang = double(row % T) * std::pow(theta, -2.0 * i / HD);
        const double a = x[row * w + h * HD + i], b = x[row * w + h * HD + i + half];
        y[row * w + h * HD + i] = a * std::cos(ang) - b * std::sin(ang);
        y[row * w + h * HD + i + half] = b * std::cos(ang) + a * std::sin(ang);
      }
  return y;
}

TEST(Rope, ForwardMatchesDouble) {
  const int64_t H = 3;
  for (double theta : {10000.0, 2.0}) {  // θ = 2 makes every pair rotate visibly
    Vec x = random_vec(B * T * H * HD, 1);
    const DVec ref = rope_ref(to_d(x), H, theta);
    Tensor tx = view(x, {B * T, H * HD});
    cpu::rope_forward(tx, T, H, theta);
    expect_close(x, ref, kFwdTol, "theta " + std::to_string(theta));
  }
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  const int64_t H = 3;
  const double theta = 2.0;
  const Vec x = random_vec(B * T * H * HD, 2), r = random_vec(B * T * H * HD, 3);
  const DVec rd = to_d(r);
  const DVec fx = fd_grad([&](const DVec& v) { return dot(rd, rope_ref(v, H, theta)); }, to_d(x));
  Vec g = r;
  Tensor tg = view(g, {B * T, H * HD});
  cpu::rope_backward(tg, T, H, theta);
  expect_close(g, fx, kBwdTol, "dx");
}

// ---- Attention ----------------------------------------------------------------------
// T = 70 crosses the kernel's 64-row block boundary (a full block, then a
// partial one whose rows meet keys of the first), so dk/dv sum over blocks.

struct AttnShape {
  int64_t hq, hkv, b, t;
};
void PrintTo(const AttnShape& s, std::ostream* os) {
  *os << "Hq=" << s.hq << " Hkv=" << s.hkv << " B=" << s.b << " T=" << s.t;
}

// out [B·T, Hq·HD]; lse [B, Hq, T] (m + ln Σ exp(s − m)) when asked.
DVec attn_ref(const DVec& q, const DVec& k, const DVec& v, AttnShape s, DVec* lse = nullptr) {
  const int64_t T = s.t, qs = s.hq * HD, ks = s.hkv * HD, group = s.hq / s.hkv;
  DVec out(s.b * T * qs, 0.0);
  for (int64_t b = 0; b < s.b; ++b)
    for (int64_t h = 0; h < s.hq; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < T; ++i) {
        DVec p(T, 0.0);
        double m = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j <= i; ++j) {
          double sc = 0.0;
          for (int64_t c = 0; c < HD; ++c)
            sc += q[(b * T + i) * qs + h * HD + c] * k[(b * T + j) * ks + g * HD + c];
          p[j] = sc / std::sqrt(double(HD));
          m = std::max(m, p[j]);
        }
        for (int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - m));
        for (int64_t j = 0; j <= i; ++j) p[j] /= sum;
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t c = 0; c < HD; ++c)
            out[(b * T + i) * qs + h * HD + c] += p[j] * v[(b * T + j) * ks + g * HD + c];
        if (lse) (*lse)[(b * s.hq + h) * T + i] = m + std::log(sum);
      }
    }
  return out;
}

class Attention : public ::testing::TestWithParam<AttnShape> {};

TEST_P(Attention, ForwardMatchesDouble) {
  const AttnShape s = GetParam();
  const int64_t N = s.b * s.t;
  Vec q = random_vec(N * s.hq * HD, 1, -2, 2), k = random_vec(N * s.hkv * HD, 2, -2, 2),
      v = random_vec(N * s.hkv * HD, 3);
  Vec out = nan_vec(q.size()), lse = nan_vec(s.b * s.hq * s.t);
  Tensor to = view(out, {N, s.hq * HD}), tl = view(lse, {s.b, s.hq, s.t});
  cpu::attention_forward(view(q, {N, s.hq * HD}), view(k, {N, s.hkv * HD}),
                         view(v, {N, s.hkv * HD}), s.b, s.t, s.hq, s.hkv, to, tl);
  DVec lref(lse.size());
  const DVec oref = attn_ref(to_d(q), to_d(k), to_d(v), s, &lref);
  expect_close(out, oref, kFwdTol, "out");
  expect_close(lse, lref, kFwdTol, "lse");
}

TEST_P(Attention, BackwardMatchesFiniteDifferences) {
  const AttnShape s = GetParam();
  const int64_t N = s.b * s.t;
  Vec q = random_vec(N * s.hq * HD, 4, -2, 2), k = random_vec(N * s.hkv * HD, 5, -2, 2),
      v = random_vec(N * s.hkv * HD, 6), r = random_vec(q.size(), 7);
  const DVec qd = to_d(q), kd = to_d(k), vd = to_d(v), rd = to_d(r);
  const DVec fq = fd_grad([&](const DVec& x) { return dot(rd, attn_ref(x, kd, vd, s)); }, qd);
  const DVec fk = fd_grad([&](const DVec& x) { return dot(rd, attn_ref(qd, x, vd, s)); }, kd);
  const DVec fv = fd_grad([&](const DVec& x) { return dot(rd, attn_ref(qd, kd, x, s)); }, vd);

  const Tensor tq = view(q, {N, s.hq * HD}), tk = view(k, {N, s.hkv * HD}),
               tv = view(v, {N, s.hkv * HD});
  Vec out(q.size()), lse(s.b * s.hq * s.t);
  Tensor to = view(out, {N, s.hq * HD}), tl = view(lse, {s.b, s.hq, s.t});
  cpu::attention_forward(tq, tk, tv, s.b, s.t, s.hq, s.hkv, to, tl);
  Vec dq = nan_vec(q.size()), dk = nan_vec(k.size()), dv = nan_vec(v.size());  // written (=)
  Tensor tdq = view(dq, {N, s.hq * HD}), tdk = view(dk, {N, s.hkv * HD}),
         tdv = view(dv, {N, s.hkv * HD});
  cpu::attention_backward(tq, tk, tv, to, tl, view(r, {N, s.hq * HD}), s.b, s.t, s.hq, s.hkv, tdq,
                          tdk, tdv);
  expect_close(dq, fq, kBwdTol, "dq");
  expect_close(dk, fk, kBwdTol, "dk");
  expect_close(dv, fv, kBwdTol, "dv");
}

INSTANTIATE_TEST_SUITE_P(Heads, Attention,
                         ::testing::Values(AttnShape{6, 2, B, T}, AttnShape{3, 3, B, T},
                                           AttnShape{4, 1, B, T}, AttnShape{4, 2, 1, 70}),
                         [](const auto& info) {
                           return "Hq" + std::to_string(info.param.hq) + "_Hkv" +
                                  std::to_string(info.param.hkv) + "_T" +
                                  std::to_string(info.param.t);
                         });

// The forward's probabilities and the ones the backward recomputes from lse
// must be the same bits, or the gradients are not those of the output. With
// one head of width ≥ T, v_j = e_j and dout_i = e_i make both visible
// exactly (every product is p·1 or p·0): out[i, j] = p_ij from the forward,
// dv[j, i] = p_ij from the backward.
TEST(AttentionFlash, BackwardRecomputesTheForwardsProbabilities) {
  const int64_t t = 70, hd = 72;  // two row blocks
  const Vec q = random_vec(t * hd, 8, -2, 2), k = random_vec(t * hd, 9, -2, 2);
  Vec v(t * hd, 0.0f), dout(t * hd, 0.0f);
  for (int64_t j = 0; j < t; ++j) v[j * hd + j] = dout[j * hd + j] = 1.0f;
  Vec out = nan_vec(t * hd), lse = nan_vec(t), dq = nan_vec(t * hd), dk = nan_vec(t * hd),
      dv = nan_vec(t * hd);
  Tensor to = view(out, {t, hd}), tl = view(lse, {1, 1, t}), tdq = view(dq, {t, hd}),
         tdk = view(dk, {t, hd}), tdv = view(dv, {t, hd});
  const Tensor tq = view(q, {t, hd}), tk = view(k, {t, hd}), tv = view(v, {t, hd});
  cpu::attention_forward(tq, tk, tv, 1, t, 1, 1, to, tl);
  cpu::attention_backward(tq, tk, tv, to, tl, view(dout, {t, hd}), 1, t, 1, 1, tdq, tdk, tdv);
  int64_t differ = 0;
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < t; ++j) {
      ASSERT_EQ(j > i, out[i * hd + j] == 0.0f) << "row " << i << " key " << j;
      differ += std::memcmp(&out[i * hd + j], &dv[j * hd + i], sizeof(float)) != 0;
    }
  EXPECT_EQ(differ, 0) << "probabilities that differ between forward and backward";
}

// The softmax gradient is blind to a shift of a row's scores: Σ_j dS_ij = 0.
// An error that is the same along a row breaks it: recomputed p_ij sum to
// 1 + ε_i (lse rounded to float), and with D_i = Σ dout_i ⊙ out_i, or a D
// rounded to float, Σ_j dS_ij = O(ε_i·D_i). dq_i = Σ_j dS_ij k_j then carries
// that times the keys' common part, which swamps the true gradient when the
// keys share a large component and the values do too (dP nearly constant
// along the row, D large) — as in saturated DyT layers. Here k_j = 20 +
// U(−1, 1) and v_j = 10 + U(−1, 1); dq and dk must hold 1e-4 against a double
// loop. Measured: 0.10 of the bound for the kernel, 31× the bound with
// D = Σ dout ⊙ out.
TEST(AttentionFlash, BackwardKeepsTheSoftmaxShiftInvariance) {
  const AttnShape s{2, 1, 1, 70};
  const int64_t N = s.b * s.t, qs = s.hq * HD, ks = s.hkv * HD, group = s.hq / s.hkv;
  Vec q = random_vec(N * qs, 10), k = random_vec(N * ks, 11), v = random_vec(N * ks, 12),
      r = random_vec(N * qs, 13);
  for (float& x : k) x += 20.0f;
  for (float& x : v) x += 10.0f;
  // dq, dk, dv in double: p from the exact softmax, dS = p ⊙ (dP − Σ p dP).
  DVec gq(q.size(), 0.0), gk(k.size(), 0.0), gv(v.size(), 0.0);
  const double scale = 1.0 / std::sqrt(double(HD));
  for (int64_t h = 0; h < s.hq; ++h) {
    const int64_t g = h / group;
    for (int64_t i = 0; i < s.t; ++i) {
      DVec p(i + 1), dp(i + 1);
      double m = -INFINITY, sum = 0.0, D = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        double sc = 0.0, d = 0.0;
        for (int64_t c = 0; c < HD; ++c) {
          sc += double(q[i * qs + h * HD + c]) * k[j * ks + g * HD + c];
          d += double(r[i * qs + h * HD + c]) * v[j * ks + g * HD + c];
        }
        p[j] = sc * scale, dp[j] = d;
        m = std::max(m, p[j]);
      }
      for (int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - m));
      for (int64_t j = 0; j <= i; ++j) D += (p[j] /= sum) * dp[j];
      for (int64_t j = 0; j <= i; ++j) {
        const double ds = p[j] * (dp[j] - D) * scale;
        for (int64_t c = 0; c < HD; ++c) {
          gq[i * qs + h * HD + c] += ds * k[j * ks + g * HD + c];
          gk[j * ks + g * HD + c] += ds * q[i * qs + h * HD + c];
          gv[j * ks + g * HD + c] += p[j] * r[i * qs + h * HD + c];
        }
      }
    }
  }
  const Tensor tq = view(q, {N, qs}), tk = view(k, {N, ks}), tv = view(v, {N, ks});
  Vec out(q.size()), lse(s.b * s.hq * s.t), dq(q.size()), dk(k.size()), dv(v.size());
  Tensor to = view(out, {N, qs}), tl = view(lse, {s.b, s.hq, s.t}), tdq = view(dq, {N, qs}),
         tdk = view(dk, {N, ks}), tdv = view(dv, {N, ks});
  cpu::attention_forward(tq, tk, tv, s.b, s.t, s.hq, s.hkv, to, tl);
  cpu::attention_backward(tq, tk, tv, to, tl, view(r, {N, qs}), s.b, s.t, s.hq, s.hkv, tdq, tdk,
                          tdv);
  expect_close(dq, gq, kBwdTol, "dq");
  expect_close(dk, gk, kBwdTol, "dk");
  expect_close(dv, gv, kBwdTol, "dv");
}

}  // namespace
}  // namespace dyt::test
