// The cuBLASLt GEMMs (kernels/cuda/gemm.h) against the CPU reference
// (kernels/cpu_ops.h linear_*), on the GPU (test_gemm_cuda; every test skips
// without a device) and through the host stand-in of cuBLASLt
// (test_gemm_cuda_emu, tests/kernels/cuda/emu/cublaslt_emu.cc), which runs
// the same calling code in CI.
//
// Inputs are seeded random values (never zero; $DYT_TEST_SEED replays), every
// output is NaN-poisoned before the call unless the op reads it (so an
// unwritten element fails, and an op with beta = 0 that read its output would
// turn NaN). Tolerances, derived below from K (the length of each dot
// product): fp32 to rtol(K)·(|r| + rms(r)); bf16 outputs within bf16's
// rounding of the fp32 value (2⁻⁸ relative) plus that.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu_ops.h"
#include "kernels/cuda/gemm.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dyt::cuda_test {
namespace {

using cuda::Gemm;
using kernels::cpu_f32;

constexpr DType kDtypes[] = {DType::F32, DType::BF16};

// ---- tolerances ----------------------------------------------------------------------
//
// Both sides multiply the same (bf16-rounded where BF16) inputs and add K
// products in fp32, in different orders (cuBLASLt's tiles and the CPU's
// OpenBLAS blocks; the stand-in adds k in order). With random-sign terms of
// size s the partial sums grow like √k·s, so a sum's rounding error has a
// standard deviation of about 2⁻²⁴·K·s/√6, i.e. 0.41·2⁻²⁴·√K of the output's
// rms (√K·s); two evaluations differ by 0.58·2⁻²⁴·√K of it. We allow
// rtol(K) = 8·2⁻²⁴·√K of (|r| + rms(r)), about 14 standard deviations: 1e-5 at
// K ≈ 440, 3e-5 at K = 4096. TF32 operands (10-bit mantissas) would err by
// about 4e-4 of the rms at any K, far outside it.
double rtol(int64_t k) { return 8.0 * 0x1p-24 * std::sqrt(static_cast<double>(std::max<int64_t>(k, 1))); }

double rms(const Vec& v) {
  double ss = 0;
  for (float x : v) ss += double(x) * x;
  return std::sqrt(ss / std::max<size_t>(1, v.size()));
}

// e_i, the fp32 discrepancy allowed for element i of an output whose GEMM
// part is `inc`; when the op accumulates (total = before + inc), plus the
// two fp32 roundings of that addition (one on each side).
std::vector<double> gemm_e(const Vec& inc, int64_t k, const Vec* total = nullptr) {
  const double r = rms(inc), t = rtol(k);
  std::vector<double> e(inc.size());
  for (size_t i = 0; i < e.size(); ++i)
    e[i] = t * (std::fabs(double(inc[i])) + r) + (total ? 2 * 0x1p-24 * std::fabs((*total)[i]) : 0.0);
  return e;
}

// fp32 outputs: |a − r| ≤ e element by element (NaN never passes).
void expect_within(const Vec& actual, const Vec& ref, const std::vector<double>& e,
                   const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  ASSERT_GT(rms(ref), 0.0) << what << ": reference all zero, the check would be empty";
  double worst = -1;
  size_t at = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double ratio = std::fabs(double(actual[i]) - double(ref[i])) / e[i];
    if (std::isnan(ratio)) ratio = INFINITY;
    if (ratio > worst) worst = ratio, at = i;
  }
  EXPECT_LE(worst, 1.0) << what << ": worst at index " << at << " of " << actual.size() << ", got "
                        << actual[at] << ", expected " << ref[at] << ", allowed " << e[at]
                        << " (replay with " << replay() << ")";
}
// An output of dtype dt (bf16: the bound of cuda_test_util.h, 2⁻⁸·|r| + e).
void expect_out(DType dt, const Vec& actual, const Vec& ref, const std::vector<double>& e,
                const std::string& what) {
  if (dt == DType::BF16) expect_bf16_within(actual, ref, e, what);
  else expect_within(actual, ref, e, what);
}

// ---- shapes and inputs ---------------------------------------------------------------------

struct Shape {
  int64_t n, in, out;
};
// Single rows, widths of 1, 3, 5 (rows of 2, 6, 10 bytes in bf16), widths
// that are not multiples of 8 or 16, long dot products (K = 4096 forward, K
// = 600 rows for dW), and the tiny model's 64 → 192.
const std::vector<Shape> kShapes = {
    {1, 3, 5},   {3, 5, 1},     {5, 1, 3},    {7, 33, 17}, {16, 64, 192},
    {37, 200, 130}, {130, 64, 257}, {8, 4096, 40}, {600, 40, 24},
};

