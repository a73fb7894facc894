// The normalization layers: RMSNorm (the baseline) and its two elementwise
// replacements, DyT and DyISRU, which share one implementation parameterised
// by the activation (value and slope come from kernels/elementwise.h so the
// CUDA kernels compute the same function).
#include <cmath>

#include "kernels/cpu/check.h"
#include "kernels/cpu/row_reduce.h"
#include "kernels/cpu_ops.h"
#include "kernels/elementwise.h"

namespace dyt::cpu {

using namespace detail;

// ---- RMSNorm -------------------------------------------------------------------

void rmsnorm_forward(const Tensor& x, const Tensor& gamma, float eps, Tensor& y, Tensor& rstd) {
  const char* op = "rmsnorm_forward";
  require_f32(op, "x", x);
  require_f32(op, "gamma", gamma);
  require_f32(op, "y", y);
  require_f32(op, "rstd", rstd);
  const int64_t d = last_dim(x), n = row_count(x);
  require_vector(op, "gamma", gamma, d);
  require_rows(op, "y", y, n, d);
  require_numel(op, "rstd", rstd, n);
  const float* g = gamma.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x.f32() + r * d;
    float* yr = y.f32() + r * d;
    double ss = 0.0;  // the CPU path is the reference: accumulate in double
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float rs = static_cast<float>(1.0 / std::sqrt(ss / d + eps));
    rstd.f32()[r] = rs;
    for (int64_t i = 0; i < d; ++i) yr[i] = g[i] * (xr[i] * rs);
  }
}

// y_i = γ_i x_i r,  r = (mean(x²)+eps)^(-1/2),  ∂r/∂x_k = −r³ x_k / d, so
// dx_k = r γ_k dy_k − (r³ x_k / d) Σ_i dy_i γ_i x_i.
void rmsnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dgamma) {
  const char* op = "rmsnorm_backward";
  require_f32(op, "x", x);
  require_f32(op, "gamma", gamma);
  require_f32(op, "rstd", rstd);
  require_f32(op, "dy", dy);
  require_f32(op, "dx", dx);
  require_f32(op, "dgamma", dgamma);
  const int64_t d = last_dim(x), n = row_count(x);
  require_vector(op, "gamma", gamma, d);
  require_vector(op, "dgamma", dgamma, d);
  require_numel(op, "rstd", rstd, n);
  require_rows(op, "dy", dy, n, d);
  require_rows(op, "dx", dx, n, d);
  const float* g = gamma.f32();
  const RowSums sums = reduce_row_chunks(n, d, 0, [&](int64_t r0, int64_t r1, float* pg, double*) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x.f32() + r * d;
      const float* gr = dy.f32() + r * d;
      float* dxr = dx.f32() + r * d;
      const float rs = rstd.f32()[r];
      double dot = 0.0;
      for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(gr[i]) * g[i] * xr[i];
      const float c = static_cast<float>(dot * rs * rs * rs / d);
      for (int64_t i = 0; i < d; ++i) {
        dxr[i] += rs * g[i] * gr[i] - c * xr[i];
        pg[i] += gr[i] * (xr[i] * rs);
      }
    }
  });
  for (int64_t i = 0; i < d; ++i) dgamma.f32()[i] += sums.f[i];
}

// ---- DyT and DyISRU --------------------------------------------------------------

namespace {

// f(α·x) for the forward; for the backward f and its derivative w.r.t. α·x.
struct Tanh {
  static float value(float x, float a) { return kernels::dyt_value(x, a); }
  static void value_and_slope(float x, float a, float& v, float& s) {
    kernels::dyt_value_and_slope(x, a, v, s);
  }
};
struct Isru {
  static float value(float x, float a) { return kernels::dyisru_value(x, a); }
  static void value_and_slope(float x, float a, float& v, float& s) {
    v = kernels::dyisru_value(x, a);
    s = kernels::dyisru_slope(x, a);
  }
};

void check_params(const char* op, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                  int64_t d, const char* an, const char* gn, const char* bn) {
  require_f32(op, an, alpha);
  require_f32(op, gn, gamma);
  require_numel(op, an, alpha, 1);
  require_vector(op, gn, gamma, d);
  if (beta) {
    require_f32(op, bn, *beta);
    require_vector(op, bn, *beta, d);
  }
}

template <class F>
void dynamic_forward(const char* op, const Tensor& x, const Tensor& alpha, const Tensor& gamma,
                     const Tensor* beta, Tensor& y) {
  require_f32(op, "x", x);
  require_f32(op, "y", y);
  const int64_t d = last_dim(x), n = row_count(x);
  check_params(op, alpha, gamma, beta, d, "alpha", "gamma", "beta");
  require_rows(op, "y", y, n, d);
  const float a = alpha.f32()[0];
  const float* g = gamma.f32();
  const float* b = beta ? beta->f32() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x.f32() + r * d;
    float* yr = y.f32() + r * d;
    if (b) {
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) yr[i] = g[i] * F::value(xr[i], a) + b[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) yr[i] = g[i] * F::value(xr[i], a);
    }
  }
}

