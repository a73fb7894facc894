// The CUDA pointwise ops (kernels/cuda/pointwise_ops.h: RoPE, SwiGLU, scale,
// convert, cross-entropy and its vocab-parallel halves) against the CPU
// reference (kernels/cpu_ops.h) on seeded random inputs (never zeros;
// cuda_test_util.h), outputs poisoned with NaN before each run: fp32
// activations to 1e-5 relative, bf16 against the CPU op on the same
// bf16-rounded inputs within the bound from bf16's unit roundoff, the
// reductions (dscale, the loss sum) within bounds derived below. Odd shapes
// (T = 1, hd = 2, odd pair counts, V not a multiple of 8, element counts
// with a tail), misaligned views (scalar path), in-place calls, bitwise
// repeatability, bad targets, bad arguments. Tests that need a GPU call
// GTEST_SKIP() without one; the host-side contracts run everywhere.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu_ops.h"
#include "kernels/cuda/pointwise_ops.h"
#include "kernels/op_params.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dyt::cuda_test {
namespace {

using kernels::cpu_f32;
using kernels::cpu_i32;

constexpr DType kDtypes[] = {DType::F32, DType::BF16};
constexpr double kU24 = 0x1p-24;  // fp32's unit roundoff

Tensor host(const Vec& v, std::initializer_list<int64_t> dims) {
  return cpu_f32(const_cast<float*>(v.data()), dims);
}

std::mt19937& rng() {
  static std::mt19937 gen(run_seed());
  return gen;
}
// Each test draws from (run seed, its name), so it replays alone.
void reseed(const std::string& test) {
  uint32_t h = 2166136261u;
  for (unsigned char c : test) h = (h ^ c) * 16777619u;
  std::seed_seq seq{run_seed(), h};
  rng().seed(seq);
}

std::string shape_label(const std::string& op, DType dt, std::initializer_list<int64_t> dims,
                        const std::string& extra = "") {
  std::string s = op + " " + cuda_test::dtype_name(dt) + " [";
  bool first = true;
  for (int64_t d : dims) s += (first ? "" : ", ") + std::to_string(d), first = false;
  return s + "]" + (extra.empty() ? "" : " " + extra);
}

// Device buffers of I32 / F64, which DevBuf (F32/BF16) does not cover.
template <class E>
class RawBuf {
 public:
  explicit RawBuf(const std::vector<E>& host) : n_(host.size()) {
    DYT_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(1, n_) * sizeof(E)));
    DYT_CUDA_CHECK(cudaMemcpy(p_, host.data(), n_ * sizeof(E), cudaMemcpyHostToDevice));
  }
  RawBuf(const RawBuf&) = delete;
  RawBuf& operator=(const RawBuf&) = delete;
  ~RawBuf() { cudaFree(p_); }
  E* data() const { return static_cast<E*>(p_); }
  std::vector<E> download() const {
    DYT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<E> out(n_);
    DYT_CUDA_CHECK(cudaMemcpy(out.data(), p_, n_ * sizeof(E), cudaMemcpyDeviceToHost));
    return out;
  }
  void upload(const std::vector<E>& host) {
    DYT_CUDA_CHECK(cudaMemcpy(p_, host.data(), n_ * sizeof(E), cudaMemcpyHostToDevice));
  }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// ---- RoPE -------------------------------------------------------------------------------

struct RopeShape {
  int64_t batch, seq, heads, hd;
};
// T = 1 and hd = 2 (one pair), odd pair counts (hd 6, 34: the scalar path),
// hd 32 (the tiny configs) and 128 (LLaMA; the vector path in both dtypes),
// positions up to 4095 where the angle's double formation matters.
const RopeShape kRopeShapes[] = {
    {1, 1, 1, 2}, {3, 1, 2, 2}, {2, 5, 3, 6}, {2, 7, 3, 32}, {1, 9, 2, 34},
    {2, 3, 4, 128}, {1, 4096, 1, 16}, {1, 17, 5, 256},
};

// Rotated values: y = a·c ∓ b·s. The two devices share the function but may
// differ in fp32: the two products and the sum (contracted into an fma or
// not: 3 roundings, cuda_test_util.h fp32_terms) and cos/sin themselves (the
// GPU's and libm's double sin/cos rounded to float may differ by one float
// ulp): e = 4·2⁻²⁴·(|a| + |b|) with (a, b) the element and its partner.
std::vector<double> rope_e(const Vec& x, const RopeShape& s) {
  const int64_t half = s.hd / 2;
  std::vector<double> e(x.size());
  for (size_t k = 0; k < x.size(); ++k) {
    const int64_t i = static_cast<int64_t>(k % s.hd);
    const size_t partner = i < half ? k + half : k - half;
    e[k] = 4 * kU24 * (std::fabs(double(x[k])) + std::fabs(double(x[partner])));
  }
  return e;
}

void check_rope(DType dt, const RopeShape& s, bool backward, size_t offset) {
  const int64_t rows = s.batch * s.seq, width = s.heads * s.hd, n = rows * width;
  const double theta = 10000.0;
  const Vec x = round_to(dt, random_vec(n, rng(), -2.0f, 2.0f));
  DevBuf bx(x, dt, offset);
  Tensor tx = bx.view({rows, width});
  if (backward) cuda::rope_backward(tx, s.seq, s.heads, theta, nullptr);
  else cuda::rope_forward(tx, s.seq, s.heads, theta, nullptr);
  Vec ref = x;
  Tensor cref = cpu_f32(ref.data(), {rows, width});
  if (backward) cpu::rope_backward(cref, s.seq, s.heads, theta);
  else cpu::rope_forward(cref, s.seq, s.heads, theta);
  const std::string what =
      shape_label(backward ? "rope_backward" : "rope_forward", dt, {s.batch, s.seq, s.heads, s.hd},
                  offset ? "misaligned" : "");
  expect_act(dt, bx.download(), ref, rope_e(x, s), what);
}

TEST(CudaRope, ForwardAndBackwardMatchCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaRope.ForwardAndBackwardMatchCpu");
  for (DType dt : kDtypes)
    for (const RopeShape& s : kRopeShapes)
      for (bool backward : {false, true}) check_rope(dt, s, backward, 0);
}

TEST(CudaRope, MisalignedViewsMatchCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaRope.MisalignedViewsMatchCpu");
  for (DType dt : kDtypes) check_rope(dt, {2, 3, 4, 128}, false, 1);
}

// The backward is the forward's inverse: forward then backward returns the
// input to within the two rotations' fp32 roundings (fp32 only: bf16 rounds
// between them).
TEST(CudaRope, BackwardUndoesForward) {
  DYT_REQUIRE_CUDA();
  reseed("CudaRope.BackwardUndoesForward");
  const RopeShape s{2, 64, 2, 32};
  const int64_t rows = s.batch * s.seq, width = s.heads * s.hd;
  const Vec x = random_vec(rows * width, rng(), -2.0f, 2.0f);
  DevBuf bx(x, DType::F32);
  Tensor tx = bx.view({rows, width});
  cuda::rope_forward(tx, s.seq, s.heads, 10000.0, nullptr);
  cuda::rope_backward(tx, s.seq, s.heads, 10000.0, nullptr);
  expect_close(bx.download(), x, 1e-5, "rope forward then backward");
}