std::string label(const std::string& op, DType dt, Shape s, const std::string& extra = "") {
  return op + " " + cuda_test::dtype_name(dt) + " N=" + std::to_string(s.n) + " in=" + std::to_string(s.in) +
         " out=" + std::to_string(s.out) + (extra.empty() ? "" : " " + extra);
}

// A generator seeded from (run seed, test name): a test draws the same inputs
// alone or after others.
std::mt19937 rng_for(const std::string& test) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : test) h = (h ^ c) * 16777619u;
  std::seed_seq seq{run_seed(), h};
  return std::mt19937(seq);
}

Tensor host(Vec& v, std::initializer_list<int64_t> dims) { return cpu_f32(v.data(), dims); }

// The CPU ops on host copies.
Vec cpu_forward(Vec x, Vec w, Shape s) {
  Vec y(s.n * s.out);
  Tensor ty = host(y, {s.n, s.out});
  cpu::linear_forward(host(x, {s.n, s.in}), host(w, {s.out, s.in}), ty);
  return y;
}
Vec cpu_backward_input(Vec dy, Vec w, Vec dx, Shape s, bool accumulate) {
  Tensor tdx = host(dx, {s.n, s.in});
  cpu::linear_backward_input(host(dy, {s.n, s.out}), host(w, {s.out, s.in}), tdx, accumulate);
  return dx;
}
Vec cpu_backward_weight(Vec dy, Vec x, Vec dw, Shape s) {
  Tensor tdw = host(dw, {s.out, s.in});
  cpu::linear_backward_weight(host(dy, {s.n, s.out}), host(x, {s.n, s.in}), tdw);
  return dw;
}

// ---- the ops against the CPU ---------------------------------------------------------------

void check_forward(Gemm& g, DType dt, Shape s, std::mt19937& gen, size_t offset = 0) {
  const Vec x = round_to(dt, random_vec(s.n * s.in, gen));
  const Vec w = round_to(dt, random_vec(s.out * s.in, gen));
  DevBuf bx(x, dt, offset), bw(w, dt, offset), by(s.n * s.out, dt, offset);
  by.poison();
  g.linear_forward(bx.view({s.n, s.in}), bw.view({s.out, s.in}), by.view({s.n, s.out}));
  const Vec ref = cpu_forward(x, w, s);
  expect_out(dt, by.download(), ref, gemm_e(ref, s.in),
             label("linear_forward", dt, s, offset ? "misaligned" : ""));
}

void check_backward_input(Gemm& g, DType dt, Shape s, bool accumulate, std::mt19937& gen,
                          size_t offset = 0) {
  const Vec dy = round_to(dt, random_vec(s.n * s.out, gen));
  const Vec w = round_to(dt, random_vec(s.out * s.in, gen));
  const Vec dx0 = round_to(dt, random_vec(s.n * s.in, gen));
  DevBuf bdy(dy, dt, offset), bw(w, dt, offset), bdx(dx0, dt, offset);
  if (!accumulate) bdx.poison();  // beta = 0: must not be read
  g.linear_backward_input(bdy.view({s.n, s.out}), bw.view({s.out, s.in}), bdx.view({s.n, s.in}),
                          accumulate);
  const Vec inc = cpu_backward_input(dy, w, Vec(dx0.size(), 0.0f), s, false);
  const Vec ref = cpu_backward_input(dy, w, dx0, s, accumulate);
  expect_out(dt, bdx.download(), ref, gemm_e(inc, s.out, accumulate ? &ref : nullptr),
             label("linear_backward_input", dt, s,
                   std::string(accumulate ? "accumulate" : "overwrite") + (offset ? " misaligned" : "")));
}

void check_backward_weight(Gemm& g, DType dt, Shape s, std::mt19937& gen, size_t offset = 0) {
  const Vec dy = round_to(dt, random_vec(s.n * s.out, gen));
  const Vec x = round_to(dt, random_vec(s.n * s.in, gen));
  const Vec dw0 = random_vec(s.out * s.in, gen);
  DevBuf bdy(dy, dt, offset), bx(x, dt, offset), bdw(dw0, DType::F32, offset);
  g.linear_backward_weight(bdy.view({s.n, s.out}), bx.view({s.n, s.in}), bdw.view({s.out, s.in}));
  const Vec inc = cpu_backward_weight(dy, x, Vec(dw0.size(), 0.0f), s);
  const Vec ref = cpu_backward_weight(dy, x, dw0, s);
  // dW is F32 whatever the activations' dtype.
  expect_within(bdw.download(), ref, gemm_e(inc, s.n, &ref),
                label("linear_backward_weight", dt, s, offset ? "misaligned" : ""));
}

}  // namespace

TEST(CudaGemm, ForwardMatchesCpu) {
  DYT_REQUIRE_CUDA();
  auto gen = rng_for("CudaGemm.ForwardMatchesCpu");
  Gemm g(nullptr);
  for (DType dt : kDtypes)
    for (Shape s : kShapes) check_forward(g, dt, s, gen);
}