// With v = f(αx) and s = f'(αx):  dx += dy γ α s,  dα += Σ dy γ x s,
// dγ += Σ dy v,  dβ += Σ dy.
template <class F>
void dynamic_backward(const char* op, const Tensor& x, const Tensor& alpha, const Tensor& gamma,
                      const Tensor& dy, Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta) {
  require_f32(op, "x", x);
  require_f32(op, "dy", dy);
  require_f32(op, "dx", dx);
  const int64_t d = last_dim(x), n = row_count(x);
  check_params(op, alpha, gamma, nullptr, d, "alpha", "gamma", "");
  check_params(op, dalpha, dgamma, dbeta, d, "dalpha", "dgamma", "dbeta");
  require_rows(op, "dy", dy, n, d);
  require_rows(op, "dx", dx, n, d);
  const float a = alpha.f32()[0];
  const float* g = gamma.f32();
  const int64_t nf = dbeta ? 2 * d : d;  // partial layout: [dγ | dβ]
  const RowSums sums =
      reduce_row_chunks(n, nf, 1, [&](int64_t r0, int64_t r1, float* pf, double* pa) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* xr = x.f32() + r * d;
          const float* gr = dy.f32() + r * d;
          float* dxr = dx.f32() + r * d;
          double da = 0.0;
          // SIMD lanes each sum part of the row; the lane order is fixed by
          // the build, so the bits still do not depend on the thread count.
#pragma omp simd reduction(+ : da)
          for (int64_t i = 0; i < d; ++i) {
            float v, s;
            F::value_and_slope(xr[i], a, v, s);
            const float gs = gr[i] * g[i] * s;
            dxr[i] += gs * a;
            da += static_cast<double>(gs) * xr[i];
            pf[i] += gr[i] * v;
          }
          if (nf > d)
            for (int64_t i = 0; i < d; ++i) pf[d + i] += gr[i];
          pa[0] += da;
        }
      });
  dalpha.f32()[0] += static_cast<float>(sums.d[0]);
  for (int64_t i = 0; i < d; ++i) dgamma.f32()[i] += sums.f[i];
  if (dbeta)
    for (int64_t i = 0; i < d; ++i) dbeta->f32()[i] += sums.f[d + i];
}

}  // namespace

void dyt_forward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                 Tensor& y) {
  dynamic_forward<Tanh>("dyt_forward", x, alpha, gamma, beta, y);
}
void dyt_backward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor& dy,
                  Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta) {
  dynamic_backward<Tanh>("dyt_backward", x, alpha, gamma, dy, dx, dalpha, dgamma, dbeta);
}
void dyisru_forward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                    Tensor& y) {
  dynamic_forward<Isru>("dyisru_forward", x, alpha, gamma, beta, y);
}
void dyisru_backward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor& dy,
                     Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta) {
  dynamic_backward<Isru>("dyisru_backward", x, alpha, gamma, dy, dx, dalpha, dgamma, dbeta);
}

void saturation_stats(const Tensor& x, float alpha, float threshold, double* sum_sq,
                      int64_t* saturated) {
  require_f32("saturation_stats", "x", x);
  const int64_t n = x.numel();
  const float* v = x.f32();
  *sum_sq = sum_squares(v, n);
  int64_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (n > kernels::kSumSquaresChunk)
  for (int64_t i = 0; i < n; ++i) count += std::fabs(alpha * v[i]) > threshold;
  *saturated = count;
}

}  // namespace dyt::cpu