// More rows than one grid covers (65535 row blocks × 256 rows at hd = 2), so
// threads loop over rows. GPU only (2^24 + 6 rows).
TEST(CudaRope, RowsBeyondOneGrid) {
  DYT_REQUIRE_CUDA();
  reseed("CudaRope.RowsBeyondOneGrid");
  check_rope(DType::F32, {1, (int64_t{1} << 24) + 6, 1, 2}, false, 0);
}

// ---- SwiGLU -----------------------------------------------------------------------------

struct Rows {
  int64_t rows, d;
};
// Element counts with and without a vector tail, one element, a wide row.
const Rows kEltShapes[] = {{1, 1}, {3, 33}, {2, 7}, {17, 1000}, {4, 4099}, {2, 11008}};

// e for the two devices' fp32 evaluations of one formula (cuda_test_util.h):
// exp_f32 is within 1 ulp of e^x on both, so the two differ by ≤ 2 ulp
// (4·2⁻²⁴); σ = 1/(1 + e) adds the add's and the division's rounding on each
// side (≤ 8·2⁻²⁴ in all), g·σ and ·u two more each: out within 12·2⁻²⁴ of
// |silu(g)·u| ≤ |g·u|. dup = dout·g·σ likewise: 12·2⁻²⁴·|dout·g|. dgate =
// dout·u·σ(1 + g(1 − σ)): 1 − σ carries σ's absolute error (≤ 8·2⁻²⁴) plus
// its rounding, g(1 − σ) that times |g| plus one, the sum and σ· then add
// σ's error again and two roundings: ≤ (12 + 20|g|)·2⁻²⁴·|dout·u|.
struct SwigluData {
  Vec gate, up, dout;
  SwigluData(int64_t n, DType dt)
      : gate(round_to(dt, random_vec(n, rng(), -6.0f, 6.0f))),
        up(round_to(dt, random_vec(n, rng(), -2.0f, 2.0f))),
        dout(round_to(dt, random_vec(n, rng()))) {}
};

void check_swiglu(DType dt, Rows s, size_t offset, bool in_place) {
  const int64_t n = s.rows * s.d, d = s.d;
  const SwigluData in(n, dt);
  const std::string what = shape_label("swiglu", dt, {s.rows, d},
                                       std::string(offset ? "misaligned" : "") +
                                           (in_place ? " in-place" : ""));
  // Forward; in place writes out over gate.
  {
    DevBuf bg(in.gate, dt, offset), bu(in.up, dt, offset), bo(n, dt, offset);
    bo.poison();
    Tensor tout = in_place ? bg.view({s.rows, d}) : bo.view({s.rows, d});
    cuda::swiglu_forward(bg.view({s.rows, d}), bu.view({s.rows, d}), tout, nullptr);
    Vec ref(n);
    Tensor cref = cpu_f32(ref.data(), {s.rows, d});
    cpu::swiglu_forward(host(in.gate, {s.rows, d}), host(in.up, {s.rows, d}), cref);
    std::vector<double> e(n);
    for (int64_t i = 0; i < n; ++i) e[i] = 12 * kU24 * std::fabs(double(in.gate[i]) * in.up[i]);
    expect_act(dt, (in_place ? bg : bo).download(), ref, e, what + " forward out");
  }
  // Backward; in place writes dgate over gate and dup over up.
  {
    DevBuf bg(in.gate, dt, offset), bu(in.up, dt, offset), bd(in.dout, dt, offset),
        bdg(n, dt, offset), bdu(n, dt, offset);
    bdg.poison();
    bdu.poison();
    Tensor tdg = in_place ? bg.view({s.rows, d}) : bdg.view({s.rows, d});
    Tensor tdu = in_place ? bu.view({s.rows, d}) : bdu.view({s.rows, d});
    cuda::swiglu_backward(bg.view({s.rows, d}), bu.view({s.rows, d}), bd.view({s.rows, d}), tdg,
                          tdu, nullptr);
    Vec rdg(n), rdu(n);
    Tensor cdg = cpu_f32(rdg.data(), {s.rows, d}), cdu = cpu_f32(rdu.data(), {s.rows, d});
    cpu::swiglu_backward(host(in.gate, {s.rows, d}), host(in.up, {s.rows, d}),
                         host(in.dout, {s.rows, d}), cdg, cdu);
    std::vector<double> eg(n), eu(n);
    for (int64_t i = 0; i < n; ++i) {
      const double g = std::fabs(double(in.gate[i])), u = std::fabs(double(in.up[i])),
                   o = std::fabs(double(in.dout[i]));
      eg[i] = (12 + 20 * g) * kU24 * o * u;
      eu[i] = 12 * kU24 * o * g;
    }
    expect_act(dt, (in_place ? bg : bdg).download(), rdg, eg, what + " dgate");
    expect_act(dt, (in_place ? bu : bdu).download(), rdu, eu, what + " dup");
  }
}

TEST(CudaSwiglu, MatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaSwiglu.MatchesCpu");
  for (DType dt : kDtypes)
    for (const Rows& s : kEltShapes) check_swiglu(dt, s, 0, false);
}

TEST(CudaSwiglu, MisalignedAndInPlaceMatchCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaSwiglu.MisalignedAndInPlaceMatchCpu");
  for (DType dt : kDtypes) {
    check_swiglu(dt, {5, 1000}, 1, false);
    check_swiglu(dt, {5, 1003}, 0, true);
  }
}

// ---- scale ---------------------------------------------------------------------------------

// ds: both sides add float(Σ dy·x) to ds0, the sum of exact products in
// double in two orders: the sums differ by at most 2·n·2⁻⁵³·Σ|dy·x|, float()
// of each then by one float ulp of the sum more, and the += by one ulp of the
// result: |Δ| ≤ 2⁻²³·(|Σ| + |ds|) + n·2⁻⁵²·Σ|dy·x|.
void check_scale(DType dt, int64_t rows, int64_t d, size_t offset, bool in_place) {
  const int64_t n = rows * d;
  const Vec x = round_to(dt, random_vec(n, rng(), -2.0f, 2.0f));
  const Vec dy = round_to(dt, random_vec(n, rng()));
  const Vec s = random_vec(1, rng(), 0.5f, 64.0f), ds0 = random_vec(1, rng());
  const std::string what = shape_label("scale", dt, {rows, d},
                                       std::string(offset ? "misaligned" : "") +
                                           (in_place ? " in-place" : ""));
  DevBuf bx(x, dt, offset), bdy(dy, dt, offset), by(n, dt, offset), bdx(n, dt, offset),
      bs(s, DType::F32), bds(ds0, DType::F32);
  by.poison();
  bdx.poison();
  Tensor ty = in_place ? bx.view({rows, d}) : by.view({rows, d});
  Tensor tdx = in_place ? bdy.view({rows, d}) : bdx.view({rows, d}), tds = bds.view({1});
  // Backward first: the in-place forward overwrites x.
  cuda::scale_backward(bx.view({rows, d}), bdy.view({rows, d}), bs.view({1}), tdx, tds, nullptr);
  cuda::scale_forward(bx.view({rows, d}), bs.view({1}), ty, nullptr);

  Vec ry(n), rdx(n);
  float rds = ds0[0];
  Tensor cy = cpu_f32(ry.data(), {rows, d}), cdx = cpu_f32(rdx.data(), {rows, d});
  cpu::scale_forward(host(x, {rows, d}), s[0], cy);
  cpu::scale_backward(host(x, {rows, d}), host(dy, {rows, d}), s[0], cdx, &rds);
  // y = s·x and dx = s·dy: one rounding each, the same on both devices.
  std::vector<double> ey(n), edx(n);
  for (int64_t i = 0; i < n; ++i) {
    ey[i] = kU24 * std::fabs(double(s[0]) * x[i]);
    edx[i] = kU24 * std::fabs(double(s[0]) * dy[i]);
  }
  expect_act(dt, (in_place ? bx : by).download(), ry, ey, what + " forward y");
  expect_act(dt, (in_place ? bdy : bdx).download(), rdx, edx, what + " backward dx");
  double sum = 0.0, sum_abs = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += double(dy[i]) * x[i];
    sum_abs += std::fabs(double(dy[i]) * x[i]);
  }
  const double bound = 0x1p-23 * (std::fabs(sum) + std::fabs(double(rds))) + n * 0x1p-52 * sum_abs;
  const float got = bds.download()[0];
  EXPECT_LE(std::fabs(double(got) - rds), bound)
      << what << " ds: got " << got << ", CPU " << rds << ", bound " << bound << " (replay with "
      << replay() << ")";
}

