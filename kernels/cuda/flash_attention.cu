// Causal grouped-query flash attention, forward and backward (attention.h),
// FlashAttention-2 style: a block owns a tile of R query rows (forward, dQ)
// or R key rows (dK/dV), one warp per 16 of them; the other operand streams
// through shared memory R rows at a time; softmax statistics and the output
// accumulators stay in registers. Matrix products are 16×16 blocks computed
// by one warp: BF16 through the tensor cores (nvcuda::wmma, fp32
// accumulation), F32 through plain fp32 FMAs in the same tiles. Details and
// what is left to tune: docs/cuda_kernels.md, "Attention".
//
// Lane ↔ element mapping of the register accumulators (ours, not wmma's,
// whose mapping is unspecified): in a warp's 16×16 output block, lane l owns
// rows l/16 + 2t (t = 0..7) of column l%16. A wmma result reaches it through
// a 16×16 fp32 scratch in shared memory (store, __syncwarp, read).
#include <mma.h>

#include <cmath>
#include <limits>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/detail.h"

// Warps per block with BF16 activations (16 rows each); F32 uses one (its
// tiles take twice the shared memory). Tiles must fit the 48 KB of static
// shared memory: at hd = 128 the dK/dV kernel takes 47.3 KB with 2 warps
// (more need dynamic shared memory: docs/cuda_kernels.md, "what is left").
#ifndef DYT_ATTN_BF16_WARPS
#define DYT_ATTN_BF16_WARPS 2
#endif

namespace dyt::cuda {
namespace detail {
namespace {

template <class T>
struct Cfg;
template <>
struct Cfg<bf16> {
  static constexpr int kWarps = DYT_ATTN_BF16_WARPS;
};
template <>
struct Cfg<float> {
  static constexpr int kWarps = 1;
};
template <class T>
constexpr int kTile = 16 * Cfg<T>::kWarps;  // query rows = key rows per tile
template <class T>
constexpr int kPad = 16 / static_cast<int>(sizeof(T));  // one 16-byte vector per row

__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }
__device__ __forceinline__ int warp_id() { return threadIdx.x >> 5; }
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

// dst[r][0..HD) ← src[r·stride + 0..HD) for r < valid, zeros for valid ≤ r < N
// (tails: masked later, but never NaN). 16-byte accesses, all block threads.
template <class T, int HD, int N, int LD>
__device__ __forceinline__ void load_rows(T (*dst)[LD], const T* src, int64_t stride, int valid) {
  constexpr int kVec = 16 / sizeof(T), kC = HD / kVec;
  for (int idx = threadIdx.x; idx < N * kC; idx += blockDim.x) {
    const int r = idx / kC, c = (idx % kC) * kVec;
    uint4 v{0u, 0u, 0u, 0u};
#ifdef __CUDA_ARCH__
    if (r < valid) v = *reinterpret_cast<const uint4*>(src + r * stride + c);
    *reinterpret_cast<uint4*>(&dst[r][c]) = v;
#else  // the host emulator: the same bytes without breaking C++'s aliasing rules
    if (r < valid) memcpy(&v, src + r * stride + c, 16);
    memcpy(static_cast<void*>(&dst[r][c]), &v, 16);
#endif
  }
}

// C[16, N] = A[16, K] · B[K, N] into shared memory (c, ldc), by one warp.
// A row-major (a, lda). B: BT ? stored transposed, B[k][n] = b[n·ldb + k]
// (a row-major [N, K] operand, e.g. K for Q·Kᵀ) : row-major, b[k·ldb + n].
// The caller __syncwarp()s before reading c.
template <class T, int K, int N, bool BT>
__device__ __forceinline__ void warp_gemm_to_smem(const T* a, int lda, const T* b, int ldb,
                                                  float* c, int ldc) {
  if constexpr (std::is_same_v<T, bf16>) {
    using namespace nvcuda;
    using BLayout = std::conditional_t<BT, wmma::col_major, wmma::row_major>;
#pragma unroll
    for (int nb = 0; nb < N / 16; ++nb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kb = 0; kb < K / 16; ++kb) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, BLayout> fb;
        wmma::load_matrix_sync(fa, a + kb * 16, lda);
        wmma::load_matrix_sync(fb, BT ? b + nb * 16 * ldb + kb * 16 : b + kb * 16 * ldb + nb * 16,
                               ldb);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(c + nb * 16, acc, ldc, wmma::mem_row_major);
    }
  } else {
    // Consecutive lanes take consecutive columns; each sum runs in k order.
    for (int e = lane_id(); e < 16 * N; e += 32) {
      const int r = e / N, n = e % N;
      float s = 0.0f;
#pragma unroll 8
      for (int k = 0; k < K; ++k) s = fmaf(a[r * lda + k], BT ? b[n * ldb + k] : b[k * ldb + n], s);
      c[r * ldc + n] = s;
    }
  }
}

// acc[cb][t] += (A[16, K] · B[K, 16·NB])[l/16 + 2t][16·cb + l%16] for the
// calling lane l: A row-major (a, lda), B row-major (b, ldb). BF16 passes
// each 16×16 block through `scratch` (256 floats of this warp's own, 32-byte
// aligned, not overlapping a or b).
template <class T, int K, int NB>
__device__ __forceinline__ void warp_gemm_accumulate(const T* a, int lda, const T* b, int ldb,
                                                     float* scratch, float (&acc)[NB][8]) {
  const int lane = lane_id(), r0 = lane / 16, col = lane % 16;
  if constexpr (std::is_same_v<T, bf16>) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[K / 16];
#pragma unroll
    for (int kb = 0; kb < K / 16; ++kb) wmma::load_matrix_sync(fa[kb], a + kb * 16, lda);
#pragma unroll
    for (int cb = 0; cb < NB; ++cb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::fill_fragment(c, 0.0f);
#pragma unroll
      for (int kb = 0; kb < K / 16; ++kb) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb;
        wmma::load_matrix_sync(fb, b + kb * 16 * ldb + cb * 16, ldb);
        wmma::mma_sync(c, fa[kb], fb, c);
      }
      wmma::store_matrix_sync(scratch, c, 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int t = 0; t < 8; ++t) acc[cb][t] += scratch[(r0 + 2 * t) * 16 + col];
      __syncwarp();  // every lane has read the block before the next store
    }
  } else {
#pragma unroll
    for (int cb = 0; cb < NB; ++cb)
#pragma unroll
      for (int t = 0; t < 8; ++t) {
        const T* ar = a + (r0 + 2 * t) * lda;
        const T* bc = b + cb * 16 + col;
        float s = 0.0f;
#pragma unroll 8
        for (int k = 0; k < K; ++k) s = fmaf(ar[k], bc[k * ldb], s);
        acc[cb][t] += s;
      }
  }
}

