// The CUDA optimizer step (kernels/cuda/optimizer_ops.h) and embedding
// (kernels/cuda/embedding_ops.h) against the CPU code, bit for bit: every op
// here is designed to give the CPU's exact fp32/double results
// (docs/cuda_kernels.md), so the comparisons are of bits, not tolerances.
//
//  - AdamW: three steps against trainer::AdamW itself (main build), with the
//    decaying and non-decaying segments of a real layout; p, m, v equal bit
//    for bit and the bf16 work copy equals round-to-nearest-even of p. Many
//    short segments, empty ones and holes (more than one launch's table)
//    against the shared element update on the host.
//  - sum_squares against trainer::grad_sum_squares on lengths around the
//    chunk size, values spread over 2^±20 (so the order of the sum shows);
//    NaN and inf inputs; repeatability with a poisoned caller workspace.
//  - scale_inplace against trainer::clip_grads.
//  - embedding forward/backward against the CPU ops: repeated tokens (long
//    runs), odd widths (1, 3, 33) and vector widths, F32/BF16 tables, outputs
//    and gradients, token counts across the sort's tile (2048), misaligned
//    views, ids outside the vocabulary (NaN rows / skipped rows, no access
//    outside the tensors: the emulator's guard pages would fault), and
//    kernels::kAbsentToken (zero rows / skipped rows, as the CPU ops).
// Outputs that are written (=) are poisoned with NaN first; "+=" outputs
// start from random values. Tests that need a GPU skip without one; the
// argument checks run everywhere.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu_ops.h"
#include "kernels/cuda/embedding_ops.h"
#include "kernels/cuda/optimizer_ops.h"
#include "kernels/op_params.h"
#include "kernels/optimizer_math.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "trainer/grad_norm.h"
#ifdef DYT_TEST_WITH_TRAINER
#include "configs/config.h"
#include "trainer/optimizer.h"
#include "trainer/param_layout.h"
#endif

namespace dyt::cuda_test {
namespace {

static_assert(cuda::kSumSquaresChunk == trainer::kNormChunk,
              "the CUDA sum of squares must chunk as trainer/grad_norm.h does");

using kernels::AdamWScalars;
using kernels::ParamSegment;
using kernels::cpu_f32;
using kernels::cpu_i32;

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
uint64_t bits(double f) {
  uint64_t u;
  std::memcpy(&u, &f, 8);
  return u;
}

// Every element equal bit for bit; names the first difference.
void expect_bitwise(const Vec& actual, const Vec& expected, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  size_t diffs = 0, first = 0;
  for (size_t i = 0; i < actual.size(); ++i)
    if (bits(actual[i]) != bits(expected[i]) && diffs++ == 0) first = i;
  EXPECT_EQ(diffs, 0u) << what << ": " << diffs << " of " << actual.size()
                       << " elements differ; first at " << first << ": got " << actual[first]
                       << " (0x" << std::hex << bits(actual[first]) << "), expected "
                       << expected[first] << " (0x" << bits(expected[first]) << std::dec
                       << ") (replay with " << replay() << ")";
}

// Values of either sign with magnitudes spread over 2^lo .. 2^hi.
Vec spread_vec(size_t n, int lo, int hi) {
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> expo(lo, hi), sign(0, 1);
  Vec v(n);
  for (float& x : v) x = std::ldexp(mant(rng()), expo(rng())) * (sign(rng()) ? -1.0f : 1.0f);
  return v;
}

double download_f64(const DevBuf& b) {
  double out = 0;
  DYT_CUDA_CHECK(cudaDeviceSynchronize());
  DYT_CUDA_CHECK(cudaMemcpy(&out, b.data(), sizeof out, cudaMemcpyDeviceToHost));
  return out;
}
// An F64 [1] output (DevBuf counts 4-byte elements: two of them), poisoned.
struct F64Out {
  DevBuf buf{2, DType::F32};
  F64Out() { buf.poison(); }
  Tensor view() const { return Tensor(buf.data(), DType::F64, Device::CUDA, {1}); }
  double get() const { return download_f64(buf); }
};

// ---- AdamW ------------------------------------------------------------------------------

// Per-step constants for the tests that do not need torch's (those that
// compare with trainer::AdamW take its own, AdamW::scalars): β = (0.9, 0.95),
// ε = 1e-8, wd = 0.1, bias corrections of step t, in float.
AdamWScalars test_scalars(int step, double lr) {
  AdamWScalars s;
  s.beta1 = 0.9f, s.one_minus_beta1 = 0.1f, s.beta2 = 0.95f, s.one_minus_beta2 = 0.05f;
  s.eps = 1e-8f;
  s.neg_step_size = static_cast<float>(-lr / (1.0 - std::pow(0.9, step)));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(0.95, step)));
  s.decay = static_cast<float>(1.0 - lr * 0.1);
  return s;
}