TEST(CudaScale, MatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaScale.MatchesCpu");
  for (DType dt : kDtypes)
    for (const Rows& s : kEltShapes) check_scale(dt, s.rows, s.d, 0, false);
}

TEST(CudaScale, MisalignedAndInPlaceMatchCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaScale.MisalignedAndInPlaceMatchCpu");
  for (DType dt : kDtypes) {
    check_scale(dt, 7, 1001, 1, false);
    check_scale(dt, 7, 1001, 0, true);
  }
}

// More elements than the reduction's 1024 blocks of 256 threads cover on the
// scalar path (misaligned), so threads loop and every block writes a partial.
TEST(CudaScale, ManyBlocksMatchCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaScale.ManyBlocksMatchCpu");
  check_scale(DType::F32, 1, 1024 * 256 + 77, 1, false);
}

// ---- convert -------------------------------------------------------------------------------

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The cases rounding must get right, then random values of every magnitude.
Vec convert_inputs(size_t n) {
  Vec v = {1.0f, from_bits(0x3f808000u) /* 1 + 2^-8: a tie, to even (1) */,
           from_bits(0x3f818000u) /* 1 + 3·2^-8: a tie, to even (up) */,
           from_bits(0x3f808001u) /* just above the tie: up */, -from_bits(0x3f808000u),
           0.0f, -0.0f, from_bits(0x00000001u) /* least subnormal */,
           from_bits(0x00408000u) /* a subnormal tie */, from_bits(0x007fffffu),
           std::numeric_limits<float>::max() /* rounds to inf */, from_bits(0x7f7f7fffu),
           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
           std::numeric_limits<float>::quiet_NaN(), from_bits(0xff800001u) /* a signalling NaN */};
  std::uniform_int_distribution<uint32_t> bits(0, 0xffffffffu);
  while (v.size() < n) v.push_back(from_bits(bits(rng())));
  v.resize(n);
  return v;
}

void check_convert(size_t n, size_t offset) {
  const Vec x = convert_inputs(n);
  const std::string what = "convert n=" + std::to_string(n) + (offset ? " misaligned" : "");
  // F32 → BF16, bitwise against the host's round to nearest even; NaN stays NaN.
  DevBuf src(x, DType::F32, offset), dst(n, DType::BF16, offset);
  dst.poison();
  Tensor tdst = dst.view({static_cast<int64_t>(n)});
  cuda::convert(src.view({static_cast<int64_t>(n)}), tdst, nullptr);
  const auto raw = dst.raw();
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint16_t got;
    std::memcpy(&got, raw.data() + 2 * i, 2);
    const bool ok = std::isnan(x[i]) ? std::isnan(bf16_to_f32(got)) : got == f32_to_bf16(x[i]);
    if (!ok && bad++ < 5)
      ADD_FAILURE() << what << " F32→BF16 at " << i << ": " << x[i] << " (bits 0x" << std::hex
                    << bits_of(x[i]) << ") gave 0x" << got << ", expected 0x" << f32_to_bf16(x[i])
                    << std::dec;
  }
  // BF16 → F32 is exact: the rounded values come back bit for bit.
  DevBuf back(n, DType::F32, offset);
  back.poison();
  Tensor tback = back.view({static_cast<int64_t>(n)});
  cuda::convert(dst.view({static_cast<int64_t>(n)}), tback, nullptr);
  const Vec b = back.download();
  for (size_t i = 0; i < n; ++i) {
    const float want = std::isnan(x[i]) ? std::numeric_limits<float>::quiet_NaN()
                                        : bf16_to_f32(f32_to_bf16(x[i]));
    const bool ok = std::isnan(want) ? std::isnan(b[i]) : bits_of(b[i]) == bits_of(want);
    if (!ok && bad++ < 5)
      ADD_FAILURE() << what << " BF16→F32 at " << i << ": got " << b[i] << ", expected " << want;
  }
  // The same dtype copies.
  DevBuf copy(n, DType::F32, offset);
  copy.poison();
  Tensor tcopy = copy.view({static_cast<int64_t>(n)});
  cuda::convert(back.view({static_cast<int64_t>(n)}), tcopy, nullptr);
  EXPECT_TRUE(copy.raw() == back.raw()) << what << ": F32→F32 is not a copy";
}

TEST(CudaConvert, RoundsToNearestEvenAndBack) {
  DYT_REQUIRE_CUDA();
  reseed("CudaConvert.RoundsToNearestEvenAndBack");
  for (size_t n : {size_t{1}, size_t{7}, size_t{16}, size_t{1003}, size_t{4096 + 5}})
    for (size_t offset : {size_t{0}, size_t{1}}) check_convert(n, offset);
}

// ---- cross-entropy ---------------------------------------------------------------------------

// Per row, both sides take the same max M (exact), and each exp term differs
// from e^(l−M) by exp_f32's error (≤ 2⁻²³ relative, on each side) and the
// fp32 rounding of its argument: l − M on the CPU, l − m (the thread's running
// max) on the GPU, whose rescale by e^(m−M) is in double (≤ 2⁻⁵² more). The
// GPU adds a vector's (≤ 8) positive terms pairwise in fp32 first: at most
// 3·2⁻²⁴ relative. With both arguments ≤ M − l in size, the two sums differ by
//   δ_r = 2·2⁻²³ + 3·2⁻²⁴ + 2·2⁻²⁴·W_r,   W_r = Σ_j e^(l_j−M)·(M − l_j) / Σ_j e^(l_j−M),
// relative, plus the double sums' own rounding (V·2⁻⁵³); the row's loss then
// by δ_r (log's slope is 1/S) and the sum over rows by Σ_r δ_r, plus the
// two fixed orders of adding N doubles (N·2⁻⁵²·Σ|loss|).
struct CeRef {
  Vec grad;
  double loss = 0.0;        // CPU op
  double bound = 0.0;       // on |Δ loss sum|
  std::vector<double> delta;  // δ_r per row
};

// δ_r of each row (above): the bound on the relative difference of the two
// devices' exp-sums S. The log of the exact sum goes to `log_s` when given.
std::vector<double> ce_row_delta(const Vec& logits, int64_t rows, int64_t vocab,
                                 std::vector<double>* log_s = nullptr) {
  std::vector<double> delta;
  for (int64_t i = 0; i < rows; ++i) {
    const float* l = logits.data() + i * vocab;
    float m = l[0];
    for (int64_t j = 1; j < vocab; ++j) m = l[j] > m ? l[j] : m;
    double s = 0.0, sw = 0.0;
    for (int64_t j = 0; j < vocab; ++j) {
      const double e = std::exp(double(l[j]) - m);
      s += e, sw += e * (double(m) - l[j]);
    }
    delta.push_back(2 * 0x1p-23 + 3 * kU24 + 2 * kU24 * (sw / s) + vocab * 0x1p-53);
    if (log_s) log_s->push_back(std::log(s) + m);
  }
  return delta;
}