// ---- forward ----------------------------------------------------------------------------

template <class T, int HD>
struct FwdSmem {
  static constexpr int R = kTile<T>, LD = HD + kPad<T>, LP = R + kPad<T>;
  alignas(32) T q[R][LD];
  alignas(32) T k[R][LD];
  alignas(32) T v[R][LD];
  alignas(32) float s[R][R];  // raw scores Q·Kᵀ; then each warp's 16 rows are its wmma scratch
  alignas(32) T p[R][LP];     // probabilities (bf16-rounded for the tensor cores)
  float alpha[R];             // per row: the rescale of this tile, then 1/l at the end
};

// Grid (query tiles, Hq, B). Block i streams KV tiles 0..i (the causal
// diagonal tile masked); online softmax per row in fp32.
template <class T, int HD>
__global__ void __launch_bounds__(32 * Cfg<T>::kWarps)
    attention_forward_kernel(const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, T* __restrict__ out,
                             float* __restrict__ lse, int T_, int Hq, int group, float scale) {
  using S = FwdSmem<T, HD>;
  constexpr int R = S::R, NB = HD / 16;
  __shared__ S sm;
  const int tile = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int w = warp_id(), lane = lane_id();
  const int64_t qstride = int64_t{Hq} * HD, kvstride = int64_t{Hq / group} * HD;
  const int q0 = tile * R;
  const T* qb = q + (int64_t{b} * T_ + q0) * qstride + int64_t{h} * HD;
  load_rows<T, HD, R>(sm.q, qb, qstride, imin(R, T_ - q0));

  float acc[NB][8];
#pragma unroll
  for (int cb = 0; cb < NB; ++cb)
#pragma unroll
    for (int t = 0; t < 8; ++t) acc[cb][t] = 0.0f;
  // Row statistics: lane r < 16 owns row 16w + r (running max m, sum l).
  const int row = w * 16 + lane;
  const int qi = q0 + row;
  float m = -INFINITY, l = 0.0f;

  for (int j = 0; j <= tile; ++j) {
    const int k0 = j * R;
    __syncthreads();  // every warp is done with the previous K, V tile
    const int64_t kvoff = (int64_t{b} * T_ + k0) * kvstride + int64_t{h / group} * HD;
    load_rows<T, HD, R>(sm.k, k + kvoff, kvstride, imin(R, T_ - k0));
    load_rows<T, HD, R>(sm.v, v + kvoff, kvstride, imin(R, T_ - k0));
    __syncthreads();

    warp_gemm_to_smem<T, HD, R, true>(&sm.q[w * 16][0], S::LD, &sm.k[0][0], S::LD,
                                      &sm.s[w * 16][0], R);
    __syncwarp();
    if (lane < 16) {
      // Keys k0 + n ≤ qi are visible (also keeping tail rows finite).
      const int visible = imin(R, qi - k0 + 1);
      float mx = -INFINITY;
      for (int n = 0; n < visible; ++n) mx = fmaxf(mx, sm.s[row][n] * scale);
      // Tile 0 always shows key 0, so m is finite from then on.
      const float m_new = fmaxf(m, mx);
      const float alpha = expf(m - m_new);  // 0 on the first tile (m = −∞)
      float sum = 0.0f;
      for (int n = 0; n < R; ++n) {
        const float p = n < visible ? expf(sm.s[row][n] * scale - m_new) : 0.0f;
        sum += p;
        sm.p[row][n] = from_f32<T>(p);
      }
      l = l * alpha + sum;
      m = m_new;
      sm.alpha[row] = alpha;
    }
    __syncwarp();
#pragma unroll
    for (int t = 0; t < 8; ++t) {
      const float a = sm.alpha[w * 16 + lane / 16 + 2 * t];
#pragma unroll
      for (int cb = 0; cb < NB; ++cb) acc[cb][t] *= a;
    }
    warp_gemm_accumulate<T, R, NB>(&sm.p[w * 16][0], S::LP, &sm.v[0][0], S::LD, &sm.s[w * 16][0],
                                   acc);
  }

  // out = acc / l, lse = m + log l; rows past T are not stored.
  __syncwarp();  // every lane has read this tile's alpha before it becomes l
  if (lane < 16) {
    sm.alpha[row] = l;
    if (qi < T_) lse[(int64_t{b} * Hq + h) * T_ + qi] = m + logf(l);
  }
  __syncwarp();
  T* ob = out + (int64_t{b} * T_ + q0) * qstride + int64_t{h} * HD;
#pragma unroll
  for (int t = 0; t < 8; ++t) {
    const int r = w * 16 + lane / 16 + 2 * t;
    if (q0 + r >= T_) continue;
    const float lr = sm.alpha[r];
#pragma unroll
    for (int cb = 0; cb < NB; ++cb) ob[r * qstride + cb * 16 + lane % 16] = from_f32<T>(acc[cb][t] / lr);
  }
}