// The host reference: the shared element update over the segments.
void host_adamw(Vec& p, const Vec& g, Vec& m, Vec& v, const std::vector<ParamSegment>& segs,
                const AdamWScalars& s) {
  for (const ParamSegment& seg : segs)
    for (int64_t i = seg.begin; i < seg.end; ++i)
      kernels::adamw_update(p[i], m[i], v[i], g[i], s, seg.decay);
}

struct DeviceAdam {
  DevBuf p, g, m, v, work;
  DeviceAdam(const Vec& p0, size_t n)
      : p(p0, DType::F32), g(n, DType::F32), m(Vec(n, 0.0f), DType::F32),
        v(Vec(n, 0.0f), DType::F32), work(n, DType::BF16) {}
  void step(const Vec& grads, const std::vector<ParamSegment>& segs, const AdamWScalars& s,
            bool with_work) {
    const int64_t n = static_cast<int64_t>(grads.size());
    g.upload(grads);
    work.poison();
    const Tensor tw = work.view({n});
    cuda::adamw_step(p.view({n}), g.view({n}), m.view({n}), v.view({n}), segs, s,
                     with_work ? &tw : nullptr, nullptr);
    DYT_CUDA_CHECK(cudaDeviceSynchronize());
  }
};

// bf16(x) as a float, round to nearest even.
Vec bf16_of(const Vec& x) { return round_to(DType::BF16, x); }

constexpr double kLr[3] = {1e-3, 3e-3, 2e-3};

#ifdef DYT_TEST_WITH_TRAINER
// A small LLaMA-DyT layout: embedding (4800 elements, decays), per layer α, γ,
// β (no decay) and the matrices (decay), the final norm, the embedding scale.
trainer::ParamLayout test_layout() {
  trainer::ModelDims dims;
  dims.vocab = 300;
  dims.d = 16;
  dims.layers = 2;
  dims.heads = 2;
  dims.kv_heads = 1;
  dims.head_dim = 8;
  dims.ffn = 24;
  dims.norm = trainer::Norm::DyT;
  dims.norm_bias = true;
  dims.embed_scale = true;
  return trainer::ParamLayout(dims);
}

// Maximal runs of entries with one decay flag, as trainer::AdamW builds them.
std::vector<ParamSegment> layout_segments(const trainer::ParamLayout& layout) {
  std::vector<ParamSegment> segs;
  for (const trainer::ParamEntry& e : layout.entries()) {
    if (e.numel == 0) continue;
    const bool decay = e.weight_decay();
    if (!segs.empty() && segs.back().decay == decay && segs.back().end == e.offset)
      segs.back().end = e.offset + e.numel;
    else
      segs.push_back({e.offset, e.offset + e.numel, decay});
  }
  return segs;
}

config::TrainConfig adam_config() {
  config::TrainConfig t;
  t.set_beta1(0.9);
  t.set_beta2(0.95);
  t.set_adam_eps(1e-8);
  t.set_weight_decay(0.1);
  return t;
}

TEST(CudaAdamW, ThreeStepsEqualTrainerAdamWBitwise) {
  DYT_REQUIRE_CUDA();
  reseed("CudaAdamW.ThreeStepsEqualTrainerAdamWBitwise");
  const trainer::ParamLayout layout = test_layout();
  const std::vector<ParamSegment> segs = layout_segments(layout);
  int decaying = 0;
  for (const ParamSegment& s : segs) decaying += s.decay;
  ASSERT_GT(decaying, 0);
  ASSERT_LT(decaying, static_cast<int>(segs.size()));
  const size_t n = static_cast<size_t>(layout.total());
  trainer::AdamW cpu(layout, adam_config());

  Vec p = random_vec(n, rng());
  DeviceAdam dev(p, n);
  for (int step = 1; step <= 3; ++step) {
    const Vec g = spread_vec(n, -14, 0);
    dev.step(g, segs, cpu.scalars(step, kLr[step - 1]), /*with_work=*/true);
    cpu.step(p.data(), g.data(), kLr[step - 1]);
    const std::string at = " after step " + std::to_string(step);
    expect_bitwise(dev.p.download(), p, "p" + at);
    expect_bitwise(dev.m.download(), cpu.exp_avg_to_host(), "m" + at);
    expect_bitwise(dev.v.download(), cpu.exp_avg_sq_to_host(), "v" + at);
    // The work copy holds round(p) in every segment; the layout's alignment
    // gaps between them are left as they were (the poison).
    Vec want = bf16_of(p);
    std::vector<bool> in_segment(n, false);
    for (const ParamSegment& s : segs)
      for (int64_t i = s.begin; i < s.end; ++i) in_segment[static_cast<size_t>(i)] = true;
    const uint32_t poison = 0xffff0000u;  // DevBuf::poison's bf16 0xffff, widened
    for (size_t i = 0; i < n; ++i)
      if (!in_segment[i]) std::memcpy(&want[i], &poison, 4);
    expect_bitwise(dev.work.download(), want, "bf16 work copy" + at);
  }
}

