// The CUDA norm ops against the CPU reference (kernels/cpu_ops.h) on fresh
// random inputs (never zeros; a fixed default seed, printed, and each test
// reseeded from it and its name; $DYT_TEST_SEED=N draws others), with
// outputs poisoned with NaN before each run: fp32 activations to 1e-5
// relative, bf16 within a bound derived from bf16's unit roundoff
// (cuda_test_util.h), fp32 parameter gradients (increments of the "+="
// outputs) to 1e-5. Odd widths, narrow and wide rows, misaligned views, many
// rows; bitwise repeatability of every backward. Tests that need a GPU call
// GTEST_SKIP() without one; the host-side contracts (argument checks, empty
// tensors, CudaError) run everywhere.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu_ops.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/dyt_outliers.h"

namespace dyt::cuda_test {
namespace {

using kernels::cpu_f32;

// Activations: fp32 to 1e-5 relative; bf16 within the bound derived from
// bf16's unit roundoff (cuda_test_util.h, expect_act), given each element's
// fp32 discrepancy e, derived per op below.

// Parameter gradients (fp32 outputs; dα summed in double) to 1e-5·(|e| +
// rms). With bf16 activations both sides multiply the same bf16-rounded
// inputs in fp32, so bf16 adds nothing here: what differs is the order of
// fp32 sums. Two orders of one sum of m terms differ by at most
// (L₁ + L₂)·2⁻²⁴·Σ|terms| (L the serial chain lengths: the kernel's rows per
// thread, the CPU's 32-row chunks plus their count), which for thousands of
// rows exceeds 1e-5 of the sum; the rounding errors of random-sign terms grow
// like √L, not L, so 1e-5 holds with margin and stays the tighter check: it
// rejects a bf16 intermediate (2⁻⁸ of each term; emu/test_bf16_bound.cc).
constexpr double kParamTol = 1e-5;
constexpr DType kDtypes[] = {DType::F32, DType::BF16};

struct Shape {
  int64_t rows, d;
};
// Odd and even widths; one-warp rows, stacked narrow rows, several column
// tiles, the register-cached and streamed RMSNorm paths, vector and scalar.
const std::vector<Shape> kShapes = {
    {1, 1},    {3, 33},   {2, 7},     {17, 1000}, {5, 1999}, {8, 4095},  {64, 4096},  {5, 5120},
    {3, 8192}, {2, 16384}, {3, 16385}, {2, 20000}, {1000, 8}, {300, 64}, {4096, 24}, {33, 520},
};
// $DYT_TEST_SHAPES=small: each geometry above (one-warp, stacked narrow rows
// looping over the persistent grid, one and two column tiles, odd widths,
// both RMSNorm paths) with few rows, about a sixth of the elements. CTest runs
// the emulated suite so in the reversed and shuffled thread orders, which
// test the barriers of each block, not coverage (the forward order runs all).
const std::vector<Shape> kSmallShapes = {
    {1, 1}, {3, 33}, {2, 7}, {17, 1000}, {5, 1999}, {2, 4096}, {2, 5120},
    {2, 8192}, {2, 16385}, {300, 24}, {33, 520},
};
const std::vector<Shape>& shapes() {
  static const std::vector<Shape>& chosen = [] () -> const std::vector<Shape>& {
    const char* e = std::getenv("DYT_TEST_SHAPES");
    if (!e || std::string(e) == "all") return kShapes;
    if (std::string(e) == "small") return kSmallShapes;
    std::cerr << "DYT_TEST_SHAPES=" << e << ": expected all or small" << std::endl;
    std::exit(2);
  }();
  return chosen;
}

std::string label(const std::string& op, DType dt, Shape s, const std::string& extra = "") {
  return op + " " + cuda_test::dtype_name(dt) + " [" + std::to_string(s.rows) + ", " + std::to_string(s.d) +
         "]" + (extra.empty() ? "" : " " + extra);
}

Tensor host(const Vec& v, std::initializer_list<int64_t> dims) {
  return cpu_f32(const_cast<float*>(v.data()), dims);
}

// ---- DyT and DyISRU on both devices ------------------------------------------------

struct Dyn {
  const char* name;
  decltype(&cuda::dyt_forward) fwd;
  decltype(&cuda::dyt_backward) bwd;
  decltype(&cuda::dyt_residual_forward) res_fwd;
  decltype(&cuda::dyt_residual_backward) res_bwd;
  decltype(&cpu::dyt_forward) cpu_fwd;
  decltype(&cpu::dyt_backward) cpu_bwd;
};
const Dyn kDyns[] = {
    {"dyt", cuda::dyt_forward, cuda::dyt_backward, cuda::dyt_residual_forward,
     cuda::dyt_residual_backward, cpu::dyt_forward, cpu::dyt_backward},
    {"dyisru", cuda::dyisru_forward, cuda::dyisru_backward, cuda::dyisru_residual_forward,
     cuda::dyisru_residual_backward, cpu::dyisru_forward, cpu::dyisru_backward},
};

// Parameters: α in [0.3, 1.2], γ and β of either sign.
struct Params {
  Vec alpha, gamma, beta;
  Params(int64_t d, std::mt19937& gen)
      : alpha(random_vec(1, gen, 0.3f, 1.2f)),
        gamma(random_vec(d, gen, -1.5f, 1.5f)),
        beta(random_vec(d, gen)) {}
};

void check_dyn_forward(const Dyn& op, DType dt, Shape s, bool with_beta, bool residual,
                       bool in_place) {
  const int64_t n = s.rows * s.d, d = s.d;
  // |x| up to 3 with α up to 1.2: the linear and the saturated regime.
  const Vec x = round_to(dt, random_vec(n, rng(), -3.0f, 3.0f));
  const Vec branch = round_to(dt, random_vec(n, rng(), -1.0f, 1.0f));
  const Params p(d, rng());
  DevBuf bx(x, dt), bb(branch, dt), ba(p.alpha, DType::F32), bg(p.gamma, DType::F32),
      bbeta(p.beta, DType::F32), by(n, dt), bsum(n, dt);
  by.poison();
  bsum.poison();
  Tensor tbeta = bbeta.view({d}), ty = by.view({s.rows, d});
  Tensor tsum = in_place ? bx.view({s.rows, d}) : bsum.view({s.rows, d});
  const Tensor* beta = with_beta ? &tbeta : nullptr;
  if (residual)
    op.res_fwd(bx.view({s.rows, d}), bb.view({s.rows, d}), ba.view({1}), bg.view({d}), beta, tsum,
               ty, nullptr);
  else
    op.fwd(bx.view({s.rows, d}), ba.view({1}), bg.view({d}), beta, ty, nullptr);
  DYT_CUDA_CHECK(cudaDeviceSynchronize());

  Vec h = x;
  if (residual)
    for (int64_t i = 0; i < n; ++i) h[i] = round_to(dt, x[i] + branch[i]);
  Vec yref(n);
  Tensor tyref = cpu_f32(yref.data(), {s.rows, d});
  Tensor cbeta = host(p.beta, {d});
  op.cpu_fwd(host(h, {s.rows, d}), host(p.alpha, {1}), host(p.gamma, {d}),
             with_beta ? &cbeta : nullptr, tyref);
  const std::string what = label(std::string(op.name) + (residual ? "_residual" : "") +
                                     "_forward",
                                 dt, s, std::string(with_beta ? "beta" : "") +
                                            (in_place ? " in-place" : ""));
  expect_act(dt, by.download(), yref, dyn_forward_e(p.gamma, with_beta ? &p.beta : nullptr, s.rows),
             what + " y");
  if (residual) {
    // The reference sum is x + branch rounded to the dtype: compare the
    // kernel's stored sum with the fp32 sum, which the bound is about.
    Vec h32(n);
    for (int64_t i = 0; i < n; ++i) h32[i] = x[i] + branch[i];
    expect_act(dt, (in_place ? bx : bsum).download(), dt == DType::BF16 ? h32 : h,
               sum_e(x, branch), what + " sum");
  }
}

void check_dyn_backward(const Dyn& op, DType dt, Shape s, bool with_beta, bool residual,
                        bool in_place) {
  const int64_t n = s.rows * s.d, d = s.d;
  const Vec x = round_to(dt, random_vec(n, rng(), -3.0f, 3.0f));
  const Vec dy = round_to(dt, random_vec(n, rng()));
  const Vec g0 = round_to(dt, random_vec(n, rng()));  // dx before (+=) or dresidual
  const Params p(d, rng());
  const Vec da0 = random_vec(1, rng()), dg0 = random_vec(d, rng()), db0 = random_vec(d, rng());

  DevBuf bx(x, dt), bdy(dy, dt), bgin(g0, dt), bgout(n, dt), ba(p.alpha, DType::F32),
      bg(p.gamma, DType::F32), bda(da0, DType::F32), bdg(dg0, DType::F32), bdb(db0, DType::F32);
  bgout.poison();
  const bool separate_out = residual && !in_place;
  Tensor tgout = separate_out ? bgout.view({s.rows, d}) : bgin.view({s.rows, d});
  Tensor tda = bda.view({1}), tdg = bdg.view({d}), tdb = bdb.view({d});
  if (residual)
    op.res_bwd(bx.view({s.rows, d}), ba.view({1}), bg.view({d}), bdy.view({s.rows, d}),
               bgin.view({s.rows, d}), tgout, tda, tdg, with_beta ? &tdb : nullptr, nullptr,
               nullptr);
  else
    op.bwd(bx.view({s.rows, d}), ba.view({1}), bg.view({d}), bdy.view({s.rows, d}), tgout, tda,
           tdg, with_beta ? &tdb : nullptr, nullptr, nullptr);
  DYT_CUDA_CHECK(cudaDeviceSynchronize());

  Vec dx = g0, da = da0, dg = dg0, db = db0;
  Tensor cdx = cpu_f32(dx.data(), {s.rows, d}), cda = cpu_f32(da.data(), {1}),
         cdg = cpu_f32(dg.data(), {d}), cdb = cpu_f32(db.data(), {d});
  op.cpu_bwd(host(x, {s.rows, d}), host(p.alpha, {1}), host(p.gamma, {d}), host(dy, {s.rows, d}),
             cdx, cda, cdg, with_beta ? &cdb : nullptr);
  const std::string what =
      label(std::string(op.name) + (residual ? "_residual" : "") + "_backward", dt, s,
            std::string(with_beta ? "beta" : "") + (in_place ? " in-place" : ""));
  expect_act(dt, (separate_out ? bgout : bgin).download(), dx, dyn_dx_e(g0, dy, p.gamma, p.alpha[0]),
               what + (residual ? " dsum" : " dx"));
  expect_close_delta(bda.download(), da, da0, kParamTol, what + " dalpha");
  expect_close_delta(bdg.download(), dg, dg0, kParamTol, what + " dgamma");
  if (with_beta)
    expect_close_delta(bdb.download(), db, db0, kParamTol, what + " dbeta");
  else
    EXPECT_TRUE(bdb.download() == db0) << what << ": dbeta changed although none was passed";
}

}  // namespace

TEST(CudaDyn, ForwardMatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaDyn.ForwardMatchesCpu");
  for (const Dyn& op : kDyns)
    for (DType dt : kDtypes)
      for (const Shape& s : shapes())
        for (bool beta : {false, true}) check_dyn_forward(op, dt, s, beta, false, false);
}

TEST(CudaDyn, ResidualForwardMatchesAddThenCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaDyn.ResidualForwardMatchesAddThenCpu");
  for (const Dyn& op : kDyns)
    for (DType dt : kDtypes)
      for (const Shape& s : shapes()) {
        check_dyn_forward(op, dt, s, false, true, false);
        check_dyn_forward(op, dt, s, true, true, true);  // sum written over the residual
      }
}

TEST(CudaDyn, BackwardMatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaDyn.BackwardMatchesCpu");
  for (const Dyn& op : kDyns)
    for (DType dt : kDtypes)
      for (const Shape& s : shapes())
        for (bool beta : {false, true}) check_dyn_backward(op, dt, s, beta, false, false);
}

TEST(CudaDyn, ResidualBackwardMatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaDyn.ResidualBackwardMatchesCpu");
  for (const Dyn& op : kDyns)
    for (DType dt : kDtypes)
      for (const Shape& s : shapes()) {
        check_dyn_backward(op, dt, s, true, true, false);
        check_dyn_backward(op, dt, s, false, true, true);  // dsum written over dresidual
      }
}

// More rows than one forward grid covers (65535 row blocks × 8 rows × 4 per
// thread), so threads loop; the backward's persistent grid loops anyway.
TEST(CudaDyn, RowsBeyondOneGrid) {
  DYT_REQUIRE_CUDA();
  reseed("CudaDyn.RowsBeyondOneGrid");
  check_dyn_forward(kDyns[0], DType::F32, {2200000, 1}, false, false, false);
  check_dyn_backward(kDyns[0], DType::F32, {2200000, 1}, true, false, false);
}

// Views that start one element past 16-byte alignment take the scalar path
// even where the width would allow vectors; the function is the same.
TEST(CudaDyn, MisalignedViewsMatchCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaDyn.MisalignedViewsMatchCpu");
  for (DType dt : kDtypes) {
    const Shape s{37, 4096};
    const int64_t n = s.rows * s.d, d = s.d;
    const Vec x = round_to(dt, random_vec(n, rng(), -3.0f, 3.0f));
    const Vec dy = round_to(dt, random_vec(n, rng()));
    const Vec dx0 = round_to(dt, random_vec(n, rng()));
    const Params p(d, rng());
    const Vec da0 = random_vec(1, rng()), dg0 = random_vec(d, rng());
    DevBuf bx(x, dt, 1), bdy(dy, dt, 1), bdx(dx0, dt, 1), by(n, dt, 1), ba(p.alpha, DType::F32),
        bg(p.gamma, DType::F32), bda(da0, DType::F32), bdg(dg0, DType::F32);
    by.poison();
    Tensor ty = by.view({s.rows, d}), tdx = bdx.view({s.rows, d}), tda = bda.view({1}),
           tdg = bdg.view({d});
    cuda::dyt_forward(bx.view({s.rows, d}), ba.view({1}), bg.view({d}), nullptr, ty, nullptr);
    cuda::dyt_backward(bx.view({s.rows, d}), ba.view({1}), bg.view({d}), bdy.view({s.rows, d}),
                       tdx, tda, tdg, nullptr, nullptr);
    Vec yref(n), dx = dx0, da = da0, dg = dg0;
    Tensor cy = cpu_f32(yref.data(), {s.rows, d}), cdx = cpu_f32(dx.data(), {s.rows, d}),
           cda = cpu_f32(da.data(), {1}), cdg = cpu_f32(dg.data(), {d});
    cpu::dyt_forward(host(x, {s.rows, d}), host(p.alpha, {1}), host(p.gamma, {d}), nullptr, cy);
    cpu::dyt_backward(host(x, {s.rows, d}), host(p.alpha, {1}), host(p.gamma, {d}),
                      host(dy, {s.rows, d}), cdx, cda, cdg, nullptr);
    const std::string what = label("dyt misaligned", dt, s);
    expect_act(dt, by.download(), yref, dyn_forward_e(p.gamma, nullptr, s.rows), what + " y");
    expect_act(dt, bdx.download(), dx, dyn_dx_e(dx0, dy, p.gamma, p.alpha[0]), what + " dx");
    expect_close_delta(bda.download(), da, da0, kParamTol, what + " dalpha");
    expect_close_delta(bdg.download(), dg, dg0, kParamTol, what + " dgamma");
  }
}

// dα with large outliers (|αx| up to 1e4 at α = 0.05) against float64
// within the float path's own error budget (tests/kernels/dyt_outliers.h,
// shared with the CPU op's DyT.AlphaGradientWithOutliersMatchesDouble), for
// the plain and the fused residual backward, fp32 and bf16 inputs. The
// kernel sums dα in double like the CPU op, so the same budget applies; the
// test also asserts that a 2⁻²¹ slope floor would exceed it 4×.
TEST(CudaDyn, AlphaGradientWithOutliersMatchesDouble) {
  DYT_REQUIRE_CUDA();
  reseed("CudaDyn.AlphaGradientWithOutliersMatchesDouble");
  const int64_t rows = 64, d = 256, n = rows * d;
  const float alpha = 0.05f;
  for (DType dt : kDtypes)
    for (bool residual : {false, true}) {
      const Vec x = round_to(dt, test_outliers::outlier_inputs(n, alpha, rng()));
      const Vec g = random_vec(d, rng(), -1.5f, 1.5f);
      Vec dy = round_to(dt, random_vec(n, rng()));
      test_outliers::align_outlier_gradients(x, g, alpha, dy);  // a sign flip: still bf16
      DevBuf bx(x, dt), bdy(dy, dt), bgin(Vec(n, 0.0f), dt), bgout(n, dt),
          ba(Vec{alpha}, DType::F32), bg(g, DType::F32), bda(Vec{0.0f}, DType::F32),
          bdg(Vec(d, 0.0f), DType::F32);
      Tensor tgin = bgin.view({rows, d}), tgout = bgout.view({rows, d}), tda = bda.view({1}),
             tdg = bdg.view({d});
      if (residual)
        cuda::dyt_residual_backward(bx.view({rows, d}), ba.view({1}), bg.view({d}),
                                    bdy.view({rows, d}), tgin, tgout, tda, tdg, nullptr, nullptr);
      else
        cuda::dyt_backward(bx.view({rows, d}), ba.view({1}), bg.view({d}), bdy.view({rows, d}),
                           tgin, tda, tdg, nullptr, nullptr);
      const float got = bda.download()[0];
      const test_outliers::AlphaReference r = test_outliers::alpha_reference(x, dy, g, alpha);
      const std::string what = label(residual ? "dyt_residual_backward" : "dyt_backward", dt,
                                     {rows, d}, "dalpha with outliers");
      ASSERT_GT(r.saturated, n / 50) << what;
      ASSERT_GT(std::fabs(r.floor_bias), 4 * r.budget)
          << what << ": the outliers would not reveal a slope floor";
      EXPECT_LE(std::fabs(got - r.want), r.budget)
          << what << ": got " << got << ", float64 " << r.want << ", budget " << r.budget << ", "
          << r.saturated << " saturated (replay with " << replay() << ")";
    }
}

// ---- RMSNorm --------------------------------------------------------------------------

TEST(CudaRMSNorm, ForwardMatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaRMSNorm.ForwardMatchesCpu");
  const float eps = 1e-5f;
  for (DType dt : kDtypes)
    for (const Shape& s : shapes()) {
      const int64_t n = s.rows * s.d, d = s.d;
      const Vec x = round_to(dt, random_vec(n, rng(), -2.0f, 2.0f));
      const Vec g = random_vec(d, rng(), -1.5f, 1.5f);
      DevBuf bx(x, dt), bg(g, DType::F32), by(n, dt), br(s.rows, DType::F32);
      by.poison();
      br.poison();
      Tensor ty = by.view({s.rows, d}), tr = br.view({s.rows});
      cuda::rmsnorm_forward(bx.view({s.rows, d}), bg.view({d}), eps, ty, tr, nullptr);
      Vec yref(n), rref(s.rows);
      Tensor cy = cpu_f32(yref.data(), {s.rows, d}), cr = cpu_f32(rref.data(), {s.rows});
      cpu::rmsnorm_forward(host(x, {s.rows, d}), host(g, {d}), eps, cy, cr);
      const std::string what = label("rmsnorm_forward", dt, s);
      // e: the kernel's own rstd (checked above to 1e-5) scales γ·x, and
      // γ·(x·rstd) has two fp32 roundings that may differ.
      const Vec rk = br.download();
      std::vector<double> e(n);
      for (int64_t i = 0; i < n; ++i) {
        const double gx = std::fabs(double(g[i % d]) * x[i]);
        e[i] = gx * std::fabs(double(rk[i / d]) - rref[i / d]) + 3 * 0x1p-24 * gx * rref[i / d];
      }
      expect_act(dt, by.download(), yref, e, what + " y");
      expect_close(br.download(), rref, 1e-5, what + " rstd");
    }
}

TEST(CudaRMSNorm, BackwardMatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaRMSNorm.BackwardMatchesCpu");
  const float eps = 1e-5f;
  for (DType dt : kDtypes)
    for (const Shape& s : shapes()) {
      const int64_t n = s.rows * s.d, d = s.d;
      const Vec x = round_to(dt, random_vec(n, rng(), -2.0f, 2.0f));
      const Vec dy = round_to(dt, random_vec(n, rng()));
      const Vec dx0 = round_to(dt, random_vec(n, rng()));
      const Vec g = random_vec(d, rng(), -1.5f, 1.5f), dg0 = random_vec(d, rng());
      // Both sides take the CPU forward's rstd, so only the backward is compared.
      Vec y(n), rstd(s.rows);
      Tensor cy = cpu_f32(y.data(), {s.rows, d}), cr = cpu_f32(rstd.data(), {s.rows});
      cpu::rmsnorm_forward(host(x, {s.rows, d}), host(g, {d}), eps, cy, cr);

      DevBuf bx(x, dt), bdy(dy, dt), bdx(dx0, dt), bg(g, DType::F32), br(rstd, DType::F32),
          bdg(dg0, DType::F32);
      Tensor tdx = bdx.view({s.rows, d}), tdg = bdg.view({d});
      cuda::rmsnorm_backward(bx.view({s.rows, d}), bg.view({d}), br.view({s.rows}),
                             bdy.view({s.rows, d}), tdx, tdg, nullptr);
      Vec dx = dx0, dg = dg0;
      Tensor cdx = cpu_f32(dx.data(), {s.rows, d}), cdg = cpu_f32(dg.data(), {d});
      cpu::rmsnorm_backward(host(x, {s.rows, d}), host(g, {d}), cr, host(dy, {s.rows, d}), cdx,
                            cdg);
      const std::string what = label("rmsnorm_backward", dt, s);
      // e: dx = dx0 + r·γ·dy − c·x with c = r³/d·Σ dy·γ·x. The CPU sums in
      // double, the kernel in fp32 over d products of two roundings each:
      // |Δ Σ| ≤ (d + 2)·2⁻²⁴·Σ|dy·γ·x|, then r³/d adds 4 roundings (5 with
      // the CPU's cast) of c; the rest is the elementwise 3·2⁻²⁴ of the terms.
      std::vector<double> e(n);
      for (int64_t r = 0; r < s.rows; ++r) {
        const double rs = rstd[r];
        double dot = 0.0, dot_abs = 0.0;
        for (int64_t i = 0; i < d; ++i) {
          const double t = double(dy[r * d + i]) * g[i] * x[r * d + i];
          dot += t, dot_abs += std::fabs(t);
        }
        const double c = dot * rs * rs * rs / d;
        const double dc = rs * rs * rs / d * (d + 2) * 0x1p-24 * dot_abs + 5 * 0x1p-24 * std::fabs(c);
        for (int64_t i = 0; i < d; ++i) {
          const int64_t k = r * d + i;
          const double xi = std::fabs(double(x[k]));
          e[k] = xi * dc + 3 * 0x1p-24 * (std::fabs(double(dx0[k])) +
                                           std::fabs(rs * g[i] * dy[k]) + std::fabs(c) * xi);
        }
      }
      expect_act(dt, bdx.download(), dx, e, what + " dx");
      expect_close_delta(bdg.download(), dg, dg0, kParamTol, what + " dgamma");
    }
}

// ---- add ----------------------------------------------------------------------------------

TEST(CudaNorms, AddInplaceMatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaNorms.AddInplaceMatchesCpu");
  for (DType dt : kDtypes)
    for (const Shape& s : {Shape{3, 33}, Shape{64, 4096}, Shape{5, 5120}}) {
      const int64_t n = s.rows * s.d;
      const Vec x = round_to(dt, random_vec(n, rng())), y = round_to(dt, random_vec(n, rng()));
      DevBuf bx(x, dt), by(y, dt);
      Tensor tx = bx.view({s.rows, s.d});
      cuda::add_inplace(tx, by.view({s.rows, s.d}), nullptr);
      Vec ref(n);
      for (int64_t i = 0; i < n; ++i) ref[i] = x[i] + y[i];
      expect_act(dt, bx.download(), ref, sum_e(x, y), label("add_inplace", dt, s));
    }
}

// ---- determinism ---------------------------------------------------------------------------

namespace {

// Runs `step` (a backward over fixed inputs, its outputs reset first) twice
// with the cached workspace and once with a caller's workspace of exactly
// norm_backward_workspace_bytes, on a stream of its own, and checks that all
// outputs agree to the bit.
struct Outputs {
  std::vector<const DevBuf*> bufs;
  std::vector<unsigned char> bits() const {
    std::vector<unsigned char> all;
    for (const DevBuf* b : bufs) {
      const auto r = b->raw();
      all.insert(all.end(), r.begin(), r.end());
    }
    return all;
  }
};

template <class Step>
void expect_repeatable(const std::string& what, Shape s, DType dt, bool beta, Step&& step,
                       const Outputs& outs) {
  cudaStream_t stream;
  DYT_CUDA_CHECK(cudaStreamCreate(&stream));
  step(stream, nullptr);
  const auto first = outs.bits();
  step(stream, nullptr);
  const auto second = outs.bits();
  const size_t need = cuda::norm_backward_workspace_bytes(s.rows, s.d, dt, beta);
  void* mem = nullptr;
  DYT_CUDA_CHECK(cudaMalloc(&mem, std::max<size_t>(need, 16)));
  DYT_CUDA_CHECK(cudaMemset(mem, 0xff, std::max<size_t>(need, 16)));  // stale partials must not leak in
  const cuda::Workspace ws{mem, need};
  step(stream, &ws);
  const auto third = outs.bits();
  DYT_CUDA_CHECK(cudaStreamSynchronize(stream));
  DYT_CUDA_CHECK(cudaFree(mem));
  DYT_CUDA_CHECK(cudaStreamDestroy(stream));
  EXPECT_TRUE(first == second) << what << ": two runs differ (replay with " << replay() << ")";
  EXPECT_TRUE(first == third) << what << ": caller's workspace gives other bits";
}

}  // namespace

TEST(CudaNorms, BackwardIsBitwiseRepeatable) {
  DYT_REQUIRE_CUDA();
  reseed("CudaNorms.BackwardIsBitwiseRepeatable");
  for (DType dt : kDtypes)
    for (const Shape& s : {Shape{1000, 4096}, Shape{999, 4097}, Shape{4096, 24}}) {
      const int64_t n = s.rows * s.d, d = s.d;
      const Vec x = round_to(dt, random_vec(n, rng(), -3.0f, 3.0f));
      const Vec dy = round_to(dt, random_vec(n, rng()));
      const Vec g0 = round_to(dt, random_vec(n, rng()));
      const Params p(d, rng());
      const Vec da0 = random_vec(1, rng()), dg0 = random_vec(d, rng()), db0 = random_vec(d, rng());
      Vec rstd(s.rows);
      for (float& r : rstd) r = 0.5f + static_cast<float>(rng()() % 1000) / 1000.0f;
      DevBuf bx(x, dt), bdy(dy, dt), bgin(n, dt), bgout(n, dt), ba(p.alpha, DType::F32),
          bg(p.gamma, DType::F32), bda(1, DType::F32), bdg(d, DType::F32), bdb(d, DType::F32),
          br(rstd, DType::F32);
      Tensor tx = bx.view({s.rows, d}), tdy = bdy.view({s.rows, d}), tgin = bgin.view({s.rows, d}),
             tgout = bgout.view({s.rows, d}), ta = ba.view({1}), tg = bg.view({d}),
             tda = bda.view({1}), tdg = bdg.view({d}), tdb = bdb.view({d}), tr = br.view({s.rows});
      auto reset = [&](cudaStream_t st) {
        DYT_CUDA_CHECK(cudaStreamSynchronize(st));
        bgin.upload(g0);
        bgout.poison();
        bda.upload(da0);
        bdg.upload(dg0);
        bdb.upload(db0);
      };
      for (const Dyn& op : kDyns) {
        expect_repeatable(label(std::string(op.name) + "_backward", dt, s), s, dt, true,
                          [&](cudaStream_t st, const cuda::Workspace* ws) {
                            reset(st);
                            op.bwd(tx, ta, tg, tdy, tgin, tda, tdg, &tdb, st, ws);
                          },
                          Outputs{{&bgin, &bda, &bdg, &bdb}});
        expect_repeatable(label(std::string(op.name) + "_residual_backward", dt, s), s, dt, false,
                          [&](cudaStream_t st, const cuda::Workspace* ws) {
                            reset(st);
                            op.res_bwd(tx, ta, tg, tdy, tgin, tgout, tda, tdg, nullptr, st, ws);
                          },
                          Outputs{{&bgout, &bda, &bdg}});
      }
      expect_repeatable(label("rmsnorm_backward", dt, s), s, dt, false,
                        [&](cudaStream_t st, const cuda::Workspace* ws) {
                          reset(st);
                          cuda::rmsnorm_backward(tx, tg, tr, tdy, tgin, tdg, st, ws);
                        },
                        Outputs{{&bgin, &bdg}});
    }
}

TEST(CudaNorms, WorkspaceTooSmallIsRejected) {
  DYT_REQUIRE_CUDA();
  const Shape s{64, 256};
  DevBuf bx(Vec(s.rows * s.d, 0.5f), DType::F32), bdy(Vec(s.rows * s.d, 0.5f), DType::F32),
      bdx(s.rows * s.d, DType::F32), ba(Vec{1.0f}, DType::F32), bg(Vec(s.d, 1.0f), DType::F32),
      bda(1, DType::F32), bdg(s.d, DType::F32), tiny(4, DType::F32);
  Tensor tdx = bdx.view({s.rows, s.d}), tda = bda.view({1}), tdg = bdg.view({s.d});
  const cuda::Workspace ws{tiny.data(), 16};
  try {
    cuda::dyt_backward(bx.view({s.rows, s.d}), ba.view({1}), bg.view({s.d}),
                       bdy.view({s.rows, s.d}), tdx, tda, tdg, nullptr, nullptr, &ws);
    ADD_FAILURE() << "expected std::invalid_argument for a 16-byte workspace";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("dyt_backward"), std::string::npos) << e.what();
  }
}

