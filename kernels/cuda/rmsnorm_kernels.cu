// RMSNorm, the baseline: one pass per row, forward and backward.
//
// A row is owned by a team of tx threads (a multiple of 32); ty teams share a
// block. With NV > 0 each thread holds NV vectors of its row in registers, so
// the row is read from memory once; NV = 0 (rows over 2048 vectors) streams
// the row twice, the second read mostly from L1/L2. The row's sum is a
// fixed-order team reduction. The backward is persistent over rows: each team
// accumulates dγ for its columns (registers, or its own workspace row on the
// NV = 0 path) and writes one row of partials, added in order by
// launch_finalize.
#include <algorithm>
#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/detail.h"

namespace dyt::cuda {
namespace detail {
namespace {

constexpr int kMaxWarps = 16;  // blocks are at most 512 threads

// Sum over the row team of this thread (blockDim.x threads, a multiple of 32).
// Every thread of the block must call it, the same number of times; buf
// alternates between two halves so one barrier per call suffices.
__device__ __forceinline__ float team_sum(float v, float (*red)[kMaxWarps], int parity) {
  const int nw = blockDim.x / 32;
  v = warp_sum(v);
  float* r = red[parity];
  if ((threadIdx.x & 31) == 0) r[threadIdx.y * nw + threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0.0f;
  for (int w = 0; w < nw; ++w) s += r[threadIdx.y * nw + w];
  return s;
}

template <class T, int VEC, int NV>
__global__ void __launch_bounds__(512)
    rms_forward_kernel(const T* __restrict__ x, const float* __restrict__ gamma, float eps,
                       T* __restrict__ y, float* __restrict__ rstd, int64_t rows, int64_t d) {
  __shared__ float red[2][kMaxWarps];
  const int tx = threadIdx.x, team = blockDim.x;
  const int64_t nvec = d / VEC;
  const float fd = static_cast<float>(d);
  int parity = 0;
  for (int64_t base = int64_t{blockIdx.x} * blockDim.y; base < rows;
       base += int64_t{gridDim.x} * blockDim.y, parity ^= 1) {
    const int64_t r = base + threadIdx.y;
    const bool live = r < rows;
    const T* xr = x + (live ? r : 0) * d;
    T* yr = y + (live ? r : 0) * d;
    float ss = 0.0f;
    if constexpr (NV > 0) {
      Pack<T, VEC> xp[NV];
#pragma unroll
      for (int j = 0; j < NV; ++j) {
        const int64_t v = tx + int64_t{j} * team;
        if (live && v < nvec) xp[j].load(xr + v * VEC);
      }
#pragma unroll
      for (int j = 0; j < NV; ++j) {
        const int64_t v = tx + int64_t{j} * team;
        if (live && v < nvec)
#pragma unroll
          for (int i = 0; i < VEC; ++i) ss += xp[j].get(i) * xp[j].get(i);
      }
      const float rs = 1.0f / sqrtf(team_sum(ss, red, parity) / fd + eps);
#pragma unroll
      for (int j = 0; j < NV; ++j) {
        const int64_t v = tx + int64_t{j} * team;
        if (live && v < nvec) {
          float g[VEC], out[VEC];
          load_f32<VEC>(gamma + v * VEC, g);
#pragma unroll
          for (int i = 0; i < VEC; ++i) out[i] = g[i] * (xp[j].get(i) * rs);
          Pack<T, VEC> yp;
          yp.set_all(out);
          yp.store(yr + v * VEC);
        }
      }
      if (live && tx == 0) rstd[r] = rs;
    } else {
      for (int64_t v = tx; live && v < nvec; v += team) {
        Pack<T, VEC> xp;
        xp.load(xr + v * VEC);
#pragma unroll
        for (int i = 0; i < VEC; ++i) ss += xp.get(i) * xp.get(i);
      }
      const float rs = 1.0f / sqrtf(team_sum(ss, red, parity) / fd + eps);
      for (int64_t v = tx; live && v < nvec; v += team) {
        Pack<T, VEC> xp, yp;
        xp.load(xr + v * VEC);
        float g[VEC], out[VEC];
        load_f32<VEC>(gamma + v * VEC, g);
#pragma unroll
        for (int i = 0; i < VEC; ++i) out[i] = g[i] * (xp.get(i) * rs);
        yp.set_all(out);
        yp.store(yr + v * VEC);
      }
      if (live && tx == 0) rstd[r] = rs;
    }
  }
}

// dx += rs γ dy − (rs³ x / d) Σ dy γ x;  partial dγ += dy (x rs).
template <class T, int VEC, int NV>
__global__ void __launch_bounds__(512)
    rms_backward_kernel(const T* __restrict__ x, const float* __restrict__ gamma,
                        const float* __restrict__ rstd, const T* __restrict__ dy, T* dx,
                        int64_t rows, int64_t d, float* __restrict__ part) {
  __shared__ float red[2][kMaxWarps];
  const int tx = threadIdx.x, team = blockDim.x;
  const int64_t nvec = d / VEC;
  const float fd = static_cast<float>(d);
  float* pr = part + (int64_t{blockIdx.x} * blockDim.y + threadIdx.y) * d;
  int parity = 0;
  if constexpr (NV > 0) {
    float acc[NV][VEC];
#pragma unroll
    for (int j = 0; j < NV; ++j)
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[j][i] = 0.0f;
    for (int64_t base = int64_t{blockIdx.x} * blockDim.y; base < rows;
         base += int64_t{gridDim.x} * blockDim.y, parity ^= 1) {
      const int64_t r = base + threadIdx.y;
      const bool live = r < rows;
      const int64_t off = (live ? r : 0) * d;
      const float rs = live ? __ldg(rstd + r) : 0.0f;
      Pack<T, VEC> xp[NV], dp[NV], gp[NV];
#pragma unroll
      for (int j = 0; j < NV; ++j) {
        const int64_t v = tx + int64_t{j} * team;
        if (live && v < nvec) {
          xp[j].load(x + off + v * VEC);
          dp[j].load(dy + off + v * VEC);
          gp[j].load(dx + off + v * VEC);
        }
      }
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < NV; ++j) {
        const int64_t v = tx + int64_t{j} * team;
        if (live && v < nvec) {
          float g[VEC];
          load_f32<VEC>(gamma + v * VEC, g);
#pragma unroll
          for (int i = 0; i < VEC; ++i) dot += dp[j].get(i) * g[i] * xp[j].get(i);
        }
      }
      const float c = team_sum(dot, red, parity) * rs * rs * rs / fd;
#pragma unroll
      for (int j = 0; j < NV; ++j) {
        const int64_t v = tx + int64_t{j} * team;
        if (live && v < nvec) {
          float g[VEC], out[VEC];
          load_f32<VEC>(gamma + v * VEC, g);
#pragma unroll
          for (int i = 0; i < VEC; ++i) {
            const float xv = xp[j].get(i), dv = dp[j].get(i);
            out[i] = gp[j].get(i) + (rs * g[i] * dv - c * xv);
            acc[j][i] += dv * (xv * rs);
          }
          Pack<T, VEC> op;
          op.set_all(out);
          op.store(dx + off + v * VEC);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < NV; ++j) {
      const int64_t v = tx + int64_t{j} * team;
      if (v < nvec)
#pragma unroll
        for (int i = 0; i < VEC; ++i) pr[v * VEC + i] = acc[j][i];
    }
  } else {
    // Wide rows: the team's partial row lives in the workspace; each thread
    // only ever touches its own columns of it.
    for (int64_t v = tx; v < nvec; v += team)
#pragma unroll
      for (int i = 0; i < VEC; ++i) pr[v * VEC + i] = 0.0f;
    for (int64_t base = int64_t{blockIdx.x} * blockDim.y; base < rows;
         base += int64_t{gridDim.x} * blockDim.y, parity ^= 1) {
      const int64_t r = base + threadIdx.y;
      const bool live = r < rows;
      const int64_t off = (live ? r : 0) * d;
      const float rs = live ? __ldg(rstd + r) : 0.0f;
      float dot = 0.0f;
      for (int64_t v = tx; live && v < nvec; v += team) {
        Pack<T, VEC> xp, dp;
        xp.load(x + off + v * VEC);
        dp.load(dy + off + v * VEC);
        float g[VEC];
        load_f32<VEC>(gamma + v * VEC, g);
#pragma unroll
        for (int i = 0; i < VEC; ++i) dot += dp.get(i) * g[i] * xp.get(i);
      }
      const float c = team_sum(dot, red, parity) * rs * rs * rs / fd;
      for (int64_t v = tx; live && v < nvec; v += team) {
        Pack<T, VEC> xp, dp, gp;
        xp.load(x + off + v * VEC);
        dp.load(dy + off + v * VEC);
        gp.load(dx + off + v * VEC);
        float g[VEC], out[VEC];
        load_f32<VEC>(gamma + v * VEC, g);
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          const float xv = xp.get(i), dv = dp.get(i);
          out[i] = gp.get(i) + (rs * g[i] * dv - c * xv);
          pr[v * VEC + i] += dv * (xv * rs);
        }
        gp.set_all(out);
        gp.store(dx + off + v * VEC);
      }
    }
  }
}

// f(Tag<T>{}, Int<VEC>{}, Int<NV>{}) for the dtype, path and row plan.
template <class F>
void dispatch_rows(DType dt, bool vp, int nv, F&& f) {
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    if (nv == 2) f(tt, vv, Int<2>{});
    else if (nv == 4) f(tt, vv, Int<4>{});
    else f(tt, vv, Int<0>{});
  });
}

}  // namespace
}  // namespace detail

