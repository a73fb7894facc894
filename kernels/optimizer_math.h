// AdamW's per-element update, shared by the CPU and the CUDA optimizer so
// that both compute it to the bit, whatever their compiler contracts.
//
// The operation order is torch.optim.AdamW's single-tensor fp32 path
// (trainer/optimizer.h), with every multiply-add that could be fused written
// out as an explicit fma or as an operation no compiler can fuse:
//
//   m ← fma(m, β1, (1 − β1)·g)
//   v ← fma(v, β2, ((1 − β2)·g)·g)
//   q ← (−step_size · m) / (sqrt(v) / sqrt(1 − β2^t) + ε)
//   p ← fma(p, 1 − lr·wd, q)   where the segment decays,   p + q   elsewhere
//
// Why these fmas: the CPU loop (then in trainer/optimizer.cc) wrote the plain expressions, and the
// bits then depended on the compiler: g++ -O3 -march=native (the project's
// Release build on an FMA machine) fuses exactly the three above, -O2 fuses
// the first two only, and a build without FMA (-DDYT_NATIVE=OFF, the
// standalone CUDA build) none. Written out, every remaining product feeds a
// division, a multiplication or an fma's addend, which no compiler fuses, so
// the result is the same on any IEEE machine. (The forms chosen are the
// Release build's, so its results did not change.)
//
// On the GPU the correctly rounded intrinsics are spelled out (__fdiv_rn,
// __fsqrt_rn), so the result holds even under --use_fast_math.
#pragma once

#include <cmath>

#include "kernels/op_params.h"

#if defined(__CUDACC__)
#define DYT_OPT_HD __host__ __device__ __forceinline__
#else
#define DYT_OPT_HD inline
#endif

namespace dyt::kernels {

// One element of AdamW: updates p, m and v in place from the gradient g.
// `decay` is the element's segment flag (ParamSegment::decay).
DYT_OPT_HD void adamw_update(float& p, float& m, float& v, float g, const AdamWScalars& s,
                             bool decay) {
#if defined(__CUDA_ARCH__)
  const float mi = __fmaf_rn(m, s.beta1, __fmul_rn(s.one_minus_beta1, g));
  const float vi = __fmaf_rn(v, s.beta2, __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
  const float q = __fdiv_rn(__fmul_rn(s.neg_step_size, mi), denom);
  p = decay ? __fmaf_rn(p, s.decay, q) : __fadd_rn(p, q);
#else
  const float mi = std::fma(m, s.beta1, s.one_minus_beta1 * g);
  const float vi = std::fma(v, s.beta2, (s.one_minus_beta2 * g) * g);
  const float denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;
  const float q = (s.neg_step_size * mi) / denom;
  p = decay ? std::fma(p, s.decay, q) : p + q;
#endif
  m = mi;
  v = vi;
}

}  // namespace dyt::kernels
