// Reductions over rows give the same bits on 1, 2 and 3 threads; bad shapes
// and dtypes throw std::invalid_argument naming the op.
#include <cstring>

#include "tests/kernels/test_util.h"

namespace dyt::test {
namespace {

// Enough rows for many 32-row chunks, spread unevenly over 2 and 3 threads.
constexpr int64_t N = 1000, D = 67, V = 50;

TEST(Determinism, RowReductionsAreThreadCountIndependent) {
  Vec x = random_vec(N * D, 1, -3, 3), dy = random_vec(N * D, 2), g = random_vec(D, 3),
      alpha = {0.7f};
  const std::vector<int32_t> tok = random_ids(N, V, 4);

  // buffers: dx, dalpha, dgamma, dbeta
  const std::vector<Vec> dyt_init = {
      random_vec(N * D, 5), {0.1f}, random_vec(D, 6), random_vec(D, 7)};
  for (auto bw : {cpu::dyt_backward, cpu::dyisru_backward})
    expect_same_bits(
        dyt_init,
        [&](std::vector<Vec>& b) {
          Tensor dx = view(b[0], {N, D}), da = view(b[1], {1}), dg = view(b[2], {D}),
                 db = view(b[3], {D});
          bw(view(x, {N, D}), view(alpha, {1}), view(g, {D}), view(dy, {N, D}), dx, da, dg, &db);
        },
        "dyt/dyisru_backward");

  expect_same_bits(
      {random_vec(N * D, 8), random_vec(D, 9), Vec(N)},
      [&](std::vector<Vec>& b) {
        Vec y(N * D);
        Tensor ty = view(y, {N, D}), tr = view(b[2], {N}), dx = view(b[0], {N, D}),
               dg = view(b[1], {D});
        cpu::rmsnorm_forward(view(x, {N, D}), view(g, {D}), 1e-5f, ty, tr);
        cpu::rmsnorm_backward(view(x, {N, D}), view(g, {D}), tr, view(dy, {N, D}), dx, dg);
      },
      "rmsnorm_backward");

  expect_same_bits(
      {random_vec(V * D, 10)},
      [&](std::vector<Vec>& b) {
        Tensor dt = view(b[0], {V, D});
        cpu::embedding_backward(ids(tok, {N}), view(dy, {N, D}), dt);
      },
      "embedding_backward");

  expect_same_bits(
      {Vec(N * D), {0.5f}},
      [&](std::vector<Vec>& b) {
        Tensor dx = view(b[0], {N, D});
        cpu::scale_backward(view(x, {N, D}), view(dy, {N, D}), 1.3f, dx, b[1].data());
      },
      "scale_backward");

  // The loss sum as two floats' worth of bits (a double), plus dlogits.
  const std::vector<int32_t> tgt = random_ids(N, D, 11);
  expect_same_bits(
      {Vec(N * D), Vec(4)},
      [&](std::vector<Vec>& b) {
        Tensor dl = view(b[0], {N, D});
        const double l1 = cpu::cross_entropy_forward(view(x, {N, D}), ids(tgt, {N}));
        const double l2 = cpu::cross_entropy_backward(view(x, {N, D}), ids(tgt, {N}), 0.01f, dl);
        std::memcpy(b[1].data(), &l1, 8);
        std::memcpy(b[1].data() + 2, &l2, 8);
      },
      "cross_entropy");
}

TEST(Validation, MismatchesThrowNamingTheOp) {
  Vec a(64), b(64), c(64);
  std::vector<int32_t> t(8);
  Tensor y = view(c, {4, 4});
  // linear: inner dims disagree; weight of the wrong rank; integer input.
  expect_invalid(
      [&] {
        cpu::linear_forward(view(a, {4, 5}), view(b, {4, 4}), y);
      },
      "linear_forward");
  expect_invalid([&] { cpu::linear_forward(view(a, {4, 4}), view(b, {16}), y); }, "linear_forward");
  expect_invalid(
      [&] {
        cpu::linear_forward(ids(t, {2, 4}), view(b, {4, 4}), y);
      },
      "linear_forward");
  Tensor dw = view(b, {4, 3});
  expect_invalid(
      [&] {
        cpu::linear_backward_weight(view(a, {4, 4}), view(c, {4, 4}), dw);
      },
      "linear_backward_weight");
  // a CUDA tensor on the CPU path.
  Tensor gpu(a.data(), kernels::DType::F32, kernels::Device::CUDA, {4, 4});
  expect_invalid([&] { cpu::add_inplace(gpu, view(b, {4, 4})); }, "add_inplace");
  expect_invalid([&] { cpu::add_inplace(y, view(b, {4, 3})); }, "add_inplace");
  // DyT: α with two elements, γ of the wrong width.
  expect_invalid(
      [&] {
        cpu::dyt_forward(view(a, {4, 4}), view(b, {2}), view(c, {4}), nullptr, y);
      },
      "dyt_forward");
  expect_invalid(
      [&] {
        cpu::dyisru_forward(view(a, {4, 4}), view(b, {1}), view(c, {5}), nullptr, y);
      },
      "dyisru_forward");
  Tensor rstd = view(b, {3});
  expect_invalid(
      [&] {
        cpu::rmsnorm_forward(view(a, {4, 4}), view(c, {4}), 1e-5f, y, rstd);
      },
      "rmsnorm_forward");
  // RoPE: odd head dim; rows not a whole number of sequences.
  Tensor r = view(a, {4, 6});
  expect_invalid([&] { cpu::rope_forward(r, 4, 2, 1e4); }, "rope_forward");
  expect_invalid([&] { cpu::rope_backward(r, 3, 1, 1e4); }, "rope_backward");
  // Attention: Hq not a multiple of Hkv; lse too small.
  Vec q(2 * 3 * 12), k(2 * 3 * 8), v(2 * 3 * 8), o(2 * 3 * 12), l(2 * 3 * 3);
  Tensor to = view(o, {6, 12}), tl = view(l, {2, 3, 3});
  expect_invalid(
      [&] {
        cpu::attention_forward(view(q, {6, 12}), view(k, {6, 8}), view(v, {6, 8}), 2, 3, 3, 2, to,
                               tl);
      },
      "attention_forward");
  // 4 heads over 2 KV heads of size 3 are valid: only the lse buffer
  // (2·3·3 for 2·4·3 needed) is wrong, and the error must say so, in the
  // forward and in the backward.
  Vec k6(2 * 3 * 6), v6(2 * 3 * 6), dq(2 * 3 * 12), dk(2 * 3 * 6), dv(2 * 3 * 6);
  Tensor tdq = view(dq, {6, 12}), tdk = view(dk, {6, 6}), tdv = view(dv, {6, 6});
  for (const char* op : {"attention_forward", "attention_backward"}) {
    try {
      if (std::string(op) == "attention_forward")
        cpu::attention_forward(view(q, {6, 12}), view(k6, {6, 6}), view(v6, {6, 6}), 2, 3, 4, 2,
                               to, tl);
      else
        cpu::attention_backward(view(q, {6, 12}), view(k6, {6, 6}), view(v6, {6, 6}), to, tl,
                                view(o, {6, 12}), 2, 3, 4, 2, tdq, tdk, tdv);
      ADD_FAILURE() << op << " accepted an lse buffer too small";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("lse"), std::string::npos) << e.what();
    }
  }
  expect_invalid(
      [&] {
        cpu::swiglu_forward(view(a, {4, 4}), view(b, {4, 5}), y);
      },
      "swiglu_forward");
  float ds = 0;
  expect_invalid(
      [&] {
        cpu::scale_backward(view(a, {4, 4}), view(b, {4, 4}), 1.0f, y, nullptr);
      },
      "scale_backward");
  expect_invalid(
      [&] {
        cpu::scale_backward(view(a, {4, 4}), view(b, {5, 4}), 1.0f, y, &ds);
      },
      "scale_backward");
}

}  // namespace
}  // namespace dyt::test
