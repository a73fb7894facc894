// The bf16 bound (cuda_test_util.h: 2⁻⁸·|ref| + the fp32 discrepancy) must
// reject a kernel that keeps an intermediate in bf16. Built twice against the
// emulated kernels: test_bf16_bound (the real kernels: the bound holds) and
// test_bf16_bound_fault (dyt_kernels.cu rewritten by to_host.py --mutate so
// that tanh's value is rounded to bf16 before γ·v + β in the forward, and
// its value and slope before dγ and dx in the backward, DYT_EXPECT_REJECTED): the bound
// rejects y and dx, the 1e-5 check rejects dγ, and the tolerance used before,
// 1e-2·(|ref| + rms), would have passed y and dx.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/cpu_ops.h"
#include "tests/kernels/cuda/cuda_test_util.h"

#ifndef DYT_EXPECT_REJECTED
#define DYT_EXPECT_REJECTED 0
#endif

namespace dyt::cuda_test {
namespace {

using kernels::cpu_f32;

// Worst ratio of |a − r| to 1e-2·(|r| + rms(r)): the tolerance used before.
double old_tolerance_ratio(const Vec& a, const Vec& r) {
  return close_ratio(to_d(a), to_d(r), 1e-2).worst_ratio;
}

TEST(Bf16Bound, DyTWithATanhRoundedToBf16) {
  const int64_t rows = 16, d = 1024, n = rows * d;
  const DType dt = DType::BF16;
  std::mt19937 gen(run_seed());
  const Vec x = round_to(dt, random_vec(n, gen, -3.0f, 3.0f));
  const Vec dy = round_to(dt, random_vec(n, gen));
  const Vec dx0 = round_to(dt, random_vec(n, gen));
  const Vec alpha = random_vec(1, gen, 0.3f, 1.2f), gamma = random_vec(d, gen, -1.5f, 1.5f);
  const Vec da0 = {0.25f}, dg0 = random_vec(d, gen);
  DevBuf bx(x, dt), bdy(dy, dt), bdx(dx0, dt), by(n, dt), ba(alpha, DType::F32),
      bg(gamma, DType::F32), bda(da0, DType::F32), bdg(dg0, DType::F32);
  by.poison();
  Tensor ty = by.view({rows, d}), tdx = bdx.view({rows, d}), tda = bda.view({1}),
         tdg = bdg.view({d});
  cuda::dyt_forward(bx.view({rows, d}), ba.view({1}), bg.view({d}), nullptr, ty, nullptr);
  cuda::dyt_backward(bx.view({rows, d}), ba.view({1}), bg.view({d}), bdy.view({rows, d}), tdx,
                     tda, tdg, nullptr, nullptr);

  Vec y(n), dx = dx0, da = da0, dg = dg0;
  Tensor cy = cpu_f32(y.data(), {rows, d}), cdx = cpu_f32(dx.data(), {rows, d}),
         cda = cpu_f32(da.data(), {1}), cdg = cpu_f32(dg.data(), {d});
  auto host = [](const Vec& v, std::initializer_list<int64_t> dims) {
    return cpu_f32(const_cast<float*>(v.data()), dims);
  };
  cpu::dyt_forward(host(x, {rows, d}), host(alpha, {1}), host(gamma, {d}), nullptr, cy);
  cpu::dyt_backward(host(x, {rows, d}), host(alpha, {1}), host(gamma, {d}), host(dy, {rows, d}),
                    cdx, cda, cdg, nullptr);

  const Vec ky = by.download(), kdx = bdx.download();
  const BoundResult ry = bf16_bound_ratio(ky, y, dyn_forward_e(gamma, nullptr, rows));
  const BoundResult rdx = bf16_bound_ratio(kdx, dx, dyn_dx_e(dx0, dy, gamma, alpha[0]));
  std::cout << "[ bound    ] worst |y − ref| / bound " << ry.worst_ratio << ", dx " << rdx.worst_ratio
            << "; old tolerance y " << old_tolerance_ratio(ky, y) << ", dx "
            << old_tolerance_ratio(kdx, dx) << std::endl;
  if (DYT_EXPECT_REJECTED) {
    EXPECT_GT(ry.worst_ratio, 1.0) << "the bound passed a forward with tanh rounded to bf16";
    EXPECT_GT(rdx.worst_ratio, 1.0) << "the bound passed a backward with tanh rounded to bf16";
    EXPECT_LE(old_tolerance_ratio(ky, y), 1.0) << "the old tolerance rejects it as well: the planted fault would not show the difference";
    EXPECT_LE(old_tolerance_ratio(kdx, dx), 1.0) << "the old tolerance rejects it as well: the planted fault would not show the difference";
    // dγ = Σ dy·v: each term off by up to 2⁻⁸ of itself, far beyond 1e-5.
    const Vec kdg = bdg.download();
    std::vector<double> inc_k(d), inc_r(d);
    for (int64_t j = 0; j < d; ++j)
      inc_k[j] = double(kdg[j]) - dg0[j], inc_r[j] = double(dg[j]) - dg0[j];
    EXPECT_GT(close_ratio(inc_k, inc_r, 1e-5).worst_ratio, 1.0)
        << "dgamma's 1e-5 check passed a bf16 tanh";
  } else {
    EXPECT_LE(ry.worst_ratio, 1.0);
    EXPECT_LE(rdx.worst_ratio, 1.0);
  }
}

}  // namespace
}  // namespace dyt::cuda_test
