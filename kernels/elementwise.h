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

// DYT_EMULATE_DEVICE_MATH: the host emulator of the CUDA kernels
// (tests/kernels/cuda/emu) compiles the kernels' source as C++ with this set,
// so that the GPU branches below (the hardware reciprocal) run on the CPU
// through a model of the hardware rather than the host's IEEE operations. The
// inline namespace keeps that build's functions apart from the CPU ops' (same
// names, different definitions, one program).
#if defined(DYT_EMULATE_DEVICE_MATH)
#define DYT_MATH_NS emulated_device_math
#else
#define DYT_MATH_NS native_math
#endif

namespace dyt::kernels {
inline namespace DYT_MATH_NS {

// ---- exp and tanh without library calls ----------------------------------
// libm's expf/tanhf are scalar calls that stop the CPU loops from vectorizing
// (they were a third of a training step). These forms are branch-free
// arithmetic that compilers turn into SIMD, and the CUDA kernels use the very
// same functions, so both devices compute one function.

// Clamp written as selects (fminf/fmaxf are library calls on the host);
// NaN fails both comparisons and passes through.
DYT_HD float clamp_f32(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

DYT_HD float bits_to_float(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float f;
  __builtin_memcpy(&f, &i, sizeof f);
  return f;
#endif
}

// a/b from r0, an estimate of 1/b within 1 ulp: one Newton step makes r the
// correctly rounded reciprocal, and one FMA correction of a·r then gives the
// correctly rounded quotient (Markstein's theorem) — the IEEE result, bit for
// bit, as long as b, 1/b and a/b are normal floats; the one exception is a b
// whose significand bits are all ones with the low estimate, where 1/b sits
// just above a midpoint and the result can be 1 ulp off. This is the fast
// path of CUDA's own division; tests/kernels/test_elementwise.cc checks it for
// every significand of b with the estimate off by −1, 0 and +1 ulp.
DYT_HD float div_from_reciprocal(float a, float b, float r0) {
  const float r = fmaf(r0, fmaf(-b, r0, 1.0f), r0);
  const float q = a * r;
  return fmaf(r, fmaf(-b, q, a), q);
}

// The GPU's reciprocal estimate (rcp.approx: MUFU.RCP, within 1 ulp of 1/b).
// In the host emulator: the correctly rounded 1/b moved one ulp down, kept,
// or moved one ulp up, as a hash of b's bits picks, so the emulated GPU tests
// see all three seeds that div_from_reciprocal must absorb.
#if defined(__CUDA_ARCH__)
DYT_HD float rcp_approx_f32(float b) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(b));
  return r;
}
#elif defined(DYT_EMULATE_DEVICE_MATH)
DYT_HD float rcp_approx_f32(float b) {
  uint32_t bits;
  __builtin_memcpy(&bits, &b, sizeof bits);
  const uint32_t pick = (bits * 0x9e3779b1u) >> 30;  // 0..3
  const float rn = 1.0f / b;
  return pick == 0 ? nextafterf(rn, 0.0f) : pick == 1 ? nextafterf(rn, 2.0f * rn) : rn;
}
#endif

// a/b for the elementwise activations, the IEEE quotient on both devices. On
// the GPU, `a / b` wraps that same fast path in a range check that branches to
// a slow path per element: with it the division was a third of the DyT
// forward's instructions (docs/cuda_kernels.md), in the kernel that must keep
// up with a plain copy. The callers' divisors are bounded (tanh's q ∈
// [4.9e-3, 0.91], sqrt(1+u²) ≥ 1), so the check is never needed there, and
// the hardware reciprocal (MUFU.RCP, ≤ 1 ulp) seeds div_from_reciprocal.
DYT_HD float div_f32(float a, float b) {
#if defined(__CUDA_ARCH__) || defined(DYT_EMULATE_DEVICE_MATH)
  return div_from_reciprocal(a, b, rcp_approx_f32(b));
#else
  return a / b;
#endif
}

// e^x within 1 ulp on [-87.3, 88] (checked against double exp over that range):
// x = n·ln2 + r by Cody–Waite with |r| ≤ ln2/2, e^r by Cephes' expf
// polynomial, 2^n from the exponent bits. Inputs are clamped to that range
// (so e^−100 gives 1e-38 rather than 0, harmless in softmax and sigmoid); NaN
// stays NaN.
DYT_HD float exp_f32(float x) {
  x = clamp_f32(x, -87.3f, 88.0f);
  const float n = floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

// tanh within 7 ulp (4e-7 absolute) everywhere: an odd rational minimax
// approximation of degree 13/6 on [−7.905, 7.905] (held at its end value
// 1 − 2⁻²², within 4 ulp of tanh, up to 9.0109), x itself below 4e-4 where
// tanh(x) = x in float, and ±1 exactly from 9.0109 on, where tanh rounds to
// ±1 in float (it used to stay at 1 − 2⁻²² for ever). The products and sums
// are spelled as fmaf rather than left to each compiler's contraction of
// a*b+c (g++ and nvcc choose differently, and a host build without FMA would
// not contract at all): with div_f32 the two devices then give the same
// bits. DyT's backward does not differentiate this value: see
// dyt_value_and_slope.
DYT_HD float tanh_f32(float x) {
  const float c = clamp_f32(x, -7.90531110763549805f, 7.90531110763549805f);
  const float x2 = c * c;
  float p = -2.76076847742355e-16f;
  p = fmaf(p, x2, 2.00018790482477e-13f);
  p = fmaf(p, x2, -8.60467152213735e-11f);
  p = fmaf(p, x2, 5.12229709037114e-08f);
  p = fmaf(p, x2, 1.48572235717979e-05f);
  p = fmaf(p, x2, 6.37261928875436e-04f);
  p = fmaf(p, x2, 4.89352455891786e-03f);
  float q = 1.19825839466702e-06f;
  q = fmaf(q, x2, 1.18534705686654e-04f);
  q = fmaf(q, x2, 2.26843463243900e-03f);
  q = fmaf(q, x2, 4.89352518554385e-03f);
  const float t = div_f32(c * p, q);
  const float a = fabsf(x);  // NaN fails both comparisons and stays NaN through t
  constexpr float kRoundsToOne = 0x1.205968p+3f;  // 9.0109: the least float whose tanh rounds to 1
  return a < 0.0004f ? x : a >= kRoundsToOne ? (x < 0.0f ? -1.0f : 1.0f) : t;
}

// DyT: y = γ·tanh(α·x) + β.   dy/dx = γ·α·s,  dy/dα = γ·x·s,  s = 1 − tanh²(αx).
DYT_HD float dyt_value(float x, float alpha) { return tanh_f32(alpha * x); }

// For the backward, t = tanh(u) and s = 1 − t² from one e = e^(−2|u|):
// s = 4e·r², t = ±(1 − e)·r with r = 1/(1 + e). s is then within 5 ulp
// *relative* for every u, where 1 − t² from tanh_f32's t would only be as
// good as t's absolute error (±4 ulp near ±1): a slope of 1e-7 known to
// ±5e-7, which in dα = Σ dy·γ·x·s lets every saturated outlier x add ~x·5e-7
// (and LLaMA's massive activations make such x the largest terms of the
// sum). t is within ~1e-7 absolute of tanh (it feeds dγ = Σ dy·t, where that
// is all that counts), not bit-equal to the forward's. From |u| = 43 on,
// e^(−2|u|) < 2⁻¹²⁴: s = 0 and t = ±1 exactly. NaN stays NaN. One exp and one
// bounded division, about what tanh_f32 costs, so the backward pays little.
DYT_HD void dyt_value_and_slope(float x, float alpha, float& t, float& s) {
  const float u = alpha * x, a = fabsf(u);
  // exp always evaluated, then selected: no branch per element on the GPU.
  const float e0 = exp_f32(-2.0f * clamp_f32(a, 0.0f, 43.0f));
  const float e = a >= 43.0f ? 0.0f : e0;
  const float r = div_f32(1.0f, 1.0f + e);  // divisor in [1, 2]: bounded, as div_f32 asks
  s = 4.0f * e * r * r;
  const float m = (1.0f - e) * r;
  t = u < 0.0f ? -m : m;
}

// DyISRU: y = γ·u/sqrt(1+u²) + β with u = α·x.   d/du [u/sqrt(1+u²)] = (1+u²)^(-3/2).
// u is clamped to ±2^20, where the value already rounds to ±1 in float and the
// slope is 2^-60: beyond 2^64, 1 + u² would overflow (u/inf = 0, not ±1),
// and div_f32 needs a finite divisor.
DYT_HD float dyisru_u(float x, float alpha) { return clamp_f32(alpha * x, -0x1p20f, 0x1p20f); }
DYT_HD float dyisru_value(float x, float alpha) {
  const float u = dyisru_u(x, alpha);
  return div_f32(u, sqrtf(fmaf(u, u, 1.0f)));
}
DYT_HD float dyisru_slope(float x, float alpha) {
  const float u = dyisru_u(x, alpha);
  const float r = div_f32(1.0f, sqrtf(fmaf(u, u, 1.0f)));
  return r * r * r;
}

// SiLU and its derivative: silu(g) = g·σ(g),  silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
DYT_HD float sigmoidf_(float g) { return 1.0f / (1.0f + exp_f32(-g)); }
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

}  // namespace DYT_MATH_NS
}  // namespace dyt::kernels
