// Cross-entropy fused with its softmax and gradient, its two vocab-parallel
// halves (pointwise_ops.h), and the second stage of the pointwise reductions
// (pointwise_detail.h).
//
// One block per row (blocks loop over rows when there are more than
// kMaxGrid), each thread owning the row's vectors tx, tx + blockDim, … (16
// bytes each on the vector path, one element otherwise). Three device
// functions hold the arithmetic, and the three kernels are made of them:
//  row_stats (pass 1 and step 2):
//  1. one read of the row, online: each thread keeps its running max m and
//     s = Σ exp(l − m) (each exp in fp32 by kernels::exp_f32, as the CPU op,
//     a vector's terms added pairwise in fp32, the sum in double), rescaling
//     s by exp(m_old − m_new) in double (exact to 2⁻⁵³, so the rescales add
//     no error) once per vector whose max is a new high.
//  2. the block's max M (fixed-order: xor butterflies, then warps in order),
//     then S = Σ_threads s·exp(m − M) in double, same order. M is the CPU
//     op's max to the bit; each term of S differs from the CPU's
//     exp_f32(l − M) only by the fp32 rounding of the exponent's argument,
//     exp_f32's own error and the vector's pairwise fp32 sum
//     (docs/cuda_kernels.md derives the bound).
//  row_grad (pass 2): a second read of the row (each thread's vectors in
//     reverse, the last read first, while it may still be in L2) writes
//     grad_scale·exp(l − M)/S, and at the target
//     grad_scale·(exp(l_t − M − log S) − 1) in double (the CPU op's forms).
//
//  cross_entropy_kernel: thread 0 reads the target logit before row_stats,
//     writes the row's loss log S + M − l_target (double) to the workspace,
//     then row_grad with this row's (M, S) when a gradient is asked. Every
//     element is read (both passes) and written by the same thread, and the
//     target logit is read before row_stats' barriers, so dlogits may be the
//     logits themselves. Then launch_sum_partials adds the row losses in row
//     order (double) to loss_sum.
//  cross_entropy_stats_kernel: row_stats, and thread 0 writes (M, S, l_target)
//     to the row's F64 stats.
//  cross_entropy_grad_kernel: row_grad in place with the (M, S) given (every
//     rank's vocabulary combined); no barriers. At tp = 1, given this
//     rank's own stats, its gradient is the fused kernel's to the bit.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/detail.h"
#include "kernels/cuda/pointwise_detail.h"
#include "kernels/cuda/pointwise_ops.h"
#include "kernels/op_params.h"

