// DyT and DyISRU (plain and fused with the residual add), forward and
// backward; the residual add alone; the second stage of every backward
// reduction.
//
// Layout: a block is tx threads across the row × ty rows; each thread owns
// one VEC-element column vector (16 bytes, or one element on the scalar path)
// for the whole kernel, so γ, β and the dγ/dβ accumulators stay in registers.
// The grid is col_tiles × row_blocks and threads step over rows with stride
// gridDim.y·ty, U rows at a time (all U rows' loads issued before any use).
// The backward grid is persistent (row_blocks fixed by the device and shape);
// each (row block, ty) writes one row of dγ|dβ partials and each block one dα
// partial (double), and finalize_kernel adds them in index order.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/detail.h"

namespace dyt::cuda {
namespace detail {
namespace {

template <class Act, class T, int VEC>
__global__ void __launch_bounds__(512, DYT_CUDA_FWD_MIN_BLOCKS)
    dyn_forward_kernel(const T* x, const T* branch, T* sum_out, T* __restrict__ y,
                       const float* __restrict__ alpha, const float* __restrict__ gamma,
                       const float* __restrict__ beta, int64_t rows, int64_t d) {
  constexpr int U = kFwdRowsPerThread;
  const int64_t c = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) * VEC;
  if (c >= d) return;  // no block-wide synchronization in this kernel
  const float a = __ldg(alpha);
  float g[VEC], b[VEC];
  load_f32<VEC>(gamma + c, g);
  if (beta) {
    load_f32<VEC>(beta + c, b);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) b[i] = 0.0f;
  }
  const int64_t stride = int64_t{gridDim.y} * blockDim.y;
  for (int64_t r0 = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; r0 < rows; r0 += stride * U) {
    Pack<T, VEC> xp[U], bp[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t r = r0 + u * stride;
      if (r < rows) {
        xp[u].load(x + r * d + c);
        if (branch) bp[u].load(branch + r * d + c);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t r = r0 + u * stride;
      if (r < rows) {
        float h[VEC], out[VEC];
#pragma unroll
        for (int i = 0; i < VEC; ++i) h[i] = xp[u].get(i);
        if (branch) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) h[i] += bp[u].get(i);
          Pack<T, VEC> hp;
          hp.set_all(h);
          hp.store(sum_out + r * d + c);
          // DyT of the sum as stored, so the backward (which reads it) agrees.
#pragma unroll
          for (int i = 0; i < VEC; ++i) h[i] = hp.get(i);
        }
#pragma unroll
        for (int i = 0; i < VEC; ++i) out[i] = g[i] * Act::value(h[i], a) + b[i];
        Pack<T, VEC> yp;
        yp.set_all(out);
        yp.store(y + r * d + c);
      }
    }
  }
}

// gout = gin + dy γ α f'(αx); partials of dα (Σ dy γ x f', double), dγ (Σ dy f),
// dβ (Σ dy). gin may equal gout.
template <class Act, class T, int VEC>
__global__ void __launch_bounds__(512, DYT_CUDA_BWD_MIN_BLOCKS)
    dyn_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, const T* gin, T* gout,
                        const float* __restrict__ alpha, const float* __restrict__ gamma,
                        int64_t rows, int64_t d, int64_t nf, bool with_beta,
                        float* __restrict__ part, double* __restrict__ apart) {
  constexpr int U = kBwdRowsPerThread;
  __shared__ double red[32];
  const int64_t c = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) * VEC;
  const bool active = c < d;
  float accg[VEC], accb[VEC];