// ---- backward -----------------------------------------------------------------------------

// D[(b·Hq + h)·T + t] = Σ_c dout·out over the head's hd columns, in c order.
template <class T>
__global__ void attention_dot_kernel(const T* __restrict__ out, const T* __restrict__ dout,
                                     float* __restrict__ d, int64_t rows, int T_, int Hq, int hd) {
  const int64_t n = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;  // (row, head), head fastest
  if (n >= rows * Hq) return;
  const int64_t r = n / Hq;
  const int h = static_cast<int>(n % Hq);
  const T* o = out + r * Hq * hd + int64_t{h} * hd;
  const T* g = dout + r * Hq * hd + int64_t{h} * hd;
  float s = 0.0f;
  for (int c = 0; c < hd; ++c) s = fmaf(to_f32(g[c]), to_f32(o[c]), s);
  const int64_t b = r / T_, t = r % T_;
  d[(b * Hq + h) * T_ + t] = s;
}

// Shared tiles of both backward kernels: the block's own rows (x, y: K and V,
// or Q and dO) and the streamed ones (u, w: Q and dO, or K and V).
template <class T, int HD>
struct BwdSmem {
  static constexpr int R = kTile<T>, LD = HD + kPad<T>, LP = R + kPad<T>;
  alignas(32) T x[R][LD];
  alignas(32) T y[R][LD];
  alignas(32) T u[R][LD];
  alignas(32) T w[R][LD];
  alignas(32) float s[R][R];   // scores; then each warp's wmma scratch
  alignas(32) float dp[R][R];  // dO·Vᵀ
  alignas(32) T p[R][LP];      // probabilities (dK/dV kernel only)
  alignas(32) T ds[R][LP];     // dS = P ⊙ (dP − D)
  float lse[R], dd[R];         // of the streamed (dK/dV) or own (dQ) query rows
};

