// Elementwise math shared by the CPU ops and the CUDA kernels, so that both
// compute the same function. Everything here is fp32 in, fp32 out.
#pragma once

#include <cmath>
#include <cstdint>

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

// RoPE, rotate-half. The angle of pair i at position pos is pos·theta^(−2i/hd),
// formed in double: at pos ~ 4096 an fp32 angle is off by ~1e-4 rad, which is
// larger than the fp32 rounding of the rotated values.
DYT_HD double rope_angle(int64_t pos, int64_t i, int64_t head_dim, double theta) {
  return static_cast<double>(pos) * pow(theta, -2.0 * static_cast<double>(i) / head_dim);
}
// (a, b) = (x[i], x[i+hd/2]) rotated by the angle with cosine c and sine s;
// the backward (transpose) is the same call with −s.
DYT_HD void rope_rotate(float& a, float& b, float c, float s) {
  const float a0 = a;
  a = a0 * c - b * s;
  b = b * c + a0 * s;
}

}  // namespace dyt::kernels