CeRef ce_reference(const Vec& logits, const std::vector<int32_t>& targets, int64_t rows,
                   int64_t vocab, float grad_scale) {
  CeRef r;
  r.grad.assign(logits.size(), 0.0f);
  Tensor cg = cpu_f32(r.grad.data(), {rows, vocab});
  r.loss = cpu::cross_entropy_backward(host(logits, {rows, vocab}),
                                       cpu_i32(const_cast<int32_t*>(targets.data()), {rows}),
                                       grad_scale, cg);
  std::vector<double> log_sm;  // log S + M per row
  r.delta = ce_row_delta(logits, rows, vocab, &log_sm);
  double loss_abs = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    r.bound += r.delta[i];
    loss_abs += log_sm[i] - logits[i * vocab + targets[i]];
  }
  r.bound += rows * 0x1p-52 * loss_abs;
  return r;
}

// dlogits: exp_f32(l − M) is the same on both sides, the scale
// float(grad_scale/S) differs by δ_r plus one rounding on each side, the
// product rounds once on each: e = |g|·(δ_r + 3·2⁻²⁴); at the target,
// grad_scale·(p_t − 1) in double moves by |grad_scale|·p_t·δ_r ≤ |grad_scale|·δ_r.
std::vector<double> ce_grad_e(const CeRef& r, const std::vector<int32_t>& targets, int64_t vocab,
                              float grad_scale) {
  std::vector<double> e(r.grad.size());
  for (size_t k = 0; k < e.size(); ++k) {
    const int64_t row = static_cast<int64_t>(k) / vocab, j = static_cast<int64_t>(k) % vocab;
    e[k] = std::fabs(double(r.grad[k])) * (r.delta[row] + 3 * kU24) +
           (j == targets[row] ? std::fabs(double(grad_scale)) * r.delta[row] : 0.0);
  }
  return e;
}

struct CeCase {
  int64_t rows, vocab;
  float spread;  // logits uniform in ±spread
};
// V = 1 (loss 0), V not a multiple of 8 (scalar path), one-warp and 512-thread
// rows, the tiny configs' 4096, LLaMA's 32000 and a 128256 vocabulary
// (several vectors per thread, rescales), peaked rows (spread 30).
const CeCase kCeCases[] = {{1, 1, 4}, {3, 7, 4},      {5, 1000, 4}, {4, 4099, 8},
                           {2, 4096, 30}, {2, 32000, 4}, {1, 128256, 6}, {64, 24, 4}};

std::vector<int32_t> random_targets(int64_t rows, int64_t vocab) {
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(rows);
  for (int32_t& v : t) v = pick(rng());
  return t;
}

enum class GradMode { kNone, kSeparate, kInPlace };

void check_ce(DType dt, const CeCase& c, GradMode mode, size_t offset = 0) {
  const int64_t n = c.rows * c.vocab;
  const Vec logits = round_to(dt, random_vec(n, rng(), -c.spread, c.spread));
  const std::vector<int32_t> targets = random_targets(c.rows, c.vocab);
  const float grad_scale = 1.0f / static_cast<float>(c.rows);
  const double loss0 = 3.25;
  DevBuf bl(logits, dt, offset), bg(n, dt, offset);
  bg.poison();
  RawBuf<int32_t> bt(targets);
  RawBuf<double> bloss({loss0});
  Tensor tl = bl.view({c.rows, c.vocab}), tg = bg.view({c.rows, c.vocab});
  Tensor tt(bt.data(), DType::I32, Device::CUDA, {c.rows});
  Tensor tloss(bloss.data(), DType::F64, Device::CUDA, {1});
  const Tensor* dl = mode == GradMode::kNone ? nullptr : mode == GradMode::kInPlace ? &tl : &tg;
  cuda::cross_entropy(tl, tt, grad_scale, dl, tloss, nullptr);

  const CeRef r = ce_reference(logits, targets, c.rows, c.vocab, grad_scale);
  const char* mode_name = mode == GradMode::kNone      ? "loss only"
                          : mode == GradMode::kInPlace ? "in place"
                                                       : "separate dlogits";
  const std::string what = shape_label("cross_entropy", dt, {c.rows, c.vocab},
                                       std::string(mode_name) + (offset ? " misaligned" : ""));
  const double got = bloss.download()[0] - loss0;
  EXPECT_LE(std::fabs(got - r.loss), r.bound)
      << what << ": loss sum " << got << ", CPU " << r.loss << ", bound " << r.bound
      << " (relative " << r.bound / std::fabs(r.loss) << "; replay with " << replay() << ")";
  if (mode == GradMode::kNone) {
    EXPECT_TRUE(bl.download() == logits) << what << ": the logits changed";
    EXPECT_TRUE(std::isnan(bg.download()[0])) << what << ": dlogits was written";
    return;
  }
  const Vec g = (mode == GradMode::kInPlace ? bl : bg).download();
  if (c.vocab == 1) {  // softmax is 1: the gradient is exactly zero (and expect_act needs non-zeros)
    EXPECT_TRUE(g == r.grad) << what << ": dlogits not all zero";
    return;
  }
  expect_act(dt, g, r.grad, ce_grad_e(r, targets, c.vocab, grad_scale), what + " dlogits");
}

TEST(CudaCrossEntropy, MatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropy.MatchesCpu");
  for (DType dt : kDtypes)
    for (const CeCase& c : kCeCases) {
      check_ce(dt, c, GradMode::kSeparate);
      check_ce(dt, c, GradMode::kInPlace);
    }
}

TEST(CudaCrossEntropy, LossOnlyLeavesLogitsAlone) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropy.LossOnlyLeavesLogitsAlone");
  for (DType dt : kDtypes) check_ce(dt, {5, 1000, 4}, GradMode::kNone);
}

TEST(CudaCrossEntropy, MisalignedViewsMatchCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropy.MisalignedViewsMatchCpu");
  for (DType dt : kDtypes) check_ce(dt, {3, 2048, 4}, GradMode::kSeparate, 1);
}