// The reference the other AdamW tests use is the trainer's arithmetic.
TEST(CudaAdamWHost, SharedUpdateEqualsTrainerAdamW) {
  reseed("CudaAdamWHost.SharedUpdateEqualsTrainerAdamW");
  const trainer::ParamLayout layout = test_layout();
  const std::vector<ParamSegment> segs = layout_segments(layout);
  const size_t n = static_cast<size_t>(layout.total());
  trainer::AdamW cpu(layout, adam_config());
  Vec p = random_vec(n, rng()), q = p, m(n, 0.0f), v(n, 0.0f);
  for (int step = 1; step <= 3; ++step) {
    const Vec g = spread_vec(n, -14, 0);
    host_adamw(q, g, m, v, segs, cpu.scalars(step, kLr[step - 1]));
    cpu.step(p.data(), g.data(), kLr[step - 1]);
    expect_bitwise(q, p, "p after step " + std::to_string(step));
  }
}
#endif  // DYT_TEST_WITH_TRAINER

// More segments than one launch carries (32), empty ones, one-element ones,
// and holes between them that must stay untouched; with and without the
// work copy.
TEST(CudaAdamW, ManySegmentsAndHolesEqualHostBitwise) {
  DYT_REQUIRE_CUDA();
  reseed("CudaAdamW.ManySegmentsAndHolesEqualHostBitwise");
  std::vector<ParamSegment> segs;
  std::uniform_int_distribution<int> len(0, 300), hole(0, 3), coin(0, 1);
  int64_t at = 0;
  for (int k = 0; k < 75; ++k) {
    at += hole(rng()) == 0 ? len(rng()) / 10 : 0;
    const int64_t l = k % 9 == 4 ? 0 : k % 7 == 3 ? 1 : len(rng());
    segs.push_back({at, at + l, coin(rng()) == 1});
    at += l;
  }
  const size_t n = static_cast<size_t>(at + 5);
  for (bool with_work : {true, false}) {
    const Vec p0 = random_vec(n, rng());
    Vec p = p0, m(n, 0.0f), v(n, 0.0f);
    DeviceAdam dev(p0, n);
    for (int step = 1; step <= 3; ++step) {
      const Vec g = spread_vec(n, -14, 0);
      const AdamWScalars s = test_scalars(step, kLr[step - 1]);
      host_adamw(p, g, m, v, segs, s);
      dev.step(g, segs, s, with_work);
      const std::string at_step = " after step " + std::to_string(step) +
                                  (with_work ? " (with work copy)" : "");
      expect_bitwise(dev.p.download(), p, "p" + at_step);
      expect_bitwise(dev.m.download(), m, "m" + at_step);
      expect_bitwise(dev.v.download(), v, "v" + at_step);
      if (with_work) {
        // Inside the segments the rounded p; the holes are not written (NaN).
        const Vec w = dev.work.download();
        Vec expect(n, std::nanf(""));
        const Vec pb = bf16_of(p);
        for (const ParamSegment& sg : segs)
          for (int64_t i = sg.begin; i < sg.end; ++i) expect[i] = pb[i];
        size_t bad = 0;
        for (size_t i = 0; i < n; ++i)
          bad += std::isnan(expect[i]) ? !std::isnan(w[i]) : bits(w[i]) != bits(expect[i]);
        EXPECT_EQ(bad, 0u) << "work copy" << at_step << " (replay with " << replay() << ")";
      }
    }
    // The holes kept their first values.
    const Vec pd = dev.p.download();
    std::vector<bool> inside(n, false);
    for (const ParamSegment& sg : segs)
      for (int64_t i = sg.begin; i < sg.end; ++i) inside[i] = true;
    size_t holes = 0, moved = 0;
    for (size_t i = 0; i < n; ++i)
      if (!inside[i]) ++holes, moved += bits(pd[i]) != bits(p0[i]);
    EXPECT_GT(holes, 0u);
    EXPECT_EQ(moved, 0u) << "elements outside every segment changed";
  }
}

// ---- sum of squares -------------------------------------------------------------------

TEST(CudaSumSquares, EqualsGradSumSquaresBitwise) {
  DYT_REQUIRE_CUDA();
  reseed("CudaSumSquares.EqualsGradSumSquaresBitwise");
  const int64_t c = trainer::kNormChunk;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{9}, int64_t{1001}, c - 1, c,
                    c + 1, 3 * c + 5}) {
    const Vec g = spread_vec(static_cast<size_t>(n), -20, 20);
    const DevBuf bg(g, DType::F32);
    F64Out out;
    cuda::sum_squares(bg.view({n}), out.view(), nullptr);
    const double expect = trainer::grad_sum_squares(g.data(), n);
    const double got = out.get();
    EXPECT_EQ(bits(got), bits(expect)) << "n = " << n << ": got " << got << ", expected " << expect
                                       << " (replay with " << replay() << ")";
    // And against an exact-ish reference, for a sum with no CPU to agree with.
    long double ref = 0;
    for (float x : g) ref += static_cast<long double>(x) * x;
    EXPECT_LE(std::fabs(static_cast<double>((got - ref) / ref)), 1e-12) << "n = " << n;
  }
}

