// AdamW (with the bf16 cast), the sum of squares behind the gradient norm, and
// the in-place scale that clips (kernels/cuda/optimizer_ops.h). Each result is
// bitwise equal to the CPU's; how, per op, is in docs/cuda_kernels.md.
#include <algorithm>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/detail.h"
#include "kernels/cuda/optimizer_ops.h"
#include "kernels/optimizer_math.h"

namespace dyt::cuda {
namespace detail {
namespace {

// ---- AdamW ------------------------------------------------------------------------
// A block updates kAdamChunk consecutive elements of one segment; the blocks
// of a launch are numbered segment after segment (first_block), so a block
// finds its segment with one pass over the table, which lives in the launch
// parameters (unrolled, so every read is at a constant offset: no local copy).
constexpr int kAdamThreads = 256, kAdamPerThread = 8;
constexpr int64_t kAdamChunk = int64_t{kAdamThreads} * kAdamPerThread;
constexpr int kSegsPerLaunch = 32;

struct SegTable {
  int64_t begin[kSegsPerLaunch];
  int64_t end[kSegsPerLaunch];
  int64_t first_block[kSegsPerLaunch];
  uint32_t decay_mask;  // bit k: segment k decays
  int count;
};

template <bool kWork>
__global__ void __launch_bounds__(kAdamThreads)
    adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                 float* __restrict__ v, bf16* __restrict__ work, SegTable t, AdamWScalars s) {
  const int64_t b = blockIdx.x;
  int64_t seg_begin = 0, seg_end = 0, seg_first = 0;
  bool decay = false;
#pragma unroll
  for (int k = 0; k < kSegsPerLaunch; ++k)
    if (k < t.count && t.first_block[k] <= b) {
      seg_begin = t.begin[k], seg_end = t.end[k], seg_first = t.first_block[k];
      decay = (t.decay_mask >> k) & 1u;
    }
  const int64_t start = seg_begin + (b - seg_first) * kAdamChunk + threadIdx.x;
  // All loads first, then the math and the stores: U loads of each array in flight.
  float pp[kAdamPerThread], gg[kAdamPerThread], mm[kAdamPerThread], vv[kAdamPerThread];
#pragma unroll
  for (int u = 0; u < kAdamPerThread; ++u) pp[u] = gg[u] = mm[u] = vv[u] = 0.0f;
#pragma unroll
  for (int u = 0; u < kAdamPerThread; ++u) {
    const int64_t i = start + int64_t{u} * kAdamThreads;
    if (i < seg_end) pp[u] = p[i], gg[u] = g[i], mm[u] = m[i], vv[u] = v[i];
  }
#pragma unroll
  for (int u = 0; u < kAdamPerThread; ++u) {
    const int64_t i = start + int64_t{u} * kAdamThreads;
    if (i < seg_end) {
      kernels::adamw_update(pp[u], mm[u], vv[u], gg[u], s, decay);
      p[i] = pp[u], m[i] = mm[u], v[i] = vv[u];
      if (kWork) work[i] = __float2bfloat16_rn(pp[u]);
    }
  }
}

// ---- sum of squares -------------------------------------------------------------------
// Eight adjacent lanes own one chunk: lane k adds the squares of elements
// k, k+8, k+16, ... in index order (the CPU's accumulator k), and an xor
// butterfly over the eight lanes combines them as the CPU does:
// ((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7)) (a + b == b + a exactly, so every lane
// ends with those bits). A float's square is exact in double, so fusing the
// add into an fma changes nothing.
constexpr int64_t kChunk = kSumSquaresChunk;
constexpr int kSsThreads = 256, kSsUnroll = 8;
static_assert(kChunk % 8 == 0 && kSsThreads % 32 == 0);

// With kCount, the same pass counts the chunk's elements with |α·x| > threshold
// (saturation_stats); T is float or bf16, read as float (exact), so the sum
// of squares is that of the values the CPU would see.
template <class T, bool kCount>
__global__ void __launch_bounds__(kSsThreads)
    chunk_sums_kernel(const T* __restrict__ g, int64_t n, int64_t chunks,
                      double* __restrict__ part, const float* __restrict__ alpha_ptr,
                      float threshold, unsigned* __restrict__ counts) {
  const float alpha = kCount ? *alpha_ptr : 0.0f;
  const int64_t t = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t c = t / 8;
  const int k = static_cast<int>(t % 8);
  double acc = 0.0;
  unsigned count = 0;
  if (c < chunks) {  // threads past the last chunk still join the shuffles
    const T* base = g + c * kChunk;
    const int64_t len = n - c * kChunk < kChunk ? n - c * kChunk : kChunk;
    int64_t i = k;
    for (; i + 8 * (kSsUnroll - 1) < len; i += 8 * kSsUnroll) {
      float x[kSsUnroll];
#pragma unroll
      for (int u = 0; u < kSsUnroll; ++u) x[u] = to_f32(base[i + 8 * u]);
#pragma unroll
      for (int u = 0; u < kSsUnroll; ++u) {
        acc += static_cast<double>(x[u]) * x[u];
        if (kCount) count += fabsf(alpha * x[u]) > threshold;
      }
    }
    for (; i < len; i += 8) {
      const float x = to_f32(base[i]);
      acc += static_cast<double>(x) * x;
      if (kCount) count += fabsf(alpha * x) > threshold;
    }
  }
  acc += __shfl_xor_sync(0xffffffffu, acc, 1);
  acc += __shfl_xor_sync(0xffffffffu, acc, 2);
  acc += __shfl_xor_sync(0xffffffffu, acc, 4);
  if (kCount) {
    count += __shfl_xor_sync(0xffffffffu, count, 1);
    count += __shfl_xor_sync(0xffffffffu, count, 2);
    count += __shfl_xor_sync(0xffffffffu, count, 4);
  }
  if (k == 0 && c < chunks) {
    part[c] = acc;
    if (kCount) counts[c] = count;
  }
}

// The chunk sums in index order from 0, by one thread (the CPU's serial loop).
// With counts (saturation_stats), out[0] += the total and out[1] += the
// counts' sum (exact: integers) instead.
__global__ void __launch_bounds__(32)
    chunks_total_kernel(const double* __restrict__ part, int64_t chunks, double* __restrict__ out,
                        const unsigned* __restrict__ counts) {
  if (threadIdx.x != 0) return;
  double total = 0.0;
#pragma unroll 8
  for (int64_t c = 0; c < chunks; ++c) total += part[c];
  if (!counts) {
    *out = total;
    return;
  }
  unsigned long long n = 0;
  for (int64_t c = 0; c < chunks; ++c) n += counts[c];
  out[0] += total;
  out[1] += static_cast<double>(n);
}

// ---- scale ----------------------------------------------------------------------------
constexpr int kScaleThreads = 256, kScalePerThread = 4;

__global__ void __launch_bounds__(kScaleThreads)
    scale_kernel(float* __restrict__ g, int64_t n, float factor) {
  constexpr int64_t per_block = int64_t{kScaleThreads} * kScalePerThread;
  for (int64_t base = int64_t{blockIdx.x} * per_block + threadIdx.x; base < n;
       base += int64_t{gridDim.x} * per_block) {
#pragma unroll
    for (int u = 0; u < kScalePerThread; ++u) {
      const int64_t i = base + int64_t{u} * kScaleThreads;
      if (i < n) g[i] = g[i] * factor;
    }
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t kMaxGridX = 0x7fffffff;

// An F32 CUDA tensor of n elements (any rank), named for errors.
void require_flat_f32(const char* op, const char* name, const Tensor& t, int64_t n) {
  require_f32(op, name, t, n, /*vector=*/false);
}

}  // namespace
}  // namespace detail

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                const std::vector<ParamSegment>& segments, const AdamWScalars& s,
                const Tensor* work, cudaStream_t stream) {
  using namespace detail;
  const char* op = "adamw_step";
  const int64_t n = p.numel();
  require_flat_f32(op, "p", p, n);
  require_flat_f32(op, "g", g, n);
  require_flat_f32(op, "m", m, n);
  require_flat_f32(op, "v", v, n);
  if (work) {
    require(work->dtype == DType::BF16, op,
            std::string("work must be BF16, not ") + kernels::dtype_name(work->dtype));
    require(work->device == kernels::Device::CUDA, op, "work must be a CUDA tensor");
    require(work->numel() == n, op,
            "work has " + std::to_string(work->numel()) + " elements, p " + std::to_string(n));
    require(work->data != nullptr || n == 0, op, "work has no data");
  }
  int64_t prev_end = 0;
  for (size_t k = 0; k < segments.size(); ++k) {
    const ParamSegment& seg = segments[k];
    require(seg.begin >= prev_end && seg.begin <= seg.end && seg.end <= n, op,
            "segment " + std::to_string(k) + " [" + std::to_string(seg.begin) + ", " +
                std::to_string(seg.end) + ") must lie in [" + std::to_string(prev_end) + ", " +
                std::to_string(n) + ") (in order, not overlapping the one before)");
    prev_end = seg.end;
  }
  // A launch's blocks number at most n / kAdamChunk + kSegsPerLaunch; refuse
  // here, before anything is queued, what would not fit one grid.
  require(n / kAdamChunk + kSegsPerLaunch <= kMaxGridX, op,
          std::to_string(n) + " elements are more than one call can update");
  float* pp = p.f32();
  float* mp = m.f32();
  float* vp = v.f32();
  const float* gp = g.f32();
  bf16* wp = work ? static_cast<bf16*>(work->data) : nullptr;
  // Batches of up to kSegsPerLaunch non-empty segments, one launch each.
  SegTable t{};
  int64_t blocks = 0;
  auto flush = [&] {
    if (t.count == 0) return;
    const dim3 grid(static_cast<unsigned>(blocks)), block(kAdamThreads);
    if (wp)
      adamw_kernel<true><<<grid, block, 0, stream>>>(pp, gp, mp, vp, wp, t, s);
    else
      adamw_kernel<false><<<grid, block, 0, stream>>>(pp, gp, mp, vp, wp, t, s);
    DYT_CUDA_CHECK_LAUNCH();
    t = SegTable{};
    blocks = 0;
  };
  for (const ParamSegment& seg : segments) {
    if (seg.end == seg.begin) continue;
    const int k = t.count++;
    t.begin[k] = seg.begin;
    t.end[k] = seg.end;
    t.first_block[k] = blocks;
    if (seg.decay) t.decay_mask |= 1u << k;
    blocks += ceil_div(seg.end - seg.begin, kAdamChunk);
    if (t.count == kSegsPerLaunch) flush();
  }
  flush();
}

size_t sum_squares_workspace_bytes(int64_t n) {
  return n <= 0 ? 0 : static_cast<size_t>(detail::ceil_div(n, detail::kChunk)) * sizeof(double);
}

void sum_squares(const Tensor& g, const Tensor& out, cudaStream_t stream, const Workspace* ws) {
  using namespace detail;
  const char* op = "sum_squares";
  const int64_t n = g.numel();
  require_flat_f32(op, "g", g, n);
  require(out.dtype == DType::F64, op,
          std::string("out must be F64, not ") + kernels::dtype_name(out.dtype));
  require(out.device == kernels::Device::CUDA && out.data != nullptr, op,
          "out must be a CUDA tensor with data");
  require(out.numel() == 1, op, "out has shape " + kernels::shape_text(out) + ", expected [1]");
  const int64_t chunks = n <= 0 ? 0 : ceil_div(n, kChunk);
  const int64_t blocks = ceil_div(chunks * 8, kSsThreads);
  require(blocks <= kMaxGridX, op, std::to_string(n) + " elements are more than one call can sum");
  double* part = static_cast<double*>(workspace(op, sum_squares_workspace_bytes(n), stream, ws));
  if (chunks > 0) {
    chunk_sums_kernel<float, false><<<static_cast<unsigned>(blocks), kSsThreads, 0, stream>>>(
        g.f32(), n, chunks, part, nullptr, 0.0f, nullptr);
    DYT_CUDA_CHECK_LAUNCH();
  }
  chunks_total_kernel<<<1, 32, 0, stream>>>(part, chunks, out.f64(), nullptr);
  DYT_CUDA_CHECK_LAUNCH();
}

size_t saturation_stats_workspace_bytes(int64_t n) {
  return n <= 0 ? 0
               : static_cast<size_t>(detail::ceil_div(n, detail::kChunk)) *
                     (sizeof(double) + sizeof(unsigned));
}

void saturation_stats(const Tensor& x, const Tensor& alpha, float threshold, const Tensor& out,
                      cudaStream_t stream, const Workspace* ws) {
  using namespace detail;
  const char* op = "saturation_stats";
  const DType dt = act_dtype(op, "x", x);
  const int64_t n = x.numel();
  require_f32(op, "alpha", alpha, 1, /*vector=*/false);
  require(out.dtype == DType::F64 && out.numel() == 2, op,
          "out must be F64 [2], not " + std::string(kernels::dtype_name(out.dtype)) + " " +
              kernels::shape_text(out));
  require(out.device == kernels::Device::CUDA && out.data != nullptr, op,
          "out must be a CUDA tensor with data");
  const int64_t chunks = n <= 0 ? 0 : ceil_div(n, kChunk);
  const int64_t blocks = ceil_div(chunks * 8, kSsThreads);
  require(blocks <= kMaxGridX, op, std::to_string(n) + " elements are more than one call can sum");
  char* space = static_cast<char*>(workspace(op, saturation_stats_workspace_bytes(n), stream, ws));
  double* part = reinterpret_cast<double*>(space);
  unsigned* counts = reinterpret_cast<unsigned*>(space + chunks * sizeof(double));
  if (chunks > 0) {
    const auto launch = [&](auto tag) {
      using T = typename decltype(tag)::type;
      chunk_sums_kernel<T, true><<<static_cast<unsigned>(blocks), kSsThreads, 0, stream>>>(
          static_cast<const T*>(x.data), n, chunks, part, alpha.f32(), threshold, counts);
    };
    if (dt == DType::F32) launch(Tag<float>{});
    else launch(Tag<bf16>{});
    DYT_CUDA_CHECK_LAUNCH();
  }
  chunks_total_kernel<<<1, 32, 0, stream>>>(part, chunks, out.f64(), counts);
  DYT_CUDA_CHECK_LAUNCH();
}

void scale_inplace(const Tensor& g, float factor, cudaStream_t stream) {
  using namespace detail;
  const char* op = "scale_inplace";
  const int64_t n = g.numel();
  require_flat_f32(op, "g", g, n);
  if (n == 0) return;
  const int64_t per_block = int64_t{kScaleThreads} * kScalePerThread;
  const int64_t blocks = std::min<int64_t>(ceil_div(n, per_block), int64_t{1} << 20);
  scale_kernel<<<static_cast<unsigned>(blocks), kScaleThreads, 0, stream>>>(g.f32(), n, factor);
  DYT_CUDA_CHECK_LAUNCH();
}

}  // namespace dyt::cuda