// Targets outside [0, V) are never used as an index (the emulator's guard
// pages would fault on the far ones): the row's loss is NaN, its gradient
// grad_scale·softmax (sums to grad_scale, all ≥ 0), and the other rows are
// as with valid targets.
TEST(CudaCrossEntropy, BadTargetGivesNaNWithoutReadingOutOfBounds) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropy.BadTargetGivesNaNWithoutReadingOutOfBounds");
  const int64_t rows = 4, vocab = 40;
  for (int32_t bad : {-1, static_cast<int32_t>(vocab), std::numeric_limits<int32_t>::max(),
                      std::numeric_limits<int32_t>::min()}) {
    const Vec logits = random_vec(rows * vocab, rng(), -4.0f, 4.0f);
    std::vector<int32_t> targets = random_targets(rows, vocab);
    const std::vector<int32_t> good = targets;
    targets[rows - 1] = bad;  // the last row: its far targets lie past the allocation
    DevBuf bl(logits, DType::F32), bg(rows * vocab, DType::F32);
    bg.poison();
    RawBuf<int32_t> bt(targets);
    RawBuf<double> bloss({0.0});
    Tensor tl = bl.view({rows, vocab}), tg = bg.view({rows, vocab});
    Tensor tt(bt.data(), DType::I32, Device::CUDA, {rows});
    Tensor tloss(bloss.data(), DType::F64, Device::CUDA, {1});
    cuda::cross_entropy(tl, tt, 0.5f, &tg, tloss, nullptr);
    const std::string what = "cross_entropy target " + std::to_string(bad);
    EXPECT_TRUE(std::isnan(bloss.download()[0])) << what << ": the loss sum is not NaN";
    const Vec g = bg.download();
    const CeRef r = ce_reference(logits, good, rows, vocab, 0.5f);
    const int64_t keep = (rows - 1) * vocab;
    expect_close(Vec(g.begin(), g.begin() + keep), Vec(r.grad.begin(), r.grad.begin() + keep),
                 1e-5, what + ": the valid rows' gradient");
    double sum = 0.0;
    for (int64_t j = keep; j < rows * vocab; ++j) {
      EXPECT_GE(g[j], 0.0f) << what << " at " << j;
      sum += g[j];
    }
    EXPECT_LE(std::fabs(sum - 0.5), 1e-6) << what << ": the bad row's gradient sums to " << sum
                                          << ", not 0.5 (0.5·softmax)";
  }
}

// Rows beyond one launch's 2^20 blocks: blocks loop over rows. GPU only.
TEST(CudaCrossEntropy, RowsBeyondOneGrid) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropy.RowsBeyondOneGrid");
  check_ce(DType::BF16, {(int64_t{1} << 20) + 3, 8, 4}, GradMode::kInPlace);
}

// ---- vocab-parallel cross-entropy: the two halves ----------------------------------------

// Targets with every `absent_every`-th row (from row 1) set to kAbsentToken.
std::vector<int32_t> targets_with_absent(int64_t rows, int64_t vocab, int64_t absent_every) {
  std::vector<int32_t> t = random_targets(rows, vocab);
  for (int64_t r = 1; r < rows; r += absent_every) t[r] = kernels::kAbsentToken;
  return t;
}

struct DevCe {  // logits, targets and the F64 table of one call, on the device
  DevBuf logits;
  RawBuf<int32_t> targets;
  RawBuf<double> table;
  int64_t rows, vocab;
  DevCe(const Vec& l, DType dt, const std::vector<int32_t>& t, std::vector<double> tab,
        int64_t rows_, int64_t vocab_, size_t offset = 0)
      : logits(l, dt, offset), targets(t), table(tab), rows(rows_), vocab(vocab_) {}
  Tensor tl() const { return logits.view({rows, vocab}); }
  Tensor tt() const { return Tensor(targets.data(), DType::I32, Device::CUDA, {rows}); }
  Tensor ttab(int64_t cols) const {
    return Tensor(table.data(), DType::F64, Device::CUDA, {rows, cols});
  }
};

const double kNaN64 = std::numeric_limits<double>::quiet_NaN();

// cuda::cross_entropy_stats, its table poisoned with NaN.
std::vector<double> gpu_stats(const Vec& logits, DType dt, const std::vector<int32_t>& targets,
                              int64_t rows, int64_t vocab, size_t offset = 0) {
  DevCe d(logits, dt, targets, std::vector<double>(3 * rows, kNaN64), rows, vocab, offset);
  Tensor s = d.ttab(3);
  cuda::cross_entropy_stats(d.tl(), d.tt(), s, nullptr);
  return d.table.download();
}
std::vector<double> cpu_stats(const Vec& logits, const std::vector<int32_t>& targets, int64_t rows,
                              int64_t vocab) {
  std::vector<double> st(3 * rows, kNaN64);
  Tensor ts(st.data(), DType::F64, Device::CPU, {rows, 3});
  cpu::cross_entropy_stats(host(logits, {rows, vocab}),
                           cpu_i32(const_cast<int32_t*>(targets.data()), {rows}), ts);
  return st;
}
// cuda::cross_entropy_grad in place, given the (M, S) rows.
Vec gpu_grad(const Vec& logits, DType dt, const std::vector<int32_t>& targets,
             const std::vector<double>& ms, int64_t rows, int64_t vocab, float grad_scale,
             size_t offset = 0) {
  DevCe d(logits, dt, targets, ms, rows, vocab, offset);
  Tensor l = d.tl();
  cuda::cross_entropy_grad(l, d.tt(), d.ttab(2), grad_scale, nullptr);
  return d.logits.download();
}
Vec cpu_grad(Vec logits, const std::vector<int32_t>& targets, const std::vector<double>& ms,
             int64_t rows, int64_t vocab, float grad_scale) {
  Tensor tl = cpu_f32(logits.data(), {rows, vocab});
  cpu::cross_entropy_grad(
      tl, cpu_i32(const_cast<int32_t*>(targets.data()), {rows}),
      Tensor(const_cast<double*>(ms.data()), DType::F64, Device::CPU, {rows, 2}), grad_scale);
  return logits;
}
// The (M, S) columns of a stats table.
std::vector<double> ms_of(const std::vector<double>& stats) {
  std::vector<double> ms;
  for (size_t r = 0; r < stats.size() / 3; ++r)
    ms.push_back(stats[3 * r]), ms.push_back(stats[3 * r + 1]);
  return ms;
}
uint64_t bits64(double v) {
  uint64_t u;
  std::memcpy(&u, &v, 8);
  return u;
}

// Per row: M and l[target] exactly (the same fp32 max and the same logit;
// 0 for an absent target), S within δ_r of the CPU's (the fused op's bound,
// ce_reference above).
void check_stats(DType dt, const CeCase& c, size_t offset = 0) {
  const Vec logits = round_to(dt, random_vec(c.rows * c.vocab, rng(), -c.spread, c.spread));
  const std::vector<int32_t> targets = targets_with_absent(c.rows, c.vocab, 3);
  const std::vector<double> got = gpu_stats(logits, dt, targets, c.rows, c.vocab, offset);
  const std::vector<double> want = cpu_stats(logits, targets, c.rows, c.vocab);
  const std::vector<double> delta = ce_row_delta(logits, c.rows, c.vocab);
  const std::string what =
      shape_label("cross_entropy_stats", dt, {c.rows, c.vocab}, offset ? "misaligned" : "");
  for (int64_t r = 0; r < c.rows; ++r) {
    const std::string at = what + " row " + std::to_string(r) + " (target " +
                           std::to_string(targets[r]) + "; replay with " + replay() + ")";
    EXPECT_EQ(bits64(got[3 * r]), bits64(want[3 * r]))
        << at << ": max " << got[3 * r] << " vs CPU " << want[3 * r];
    EXPECT_LE(std::fabs(got[3 * r + 1] - want[3 * r + 1]), delta[r] * want[3 * r + 1])
        << at << ": exp-sum " << got[3 * r + 1] << " vs CPU " << want[3 * r + 1]
        << ", relative bound " << delta[r];
    EXPECT_EQ(bits64(got[3 * r + 2]), bits64(want[3 * r + 2]))
        << at << ": target logit " << got[3 * r + 2] << " vs CPU " << want[3 * r + 2];
  }
}

TEST(CudaCrossEntropyVp, StatsMatchCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropyVp.StatsMatchCpu");
  for (DType dt : kDtypes) {
    for (const CeCase& c : kCeCases) check_stats(dt, c);
    check_stats(dt, {3, 2048, 4}, 1);  // misaligned: the scalar path
  }
}