#pragma unroll
  for (int i = 0; i < VEC; ++i) accg[i] = accb[i] = 0.0f;
  double acca = 0.0;
  if (active) {
    const float a = __ldg(alpha);
    float g[VEC];
    load_f32<VEC>(gamma + c, g);
    const int64_t stride = int64_t{gridDim.y} * blockDim.y;
    for (int64_t r0 = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; r0 < rows;
         r0 += stride * U) {
      Pack<T, VEC> xp[U], dp[U], gp[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t r = r0 + u * stride;
        if (r < rows) {
          xp[u].load(x + r * d + c);
          dp[u].load(dy + r * d + c);
          gp[u].load(gin + r * d + c);
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t r = r0 + u * stride;
        if (r < rows) {
          float out[VEC];
#pragma unroll
          for (int i = 0; i < VEC; ++i) {
            const float xv = xp[u].get(i), dv = dp[u].get(i);
            float v, s;
            Act::value_and_slope(xv, a, v, s);
            const float gs = dv * g[i] * s;
            out[i] = gp[u].get(i) + gs * a;
            acca = fma(static_cast<double>(gs), static_cast<double>(xv), acca);
            accg[i] += dv * v;
            accb[i] += dv;
          }
          Pack<T, VEC> op;
          op.set_all(out);
          op.store(gout + r * d + c);
        }
      }
    }
    float* pr = part + (int64_t{blockIdx.y} * blockDim.y + threadIdx.y) * nf;
#pragma unroll
    for (int i = 0; i < VEC; ++i) pr[c + i] = accg[i];
    if (with_beta) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) pr[d + c + i] = accb[i];
    }
  }
  const double s = block_sum(acca, red);
  if (threadIdx.x == 0 && threadIdx.y == 0) apart[int64_t{blockIdx.y} * gridDim.x + blockIdx.x] = s;
}

constexpr int kFinCols = 32, kFinSlices = 16;

__global__ void __launch_bounds__(kFinCols* kFinSlices)
    finalize_kernel(const float* __restrict__ part, int64_t n_rows, int64_t nf, int64_t d,
                    float* __restrict__ dgamma, float* __restrict__ dbeta,
                    const double* __restrict__ apart, int64_t n_alpha, float* __restrict__ dalpha,
                    int col_blocks) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  if (static_cast<int>(blockIdx.x) < col_blocks) {
    __shared__ double sm[kFinSlices][kFinCols + 1];
    const int64_t c = int64_t{blockIdx.x} * kFinCols + tx;
    double s = 0.0;
    if (c < nf)
      for (int64_t p = ty; p < n_rows; p += kFinSlices) s += part[p * nf + c];
    sm[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < nf) {
      double t = 0.0;
#pragma unroll
      for (int k = 0; k < kFinSlices; ++k) t += sm[k][tx];
      float* out = c < d ? dgamma + c : dbeta + (c - d);
      *out += static_cast<float>(t);
    }
  } else {  // the extra block: dα
    __shared__ double red[32];
    const int t = tx + kFinCols * ty;
    double s = 0.0;
    for (int64_t k = t; k < n_alpha; k += kFinCols * kFinSlices) s += apart[k];
    s = block_sum(s, red);
    if (t == 0) *dalpha += static_cast<float>(s);
  }
}

template <class T, int VEC>
__global__ void __launch_bounds__(256) add_kernel(T* x, const T* __restrict__ y, int64_t nvec) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < nvec;
       i += int64_t{gridDim.x} * blockDim.x) {
    Pack<T, VEC> a, b;
    a.load(x + i * VEC);
    b.load(y + i * VEC);
    float s[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) s[k] = a.get(k) + b.get(k);
    a.set_all(s);
    a.store(x + i * VEC);
  }
}