// saturation_stats (the DyT input's health) against the CPU op, bit for bit:
// F32 and BF16 inputs (the CPU given the bf16 values as floats), lengths
// around the chunk, values on the threshold; it adds to what out holds.
TEST(CudaSaturationStats, EqualsTheCpuOpBitwise) {
  DYT_REQUIRE_CUDA();
  reseed("CudaSaturationStats.EqualsTheCpuOpBitwise");
  const int64_t c = trainer::kNormChunk;
  const float threshold = 3.0f;
  const Vec alpha = {0.75f};
  const DevBuf ba(alpha, DType::F32);
  for (DType dt : {DType::F32, DType::BF16})
    for (int64_t n : {int64_t{1}, int64_t{9}, int64_t{1001}, c - 1, c, c + 1, 3 * c + 5}) {
      Vec x = round_to(dt, spread_vec(static_cast<size_t>(n), -6, 6));
      for (int64_t i = 0; i < n; i += 7) x[static_cast<size_t>(i)] = 4.0f;  // α·x = 3: not counted
      const DevBuf bx(x, dt);
      DevBuf out(4, DType::F32);  // two doubles
      const std::vector<double> before = {1.5, 2.0};
      DYT_CUDA_CHECK(cudaMemcpy(out.data(), before.data(), 16, cudaMemcpyHostToDevice));
      cuda::saturation_stats(bx.view({n}), ba.view({1}), threshold,
                             Tensor(out.data(), DType::F64, Device::CUDA, {2}), nullptr);
      DYT_CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<double> got(2);
      DYT_CUDA_CHECK(cudaMemcpy(got.data(), out.data(), 16, cudaMemcpyDeviceToHost));
      double sum_sq = 0;
      int64_t saturated = 0;
      cpu::saturation_stats(cpu_f32(x.data(), {n}), alpha[0], threshold, &sum_sq, &saturated);
      const char* name = dt == DType::BF16 ? "bf16" : "f32";
      EXPECT_EQ(bits(got[0]), bits(before[0] + sum_sq)) << name << " n = " << n << ": " << got[0];
      EXPECT_EQ(got[1], before[1] + static_cast<double>(saturated)) << name << " n = " << n;
      if (n > 1) EXPECT_GT(saturated, 0) << name << " n = " << n;  // n = 1 holds only the threshold
    }
}

TEST(CudaSumSquares, NonFiniteInputsGiveNonFiniteSums) {
  DYT_REQUIRE_CUDA();
  reseed("CudaSumSquares.NonFiniteInputsGiveNonFiniteSums");
  const int64_t n = 2 * trainer::kNormChunk + 17;
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* name;
    std::vector<std::pair<int64_t, float>> set;
  };
  const Case cases[] = {
      {"NaN", {{40000, std::nanf("")}}},
      {"-inf", {{n - 1, -inf}}},
      {"inf and NaN", {{3, inf}, {70000, std::nanf("")}}},
  };
  for (const Case& cs : cases) {
    Vec g = random_vec(static_cast<size_t>(n), rng());
    for (const auto& [i, x] : cs.set) g[i] = x;
    const DevBuf bg(g, DType::F32);
    F64Out out;
    cuda::sum_squares(bg.view({n}), out.view(), nullptr);
    const double got = out.get(), expect = trainer::grad_sum_squares(g.data(), n);
    EXPECT_FALSE(std::isfinite(got)) << cs.name;
    EXPECT_EQ(std::isnan(got), std::isnan(expect)) << cs.name << ": got " << got << ", CPU " << expect;
    EXPECT_EQ(std::isinf(got), std::isinf(expect)) << cs.name << ": got " << got << ", CPU " << expect;
  }
}

TEST(CudaSumSquares, RepeatableAndEmpty) {
  DYT_REQUIRE_CUDA();
  reseed("CudaSumSquares.RepeatableAndEmpty");
  const int64_t n = 2 * trainer::kNormChunk + 3;
  const Vec g = spread_vec(static_cast<size_t>(n), -20, 20);
  const DevBuf bg(g, DType::F32);
  F64Out a, b;
  cuda::sum_squares(bg.view({n}), a.view(), nullptr);
  // A caller's workspace of exactly the size asked for, poisoned.
  const size_t bytes = cuda::sum_squares_workspace_bytes(n);
  ASSERT_EQ(bytes, 3 * sizeof(double));
  DevBuf ws_buf(bytes / 4, DType::F32);
  ws_buf.poison();
  const cuda::Workspace ws{ws_buf.data(), bytes};
  cuda::sum_squares(bg.view({n}), b.view(), nullptr, &ws);
  EXPECT_EQ(bits(a.get()), bits(b.get()));
  const cuda::Workspace small{ws_buf.data(), bytes - 8};
  EXPECT_THROW(cuda::sum_squares(bg.view({n}), b.view(), nullptr, &small), std::invalid_argument);

  F64Out zero;
  cuda::sum_squares(Tensor(nullptr, DType::F32, Device::CUDA, {0}), zero.view(), nullptr);
  EXPECT_EQ(bits(zero.get()), bits(0.0));
}