// Both devices given the same (M, S) (the CPU's stats): the same formulas on
// the same numbers. fp32 to 1e-6 relative; bf16 within the fused op's bound.
void check_grad(DType dt, const CeCase& c, size_t offset = 0) {
  const Vec logits = round_to(dt, random_vec(c.rows * c.vocab, rng(), -c.spread, c.spread));
  const std::vector<int32_t> targets = targets_with_absent(c.rows, c.vocab, 3);
  const float grad_scale = 1.0f / static_cast<float>(c.rows);
  const std::vector<double> ms = ms_of(cpu_stats(logits, targets, c.rows, c.vocab));
  const Vec got = gpu_grad(logits, dt, targets, ms, c.rows, c.vocab, grad_scale, offset);
  const Vec want = cpu_grad(logits, targets, ms, c.rows, c.vocab, grad_scale);
  const std::string what =
      shape_label("cross_entropy_grad", dt, {c.rows, c.vocab}, offset ? "misaligned" : "");
  if (dt == DType::F32) {
    expect_close(got, want, 1e-6, what);
    return;
  }
  CeRef r;  // ce_grad_e's inputs: the CPU gradient and each row's δ_r
  r.grad = want;
  r.delta = ce_row_delta(logits, c.rows, c.vocab);
  expect_bf16_within(got, want, ce_grad_e(r, targets, c.vocab, grad_scale), what);
}

TEST(CudaCrossEntropyVp, GradMatchesCpu) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropyVp.GradMatchesCpu");
  for (DType dt : kDtypes) {
    for (const CeCase& c : kCeCases)
      if (c.vocab > 1) check_grad(dt, c);  // V = 1: an all-zero gradient, compared below
    check_grad(dt, {3, 2048, 4}, 1);
  }
}

// At tp = 1 the halves are the fused op: its own stats fed back give the
// fused kernel's gradient to the bit (the same device functions and launch).
TEST(CudaCrossEntropyVp, OwnStatsGiveTheFusedGradientBitwise) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropyVp.OwnStatsGiveTheFusedGradientBitwise");
  for (DType dt : kDtypes)
    for (const CeCase& c : kCeCases) {
      const Vec logits = round_to(dt, random_vec(c.rows * c.vocab, rng(), -c.spread, c.spread));
      const std::vector<int32_t> targets = random_targets(c.rows, c.vocab);
      const std::vector<double> ms = ms_of(gpu_stats(logits, dt, targets, c.rows, c.vocab));
      DevBuf bl(logits, dt);
      RawBuf<int32_t> bt(targets);
      RawBuf<double> bloss({0.0});
      Tensor tl = bl.view({c.rows, c.vocab}), tloss(bloss.data(), DType::F64, Device::CUDA, {1});
      cuda::cross_entropy(tl, Tensor(bt.data(), DType::I32, Device::CUDA, {c.rows}), 0.25f, &tl,
                          tloss, nullptr);
      const Vec fused = bl.download();
      const Vec halves = gpu_grad(logits, dt, targets, ms, c.rows, c.vocab, 0.25f);
      size_t differ = 0;
      for (size_t i = 0; i < fused.size(); ++i)
        differ += std::memcmp(&fused[i], &halves[i], sizeof(float)) != 0;
      EXPECT_EQ(differ, 0u) << shape_label("cross_entropy_grad", dt, {c.rows, c.vocab})
                            << ": elements differing from the fused gradient (replay with "
                            << replay() << ")";
    }
}

// kAbsentToken: target logit exactly 0 and no onehot (the row is
// grad_scale·softmax: all ≥ 0, summing to grad_scale when (M, S) are the
// row's own). Any other id outside [0, V) is never an index (the emulator's
// guard pages would fault on the far ones): NaN target logit, no onehot.
TEST(CudaCrossEntropyVp, AbsentAndBadTargets) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropyVp.AbsentAndBadTargets");
  const int64_t rows = 4, vocab = 40;
  for (DType dt : kDtypes)
    for (int32_t t : {kernels::kAbsentToken, -2, static_cast<int32_t>(vocab),
                      std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min()}) {
      const Vec logits = round_to(dt, random_vec(rows * vocab, rng(), -4.0f, 4.0f));
      std::vector<int32_t> targets = random_targets(rows, vocab);
      targets[rows - 1] = t;  // the last row: its far targets lie past the allocation
      const std::string what =
          std::string(cuda_test::dtype_name(dt)) + " target " + std::to_string(t);
      const std::vector<double> st = gpu_stats(logits, dt, targets, rows, vocab);
      const double lt = st[3 * (rows - 1) + 2];
      if (t == kernels::kAbsentToken)
        EXPECT_EQ(bits64(lt), bits64(0.0)) << what << ": target logit " << lt;
      else
        EXPECT_TRUE(std::isnan(lt)) << what << ": target logit " << lt << ", not NaN";
      const Vec g = gpu_grad(logits, dt, targets, ms_of(st), rows, vocab, 0.5f);
      double sum = 0.0;
      for (int64_t j = (rows - 1) * vocab; j < rows * vocab; ++j) {
        EXPECT_GE(g[j], 0.0f) << what << " at " << j;
        sum += g[j];
      }
      // bf16 rounds each of the 40 terms by ≤ 2⁻⁸ relative; fp32 by a few 2⁻²⁴.
      EXPECT_LE(std::fabs(sum - 0.5), dt == DType::BF16 ? 0.5 * (0x1p-8 + 1e-6) : 1e-6)
          << what << ": the row's gradient sums to " << sum << ", not 0.5 (0.5·softmax)";
    }
}

// Two ranks, each with half the vocabulary ([0, V0) and [V0, V)) and the
// targets in its own ids (t − start, or kAbsentToken): stats on each, combined
// on the host as trainer/vocab_parallel_loss.h does (M = max m,
// S = Σ s·exp(m − M), loss = Σ_rows log S + M − Σ_ranks l_target), then the
// gradient on each from (M, S). Loss and gradient equal the unsplit fused
// op's to 1e-6 relative (fp32); bf16 gradients within the fused op's bound
// of the CPU's.
void check_split(DType dt, const CeCase& c) {
  const int64_t v0 = c.vocab / 2, widths[2] = {v0, c.vocab - v0}, starts[2] = {0, v0};
  const Vec logits = round_to(dt, random_vec(c.rows * c.vocab, rng(), -c.spread, c.spread));
  const std::vector<int32_t> targets = random_targets(c.rows, c.vocab);
  const float grad_scale = 1.0f / static_cast<float>(c.rows);
  Vec part[2];
  std::vector<int32_t> ptarget[2];
  std::vector<double> pstats[2];
  for (int k = 0; k < 2; ++k) {
    for (int64_t r = 0; r < c.rows; ++r) {
      const float* row = logits.data() + r * c.vocab + starts[k];
      part[k].insert(part[k].end(), row, row + widths[k]);
      const int64_t local = targets[r] - starts[k];
      ptarget[k].push_back(local >= 0 && local < widths[k] ? static_cast<int32_t>(local)
                                                           : kernels::kAbsentToken);
    }
    pstats[k] = gpu_stats(part[k], dt, ptarget[k], c.rows, widths[k]);
  }
  std::vector<double> ms;
  double loss = 0.0;
  for (int64_t r = 0; r < c.rows; ++r) {
    const double m = std::max(pstats[0][3 * r], pstats[1][3 * r]);
    double s = 0.0, lt = 0.0;
    for (int k = 0; k < 2; ++k)
      s += pstats[k][3 * r + 1] * std::exp(pstats[k][3 * r] - m), lt += pstats[k][3 * r + 2];
    ms.push_back(m), ms.push_back(s);
    loss += std::log(s) + m - lt;
  }
  Vec grad(c.rows * c.vocab);
  for (int k = 0; k < 2; ++k) {
    const Vec g = gpu_grad(part[k], dt, ptarget[k], ms, c.rows, widths[k], grad_scale);
    for (int64_t r = 0; r < c.rows; ++r)
      std::copy(g.begin() + r * widths[k], g.begin() + (r + 1) * widths[k],
                grad.begin() + r * c.vocab + starts[k]);
  }

  DevBuf bl(logits, dt);
  RawBuf<int32_t> bt(targets);
  RawBuf<double> bloss({0.0});
  Tensor tl = bl.view({c.rows, c.vocab}), tloss(bloss.data(), DType::F64, Device::CUDA, {1});
  cuda::cross_entropy(tl, Tensor(bt.data(), DType::I32, Device::CUDA, {c.rows}), grad_scale, &tl,
                      tloss, nullptr);
  const double fused_loss = bloss.download()[0];
  const std::string what = shape_label("split cross-entropy", dt, {c.rows, c.vocab});
  EXPECT_LE(std::fabs(loss - fused_loss), 1e-6 * std::fabs(fused_loss))
      << what << ": loss " << loss << ", unsplit " << fused_loss << " (replay with " << replay()
      << ")";
  if (dt == DType::F32) {
    expect_close(grad, bl.download(), 1e-6, what + " gradient against the unsplit op");
    return;
  }
  const CeRef r = ce_reference(logits, targets, c.rows, c.vocab, grad_scale);
  expect_bf16_within(grad, r.grad, ce_grad_e(r, targets, c.vocab, grad_scale),
                     what + " gradient against the CPU");
}