// dK/dV: grid (KV tiles, Hkv, B). Block j owns keys j·R.. (warp w: 16 of
// them) and loops over the group's query heads in order and, for each,
// over the query tiles i ≥ j in order; it works with transposed blocks
// (keys × queries): Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, then dV += Pᵀ·dO and
// dK += dSᵀ·Q, accumulated in registers and written once (=).
template <class T, int HD>
__global__ void __launch_bounds__(32 * Cfg<T>::kWarps)
    attention_dkv_kernel(const T* __restrict__ q, const T* __restrict__ k,
                         const T* __restrict__ v, const T* __restrict__ dout,
                         const float* __restrict__ lse, const float* __restrict__ dd,
                         T* __restrict__ dk, T* __restrict__ dv, int T_, int Hq, int group,
                         float scale) {
  using S = BwdSmem<T, HD>;
  constexpr int R = S::R, NB = HD / 16;
  __shared__ S sm;
  const int tile = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
  const int w = warp_id(), lane = lane_id();
  const int64_t qstride = int64_t{Hq} * HD, kvstride = int64_t{Hq / group} * HD;
  const int k0 = tile * R, n_tiles = (T_ + R - 1) / R;
  const int64_t kvoff = (int64_t{b} * T_ + k0) * kvstride + int64_t{g} * HD;
  load_rows<T, HD, R>(sm.x, k + kvoff, kvstride, imin(R, T_ - k0));
  load_rows<T, HD, R>(sm.y, v + kvoff, kvstride, imin(R, T_ - k0));

  float acc_k[NB][8], acc_v[NB][8];
#pragma unroll
  for (int cb = 0; cb < NB; ++cb)
#pragma unroll
    for (int t = 0; t < 8; ++t) acc_k[cb][t] = acc_v[cb][t] = 0.0f;

  for (int h = g * group; h < (g + 1) * group; ++h) {
    for (int i = tile; i < n_tiles; ++i) {
      const int q0 = i * R, valid = imin(R, T_ - q0);
      __syncthreads();  // every warp is done with the previous Q, dO tile
      const int64_t qoff = (int64_t{b} * T_ + q0) * qstride + int64_t{h} * HD;
      load_rows<T, HD, R>(sm.u, q + qoff, qstride, valid);
      load_rows<T, HD, R>(sm.w, dout + qoff, qstride, valid);
      for (int r = threadIdx.x; r < R; r += blockDim.x) {
        const int64_t at = (int64_t{b} * Hq + h) * T_ + q0 + r;
        sm.lse[r] = r < valid ? lse[at] : 0.0f;
        sm.dd[r] = r < valid ? dd[at] : 0.0f;
      }
      __syncthreads();

      warp_gemm_to_smem<T, HD, R, true>(&sm.x[w * 16][0], S::LD, &sm.u[0][0], S::LD,
                                        &sm.s[w * 16][0], R);
      warp_gemm_to_smem<T, HD, R, true>(&sm.y[w * 16][0], S::LD, &sm.w[0][0], S::LD,
                                        &sm.dp[w * 16][0], R);
      __syncwarp();
      for (int e = lane; e < 16 * R; e += 32) {
        const int r = w * 16 + e / R, n = e % R;
        const int key = k0 + r, query = q0 + n;
        const bool on = query < T_ && key <= query;
        const float p = on ? expf(sm.s[r][n] * scale - sm.lse[n]) : 0.0f;
        sm.p[r][n] = from_f32<T>(p);
        sm.ds[r][n] = from_f32<T>(p * (sm.dp[r][n] - sm.dd[n]));
      }
      __syncwarp();
      warp_gemm_accumulate<T, R, NB>(&sm.p[w * 16][0], S::LP, &sm.w[0][0], S::LD,
                                     &sm.s[w * 16][0], acc_v);
      warp_gemm_accumulate<T, R, NB>(&sm.ds[w * 16][0], S::LP, &sm.u[0][0], S::LD,
                                     &sm.s[w * 16][0], acc_k);
    }
  }

  T* dkb = dk + kvoff;
  T* dvb = dv + kvoff;
#pragma unroll
  for (int t = 0; t < 8; ++t) {
    const int r = w * 16 + lane / 16 + 2 * t;
    if (k0 + r >= T_) continue;
#pragma unroll
    for (int cb = 0; cb < NB; ++cb) {
      const int64_t at = r * kvstride + cb * 16 + lane % 16;
      dkb[at] = from_f32<T>(acc_k[cb][t] * scale);
      dvb[at] = from_f32<T>(acc_v[cb][t]);
    }
  }
}