// ---- host-side contracts (no GPU needed) -----------------------------------------------------

TEST(CudaNormsHost, RejectsBadArgumentsBeforeAnyWork) {
  const Tensor a = fake(DType::F32, {1}), g = fake(DType::F32, {8});
  Tensor y = fake(DType::BF16, {4, 8}), rstd = fake(DType::F32, {4});
  expect_invalid([&] { cuda::dyt_forward(fake(DType::BF16, {4, 8}, Device::CPU), a, g, nullptr, y, nullptr); },
                 "dyt_forward", "host tensor");
  expect_invalid([&] { cuda::dyt_forward(fake(DType::F32, {4, 8}), a, g, nullptr, y, nullptr); },
                 "dyt_forward", "dtype mismatch");
  expect_invalid([&] { cuda::dyt_forward(fake(DType::I32, {4, 8}), a, g, nullptr, y, nullptr); },
                 "dyt_forward", "I32 activations");
  expect_invalid([&] { cuda::dyt_forward(fake(DType::BF16, {4, 8}), a, fake(DType::F32, {7}), nullptr, y, nullptr); },
                 "dyt_forward", "gamma width");
  expect_invalid([&] { cuda::dyt_forward(fake(DType::BF16, {4, 8}), a, fake(DType::BF16, {8}), nullptr, y, nullptr); },
                 "dyt_forward", "bf16 gamma");
  expect_invalid([&] { cuda::dyisru_forward(fake(DType::BF16, {4, 8}), fake(DType::F32, {2}), g, nullptr, y, nullptr); },
                 "dyisru_forward", "two alphas");
  Tensor sum = fake(DType::BF16, {4, 9});
  expect_invalid([&] { cuda::dyt_residual_forward(fake(DType::BF16, {4, 8}), fake(DType::BF16, {4, 8}), a, g, nullptr, sum, y, nullptr); },
                 "dyt_residual_forward", "sum shape");
  Tensor dx = fake(DType::BF16, {4, 8}), da = fake(DType::F32, {1}), dg = fake(DType::F32, {8});
  expect_invalid([&] { cuda::dyt_backward(fake(DType::BF16, {4, 8}), a, g, fake(DType::BF16, {8, 4}), dx, da, dg, nullptr, nullptr); },
                 "dyt_backward", "dy shape");
  Tensor rstd5 = fake(DType::F32, {5});
  expect_invalid([&] { cuda::rmsnorm_forward(fake(DType::BF16, {4, 8}), g, 1e-5f, y, rstd5, nullptr); },
                 "rmsnorm_forward", "rstd length");
  expect_invalid([&] { cuda::rmsnorm_backward(fake(DType::BF16, {4, 8}), g, rstd, fake(DType::BF16, {4, 8}), dx, da, nullptr); },
                 "rmsnorm_backward", "dgamma of one element");
  Tensor x32 = fake(DType::F32, {4, 8});
  expect_invalid([&] { cuda::add_inplace(x32, fake(DType::BF16, {4, 8}), nullptr); }, "add_inplace",
                 "dtype mismatch");
}

