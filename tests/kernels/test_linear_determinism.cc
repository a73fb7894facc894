// The GEMM ops (linear forward and both backwards, attention) give the same
// bits on 1, 2 and 3 threads, for the tiny model's shapes and for odd ones;
// and the fixed output tiles behind them (kernels/cpu/tiled_sgemm.h) still
// compute the right product.
#include <array>
#include <utility>

#include "kernels/cpu/tiled_sgemm.h"
#include "tests/kernels/test_util.h"

namespace dyt::test {
namespace {

struct Shape {
  int64_t n, out, in;  // x [n, in], W [out, in]
};

// buffers: y, dx (accumulated onto random values), dW (accumulated too)
std::vector<Vec> linear_all(const Shape& s, const Vec& x, const Vec& w, const Vec& dy) {
  std::vector<Vec> b = {Vec(s.n * s.out), random_vec(s.n * s.in, 7), random_vec(s.out * s.in, 8)};
  Tensor y = view(b[0], {s.n, s.out}), dx = view(b[1], {s.n, s.in}),
         dw = view(b[2], {s.out, s.in});
  cpu::linear_forward(view(x, {s.n, s.in}), view(w, {s.out, s.in}), y);
  cpu::linear_backward_input(view(dy, {s.n, s.out}), view(w, {s.out, s.in}), dx, true);
  cpu::linear_backward_weight(view(dy, {s.n, s.out}), view(x, {s.n, s.in}), dw);
  return b;
}

void check_linear_bits(const Shape& s) {
  const Vec x = random_vec(s.n * s.in, 1), w = random_vec(s.out * s.in, 2),
            dy = random_vec(s.n * s.out, 3);
  const std::string what = "linear n=" + std::to_string(s.n) + " out=" + std::to_string(s.out) +
                           " in=" + std::to_string(s.in);
  expect_same_bits({}, [&](std::vector<Vec>& b) { b = linear_all(s, x, w, dy); }, what);
}

// The tiny model (configs/tiny.pbtxt): 16 × 128 tokens; q/o, k/v, gate/up,
// down and the LM head.
TEST(Determinism, LinearTinyModelShapesAreThreadCountIndependent) {
  for (const Shape& s : {Shape{2048, 128, 128}, Shape{2048, 64, 128}, Shape{2048, 352, 128},
                         Shape{2048, 128, 352}, Shape{2048, 4096, 128}})
    check_linear_bits(s);
}

// Odd sizes: partial tiles on every edge, a single row, a long K.
const Shape kOdd[] = {{1000, 67, 45}, {37, 300, 5}, {513, 33, 257}, {1, 1000, 3}, {7, 3, 2000}};

TEST(Determinism, LinearOddShapesAreThreadCountIndependent) {
  for (const Shape& s : kOdd) check_linear_bits(s);
}

// The tiles cover the output exactly once: the results match double loops.
TEST(TiledSgemm, OddShapesMatchDouble) {
  for (const Shape& s : kOdd) {
    const Vec x = random_vec(s.n * s.in, 1), w = random_vec(s.out * s.in, 2),
              dy = random_vec(s.n * s.out, 3);
    const std::vector<Vec> got = linear_all(s, x, w, dy);
    DVec y(s.n * s.out, 0.0), dx = to_d(random_vec(s.n * s.in, 7)),
        dw = to_d(random_vec(s.out * s.in, 8));
    for (int64_t r = 0; r < s.n; ++r)
      for (int64_t o = 0; o < s.out; ++o)
        for (int64_t i = 0; i < s.in; ++i) {
          const double xv = x[r * s.in + i], wv = w[o * s.in + i], g = dy[r * s.out + o];
          y[r * s.out + o] += xv * wv;
          dx[r * s.in + i] += g * wv;
          dw[o * s.in + i] += g * xv;
        }
    const std::string what = " n=" + std::to_string(s.n) + " out=" + std::to_string(s.out) +
                             " in=" + std::to_string(s.in);
    expect_close(to_d(got[0]), y, kFwdTol, "y" + what);
    expect_close(to_d(got[1]), dx, kFwdTol, "dx" + what);
    expect_close(to_d(got[2]), dw, kFwdTol, "dw" + what);
  }
}

// The grid depends on (M, N) alone, covers them, and splits even the tiny
// model's 128×128 weight gradients into several tiles (work for 2+ threads).
TEST(TiledSgemm, GridCoversTheOutput) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{2048, 4096}, {128, 128}, {1, 1000}, {7, 3},
                      {352, 128}, {1, 1}}) {
    const cpu::detail::TileGrid g = cpu::detail::tile_grid(m, n);
    EXPECT_GE(g.rows * g.tile_m, m) << m << "x" << n;
    EXPECT_LT((g.rows - 1) * g.tile_m, m) << m << "x" << n;
    EXPECT_GE(g.cols * g.tile_n, n) << m << "x" << n;
    EXPECT_LT((g.cols - 1) * g.tile_n, n) << m << "x" << n;
  }
  const cpu::detail::TileGrid g = cpu::detail::tile_grid(128, 128);
  EXPECT_GE(g.rows * g.cols, 4);
}

// Attention: one (batch, head) task per thread in the forward, one (batch, KV
// head) task in the backward, each BLAS call single-threaded. T = 128 is two
// 64-row blocks, T = 137 three with a partial one.
TEST(Determinism, AttentionIsThreadCountIndependent) {
  for (auto [B, T, Hq, Hkv, hd] : {std::array<int64_t, 5>{16, 128, 4, 2, 32},  // tiny model
                                   std::array<int64_t, 5>{3, 137, 6, 2, 12}}) {
    const int64_t rows = B * T;
    const Vec q = random_vec(rows * Hq * hd, 1), k = random_vec(rows * Hkv * hd, 2),
              v = random_vec(rows * Hkv * hd, 3), dout = random_vec(rows * Hq * hd, 4);
    // buffers: out, lse, dq, dk, dv
    expect_same_bits(
        {Vec(rows * Hq * hd), Vec(B * Hq * T), Vec(rows * Hq * hd), Vec(rows * Hkv * hd),
         Vec(rows * Hkv * hd)},
        [&](std::vector<Vec>& b) {
          Tensor out = view(b[0], {rows, Hq * hd}), lse = view(b[1], {B, Hq, T}),
                 dq = view(b[2], {rows, Hq * hd}), dk = view(b[3], {rows, Hkv * hd}),
                 dv = view(b[4], {rows, Hkv * hd});
          const Tensor tq = view(q, {rows, Hq * hd}), tk = view(k, {rows, Hkv * hd}),
                       tv = view(v, {rows, Hkv * hd});
          cpu::attention_forward(tq, tk, tv, B, T, Hq, Hkv, out, lse);
          cpu::attention_backward(tq, tk, tv, out, lse, view(dout, {rows, Hq * hd}), B, T, Hq,
                                  Hkv, dq, dk, dv);
        },
        "attention B=" + std::to_string(B) + " T=" + std::to_string(T));
  }
}

}  // namespace
}  // namespace dyt::test