// ---- scale ------------------------------------------------------------------------------

TEST(CudaScale, EqualsClipGradsBitwise) {
  DYT_REQUIRE_CUDA();
  reseed("CudaScale.EqualsClipGradsBitwise");
  for (int64_t n : {int64_t{1}, int64_t{1023}, int64_t{5000}}) {
    Vec g = spread_vec(static_cast<size_t>(n), -10, 4);
    DevBuf bg(g, DType::F32);
    const double norm = std::sqrt(trainer::grad_sum_squares(g.data(), n));
    const double coef = trainer::clip_grads(g.data(), n, norm, 0.3 * norm);  // clips
    ASSERT_LT(coef, 1.0);
    cuda::scale_inplace(bg.view({n}), static_cast<float>(coef), nullptr);
    expect_bitwise(bg.download(), g, "scale_inplace n=" + std::to_string(n));
  }
}

// ---- embedding ----------------------------------------------------------------------------

// Token ids in [0, V) drawn so that a few tokens repeat a lot (u³ skews to
// small ids): long runs for the backward, and every id of a small V occurs.
std::vector<int32_t> skewed_tokens(size_t n, int32_t vocab) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = std::min(vocab - 1, static_cast<int32_t>(vocab * std::pow(u(rng()), 3)));
  return t;
}

struct TokBuf {
  DevBuf buf;
  int64_t n;
  explicit TokBuf(const std::vector<int32_t>& t) : buf(t.size(), DType::F32), n(t.size()) {
    DYT_CUDA_CHECK(cudaMemcpy(buf.data(), t.data(), t.size() * 4, cudaMemcpyHostToDevice));
  }
  Tensor view() const { return Tensor(buf.data(), DType::I32, Device::CUDA, {n}); }
};

Vec cpu_embedding_forward(const std::vector<int32_t>& tok, const Vec& table, int64_t d) {
  const int64_t n = tok.size(), vocab = table.size() / d;
  Vec out(n * d);
  Tensor tout = cpu_f32(out.data(), {n, d});
  cpu::embedding_forward(cpu_i32(const_cast<int32_t*>(tok.data()), {n}),
                         cpu_f32(const_cast<float*>(table.data()), {vocab, d}), tout);
  return out;
}

void check_embedding_forward(DType dt_table, DType dt_out, int64_t n, int64_t d, int32_t vocab,
                             size_t offset) {
  const std::vector<int32_t> tok = skewed_tokens(n, vocab);
  const Vec table = round_to(dt_table, random_vec(vocab * d, rng()));
  const DevBuf bt(table, dt_table, offset);
  DevBuf bo(n * d, dt_out, offset);
  bo.poison();
  const TokBuf tb(tok);
  cuda::embedding_forward(tb.view(), bt.view({vocab, d}), bo.view({n, d}), nullptr);
  const Vec expect = round_to(dt_out, cpu_embedding_forward(tok, table, d));
  expect_bitwise(bo.download(), expect,
                 std::string("embedding_forward table ") + cuda_test::dtype_name(dt_table) + " out " +
                     cuda_test::dtype_name(dt_out) + " [" + std::to_string(n) + ", " + std::to_string(d) +
                     "] offset " + std::to_string(offset));
}

TEST(CudaEmbedding, ForwardEqualsCpuBitwise) {
  DYT_REQUIRE_CUDA();
  reseed("CudaEmbedding.ForwardEqualsCpuBitwise");
  for (DType dt_table : {DType::F32, DType::BF16})
    for (DType dt_out : {DType::F32, DType::BF16})
      for (int64_t d : {1, 3, 33, 64, 520}) {
        check_embedding_forward(dt_table, dt_out, 37, d, 50, 0);
        check_embedding_forward(dt_table, dt_out, 5, d, 7, 1);  // misaligned: the scalar path
      }
}