// dQ: grid (query tiles, Hq, B). Block i owns queries i·R.. (warp w: 16 of
// them) and streams KV tiles 0..i: S = Q·Kᵀ, dP = dO·Vᵀ, dS = P ⊙ (dP − D),
// dQ += dS·K in registers, written once (=) times the scale.
template <class T, int HD>
__global__ void __launch_bounds__(32 * Cfg<T>::kWarps)
    attention_dq_kernel(const T* __restrict__ q, const T* __restrict__ k,
                        const T* __restrict__ v, const T* __restrict__ dout,
                        const float* __restrict__ lse, const float* __restrict__ dd,
                        T* __restrict__ dq, int T_, int Hq, int group, float scale) {
  using S = BwdSmem<T, HD>;
  constexpr int R = S::R, NB = HD / 16;
  __shared__ S sm;
  const int tile = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int w = warp_id(), lane = lane_id();
  const int64_t qstride = int64_t{Hq} * HD, kvstride = int64_t{Hq / group} * HD;
  const int q0 = tile * R, valid = imin(R, T_ - q0);
  const int64_t qoff = (int64_t{b} * T_ + q0) * qstride + int64_t{h} * HD;
  load_rows<T, HD, R>(sm.x, q + qoff, qstride, valid);
  load_rows<T, HD, R>(sm.y, dout + qoff, qstride, valid);
  for (int r = threadIdx.x; r < R; r += blockDim.x) {
    const int64_t at = (int64_t{b} * Hq + h) * T_ + q0 + r;
    sm.lse[r] = r < valid ? lse[at] : 0.0f;
    sm.dd[r] = r < valid ? dd[at] : 0.0f;
  }

  float acc[NB][8];
#pragma unroll
  for (int cb = 0; cb < NB; ++cb)
#pragma unroll
    for (int t = 0; t < 8; ++t) acc[cb][t] = 0.0f;

  for (int j = 0; j <= tile; ++j) {
    const int k0 = j * R;
    __syncthreads();  // every warp is done with the previous K, V tile
    const int64_t kvoff = (int64_t{b} * T_ + k0) * kvstride + int64_t{h / group} * HD;
    load_rows<T, HD, R>(sm.u, k + kvoff, kvstride, imin(R, T_ - k0));
    load_rows<T, HD, R>(sm.w, v + kvoff, kvstride, imin(R, T_ - k0));
    __syncthreads();

    warp_gemm_to_smem<T, HD, R, true>(&sm.x[w * 16][0], S::LD, &sm.u[0][0], S::LD,
                                      &sm.s[w * 16][0], R);
    warp_gemm_to_smem<T, HD, R, true>(&sm.y[w * 16][0], S::LD, &sm.w[0][0], S::LD,
                                      &sm.dp[w * 16][0], R);
    __syncwarp();
    for (int e = lane; e < 16 * R; e += 32) {
      const int r = w * 16 + e / R, n = e % R;
      const bool on = r < valid && k0 + n <= q0 + r;
      const float p = on ? expf(sm.s[r][n] * scale - sm.lse[r]) : 0.0f;
      sm.ds[r][n] = from_f32<T>(p * (sm.dp[r][n] - sm.dd[r]));
    }
    __syncwarp();
    warp_gemm_accumulate<T, R, NB>(&sm.ds[w * 16][0], S::LP, &sm.u[0][0], S::LD,
                                   &sm.s[w * 16][0], acc);
  }

  T* dqb = dq + qoff;
#pragma unroll
  for (int t = 0; t < 8; ++t) {
    const int r = w * 16 + lane / 16 + 2 * t;
    if (r >= valid) continue;
#pragma unroll
    for (int cb = 0; cb < NB; ++cb)
      dqb[r * qstride + cb * 16 + lane % 16] = from_f32<T>(acc[cb][t] * scale);
  }
}