namespace dyt::cuda {
namespace detail {
namespace {

constexpr int kCeMaxThreads = 512;
constexpr int kCeUnroll = 4;          // vectors whose loads are in flight together
constexpr int64_t kMaxGrid = 1 << 20;  // blocks of one launch (rows beyond loop)
constexpr int kSumThreads = 256;

// Max over the block, the same in every thread (fmaxf ignores a NaN operand;
// NaN logits still reach the loss through their exp). Same calling rules as
// block_sum (common.cuh).
__device__ __forceinline__ float block_max(float v, float* smem) {
  const int t = threadIdx.x;
  const int nw = (blockDim.x + 31) / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((t & 31) == 0) smem[t >> 5] = v;
  __syncthreads();
  float m = smem[0];
  for (int w = 1; w < nw; ++w) m = fmaxf(m, smem[w]);
  return m;
}

// Pass 1 and step 2 over the row l of nvec vectors: its max M and
// S = Σ exp(l − M), the same in every thread. Every thread of the block must
// call it (block_max/block_sum's rules: red_max/red_sum are not reused before
// the next __syncthreads).
struct RowStats {
  float max;
  double sum;
};
template <class T, int VEC>
__device__ __forceinline__ RowStats row_stats(const T* l, int64_t nvec, float* red_max,
                                              double* red_sum) {
  const int tx = threadIdx.x, nt = blockDim.x;
  // Pass 1: online max and exp-sum over this thread's vectors. The max
  // starts at −FLT_MAX, not −inf, so that a thread whose logits are all
  // −inf adds exp_f32(−inf) (≈ 1e-38, as the CPU op does) rather than NaN.
  float m = -3.40282347e38f;
  double s = 0.0;
  for (int64_t v0 = tx; v0 < nvec; v0 += int64_t{nt} * kCeUnroll) {
    Pack<T, VEC> p[kCeUnroll];
#pragma unroll
    for (int u = 0; u < kCeUnroll; ++u)
      if (v0 + int64_t{u} * nt < nvec) p[u].load(l + (v0 + int64_t{u} * nt) * VEC);
#pragma unroll
    for (int u = 0; u < kCeUnroll; ++u)
      if (v0 + int64_t{u} * nt < nvec) {
        float cm = p[u].get(0);
#pragma unroll
        for (int k = 1; k < VEC; ++k) cm = p[u].get(k) > cm ? p[u].get(k) : cm;
        if (cm > m) {  // rare: a new high; the factor in double adds no error
          s *= exp(static_cast<double>(m) - static_cast<double>(cm));
          m = cm;
        }
        // The vector's VEC terms summed pairwise in fp32 (all positive: at
        // most log2(VEC)·2⁻²⁴ relative), then once into the double sum: one
        // float→double conversion and one double add per vector, not per
        // element (sm_90 converts to 64-bit at 1/8 of the fp32 rate).
        float e[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) e[k] = kernels::exp_f32(p[u].get(k) - m);
#pragma unroll
        for (int w = VEC / 2; w >= 1; w /= 2)
#pragma unroll
          for (int k = 0; k < w; ++k) e[k] += e[k + w];
        s += static_cast<double>(e[0]);
      }
  }

  // Step 2: the row's max, then its sum rescaled to it, both fixed-order.
  const float row_max = block_max(m, red_max);
  const double row_sum = block_sum(
      s == 0.0 ? 0.0 : s * exp(static_cast<double>(m) - static_cast<double>(row_max)), red_sum);
  return {row_max, row_sum};
}

// Pass 2 over the row l of nvec vectors, written to g (l itself or disjoint):
// grad_scale·exp(l − M)/S, and at `target` (when it is in the row)
// grad_scale·(exp(l_t − M − log S) − 1) in double. Each thread takes its
// vectors of pass 1 in reverse, the last read first (it may still be in L2).
// No barriers: a thread reads and writes only its own vectors.
template <class T, int VEC>
__device__ __forceinline__ void row_grad(const T* l, T* g, int64_t nvec, int32_t target,
                                         float row_max, double row_sum, double log_sum,
                                         float grad_scale) {
  const int tx = threadIdx.x, nt = blockDim.x;
  const float scale = static_cast<float>(grad_scale / row_sum);
  const int64_t nmine = nvec > tx ? (nvec - 1 - tx) / nt + 1 : 0;  // vectors of this thread
  for (int64_t k0 = nmine - 1; k0 >= 0; k0 -= kCeUnroll) {
    Pack<T, VEC> p[kCeUnroll];
#pragma unroll
    for (int u = 0; u < kCeUnroll; ++u)
      if (k0 - u >= 0) p[u].load(l + (tx + (k0 - u) * nt) * VEC);
#pragma unroll
    for (int u = 0; u < kCeUnroll; ++u)
      if (k0 - u >= 0) {
        const int64_t base = (tx + (k0 - u) * nt) * VEC;
        float out[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          const float lv = p[u].get(k);
          out[k] = base + k == target
                       ? grad_scale * static_cast<float>(
                                          exp(static_cast<double>(lv) - row_max - log_sum) - 1.0)
                       : kernels::exp_f32(lv - row_max) * scale;
        }
        p[u].set_all(out);
        p[u].store(g + base);
      }
  }
}

template <class T, int VEC>
__global__ void __launch_bounds__(kCeMaxThreads)
    cross_entropy_kernel(const T* logits, const int32_t* __restrict__ targets, T* dlogits,
                         int64_t rows, int64_t vocab, float grad_scale,
                         double* __restrict__ row_loss) {
  __shared__ float red_max[32];
  __shared__ double red_sum[32];
  const int64_t nvec = vocab / VEC;
  const int tx = threadIdx.x;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* l = logits + row * vocab;
    const int32_t target = targets[row];
    const bool valid = target >= 0 && target < vocab;
    // Read before any thread writes dlogits (which may be l): the barriers
    // of row_stats come first.
    const float lt = tx == 0 && valid ? to_f32(l[target]) : 0.0f;
    const RowStats st = row_stats<T, VEC>(l, nvec, red_max, red_sum);
    const double log_sum = log(st.sum);
    if (tx == 0) row_loss[row] = valid ? log_sum + st.max - lt : nan("");
    if (dlogits)
      row_grad<T, VEC>(l, dlogits + row * vocab, nvec, target, st.max, st.sum, log_sum, grad_scale);
    __syncthreads();  // red_max/red_sum are reused by the next row
  }
}

// Vocab-parallel, first half: stats[row] = (M, S, l[target]); the target
// entry is 0 for kAbsentToken and NaN for any other id outside [0, V) (a bug
// upstream: the combined loss shows it).
template <class T, int VEC>
__global__ void __launch_bounds__(kCeMaxThreads)
    cross_entropy_stats_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets,
                               int64_t rows, int64_t vocab, double* __restrict__ stats) {
  __shared__ float red_max[32];
  __shared__ double red_sum[32];
  const int64_t nvec = vocab / VEC;
  const int tx = threadIdx.x;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* l = logits + row * vocab;
    const int32_t target = targets[row];
    const RowStats st = row_stats<T, VEC>(l, nvec, red_max, red_sum);
    if (tx == 0) {
      double* out = stats + 3 * row;
      out[0] = st.max;
      out[1] = st.sum;
      if (target >= 0 && target < vocab) out[2] = to_f32(l[target]);
      else out[2] = target == kernels::kAbsentToken ? 0.0 : nan("");
    }
    __syncthreads();  // red_max/red_sum are reused by the next row
  }
}