TEST(CudaGemm, BackwardInputMatchesCpu) {
  DYT_REQUIRE_CUDA();
  auto gen = rng_for("CudaGemm.BackwardInputMatchesCpu");
  Gemm g(nullptr);
  for (DType dt : kDtypes)
    for (Shape s : kShapes)
      for (bool accumulate : {false, true}) check_backward_input(g, dt, s, accumulate, gen);
}

TEST(CudaGemm, BackwardWeightAccumulatesLikeCpu) {
  DYT_REQUIRE_CUDA();
  auto gen = rng_for("CudaGemm.BackwardWeightAccumulatesLikeCpu");
  Gemm g(nullptr);
  for (DType dt : kDtypes)
    for (Shape s : kShapes) check_backward_weight(g, dt, s, gen);
}

// Views that start 1 element into an allocation: 2-byte (bf16) or 4-byte
// (f32) aligned pointers, which the heuristic must be told about.
TEST(CudaGemm, MisalignedViewsMatchCpu) {
  DYT_REQUIRE_CUDA();
  auto gen = rng_for("CudaGemm.MisalignedViewsMatchCpu");
  Gemm g(nullptr);
  for (DType dt : kDtypes)
    for (Shape s : {Shape{7, 33, 17}, Shape{16, 64, 192}}) {
      check_forward(g, dt, s, gen, 1);
      check_backward_input(g, dt, s, true, gen, 1);
      check_backward_input(g, dt, s, false, gen, 1);
      check_backward_weight(g, dt, s, gen, 1);
    }
}

// One heuristic query per problem; the second call with the same problem
// reuses the algorithm; a new shape, dtype, accumulate flag or alignment is a
// new problem.
TEST(CudaGemm, AlgorithmIsChosenOncePerProblem) {
  DYT_REQUIRE_CUDA();
  auto gen = rng_for("CudaGemm.AlgorithmIsChosenOncePerProblem");
  Gemm g(nullptr);
  const Shape s{9, 24, 40};
  DevBuf x(random_vec(s.n * s.in, gen), DType::BF16), w(random_vec(s.out * s.in, gen), DType::BF16),
      y(s.n * s.out, DType::BF16);
  auto stats = [&] {
    const cuda::GemmStats st = g.stats();
    return std::vector<int64_t>{st.heuristic_queries, st.cache_hits, st.matmuls};
  };
  EXPECT_EQ(stats(), (std::vector<int64_t>{0, 0, 0}));
  g.linear_forward(x.view({s.n, s.in}), w.view({s.out, s.in}), y.view({s.n, s.out}));
  EXPECT_EQ(stats(), (std::vector<int64_t>{1, 0, 1}));
  g.linear_forward(x.view({s.n, s.in}), w.view({s.out, s.in}), y.view({s.n, s.out}));
  EXPECT_EQ(stats(), (std::vector<int64_t>{1, 1, 2})) << "the second call must hit the cache";
  // Fewer rows: another problem.
  g.linear_forward(x.view({s.n - 1, s.in}), w.view({s.out, s.in}), y.view({s.n - 1, s.out}));
  EXPECT_EQ(stats(), (std::vector<int64_t>{2, 1, 3}));
  // The backward input with and without accumulation: two problems.
  DevBuf dx(s.n * s.in, DType::BF16);
  dx.poison();
  g.linear_backward_input(y.view({s.n, s.out}), w.view({s.out, s.in}), dx.view({s.n, s.in}), false);
  g.linear_backward_input(y.view({s.n, s.out}), w.view({s.out, s.in}), dx.view({s.n, s.in}), true);
  g.linear_backward_input(y.view({s.n, s.out}), w.view({s.out, s.in}), dx.view({s.n, s.in}), true);
  EXPECT_EQ(stats(), (std::vector<int64_t>{4, 2, 6}));
}

