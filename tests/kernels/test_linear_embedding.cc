// Linear layer, token embedding, embedding scale and residual add.
#include "tests/kernels/test_util.h"

#include <climits>

#include "kernels/op_params.h"

namespace dyt::test {
namespace {

constexpr int64_t N = 10, IN = 13, OUT = 7;  // N = batch 2 × seq 5

DVec linear_ref(const DVec& x, const DVec& w, int64_t n, int64_t in, int64_t out) {
  DVec y(n * out, 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) y[r * out + o] += x[r * in + i] * w[o * in + i];
  return y;
}

TEST(Linear, ForwardMatchesDouble) {
  Vec x = random_vec(N * IN, 1), w = random_vec(OUT * IN, 2), y = nan_vec(N * OUT);
  Tensor ty = view(y, {N, OUT});
  cpu::linear_forward(view(x, {N, IN}), view(w, {OUT, IN}), ty);
  expect_close(y, linear_ref(to_d(x), to_d(w), N, IN, OUT), kFwdTol, "y");
}

TEST(Linear, AcceptsRank3Activations) {
  Vec x = random_vec(N * IN, 1), w = random_vec(OUT * IN, 2), y = nan_vec(N * OUT);
  Tensor ty = view(y, {2, 5, OUT});
  cpu::linear_forward(view(x, {2, 5, IN}), view(w, {OUT, IN}), ty);
  expect_close(y, linear_ref(to_d(x), to_d(w), N, IN, OUT), kFwdTol, "y");
}

TEST(Linear, BackwardMatchesFiniteDifferences) {
  const Vec x = random_vec(N * IN, 3), w = random_vec(OUT * IN, 4), r = random_vec(N * OUT, 5);
  const DVec xd = to_d(x), wd = to_d(w), rd = to_d(r);
  const DVec gx =
      fd_grad([&](const DVec& v) { return dot(rd, linear_ref(v, wd, N, IN, OUT)); }, xd);
  const DVec gw =
      fd_grad([&](const DVec& v) { return dot(rd, linear_ref(xd, v, N, IN, OUT)); }, wd);
  Vec dy = r;
  const Tensor tdy = view(dy, {N, OUT}), tw = view(w, {OUT, IN});

  Vec dx = nan_vec(N * IN);  // accumulate=false must overwrite, even NaN
  Tensor tdx = view(dx, {N, IN});
  cpu::linear_backward_input(tdy, tw, tdx, false);
  expect_close(dx, gx, kBwdTol, "dx (=)");

  const Vec dx0 = random_vec(N * IN, 6);
  dx = dx0;
  cpu::linear_backward_input(tdy, tw, tdx, true);
  expect_close(delta(dx, dx0), gx, kBwdTol, "dx (+=)");

  const Vec dw0 = random_vec(OUT * IN, 7);
  Vec dw = dw0;
  Tensor tdw = view(dw, {OUT, IN});
  cpu::linear_backward_weight(tdy, view(x, {N, IN}), tdw);
  expect_close(delta(dw, dw0), gw, kBwdTol, "dW (+=)");
}

constexpr int64_t V = 11, D = 13;

DVec embed_ref(const std::vector<int32_t>& tok, const DVec& table) {
  DVec out(tok.size() * D);
  for (size_t n = 0; n < tok.size(); ++n)
    for (int64_t c = 0; c < D; ++c) out[n * D + c] = table[tok[n] * D + c];
  return out;
}

TEST(Embedding, ForwardCopiesRows) {
  std::vector<int32_t> tok = random_ids(N, V, 8);
  Vec table = random_vec(V * D, 9), out = nan_vec(N * D);
  Tensor tout = view(out, {N, D});
  cpu::embedding_forward(ids(tok, {N}), view(table, {V, D}), tout);
  const DVec ref = embed_ref(tok, to_d(table));
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], ref[i]) << i;
}

TEST(Embedding, BackwardAccumulatesRepeatedTokens) {
  std::vector<int32_t> tok = {3, 0, 3, 10, 5, 3, 0, 7, 10, 3};  // repeats and both ends
  const Vec table = random_vec(V * D, 10), r = random_vec(N * D, 11);
  const DVec rd = to_d(r);
  const DVec g = fd_grad([&](const DVec& t) { return dot(rd, embed_ref(tok, t)); }, to_d(table));
  const Vec dt0 = random_vec(V * D, 12);
  Vec dt = dt0;
  Tensor tdt = view(dt, {V, D});
  cpu::embedding_backward(ids(tok, {N}), view(r, {N, D}), tdt);
  // Rows of unused tokens have zero gradient; FD confirms them too.
  expect_close(delta(dt, dt0), g, kBwdTol, "dtable (+=)");
}