// ---- host side ----------------------------------------------------------------------------

struct Dims {
  int64_t B, T, Hq, Hkv, hd;
};

Dims check_dims(const char* op, const Tensor& q, const AttentionShape& s) {
  require(s.batch > 0 && s.seq_len > 0 && s.heads > 0 && s.kv_heads > 0, op,
          "batch, seq_len, heads and kv_heads must be positive, got " +
              std::to_string(s.batch) + ", " + std::to_string(s.seq_len) + ", " +
              std::to_string(s.heads) + ", " + std::to_string(s.kv_heads));
  require(s.heads % s.kv_heads == 0, op,
          "heads " + std::to_string(s.heads) + " is not a multiple of kv_heads " +
              std::to_string(s.kv_heads));
  require(s.seq_len <= (int64_t{1} << 30) && s.heads <= 65535 && s.batch <= 65535, op,
          "seq_len above 2^30, or heads or batch above 65535");
  const int64_t width = last_dim(q);
  require(width % s.heads == 0, op,
          "q width " + std::to_string(width) + " is not a multiple of heads " +
              std::to_string(s.heads));
  const int64_t hd = width / s.heads;
  require(hd == 32 || hd == 64 || hd == 128, op,
          "head size " + std::to_string(hd) + " (q width / heads) is not 32, 64 or 128");
  return {s.batch, s.seq_len, s.heads, s.kv_heads, hd};
}

void require_aligned(const char* op, const char* name, const Tensor& t) {
  require(aligned16(t.data), op, std::string(name) + " must be 16-byte aligned");
}

// Calls f(Tag<T>{}, Int<HD>{}) for the activation dtype and head size.
template <class F>
void dispatch(DType dt, int64_t hd, F&& f) {
  auto by_hd = [&](auto tt) {
    if (hd == 32) f(tt, Int<32>{});
    else if (hd == 64) f(tt, Int<64>{});
    else f(tt, Int<128>{});
  };
  if (dt == DType::BF16) by_hd(Tag<bf16>{});
  else by_hd(Tag<float>{});
}

float softmax_scale(int64_t hd) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd))); }

}  // namespace
}  // namespace detail

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s,
                       const Tensor& out, const Tensor& lse, cudaStream_t stream) {
  using namespace detail;
  const char* op = "attention_forward";
  const DType dt = act_dtype(op, "q", q);
  const Dims d = check_dims(op, q, s);
  const int64_t rows = d.B * d.T;
  require_act(op, "q", q, dt, rows, d.Hq * d.hd);
  require_act(op, "k", k, dt, rows, d.Hkv * d.hd);
  require_act(op, "v", v, dt, rows, d.Hkv * d.hd);
  require_act(op, "out", out, dt, rows, d.Hq * d.hd);
  require_f32(op, "lse", lse, d.B * d.Hq * d.T, false);
  for (auto [name, t] : {std::pair{"q", &q}, {"k", &k}, {"v", &v}, {"out", &out}})
    require_aligned(op, name, *t);

  dispatch(dt, d.hd, [&](auto tt, auto hh) {
    using T = typename decltype(tt)::type;
    constexpr int HD = decltype(hh)::value;
    const dim3 grid(static_cast<unsigned>((d.T + kTile<T> - 1) / kTile<T>),
                    static_cast<unsigned>(d.Hq), static_cast<unsigned>(d.B));
    attention_forward_kernel<T, HD><<<grid, 32 * Cfg<T>::kWarps, 0, stream>>>(
        static_cast<const T*>(q.data), static_cast<const T*>(k.data),
        static_cast<const T*>(v.data), static_cast<T*>(out.data), lse.f32(),
        static_cast<int>(d.T), static_cast<int>(d.Hq), static_cast<int>(d.Hq / d.Hkv),
        softmax_scale(d.hd));
  });
  DYT_CUDA_CHECK_LAUNCH();
}