template <class Act>
void dyn_forward(const char* op, const Tensor& x, const Tensor* branch, const Tensor& alpha,
                 const Tensor& gamma, const Tensor* beta, Tensor* sum, Tensor& y,
                 cudaStream_t stream) {
  const char* xname = branch ? "residual" : "x";
  const DType dt = act_dtype(op, xname, x);
  const int64_t d = last_dim(x), rows = row_count(x);
  require_act(op, xname, x, dt, rows, d);
  if (branch) {
    require_act(op, "branch", *branch, dt, rows, d);
    require_act(op, "sum", *sum, dt, rows, d);
  }
  require_act(op, "y", y, dt, rows, d);
  require_f32(op, "alpha", alpha, 1, false);
  require_f32(op, "gamma", gamma, d, true);
  if (beta) require_f32(op, "beta", *beta, d, true);
  if (rows == 0 || d == 0) return;

  const int vec = vec_width(dt);
  const bool vp = d % vec == 0 && aligned16(x.data) && aligned16(y.data) &&
                  (!branch || (aligned16(branch->data) && aligned16(sum->data))) &&
                  aligned16(gamma.data) && (!beta || aligned16(beta->data));
  const ColPlan p = col_plan(d, vp ? vec : 1);
  const dim3 grid(p.col_tiles, static_cast<unsigned>(col_forward_row_blocks(p, rows)));
  const dim3 block(p.tx, p.ty);
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    dyn_forward_kernel<Act, T, VEC><<<grid, block, 0, stream>>>(
        static_cast<const T*>(x.data), branch ? static_cast<const T*>(branch->data) : nullptr,
        branch ? static_cast<T*>(sum->data) : nullptr, static_cast<T*>(y.data), alpha.f32(),
        gamma.f32(), beta ? beta->f32() : nullptr, rows, d);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

template <class Act>
void dyn_backward(const char* op, const Tensor& x, const Tensor& alpha, const Tensor& gamma,
                  const Tensor& dy, const Tensor& gin, Tensor& gout, Tensor& dalpha,
                  Tensor& dgamma, Tensor* dbeta, cudaStream_t stream, const Workspace* ws,
                  bool residual) {
  const char* xname = residual ? "sum" : "x";
  const char* gin_name = residual ? "dresidual" : "dx";
  const char* gout_name = residual ? "dsum" : "dx";
  const DType dt = act_dtype(op, xname, x);
  const int64_t d = last_dim(x), rows = row_count(x);
  require_act(op, xname, x, dt, rows, d);
  require_act(op, "dy", dy, dt, rows, d);
  require_act(op, gin_name, gin, dt, rows, d);
  require_act(op, gout_name, gout, dt, rows, d);
  require_f32(op, "alpha", alpha, 1, false);
  require_f32(op, "gamma", gamma, d, true);
  require_f32(op, "dalpha", dalpha, 1, false);
  require_f32(op, "dgamma", dgamma, d, true);
  if (dbeta) require_f32(op, "dbeta", *dbeta, d, true);
  if (rows == 0 || d == 0) return;

  const int vec = vec_width(dt);
  const bool vp = d % vec == 0 && aligned16(x.data) && aligned16(dy.data) &&
                  aligned16(gin.data) && aligned16(gout.data) && aligned16(gamma.data);
  const ColPlan p = col_plan(d, vp ? vec : 1);
  const int64_t rb = col_backward_row_blocks(p, rows, sm_count(current_device()));
  const WsLayout lay{rb * p.col_tiles, rb * p.ty, dbeta ? 2 * d : d};
  char* w = static_cast<char*>(workspace(op, lay.bytes(), stream, ws));
  double* apart = reinterpret_cast<double*>(w);
  float* part = reinterpret_cast<float*>(w + lay.alpha_bytes());
  const dim3 grid(p.col_tiles, static_cast<unsigned>(rb)), block(p.tx, p.ty);
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    dyn_backward_kernel<Act, T, VEC><<<grid, block, 0, stream>>>(
        static_cast<const T*>(x.data), static_cast<const T*>(dy.data),
        static_cast<const T*>(gin.data), static_cast<T*>(gout.data), alpha.f32(), gamma.f32(),
        rows, d, lay.nf, dbeta != nullptr, part, apart);
  });
  DYT_CUDA_CHECK_LAUNCH();
  launch_finalize(part, lay.n_partial_rows, lay.nf, d, dgamma.f32(), dbeta ? dbeta->f32() : nullptr,
                  apart, lay.n_alpha, dalpha.f32(), stream);
}

}  // namespace