TEST(Embedding, OutOfRangeTokenThrows) {
  Vec table = random_vec(V * D, 13), out(2 * D, 0.0f);
  Tensor tout = view(out, {2, D});
  // -1 is kAbsentToken (a row on another tensor-parallel rank), not an error.
  for (int32_t bad : {-2, int32_t(V), 1 << 30, INT32_MIN}) {
    std::vector<int32_t> tok = {1, bad};
    expect_invalid(
        [&] {
          cpu::embedding_forward(ids(tok, {2}), view(table, {V, D}), tout);
        },
        "embedding_forward");
    Tensor tdt = view(table, {V, D});
    expect_invalid([&] { cpu::embedding_backward(ids(tok, {2}), tout, tdt); },
                   "embedding_backward");
  }
  for (float v : out) EXPECT_EQ(v, 0.0f) << "a failed lookup must not write";
}

// Vocab-parallel: kAbsentToken looks up a zero row and adds nothing back.
TEST(Embedding, AbsentTokenIsZeroAndAddsNothing) {
  const Vec table = random_vec(V * D, 16), dout = random_vec(3 * D, 17);
  Vec out(3 * D, 1.0f), dtable(V * D, 0.5f);
  const std::vector<int32_t> tok = {2, kernels::kAbsentToken, 2};
  Tensor tout = view(out, {3, D}), tdt = view(dtable, {V, D});
  cpu::embedding_forward(ids(tok, {3}), view(table, {V, D}), tout);
  for (int64_t c = 0; c < D; ++c) {
    EXPECT_EQ(out[D + c], 0.0f);
    EXPECT_EQ(out[c], table[2 * D + c]);
  }
  cpu::embedding_backward(ids(tok, {3}), view(dout, {3, D}), tdt);
  for (int64_t r = 0; r < V; ++r)
    for (int64_t c = 0; c < D; ++c) {
      const float want = r == 2 ? (0.5f + dout[c]) + dout[2 * D + c] : 0.5f;
      EXPECT_EQ(dtable[r * D + c], want) << r << "," << c;
    }
}

TEST(Scale, ForwardAndBackward) {
  const float s = 1.7f;
  const Vec x = random_vec(N * D, 14), r = random_vec(N * D, 15);
  const DVec xd = to_d(x), rd = to_d(r);
  auto ref = [&](const DVec& v, double sc) {
    DVec y(v.size());
    for (size_t i = 0; i < v.size(); ++i) y[i] = sc * v[i];
    return y;
  };
  Vec y = nan_vec(N * D);
  Tensor ty = view(y, {N, D});
  cpu::scale_forward(view(x, {N, D}), s, ty);
  expect_close(y, ref(xd, s), kFwdTol, "y");

  const DVec gx = fd_grad([&](const DVec& v) { return dot(rd, ref(v, s)); }, xd);
  const DVec gs = fd_grad([&](const DVec& v) { return dot(rd, ref(xd, v[0])); }, DVec{s});
  Vec dx = nan_vec(N * D);
  float ds = 0.25f;
  Tensor tdx = view(dx, {N, D});
  cpu::scale_backward(view(x, {N, D}), view(r, {N, D}), s, tdx, &ds);
  expect_close(dx, gx, kBwdTol, "dx (=)");
  expect_close(DVec{double(ds) - 0.25}, gs, kBwdTol, "ds (+=)");

  // In place on the gradient (dx aliasing dy) gives the same bits.
  Vec g = r;
  float ds2 = 0.25f;
  Tensor tg = view(g, {N, D});
  cpu::scale_backward(view(x, {N, D}), tg, s, tg, &ds2);
  EXPECT_EQ(g, dx);
  EXPECT_EQ(ds2, ds);
}

TEST(AddInplace, AddsElementwise) {
  const Vec x0 = random_vec(N * D, 16), y = random_vec(N * D, 17);
  Vec x = x0;
  Tensor tx = view(x, {N, D});
  cpu::add_inplace(tx, view(y, {N, D}));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], x0[i] + y[i]) << i;
}

}  // namespace
}  // namespace dyt::test
