// SwiGLU and the cross-entropy loss.
#include "tests/kernels/test_util.h"

namespace dyt::test {
namespace {

constexpr int64_t N = 10, D = 13, V = 33;

DVec swiglu_ref(const DVec& g, const DVec& u) {
  DVec o(g.size());
  for (size_t i = 0; i < g.size(); ++i) o[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
  return o;
}

TEST(SwiGLU, ForwardMatchesDouble) {
  Vec g = random_vec(N * D, 1, -6, 6), u = random_vec(N * D, 2), o = nan_vec(N * D);
  Tensor to = view(o, {N, D});
  cpu::swiglu_forward(view(g, {N, D}), view(u, {N, D}), to);
  expect_close(o, swiglu_ref(to_d(g), to_d(u)), kFwdTol, "out");
}

TEST(SwiGLU, BackwardMatchesFiniteDifferences) {
  Vec g = random_vec(N * D, 3, -6, 6), u = random_vec(N * D, 4), r = random_vec(N * D, 5);
  const DVec gd = to_d(g), ud = to_d(u), rd = to_d(r);
  const DVec fg = fd_grad([&](const DVec& x) { return dot(rd, swiglu_ref(x, ud)); }, gd);
  const DVec fu = fd_grad([&](const DVec& x) { return dot(rd, swiglu_ref(gd, x)); }, ud);
  Vec dg = nan_vec(N * D), du = nan_vec(N * D);  // written (=)
  Tensor tdg = view(dg, {N, D}), tdu = view(du, {N, D});
  cpu::swiglu_backward(view(g, {N, D}), view(u, {N, D}), view(r, {N, D}), tdg, tdu);
  expect_close(dg, fg, kBwdTol, "dgate");
  expect_close(du, fu, kBwdTol, "dup");
}

double ce_ref(const DVec& l, const std::vector<int32_t>& t) {
  double loss = 0.0;
  for (int64_t r = 0; r < N; ++r) {
    const double* row = l.data() + r * V;
    const double m = *std::max_element(row, row + V);
    double s = 0.0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(row[j] - m);
    loss += std::log(s) + m - row[t[r]];
  }
  return loss;
}

// Logits in [-3, 3], one row shifted by +80 (exp overflows fp32 without the
// max-subtraction) and one row with a dominant target (p_t ≈ 1).
Vec ce_logits(const std::vector<int32_t>& t, uint32_t seed) {
  Vec l = random_vec(N * V, seed, -3, 3);
  for (int64_t j = 0; j < V; ++j) l[2 * V + j] += 80.0f;
  l[5 * V + t[5]] = 12.0f;
  return l;
}

TEST(CrossEntropy, ForwardMatchesDouble) {
  const std::vector<int32_t> t = random_ids(N, V, 6);
  Vec l = ce_logits(t, 7);
  const double loss = cpu::cross_entropy_forward(view(l, {N, V}), ids(t, {N}));
  expect_close(DVec{loss}, DVec{ce_ref(to_d(l), t)}, kFwdTol, "loss");
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferences) {
  const std::vector<int32_t> t = random_ids(N, V, 8);
  Vec l = ce_logits(t, 9);
  const float scale = 1.0f / N;
  const DVec fl = fd_grad([&](const DVec& x) { return scale * ce_ref(x, t); }, to_d(l));
  Vec dl = nan_vec(N * V);
  Tensor tdl = view(dl, {N, V});
  const double loss = cpu::cross_entropy_backward(view(l, {N, V}), ids(t, {N}), scale, tdl);
  expect_close(dl, fl, kBwdTol, "dlogits");
  EXPECT_EQ(loss, cpu::cross_entropy_forward(view(l, {N, V}), ids(t, {N})))
      << "backward must return the forward's loss";

  // In place (dlogits aliasing logits) gives the same bits.
  Tensor tl = view(l, {N, V});
  EXPECT_EQ(cpu::cross_entropy_backward(tl, ids(t, {N}), scale, tl), loss);
  EXPECT_EQ(l, dl);
}

TEST(CrossEntropy, OutOfRangeTargetThrows) {
  Vec l = random_vec(2 * V, 10);
  for (int32_t bad : {-1, int32_t(V)}) {
    const std::vector<int32_t> t = {0, bad};
    expect_invalid(
        [&] {
          cpu::cross_entropy_forward(view(l, {2, V}), ids(t, {2}));
        },
        "cross_entropy_forward");
    Tensor tl = view(l, {2, V});
    expect_invalid([&] { cpu::cross_entropy_backward(tl, ids(t, {2}), 1.0f, tl); },
                   "cross_entropy_backward");
  }
}

}  // namespace
}  // namespace dyt::test