// Both halves on the vector path and on the scalar path (odd widths), a
// half of one element, and the large vocabularies.
const CeCase kSplitCases[] = {{3, 2, 4},     {3, 7, 4},     {5, 1000, 4}, {4, 4099, 8},
                              {2, 4096, 30}, {2, 32000, 4}, {64, 24, 4}};

TEST(CudaCrossEntropyVp, TwoWaySplitEqualsUnsplit) {
  DYT_REQUIRE_CUDA();
  reseed("CudaCrossEntropyVp.TwoWaySplitEqualsUnsplit");
  for (DType dt : kDtypes)
    for (const CeCase& c : kSplitCases) check_split(dt, c);
}

// ---- determinism ------------------------------------------------------------------------------

// Two calls on fixed inputs give the same bits, with the cached workspace
// and with a caller's workspace of exactly the size asked, poisoned.
TEST(CudaPointwise, ReductionsAreBitwiseRepeatable) {
  DYT_REQUIRE_CUDA();
  reseed("CudaPointwise.ReductionsAreBitwiseRepeatable");
  for (DType dt : kDtypes) {
    const int64_t rows = 6, vocab = 5000;
    const Vec logits = round_to(dt, random_vec(rows * vocab, rng(), -8.0f, 8.0f));
    const std::vector<int32_t> targets = random_targets(rows, vocab);
    const Vec x = round_to(dt, random_vec(rows * vocab, rng())), dy = round_to(dt, random_vec(rows * vocab, rng()));
    DevBuf bl(logits, dt), bx(x, dt), bdy(dy, dt), bdx(rows * vocab, dt), bs(Vec{1.5f}, DType::F32),
        bds(1, DType::F32);
    RawBuf<int32_t> bt(targets);
    RawBuf<double> bloss({0.0});
    Tensor tt(bt.data(), DType::I32, Device::CUDA, {rows});
    Tensor tloss(bloss.data(), DType::F64, Device::CUDA, {1});
    Tensor tdx = bdx.view({rows, vocab}), tds = bds.view({1});
    const size_t need = std::max(cuda::cross_entropy_workspace_bytes(rows),
                                 cuda::scale_backward_workspace_bytes(rows * vocab));
    void* mem = nullptr;
    DYT_CUDA_CHECK(cudaMalloc(&mem, need));
    const cuda::Workspace ws{mem, need};
    std::vector<std::vector<unsigned char>> runs;
    for (int run = 0; run < 3; ++run) {
      DYT_CUDA_CHECK(cudaMemset(mem, 0xff, need));
      bl.upload(logits);
      bloss.upload({0.0});
      bds.upload({0.25f});
      bdx.poison();
      Tensor tl = bl.view({rows, vocab});
      const cuda::Workspace* w = run == 2 ? &ws : nullptr;
      cuda::cross_entropy(tl, tt, 0.125f, &tl, tloss, nullptr, w);
      cuda::scale_backward(bx.view({rows, vocab}), bdy.view({rows, vocab}), bs.view({1}), tdx, tds,
                           nullptr, w);
      std::vector<unsigned char> bits = bl.raw();
      for (const auto& part : {bdx.raw(), bds.raw()}) bits.insert(bits.end(), part.begin(), part.end());
      const std::vector<double> loss = bloss.download();
      const auto* lb = reinterpret_cast<const unsigned char*>(loss.data());
      bits.insert(bits.end(), lb, lb + sizeof(double));
      runs.push_back(bits);
    }
    DYT_CUDA_CHECK(cudaFree(mem));
    EXPECT_TRUE(runs[0] == runs[1]) << cuda_test::dtype_name(dt) << ": two runs differ (replay with " << replay() << ")";
    EXPECT_TRUE(runs[0] == runs[2]) << cuda_test::dtype_name(dt) << ": a caller's workspace gives other bits";
  }
}

TEST(CudaPointwise, WorkspaceTooSmallIsRejected) {
  DYT_REQUIRE_CUDA();
  DevBuf bl(Vec(4 * 16, 0.5f), DType::F32), tiny(2, DType::F32);
  RawBuf<int32_t> bt({0, 1, 2, 3});
  RawBuf<double> bloss({0.0});
  Tensor tt(bt.data(), DType::I32, Device::CUDA, {4});
  Tensor tloss(bloss.data(), DType::F64, Device::CUDA, {1});
  const cuda::Workspace ws{tiny.data(), 8};
  try {
    cuda::cross_entropy(bl.view({4, 16}), tt, 1.0f, nullptr, tloss, nullptr, &ws);
    ADD_FAILURE() << "expected std::invalid_argument for an 8-byte workspace and 4 rows";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cross_entropy"), std::string::npos) << e.what();
  }
}

// ---- host-side contracts (no GPU needed) ------------------------------------------------------

alignas(16) float g_dummy[4];
Tensor fake(DType dt, std::initializer_list<int64_t> dims, Device dev = Device::CUDA) {
  return Tensor(g_dummy, dt, dev, dims);
}
template <class Fn>
void expect_invalid(Fn&& fn, const std::string& op, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << op << ": expected std::invalid_argument (" << what << ")";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << what << ": " << e.what();
  }
}