// Ids outside [0, V), other than kAbsentToken, give NaN rows and leave the
// others right.
TEST(CudaEmbedding, ForwardBadIdsGiveNanRows) {
  DYT_REQUIRE_CUDA();
  reseed("CudaEmbedding.ForwardBadIdsGiveNanRows");
  const int32_t vocab = 9;
  for (int64_t d : {3, 8}) {
    std::vector<int32_t> tok = skewed_tokens(12, vocab);
    tok[0] = -2, tok[5] = vocab, tok[11] = 1 << 30, tok[7] = std::numeric_limits<int32_t>::min();
    const Vec table = random_vec(vocab * d, rng());
    const DevBuf bt(table, DType::F32);
    DevBuf bo(tok.size() * d, DType::F32);
    bo.poison();
    const TokBuf tb(tok);
    const int64_t n = tok.size();
    cuda::embedding_forward(tb.view(), bt.view({vocab, d}), bo.view({n, d}), nullptr);
    const Vec got = bo.download();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < d; ++c) {
        const bool bad = tok[r] < 0 || tok[r] >= vocab;
        const float x = got[r * d + c];
        if (bad) EXPECT_TRUE(std::isnan(x)) << "row " << r << " (id " << tok[r] << ")";
        else EXPECT_EQ(bits(x), bits(table[tok[r] * d + c])) << "row " << r << " col " << c;
      }
  }
}

// kAbsentToken (a row on another tensor-parallel rank) gives a zero row, bit
// for bit the CPU op's (+0), on both paths and in every table/output dtype;
// the other rows are the table's.
TEST(CudaEmbedding, ForwardAbsentIdsGiveZeroRows) {
  DYT_REQUIRE_CUDA();
  reseed("CudaEmbedding.ForwardAbsentIdsGiveZeroRows");
  const int32_t vocab = 11;
  for (DType dt_table : {DType::F32, DType::BF16})
    for (DType dt_out : {DType::F32, DType::BF16})
      for (int64_t d : {3, 8, 33})
        for (size_t offset : {0, 1}) {
          std::vector<int32_t> tok = skewed_tokens(20, vocab);
          for (size_t r : {0, 6, 7, 19}) tok[r] = kernels::kAbsentToken;
          const int64_t n = tok.size();
          const Vec table = round_to(dt_table, random_vec(vocab * d, rng()));
          const DevBuf bt(table, dt_table, offset);
          DevBuf bo(n * d, dt_out, offset);
          bo.poison();
          const TokBuf tb(tok);
          cuda::embedding_forward(tb.view(), bt.view({vocab, d}), bo.view({n, d}), nullptr);
          const Vec expect = round_to(dt_out, cpu_embedding_forward(tok, table, d));
          ASSERT_EQ(expect[0], 0.0f) << "the CPU reference must zero an absent row";
          expect_bitwise(bo.download(), expect,
                         std::string("embedding_forward with absent ids, table ") +
                             cuda_test::dtype_name(dt_table) + " out " +
                             cuda_test::dtype_name(dt_out) + " d " + std::to_string(d) +
                             " offset " + std::to_string(offset));
        }
}

void check_embedding_backward(DType dt, int64_t n, int64_t d, int32_t vocab, size_t offset,
                              const std::vector<int32_t>* given = nullptr) {
  const std::vector<int32_t> tok = given ? *given : skewed_tokens(n, vocab);
  const Vec dout = round_to(dt, random_vec(n * d, rng()));
  const Vec dtable0 = random_vec(vocab * d, rng());
  const DevBuf bd(dout, dt, offset);
  DevBuf btab(dtable0, DType::F32, offset);
  const TokBuf tb(tok);
  cuda::embedding_backward(tb.view(), bd.view({n, d}), btab.view({vocab, d}), nullptr);
  // The CPU op on the valid rows (it throws on bad ids; the kernel skips them).
  std::vector<int32_t> ctok;
  Vec cdout;
  for (int64_t r = 0; r < n; ++r)
    if (tok[r] >= 0 && tok[r] < vocab) {
      ctok.push_back(tok[r]);
      cdout.insert(cdout.end(), dout.begin() + r * d, dout.begin() + (r + 1) * d);
    }
  Vec expect = dtable0;
  const int64_t nc = ctok.size();
  Tensor texp = cpu_f32(expect.data(), {vocab, d});
  cpu::embedding_backward(cpu_i32(ctok.data(), {nc}), cpu_f32(cdout.data(), {nc, d}), texp);
  expect_bitwise(btab.download(), expect,
                 std::string("embedding_backward dout ") + cuda_test::dtype_name(dt) + " [" +
                     std::to_string(n) + ", " + std::to_string(d) + "] V " +
                     std::to_string(vocab) + " offset " + std::to_string(offset));
}