// Zero rows (or zero width) queue nothing and touch no device.
TEST(CudaNormsHost, EmptyTensorsAreNoOps) {
  const Tensor a = fake(DType::F32, {1});
  Tensor x = Tensor(nullptr, DType::BF16, Device::CUDA, {0, 8}), g = fake(DType::F32, {8});
  Tensor y = x, r = Tensor(nullptr, DType::F32, Device::CUDA, {0});
  Tensor da = fake(DType::F32, {1}), dg = fake(DType::F32, {8});
  EXPECT_NO_THROW(cuda::dyt_forward(x, a, g, nullptr, y, nullptr));
  EXPECT_NO_THROW(cuda::dyisru_residual_forward(x, x, a, g, &g, y, y, nullptr));
  EXPECT_NO_THROW(cuda::dyt_backward(x, a, g, x, y, da, dg, &dg, nullptr));
  EXPECT_NO_THROW(cuda::dyisru_residual_backward(x, a, g, x, x, y, da, dg, nullptr, nullptr));
  EXPECT_NO_THROW(cuda::rmsnorm_forward(x, g, 1e-5f, y, r, nullptr));
  EXPECT_NO_THROW(cuda::rmsnorm_backward(x, g, r, x, y, dg, nullptr));
  EXPECT_NO_THROW(cuda::add_inplace(y, x, nullptr));
  Tensor w0 = Tensor(nullptr, DType::F32, Device::CUDA, {3, 0}), g0(nullptr, DType::F32, Device::CUDA, {0});
  EXPECT_NO_THROW(cuda::dyt_forward(w0, a, g0, nullptr, w0, nullptr));
}

TEST(CudaNormsHost, CudaErrorNamesCallFileAndLine) {
  const cuda::CudaError e(cudaErrorInvalidValue, "cudaMemcpy(a, b, n, kind)", "ops.cu", 42);
  const std::string what = e.what();
  EXPECT_NE(what.find("ops.cu:42"), std::string::npos) << what;
  EXPECT_NE(what.find("cudaMemcpy(a, b, n, kind)"), std::string::npos) << what;
  EXPECT_NE(what.find("cudaErrorInvalidValue"), std::string::npos) << what;
  EXPECT_EQ(e.code(), cudaErrorInvalidValue);
  EXPECT_THROW(DYT_CUDA_CHECK(cudaErrorMemoryAllocation), cuda::CudaError);
  EXPECT_NO_THROW(DYT_CUDA_CHECK(cudaSuccess));
}

}  // namespace dyt::cuda_test