// Vocab-parallel, second half: the gradient in place from row[r] = (M, S) of
// the whole vocabulary. M is a max of fp32 logits, so M's float is exact.
template <class T, int VEC>
__global__ void __launch_bounds__(kCeMaxThreads)
    cross_entropy_grad_kernel(T* logits, const int32_t* __restrict__ targets, int64_t rows,
                              int64_t vocab, const double* __restrict__ row_ms, float grad_scale) {
  const int64_t nvec = vocab / VEC;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    T* l = logits + row * vocab;
    const float m = static_cast<float>(row_ms[2 * row]);
    const double sum = row_ms[2 * row + 1];
    row_grad<T, VEC>(l, l, nvec, targets[row], m, sum, log(sum), grad_scale);
  }
}

__global__ void __launch_bounds__(kSumThreads)
    sum_partials_kernel(const double* __restrict__ part, int64_t n, float* out_f32,
                        double* out_f64) {
  __shared__ double red[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kSumThreads) s += part[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) {
    if (out_f32) *out_f32 += static_cast<float>(s);
    else *out_f64 += s;
  }
}

// Threads per row: enough for about 8 vectors each, 32 to 512, a warp multiple.
int ce_threads(int64_t nvec) {
  const int64_t want = (nvec + 7) / 8;
  return static_cast<int>(std::clamp<int64_t>((want + 31) / 32 * 32, 32, kCeMaxThreads));
}

void require_device_tensor(const char* op, const char* name, const Tensor& t, DType dt) {
  require(t.dtype == dt, op,
          std::string(name) + " must be " + kernels::dtype_name(dt) + ", not " +
              kernels::dtype_name(t.dtype));
  require(t.device == kernels::Device::CUDA, op, std::string(name) + " must be a CUDA tensor");
  require(t.data != nullptr || t.numel() == 0, op, std::string(name) + " has no data");
}

// The checks the three entry points share: logits an activation [rows, V]
// with V > 0, targets I32 [rows] on the device. Returns the logits' dtype.
DType check_logits_targets(const char* op, const Tensor& logits, const Tensor& targets) {
  const DType dt = act_dtype(op, "logits", logits);
  require(last_dim(logits) > 0, op, "logits have an empty vocabulary dimension");
  require_device_tensor(op, "targets", targets, DType::I32);
  require(targets.numel() == row_count(logits), op,
          "targets has shape " + kernels::shape_text(targets) + ", expected " +
              std::to_string(row_count(logits)) + " elements (one per row of logits " +
              kernels::shape_text(logits) + ")");
  return dt;
}

// A per-row F64 table of `cols` columns (stats [N, 3], row [N, 2]).
void require_row_table(const char* op, const char* name, const Tensor& t, int64_t rows,
                       int64_t cols) {
  require_device_tensor(op, name, t, DType::F64);
  require(t.numel() == rows * cols, op,
          std::string(name) + " has shape " + kernels::shape_text(t) + ", expected [" +
              std::to_string(rows) + ", " + std::to_string(cols) + "] (one row per row of logits)");
}

