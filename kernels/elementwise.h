// Elementwise math shared by the CPU ops and the CUDA kernels, so that both
// compute the same function. Everything here is fp32 in, fp32 out.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define DYT_HD __host__ __device__ __forceinline__
#else
#define DYT_HD inline
#endif

namespace dyt::kernels {

// DyT: y = γ·tanh(α·x) + β.   dy/dx = γ·α·(1 − t²),  dy/dα = γ·x·(1 − t²).
DYT_HD float dyt_value(float x, float alpha) { return tanhf(alpha * x); }
DYT_HD float dyt_slope(float t) { return 1.0f - t * t; }  // d tanh(u)/du at t = tanh(u)

// DyISRU: y = γ·u/sqrt(1+u²) + β with u = α·x.   d/du [u/sqrt(1+u²)] = (1+u²)^(-3/2).
DYT_HD float dyisru_value(float x, float alpha) {
  const float u = alpha * x;
  return u / sqrtf(1.0f + u * u);
}
DYT_HD float dyisru_slope(float x, float alpha) {
  const float u = alpha * x;
  const float r = 1.0f / sqrtf(1.0f + u * u);
  return r * r * r;
}

// SiLU and its derivative: silu(g) = g·σ(g),  silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
DYT_HD float sigmoidf_(float g) { return 1.0f / (1.0f + expf(-g)); }
DYT_HD float silu(float g) { return g * sigmoidf_(g); }
DYT_HD float silu_grad(float g) {
  const float s = sigmoidf_(g);
  return s * (1.0f + g * (1.0f - s));
}

}  // namespace dyt::kernels