void launch_finalize(const float* part, int64_t n_rows, int64_t nf, int64_t d, float* dgamma,
                     float* dbeta, const double* apart, int64_t n_alpha, float* dalpha,
                     cudaStream_t stream) {
  const int col_blocks = static_cast<int>((nf + kFinCols - 1) / kFinCols);
  const int blocks = col_blocks + (dalpha != nullptr && n_alpha > 0 ? 1 : 0);
  finalize_kernel<<<blocks, dim3(kFinCols, kFinSlices), 0, stream>>>(
      part, n_rows, nf, d, dgamma, dbeta, apart, n_alpha, dalpha, col_blocks);
  DYT_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

using namespace detail;

void add_inplace(Tensor& x, const Tensor& y, cudaStream_t stream) {
  const char* op = "add_inplace";
  const DType dt = act_dtype(op, "x", x);
  const int64_t d = last_dim(x), rows = row_count(x);
  require_act(op, "y", y, dt, rows, d);
  const int64_t n = x.numel();
  if (n == 0) return;
  const int vec = vec_width(dt);
  const bool vp = n % vec == 0 && aligned16(x.data) && aligned16(y.data);
  const int64_t nvec = vp ? n / vec : n;
  const int64_t blocks =
      std::max<int64_t>(1, std::min<int64_t>((nvec + 255) / 256, int64_t{sm_count(current_device())} * 16));
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    add_kernel<T, VEC><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
        static_cast<T*>(x.data), static_cast<const T*>(y.data), nvec);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

void dyt_forward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                 Tensor& y, cudaStream_t stream) {
  dyn_forward<TanhAct>("dyt_forward", x, nullptr, alpha, gamma, beta, nullptr, y, stream);
}
void dyt_residual_forward(const Tensor& residual, const Tensor& branch, const Tensor& alpha,
                          const Tensor& gamma, const Tensor* beta, Tensor& sum, Tensor& y,
                          cudaStream_t stream) {
  dyn_forward<TanhAct>("dyt_residual_forward", residual, &branch, alpha, gamma, beta, &sum, y,
                       stream);
}
void dyt_backward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor& dy,
                  Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta, cudaStream_t stream,
                  const Workspace* ws) {
  dyn_backward<TanhAct>("dyt_backward", x, alpha, gamma, dy, dx, dx, dalpha, dgamma, dbeta,
                        stream, ws, false);
}
void dyt_residual_backward(const Tensor& sum, const Tensor& alpha, const Tensor& gamma,
                           const Tensor& dy, const Tensor& dresidual, Tensor& dsum,
                           Tensor& dalpha, Tensor& dgamma, Tensor* dbeta, cudaStream_t stream,
                           const Workspace* ws) {
  dyn_backward<TanhAct>("dyt_residual_backward", sum, alpha, gamma, dy, dresidual, dsum, dalpha,
                        dgamma, dbeta, stream, ws, true);
}

void dyisru_forward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                    Tensor& y, cudaStream_t stream) {
  dyn_forward<IsruAct>("dyisru_forward", x, nullptr, alpha, gamma, beta, nullptr, y, stream);
}
void dyisru_residual_forward(const Tensor& residual, const Tensor& branch, const Tensor& alpha,
                             const Tensor& gamma, const Tensor* beta, Tensor& sum, Tensor& y,
                             cudaStream_t stream) {
  dyn_forward<IsruAct>("dyisru_residual_forward", residual, &branch, alpha, gamma, beta, &sum, y,
                       stream);
}
void dyisru_backward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor& dy,
                     Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta,
                     cudaStream_t stream, const Workspace* ws) {
  dyn_backward<IsruAct>("dyisru_backward", x, alpha, gamma, dy, dx, dx, dalpha, dgamma, dbeta,
                        stream, ws, false);
}
void dyisru_residual_backward(const Tensor& sum, const Tensor& alpha, const Tensor& gamma,
                              const Tensor& dy, const Tensor& dresidual, Tensor& dsum,
                              Tensor& dalpha, Tensor& dgamma, Tensor* dbeta, cudaStream_t stream,
                              const Workspace* ws) {
  dyn_backward<IsruAct>("dyisru_residual_backward", sum, alpha, gamma, dy, dresidual, dsum,
                        dalpha, dgamma, dbeta, stream, ws, true);
}

}  // namespace dyt::cuda