// Calls launch(Tag<T>, Int<VEC>, grid, threads) for a kernel over the rows:
// one block per row (blocks loop beyond kMaxGrid), ce_threads of the vector
// count; the vector path where V is a multiple of the width and the caller's
// pointers are 16-byte aligned (`aligned`). The one place that decides the
// layout, so the fused op and the two halves split rows alike.
template <class Launch>
void launch_rows(DType dt, int64_t rows, int64_t vocab, bool aligned, Launch&& launch) {
  const int vec = vec_width(dt);
  const bool vp = vocab % vec == 0 && aligned;
  const int threads = ce_threads(vp ? vocab / vec : vocab);
  const unsigned grid = static_cast<unsigned>(std::min(rows, kMaxGrid));
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) { launch(tt, vv, grid, threads); });
  DYT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_sum_partials(const double* part, int64_t n, float* out_f32, double* out_f64,
                         cudaStream_t stream) {
  sum_partials_kernel<<<1, kSumThreads, 0, stream>>>(part, n, out_f32, out_f64);
  DYT_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

using namespace detail;

size_t cross_entropy_workspace_bytes(int64_t rows) {
  return rows <= 0 ? 0 : static_cast<size_t>(rows) * sizeof(double);
}

void cross_entropy(const Tensor& logits, const Tensor& targets, float grad_scale,
                   const Tensor* dlogits, Tensor& loss_sum, cudaStream_t stream,
                   const Workspace* ws) {
  const char* op = "cross_entropy";
  const DType dt = check_logits_targets(op, logits, targets);
  const int64_t vocab = last_dim(logits), rows = row_count(logits);
  require_device_tensor(op, "loss_sum", loss_sum, DType::F64);
  require(loss_sum.numel() == 1, op,
          "loss_sum has shape " + kernels::shape_text(loss_sum) + ", expected one element");
  if (dlogits) {
    require_act(op, "dlogits", *dlogits, dt, rows, vocab);
    const char* a = static_cast<const char*>(logits.data);
    const char* b = static_cast<const char*>(dlogits->data);
    const int64_t bytes = rows * vocab * kernels::dtype_size(dt);
    require(a == b || b + bytes <= a || a + bytes <= b, op,
            "dlogits must be the logits themselves or not overlap them");
  }
  if (rows == 0) return;

  double* row_loss =
      static_cast<double*>(workspace(op, cross_entropy_workspace_bytes(rows), stream, ws));
  const bool aligned = aligned16(logits.data) && (!dlogits || aligned16(dlogits->data));
  launch_rows(dt, rows, vocab, aligned, [&](auto tt, auto vv, unsigned grid, int threads) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    cross_entropy_kernel<T, VEC><<<grid, threads, 0, stream>>>(
        static_cast<const T*>(logits.data), targets.i32(),
        dlogits ? static_cast<T*>(dlogits->data) : nullptr, rows, vocab, grad_scale, row_loss);
  });
  launch_sum_partials(row_loss, rows, nullptr, loss_sum.f64(), stream);
}

void cross_entropy_stats(const Tensor& logits, const Tensor& targets, Tensor& stats,
                         cudaStream_t stream) {
  const char* op = "cross_entropy_stats";
  const DType dt = check_logits_targets(op, logits, targets);
  const int64_t vocab = last_dim(logits), rows = row_count(logits);
  require_row_table(op, "stats", stats, rows, 3);
  if (rows == 0) return;
  const bool aligned = aligned16(logits.data);
  launch_rows(dt, rows, vocab, aligned, [&](auto tt, auto vv, unsigned grid, int threads) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    cross_entropy_stats_kernel<T, VEC><<<grid, threads, 0, stream>>>(
        static_cast<const T*>(logits.data), targets.i32(), rows, vocab, stats.f64());
  });
}

void cross_entropy_grad(Tensor& logits, const Tensor& targets, const Tensor& row, float grad_scale,
                        cudaStream_t stream) {
  const char* op = "cross_entropy_grad";
  const DType dt = check_logits_targets(op, logits, targets);
  const int64_t vocab = last_dim(logits), rows = row_count(logits);
  require_row_table(op, "row", row, rows, 2);
  if (rows == 0) return;
  const bool aligned = aligned16(logits.data);
  launch_rows(dt, rows, vocab, aligned, [&](auto tt, auto vv, unsigned grid, int threads) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    cross_entropy_grad_kernel<T, VEC><<<grid, threads, 0, stream>>>(
        static_cast<T*>(logits.data), targets.i32(), rows, vocab, row.f64(), grad_scale);
  });
}

}  // namespace dyt::cuda