size_t attention_backward_workspace_bytes(const AttentionShape& s) {
  if (s.batch <= 0 || s.heads <= 0 || s.seq_len <= 0) return 0;
  return static_cast<size_t>(s.batch * s.heads * s.seq_len) * sizeof(float);
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const AttentionShape& s,
                        const Tensor& dq, const Tensor& dk, const Tensor& dv, cudaStream_t stream,
                        const Workspace* ws) {
  using namespace detail;
  const char* op = "attention_backward";
  const DType dt = act_dtype(op, "q", q);
  const Dims d = check_dims(op, q, s);
  const int64_t rows = d.B * d.T, qw = d.Hq * d.hd, kw = d.Hkv * d.hd;
  require_act(op, "q", q, dt, rows, qw);
  require_act(op, "k", k, dt, rows, kw);
  require_act(op, "v", v, dt, rows, kw);
  require_act(op, "out", out, dt, rows, qw);
  require_act(op, "dout", dout, dt, rows, qw);
  require_act(op, "dq", dq, dt, rows, qw);
  require_act(op, "dk", dk, dt, rows, kw);
  require_act(op, "dv", dv, dt, rows, kw);
  require_f32(op, "lse", lse, d.B * d.Hq * d.T, false);
  for (auto [name, t] : {std::pair{"q", &q}, {"k", &k}, {"v", &v}, {"out", &out}, {"dout", &dout},
                         {"dq", &dq}, {"dk", &dk}, {"dv", &dv}})
    require_aligned(op, name, *t);
  float* dd = static_cast<float*>(workspace(op, attention_backward_workspace_bytes(s), stream, ws));

  dispatch(dt, d.hd, [&](auto tt, auto hh) {
    using T = typename decltype(tt)::type;
    constexpr int HD = decltype(hh)::value;
    const int T_ = static_cast<int>(d.T), Hq = static_cast<int>(d.Hq);
    const int group = static_cast<int>(d.Hq / d.Hkv);
    const float scale = softmax_scale(d.hd);
    const int64_t n_dot = rows * d.Hq;
    attention_dot_kernel<T><<<static_cast<unsigned>((n_dot + 255) / 256), 256, 0, stream>>>(
        static_cast<const T*>(out.data), static_cast<const T*>(dout.data), dd, rows, T_, Hq,
        HD);
    DYT_CUDA_CHECK_LAUNCH();
    const unsigned tiles = static_cast<unsigned>((d.T + kTile<T> - 1) / kTile<T>);
    const dim3 block(32 * Cfg<T>::kWarps);
    attention_dkv_kernel<T, HD><<<dim3(tiles, static_cast<unsigned>(d.Hkv),
                                       static_cast<unsigned>(d.B)), block, 0, stream>>>(
        static_cast<const T*>(q.data), static_cast<const T*>(k.data),
        static_cast<const T*>(v.data), static_cast<const T*>(dout.data), lse.f32(), dd,
        static_cast<T*>(dk.data), static_cast<T*>(dv.data), T_, Hq, group, scale);
    DYT_CUDA_CHECK_LAUNCH();
    attention_dq_kernel<T, HD><<<dim3(tiles, static_cast<unsigned>(d.Hq),
                                      static_cast<unsigned>(d.B)), block, 0, stream>>>(
        static_cast<const T*>(q.data), static_cast<const T*>(k.data),
        static_cast<const T*>(v.data), static_cast<const T*>(dout.data), lse.f32(), dd,
        static_cast<T*>(dq.data), T_, Hq, group, scale);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

}  // namespace dyt::cuda