using namespace detail;

void rmsnorm_forward(const Tensor& x, const Tensor& gamma, float eps, Tensor& y, Tensor& rstd,
                     cudaStream_t stream) {
  const char* op = "rmsnorm_forward";
  const DType dt = act_dtype(op, "x", x);
  const int64_t d = last_dim(x), rows = row_count(x);
  require_act(op, "x", x, dt, rows, d);
  require_act(op, "y", y, dt, rows, d);
  require_f32(op, "gamma", gamma, d, true);
  require_f32(op, "rstd", rstd, rows, false);
  if (rows == 0 || d == 0) return;
  const int vec = vec_width(dt);
  const bool vp =
      d % vec == 0 && aligned16(x.data) && aligned16(y.data) && aligned16(gamma.data);
  const RowPlan p = row_plan(d, vp ? vec : 1);
  const int64_t blocks = std::min<int64_t>((rows + p.ty - 1) / p.ty, INT_MAX);
  dispatch_rows(dt, vp, p.nv, [&](auto tt, auto vv, auto nn) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value, NV = decltype(nn)::value;
    rms_forward_kernel<T, VEC, NV><<<static_cast<unsigned>(blocks), dim3(p.tx, p.ty), 0, stream>>>(
        static_cast<const T*>(x.data), gamma.f32(), eps, static_cast<T*>(y.data), rstd.f32(),
        rows, d);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dgamma, cudaStream_t stream, const Workspace* ws) {
  const char* op = "rmsnorm_backward";
  const DType dt = act_dtype(op, "x", x);
  const int64_t d = last_dim(x), rows = row_count(x);
  require_act(op, "x", x, dt, rows, d);
  require_act(op, "dy", dy, dt, rows, d);
  require_act(op, "dx", dx, dt, rows, d);
  require_f32(op, "gamma", gamma, d, true);
  require_f32(op, "rstd", rstd, rows, false);
  require_f32(op, "dgamma", dgamma, d, true);
  if (rows == 0 || d == 0) return;
  const int vec = vec_width(dt);
  const bool vp = d % vec == 0 && aligned16(x.data) && aligned16(dy.data) &&
                  aligned16(dx.data) && aligned16(gamma.data);
  const RowPlan p = row_plan(d, vp ? vec : 1);
  const int64_t blocks = row_backward_blocks(p, rows, sm_count(current_device()));
  const WsLayout lay{0, blocks * p.ty, d};
  char* w = static_cast<char*>(workspace(op, lay.bytes(), stream, ws));
  float* part = reinterpret_cast<float*>(w + lay.alpha_bytes());
  dispatch_rows(dt, vp, p.nv, [&](auto tt, auto vv, auto nn) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value, NV = decltype(nn)::value;
    rms_backward_kernel<T, VEC, NV><<<static_cast<unsigned>(blocks), dim3(p.tx, p.ty), 0, stream>>>(
        static_cast<const T*>(x.data), gamma.f32(), rstd.f32(), static_cast<const T*>(dy.data),
        static_cast<T*>(dx.data), rows, d, part);
  });
  DYT_CUDA_CHECK_LAUNCH();
  launch_finalize(part, lay.n_partial_rows, d, d, dgamma.f32(), nullptr, nullptr, 0, nullptr,
                  stream);
}

}  // namespace dyt::cuda