// Two calls on the same inputs give the same bits, for every op and dtype,
// from one Gemm and from a second one (same algorithm choice, own workspace).
TEST(CudaGemm, BitwiseRepeatable) {
  DYT_REQUIRE_CUDA();
  auto gen = rng_for("CudaGemm.BitwiseRepeatable");
  Gemm g1(nullptr), g2(nullptr);
  const Shape s{128, 256, 192};
  for (DType dt : kDtypes) {
    const Vec x = random_vec(s.n * s.in, gen), w = random_vec(s.out * s.in, gen),
              dy = random_vec(s.n * s.out, gen), dw0 = random_vec(s.out * s.in, gen);
    DevBuf bx(x, dt), bw(w, dt), bdy(dy, dt);
    std::vector<std::vector<unsigned char>> runs;
    for (Gemm* g : {&g1, &g1, &g2}) {
      DevBuf y(s.n * s.out, dt), dx(s.n * s.in, dt), dw(dw0, DType::F32);
      y.poison();
      dx.poison();
      g->linear_forward(bx.view({s.n, s.in}), bw.view({s.out, s.in}), y.view({s.n, s.out}));
      g->linear_backward_input(bdy.view({s.n, s.out}), bw.view({s.out, s.in}),
                               dx.view({s.n, s.in}), false);
      g->linear_backward_weight(bdy.view({s.n, s.out}), bx.view({s.n, s.in}),
                                dw.view({s.out, s.in}));
      std::vector<unsigned char> bits = y.raw(), b = dx.raw(), c = dw.raw();
      bits.insert(bits.end(), b.begin(), b.end());
      bits.insert(bits.end(), c.begin(), c.end());
      runs.push_back(std::move(bits));
    }
    EXPECT_TRUE(runs[0] == runs[1]) << cuda_test::dtype_name(dt) << ": two calls of one Gemm differ";
    EXPECT_TRUE(runs[0] == runs[2]) << cuda_test::dtype_name(dt) << ": two Gemm contexts differ";
  }
}

// Bad arguments are rejected with the op and the argument named, before any
// cuBLASLt call (no matmul counted, outputs untouched).
TEST(CudaGemm, RejectsBadArgumentsBeforeAnyWork) {
  DYT_REQUIRE_CUDA();
  Gemm g(nullptr);
  DevBuf x(6 * 4, DType::BF16), w(5 * 4, DType::BF16), wf(5 * 4, DType::F32), y(6 * 5, DType::BF16),
      dwb(5 * 4, DType::BF16), dw(5 * 4, DType::F32), big(64, DType::BF16);
  y.poison();
  Vec host_mem(6 * 4, 1.0f);
  auto expect_error = [&](auto call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one naming \"" << needle << "\"";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { g.linear_forward(x.view({6, 4}), wf.view({5, 4}), y.view({6, 5})); },
               "linear_forward: w is F32, expected BF16");
  expect_error([&] { g.linear_forward(x.view({6, 4}), w.view({4, 5}), y.view({6, 5})); },
               "linear_forward: x has shape [6, 4], expected 6 rows of width 5");
  expect_error([&] { g.linear_forward(x.view({6, 4}), w.view({5, 4}), y.view({5, 6})); },
               "linear_forward: y has shape [5, 6]");
  expect_error([&] { g.linear_forward(x.view({6, 4}), w.view({20}), y.view({6, 5})); },
               "linear_forward: w must be rank 2");
  expect_error(
      [&] {
        g.linear_forward(cpu_f32(host_mem.data(), {6, 4}), wf.view({5, 4}), y.view({6, 5}));
      },
      "linear_forward: x must be a CUDA tensor");
  expect_error([&] { g.linear_forward(big.view({6, 4}), w.view({5, 4}), big.view({6, 5})); },
               "linear_forward: y overlaps x");
  expect_error([&] { g.linear_backward_input(y.view({6, 5}), w.view({5, 4}), x.view({4, 6}), true); },
               "linear_backward_input: dx has shape [4, 6]");
  expect_error([&] { g.linear_backward_weight(y.view({6, 5}), x.view({6, 4}), dwb.view({5, 4})); },
               "linear_backward_weight: dw is BF16, expected F32");
  expect_error([&] { g.linear_backward_weight(y.view({6, 5}), x.view({6, 5}), dw.view({5, 4})); },
               "linear_backward_weight: x has shape [6, 5], expected 6 rows of width 4");
  EXPECT_EQ(g.stats().matmuls, 0);
  EXPECT_EQ(g.stats().heuristic_queries, 0);
  for (float v : y.download()) ASSERT_TRUE(std::isnan(v)) << "y was written by a rejected call";
}

// No rows, or a zero width: nothing to do, no cuBLASLt call.
TEST(CudaGemm, EmptyProblemsAreNoOps) {
  DYT_REQUIRE_CUDA();
  Gemm g(nullptr);
  DevBuf x(8, DType::F32), w(8, DType::F32), dw(8, DType::F32);
  dw.upload(Vec(8, 0.5f));
  g.linear_forward(x.view({0, 4}), w.view({2, 4}), x.view({0, 2}));
  g.linear_backward_input(x.view({0, 2}), w.view({2, 4}), x.view({0, 4}), false);
  g.linear_backward_weight(x.view({0, 2}), w.view({0, 4}), dw.view({2, 4}));
  g.linear_forward(x.view({3, 2}), w.view({0, 2}), dw.view({3, 0}));
  EXPECT_EQ(g.stats().matmuls, 0);
  EXPECT_TRUE(dw.download() == Vec(8, 0.5f)) << "dw += 0 changed dw";
}

}  // namespace dyt::cuda_test