TEST(CudaPointwiseHost, RejectsBadArgumentsBeforeAnyWork) {
  Tensor x = fake(DType::BF16, {4, 64});
  expect_invalid([&] { cuda::rope_forward(x, 3, 2, 1e4, nullptr); }, "rope_forward", "rows not whole sequences");
  expect_invalid([&] { cuda::rope_forward(x, 4, 3, 1e4, nullptr); }, "rope_forward", "heads do not divide");
  Tensor odd = fake(DType::BF16, {4, 6});
  expect_invalid([&] { cuda::rope_backward(odd, 4, 2, 1e4, nullptr); }, "rope_backward", "odd head_dim");
  expect_invalid([&] { cuda::rope_forward(x, 0, 2, 1e4, nullptr); }, "rope_forward", "zero seq_len");
  Tensor host_x = fake(DType::F32, {4, 64}, Device::CPU);
  expect_invalid([&] { cuda::rope_forward(host_x, 4, 2, 1e4, nullptr); }, "rope_forward", "host tensor");

  Tensor out = fake(DType::BF16, {4, 64});
  expect_invalid([&] { cuda::swiglu_forward(x, fake(DType::F32, {4, 64}), out, nullptr); },
                 "swiglu_forward", "dtype mismatch");
  expect_invalid([&] { cuda::swiglu_forward(x, fake(DType::BF16, {4, 63}), out, nullptr); },
                 "swiglu_forward", "shape mismatch");
  Tensor dg = fake(DType::BF16, {4, 64});
  expect_invalid([&] { cuda::swiglu_backward(x, x, x, dg, dg, nullptr); }, "swiglu_backward",
                 "dgate is dup");

  Tensor y = fake(DType::BF16, {4, 64});
  expect_invalid([&] { cuda::scale_forward(x, fake(DType::F32, {2}), y, nullptr); }, "scale_forward",
                 "two scales");
  expect_invalid([&] { cuda::scale_forward(x, fake(DType::BF16, {1}), y, nullptr); }, "scale_forward",
                 "bf16 scale");
  Tensor ds_bf = fake(DType::BF16, {1});
  expect_invalid([&] { cuda::scale_backward(x, x, fake(DType::F32, {1}), y, ds_bf, nullptr); },
                 "scale_backward", "bf16 ds");

  Tensor dst = fake(DType::BF16, {255});
  expect_invalid([&] { cuda::convert(fake(DType::F32, {256}), dst, nullptr); }, "convert", "length");
  Tensor dst_i = fake(DType::I32, {256});
  expect_invalid([&] { cuda::convert(fake(DType::F32, {256}), dst_i, nullptr); }, "convert", "I32");

  const Tensor logits = fake(DType::BF16, {4, 16}), tgt = fake(DType::I32, {4});
  Tensor loss = fake(DType::F64, {1}), loss32 = fake(DType::F32, {1});
  expect_invalid([&] { cuda::cross_entropy(logits, fake(DType::I32, {3}), 1.0f, nullptr, loss, nullptr); },
                 "cross_entropy", "targets length");
  expect_invalid([&] { cuda::cross_entropy(logits, fake(DType::F32, {4}), 1.0f, nullptr, loss, nullptr); },
                 "cross_entropy", "F32 targets");
  expect_invalid([&] { cuda::cross_entropy(logits, tgt, 1.0f, nullptr, loss32, nullptr); },
                 "cross_entropy", "F32 loss");
  const Tensor dl32 = fake(DType::F32, {4, 16});
  expect_invalid([&] { cuda::cross_entropy(logits, tgt, 1.0f, &dl32, loss, nullptr); },
                 "cross_entropy", "dlogits dtype");
  const Tensor shifted(static_cast<char*>(static_cast<void*>(g_dummy)) + 2, DType::BF16,
                       Device::CUDA, {4, 16});
  expect_invalid([&] { cuda::cross_entropy(logits, tgt, 1.0f, &shifted, loss, nullptr); },
                 "cross_entropy", "dlogits overlapping the logits");
  expect_invalid([&] { cuda::cross_entropy(fake(DType::BF16, {4, 0}), tgt, 1.0f, nullptr, loss, nullptr); },
                 "cross_entropy", "empty vocabulary");

  Tensor stats = fake(DType::F64, {4, 3}), lg = fake(DType::BF16, {4, 16});
  const Tensor ms = fake(DType::F64, {4, 2});
  expect_invalid([&] { cuda::cross_entropy_stats(logits, fake(DType::I32, {5}), stats, nullptr); },
                 "cross_entropy_stats", "targets length");
  Tensor stats32 = fake(DType::F32, {4, 3}), stats_short = fake(DType::F64, {4, 2});
  expect_invalid([&] { cuda::cross_entropy_stats(logits, tgt, stats32, nullptr); },
                 "cross_entropy_stats", "F32 stats");
  expect_invalid([&] { cuda::cross_entropy_stats(logits, tgt, stats_short, nullptr); },
                 "cross_entropy_stats", "stats of 2 columns");
  Tensor host_stats = fake(DType::F64, {4, 3}, Device::CPU);
  expect_invalid([&] { cuda::cross_entropy_stats(logits, tgt, host_stats, nullptr); },
                 "cross_entropy_stats", "host stats");
  expect_invalid([&] { cuda::cross_entropy_stats(fake(DType::I32, {4, 16}), tgt, stats, nullptr); },
                 "cross_entropy_stats", "I32 logits");
  expect_invalid([&] { cuda::cross_entropy_grad(lg, tgt, fake(DType::F64, {4, 3}), 1.0f, nullptr); },
                 "cross_entropy_grad", "row of 3 columns");
  expect_invalid([&] { cuda::cross_entropy_grad(lg, tgt, fake(DType::F32, {4, 2}), 1.0f, nullptr); },
                 "cross_entropy_grad", "F32 row");
  expect_invalid([&] { cuda::cross_entropy_grad(lg, fake(DType::F32, {4}), ms, 1.0f, nullptr); },
                 "cross_entropy_grad", "F32 targets");
  Tensor empty_v = fake(DType::BF16, {4, 0});
  expect_invalid([&] { cuda::cross_entropy_grad(empty_v, tgt, ms, 1.0f, nullptr); },
                 "cross_entropy_grad", "empty vocabulary");
}

// Empty tensors queue nothing and touch no device.
TEST(CudaPointwiseHost, EmptyTensorsAreNoOps) {
  Tensor e(nullptr, DType::BF16, Device::CUDA, {0, 64});
  const Tensor s = fake(DType::F32, {1});
  Tensor ds = fake(DType::F32, {1});
  EXPECT_NO_THROW(cuda::rope_forward(e, 4, 2, 1e4, nullptr));
  EXPECT_NO_THROW(cuda::swiglu_forward(e, e, e, nullptr));
  Tensor e2(nullptr, DType::BF16, Device::CUDA, {0, 64});
  EXPECT_NO_THROW(cuda::swiglu_backward(e, e, e, e, e2, nullptr));
  EXPECT_NO_THROW(cuda::scale_forward(e, s, e, nullptr));
  EXPECT_NO_THROW(cuda::scale_backward(e, e, s, e, ds, nullptr));
  Tensor f(nullptr, DType::F32, Device::CUDA, {0});
  EXPECT_NO_THROW(cuda::convert(e, f, nullptr));
  Tensor t(nullptr, DType::I32, Device::CUDA, {0});
  Tensor loss = fake(DType::F64, {1});
  EXPECT_NO_THROW(cuda::cross_entropy(e, t, 1.0f, &e, loss, nullptr));
  Tensor no_stats(nullptr, DType::F64, Device::CUDA, {0, 3});
  EXPECT_NO_THROW(cuda::cross_entropy_stats(e, t, no_stats, nullptr));
  EXPECT_NO_THROW(cuda::cross_entropy_grad(e, t, Tensor(nullptr, DType::F64, Device::CUDA, {0, 2}),
                                           1.0f, nullptr));
}

}  // namespace
}  // namespace dyt::cuda_test