TEST(CudaEmbedding, BackwardEqualsCpuBitwise) {
  DYT_REQUIRE_CUDA();
  reseed("CudaEmbedding.BackwardEqualsCpuBitwise");
  for (DType dt : {DType::F32, DType::BF16}) {
    for (int64_t d : {1, 3, 33, 64}) {
      check_embedding_backward(dt, 1, d, 5, 0);
      check_embedding_backward(dt, 37, d, 40, 0);
      check_embedding_backward(dt, 300, d, 40, 0);
    }
    check_embedding_backward(dt, 29, 8, 30, 1);  // misaligned: the scalar path
  }
  // Across the sort's shared-memory tile (2048 keys): global stages too.
  check_embedding_backward(DType::F32, 2049, 3, 40, 0);
  check_embedding_backward(DType::BF16, 5000, 16, 300, 0);
  // One token only: a single run of every row.
  const std::vector<int32_t> same(700, 3);
  check_embedding_backward(DType::F32, 700, 5, 4, 0, &same);
  // Runs of exactly one and two groups of the kernel's 8 rows, then a short
  // one, each ending where the next begins; positions interleaved.
  std::vector<int32_t> groups;
  for (int r = 0; r < 27; ++r) groups.push_back(r < 8 ? 0 : r < 24 ? 1 : 2);
  std::shuffle(groups.begin(), groups.end(), rng());
  check_embedding_backward(DType::F32, 27, 4, 3, 0, &groups);
  const std::vector<int32_t> eight(8, 1);
  check_embedding_backward(DType::BF16, 8, 33, 2, 0, &eight);
}

TEST(CudaEmbedding, BackwardSkipsBadIds) {
  DYT_REQUIRE_CUDA();
  reseed("CudaEmbedding.BackwardSkipsBadIds");
  std::vector<int32_t> tok = skewed_tokens(40, 6);
  tok[0] = -7, tok[13] = 6, tok[39] = 0x7fffffff;
  check_embedding_backward(DType::F32, 40, 3, 6, 0, &tok);
  check_embedding_backward(DType::BF16, 40, 8, 6, 0, &tok);
}

// kAbsentToken adds nothing: the table equals the CPU op's (which skips
// it) on the whole token list, bit for bit, and the rows that only absent
// positions would have touched keep their old bits.
TEST(CudaEmbedding, BackwardSkipsAbsentIds) {
  DYT_REQUIRE_CUDA();
  reseed("CudaEmbedding.BackwardSkipsAbsentIds");
  const int32_t vocab = 8;
  for (DType dt : {DType::F32, DType::BF16})
    for (int64_t d : {3, 8}) {
      std::vector<int32_t> tok = skewed_tokens(50, vocab - 1);  // id 7 never occurs
      for (size_t r = 0; r < tok.size(); r += 3) tok[r] = kernels::kAbsentToken;
      const int64_t n = tok.size();
      const Vec dout = round_to(dt, random_vec(n * d, rng()));
      const Vec dtable0 = random_vec(vocab * d, rng());
      const DevBuf bd(dout, dt);
      DevBuf btab(dtable0, DType::F32);
      const TokBuf tb(tok);
      cuda::embedding_backward(tb.view(), bd.view({n, d}), btab.view({vocab, d}), nullptr);
      Vec expect = dtable0;
      Tensor texp = cpu_f32(expect.data(), {vocab, d});
      cpu::embedding_backward(cpu_i32(tok.data(), {n}),
                              cpu_f32(const_cast<float*>(dout.data()), {n, d}), texp);
      const Vec got = btab.download();
      const std::string what = std::string("embedding_backward with absent ids, dout ") +
                               cuda_test::dtype_name(dt) + " d " + std::to_string(d);
      expect_bitwise(got, expect, what);
      expect_bitwise(Vec(got.end() - d, got.end()), Vec(dtable0.end() - d, dtable0.end()),
                     what + ": the untouched row " + std::to_string(vocab - 1));
    }
}

TEST(CudaEmbedding, BackwardRepeatableWithCallerWorkspace) {
  DYT_REQUIRE_CUDA();
  reseed("CudaEmbedding.BackwardRepeatableWithCallerWorkspace");
  const int64_t n = 3000, d = 12;
  const int32_t vocab = 64;
  const std::vector<int32_t> tok = skewed_tokens(n, vocab);
  const Vec dout = random_vec(n * d, rng()), dtable0 = random_vec(vocab * d, rng());
  const DevBuf bd(dout, DType::F32);
  const TokBuf tb(tok);
  DevBuf a(dtable0, DType::F32), b(dtable0, DType::F32);
  cuda::embedding_backward(tb.view(), bd.view({n, d}), a.view({vocab, d}), nullptr);
  const size_t bytes = cuda::embedding_backward_workspace_bytes(n);
  ASSERT_EQ(bytes, 4096 * sizeof(uint64_t));
  DevBuf ws_buf(bytes / 4, DType::F32);
  ws_buf.poison();
  const cuda::Workspace ws{ws_buf.data(), bytes};
  cuda::embedding_backward(tb.view(), bd.view({n, d}), b.view({vocab, d}), nullptr, &ws);
  expect_bitwise(b.download(), a.download(), "second run, caller workspace");
  const cuda::Workspace small{ws_buf.data(), bytes - 8};
  EXPECT_THROW(cuda::embedding_backward(tb.view(), bd.view({n, d}), b.view({vocab, d}), nullptr,
                                        &small),
               std::invalid_argument);
}

// ---- host-side contracts (no GPU needed) ---------------------------------------------------

