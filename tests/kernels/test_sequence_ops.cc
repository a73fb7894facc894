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

struct AttnShape {
  int64_t hq, hkv;
};
void PrintTo(const AttnShape& s, std::ostream* os) { *os << "Hq=" << s.hq << " Hkv=" << s.hkv; }

// out [B·T, Hq·HD]; probs [B, Hq, T, T] when asked.
DVec attn_ref(const DVec& q, const DVec& k, const DVec& v, AttnShape s, DVec* probs = nullptr) {
  const int64_t qs = s.hq * HD, ks = s.hkv * HD, group = s.hq / s.hkv;
  DVec out(B * T * qs, 0.0);
  for (int64_t b = 0; b < B; ++b)
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
        if (probs) std::copy(p.begin(), p.end(), probs->begin() + ((b * s.hq + h) * T + i) * T);
      }
    }
  return out;
}

class Attention : public ::testing::TestWithParam<AttnShape> {};

TEST_P(Attention, ForwardMatchesDouble) {
  const AttnShape s = GetParam();
  Vec q = random_vec(B * T * s.hq * HD, 1, -2, 2), k = random_vec(B * T * s.hkv * HD, 2, -2, 2),
      v = random_vec(B * T * s.hkv * HD, 3);
  Vec out = nan_vec(q.size()), probs = nan_vec(B * s.hq * T * T);
  Tensor to = view(out, {B * T, s.hq * HD}), tp = view(probs, {B, s.hq, T, T});
  cpu::attention_forward(view(q, {B * T, s.hq * HD}), view(k, {B * T, s.hkv * HD}),
                         view(v, {B * T, s.hkv * HD}), B, T, s.hq, s.hkv, to, tp);
  DVec pref(probs.size());
  const DVec oref = attn_ref(to_d(q), to_d(k), to_d(v), s, &pref);
  expect_close(out, oref, kFwdTol, "out");
  expect_close(probs, pref, kFwdTol, "probs");
  for (int64_t bh = 0; bh < B * s.hq; ++bh)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = i + 1; j < T; ++j) ASSERT_EQ(probs[(bh * T + i) * T + j], 0.0f);
}

TEST_P(Attention, BackwardMatchesFiniteDifferences) {
  const AttnShape s = GetParam();
  Vec q = random_vec(B * T * s.hq * HD, 4, -2, 2), k = random_vec(B * T * s.hkv * HD, 5, -2, 2),
      v = random_vec(B * T * s.hkv * HD, 6), r = random_vec(q.size(), 7);
  const DVec qd = to_d(q), kd = to_d(k), vd = to_d(v), rd = to_d(r);
  const DVec fq = fd_grad([&](const DVec& x) { return dot(rd, attn_ref(x, kd, vd, s)); }, qd);
  const DVec fk = fd_grad([&](const DVec& x) { return dot(rd, attn_ref(qd, x, vd, s)); }, kd);
  const DVec fv = fd_grad([&](const DVec& x) { return dot(rd, attn_ref(qd, kd, x, s)); }, vd);

  const Tensor tq = view(q, {B * T, s.hq * HD}), tk = view(k, {B * T, s.hkv * HD}),
               tv = view(v, {B * T, s.hkv * HD});
  Vec out(q.size()), probs(B * s.hq * T * T);
  Tensor to = view(out, {B * T, s.hq * HD}), tp = view(probs, {B, s.hq, T, T});
  cpu::attention_forward(tq, tk, tv, B, T, s.hq, s.hkv, to, tp);
  Vec dq = nan_vec(q.size()), dk = nan_vec(k.size()), dv = nan_vec(v.size());  // written (=)
  Tensor tdq = view(dq, {B * T, s.hq * HD}), tdk = view(dk, {B * T, s.hkv * HD}),
         tdv = view(dv, {B * T, s.hkv * HD});
  cpu::attention_backward(tq, tk, tv, tp, view(r, {B * T, s.hq * HD}), B, T, s.hq, s.hkv, tdq, tdk,
                          tdv);
  expect_close(dq, fq, kBwdTol, "dq");
  expect_close(dk, fk, kBwdTol, "dk");
  expect_close(dv, fv, kBwdTol, "dv");
}

INSTANTIATE_TEST_SUITE_P(Heads, Attention,
                         ::testing::Values(AttnShape{6, 2}, AttnShape{3, 3}, AttnShape{4, 1}),
                         [](const auto& info) {
                           return "Hq" + std::to_string(info.param.hq) + "_Hkv" +
                                  std::to_string(info.param.hkv);
                         });

}  // namespace
}  // namespace dyt::test