TEST(CudaStepOpsHost, RejectsBadArgumentsBeforeAnyWork) {
  const Tensor p = fake(DType::F32, {10}), w = fake(DType::BF16, {10});
  const AdamWScalars s;
  const std::vector<ParamSegment> ok = {{0, 4, true}, {4, 10, false}};
  auto adam = [&](const Tensor& pp, const Tensor& g, const std::vector<ParamSegment>& segs,
                  const Tensor* work) { cuda::adamw_step(pp, g, p, p, segs, s, work, nullptr); };
  expect_invalid([&] { adam(p, fake(DType::BF16, {10}), ok, nullptr); }, "adamw_step", "bf16 g");
  expect_invalid([&] { adam(p, fake(DType::F32, {9}), ok, nullptr); }, "adamw_step", "g length");
  expect_invalid([&] { adam(fake(DType::F32, {10}, Device::CPU), p, ok, nullptr); }, "adamw_step",
                 "host p");
  const Tensor w32 = fake(DType::F32, {10}), w9 = fake(DType::BF16, {9});
  expect_invalid([&] { adam(p, p, ok, &w32); }, "adamw_step", "F32 work");
  expect_invalid([&] { adam(p, p, ok, &w9); }, "adamw_step", "work length");
  expect_invalid([&] { adam(p, p, {{0, 11, true}}, &w); }, "adamw_step", "segment past the end");
  expect_invalid([&] { adam(p, p, {{0, 5, true}, {4, 8, false}}, &w); }, "adamw_step",
                 "overlapping segments");
  expect_invalid([&] { adam(p, p, {{5, 4, true}}, &w); }, "adamw_step", "reversed segment");

  const Tensor out = fake(DType::F64, {1});
  expect_invalid([&] { cuda::sum_squares(fake(DType::BF16, {8}), out, nullptr); }, "sum_squares",
                 "bf16 g");
  expect_invalid([&] { cuda::sum_squares(p, fake(DType::F32, {1}), nullptr); }, "sum_squares",
                 "F32 out");
  expect_invalid([&] { cuda::sum_squares(p, fake(DType::F64, {2}), nullptr); }, "sum_squares",
                 "two outputs");
  expect_invalid([&] { cuda::scale_inplace(fake(DType::BF16, {8}), 0.5f, nullptr); },
                 "scale_inplace", "bf16 g");

  const Tensor tok = fake(DType::I32, {4}), table = fake(DType::F32, {7, 3});
  expect_invalid([&] { cuda::embedding_forward(fake(DType::F32, {4}), table, fake(DType::F32, {4, 3}), nullptr); },
                 "embedding_forward", "F32 tokens");
  expect_invalid([&] { cuda::embedding_forward(tok, table, fake(DType::F32, {4, 4}), nullptr); },
                 "embedding_forward", "out width");
  expect_invalid([&] { cuda::embedding_forward(tok, table, fake(DType::F32, {5, 3}), nullptr); },
                 "embedding_forward", "out rows");
  expect_invalid([&] { cuda::embedding_forward(tok, fake(DType::F32, {21}), fake(DType::F32, {4, 3}), nullptr); },
                 "embedding_forward", "rank-1 table");
  expect_invalid([&] { cuda::embedding_forward(fake(DType::I32, {4}, Device::CPU), table, fake(DType::F32, {4, 3}), nullptr); },
                 "embedding_forward", "host tokens");
  expect_invalid([&] { cuda::embedding_backward(tok, fake(DType::F32, {4, 3}), fake(DType::BF16, {7, 3}), nullptr); },
                 "embedding_backward", "bf16 dtable");
  expect_invalid([&] { cuda::embedding_backward(tok, fake(DType::I32, {4, 3}), table, nullptr); },
                 "embedding_backward", "I32 dout");
  expect_invalid([&] { cuda::embedding_backward(tok, fake(DType::F32, {3, 3}), table, nullptr); },
                 "embedding_backward", "dout rows");
}

// No tokens, no elements: nothing is queued and no device is touched.
TEST(CudaStepOpsHost, EmptyTensorsAreNoOps) {
  const Tensor none(nullptr, DType::F32, Device::CUDA, {0});
  EXPECT_NO_THROW(cuda::adamw_step(none, none, none, none, {{0, 0, true}}, AdamWScalars{},
                                   nullptr, nullptr));
  EXPECT_NO_THROW(cuda::scale_inplace(none, 2.0f, nullptr));
  const Tensor tok(nullptr, DType::I32, Device::CUDA, {0});
  const Tensor rows0(nullptr, DType::BF16, Device::CUDA, {0, 5});
  EXPECT_NO_THROW(cuda::embedding_forward(tok, fake(DType::F32, {7, 5}), rows0, nullptr));
  EXPECT_NO_THROW(cuda::embedding_backward(tok, rows0, fake(DType::F32, {7, 5}), nullptr));
}

}  // namespace
}  // namespace dyt::cuda_test
