// Device-side building blocks of the norm kernels: 16-byte vector packs of
// F32/BF16 elements, fixed-order (deterministic) block reductions, the two
// activations (their math is kernels/elementwise.h, shared with the CPU), and
// the second-stage kernel that adds the backward's partial sums in order.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/elementwise.h"
#include "kernels/tensor.h"

namespace dyt::cuda::detail {

using bf16 = __nv_bfloat16;

// ---- element conversion -----------------------------------------------------------

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }
// v as it will be stored in T (so values computed from a stored sum use that sum).
template <class T>
__device__ __forceinline__ float round_to(float v) { return to_f32(from_f32<T>(v)); }

// ---- Pack: VEC consecutive elements of T, one 16-byte access when VEC > 1 ----------

template <class T, int VEC>
struct Pack {
  static_assert(VEC * sizeof(T) == 16, "a vector pack is 16 bytes");
  uint4 raw;
  __device__ __forceinline__ void load(const T* p) { raw = *reinterpret_cast<const uint4*>(p); }
  __device__ __forceinline__ void store(T* p) const { *reinterpret_cast<uint4*>(p) = raw; }
  __device__ __forceinline__ uint32_t word(int w) const {
    return w == 0 ? raw.x : w == 1 ? raw.y : w == 2 ? raw.z : raw.w;
  }
  __device__ __forceinline__ void set_word(int w, uint32_t v) {
    if (w == 0) raw.x = v;
    else if (w == 1) raw.y = v;
    else if (w == 2) raw.z = v;
    else raw.w = v;
  }
  // Element i as fp32 (i a compile-time constant after unrolling).
  __device__ __forceinline__ float get(int i) const {
    if constexpr (sizeof(T) == 4) {
      return __uint_as_float(word(i));
    } else {  // bf16: element 2k is the low half of word k
      const uint32_t w = word(i / 2);
      return __uint_as_float((i & 1) ? (w & 0xffff0000u) : (w << 16));
    }
  }
  // Elements from fp32 (rounded to nearest even for bf16).
  __device__ __forceinline__ void set_all(const float (&v)[VEC]) {
    if constexpr (sizeof(T) == 4) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) set_word(i, __float_as_uint(v[i]));
    } else {
#pragma unroll
      for (int k = 0; k < VEC / 2; ++k) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
        uint32_t w;
        memcpy(&w, &h, sizeof w);  // a register move after compilation
        set_word(k, w);
      }
    }
  }
};

template <class T>
struct Pack<T, 1> {
  T raw;
  __device__ __forceinline__ void load(const T* p) { raw = *p; }
  __device__ __forceinline__ void store(T* p) const { *p = raw; }
  __device__ __forceinline__ float get(int) const { return to_f32(raw); }
  __device__ __forceinline__ void set_all(const float (&v)[1]) { raw = from_f32<T>(v[0]); }
};

// VEC fp32 values from an fp32 array (parameters), 16-byte loads where VEC = 4 or 8.
template <int VEC>
__device__ __forceinline__ void load_f32(const float* p, float (&v)[VEC]) {
  if constexpr (VEC % 4 == 0) {
#pragma unroll
    for (int k = 0; k < VEC / 4; ++k) {
      const float4 q = __ldg(reinterpret_cast<const float4*>(p) + k);
      v[4 * k] = q.x, v[4 * k + 1] = q.y, v[4 * k + 2] = q.z, v[4 * k + 3] = q.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = __ldg(p + i);
  }
}

// ---- deterministic reductions ---------------------------------------------------------
// xor butterflies: every lane ends with the same value, and since a + b == b + a
// exactly, the result depends only on the inputs, not on timing.

template <class F>
__device__ __forceinline__ F warp_sum(F v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the whole block (any shape, ≤ 1024 threads); the result is valid
// in every thread. Every thread of the block must call it. `smem` holds 32
// values and must not be reused until after the next __syncthreads.
template <class F>
__device__ __forceinline__ F block_sum(F v, F* smem) {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int nw = (blockDim.x * blockDim.y * blockDim.z + 31) / 32;
  v = warp_sum(v);
  if ((t & 31) == 0) smem[t >> 5] = v;
  __syncthreads();
  F s = 0;
  for (int w = 0; w < nw; ++w) s += smem[w];
  return s;
}

// ---- the two elementwise activations ------------------------------------------------------

// value() for the forward; value_and_slope() for the backward (for DyT, both
// from one exponential: kernels/elementwise.h, dyt_value_and_slope).
struct TanhAct {  // DyT
  static __device__ __forceinline__ float value(float x, float a) {
    return kernels::dyt_value(x, a);
  }
  static __device__ __forceinline__ void value_and_slope(float x, float a, float& v, float& s) {
    kernels::dyt_value_and_slope(x, a, v, s);
  }
};
struct IsruAct {  // DyISRU
  static __device__ __forceinline__ float value(float x, float a) {
    return kernels::dyisru_value(x, a);
  }
  static __device__ __forceinline__ void value_and_slope(float x, float a, float& v, float& s) {
    v = kernels::dyisru_value(x, a);
    s = kernels::dyisru_slope(x, a);
  }
};

// ---- host-side dispatch on the activation dtype and path ----------------------------
// Calls f(Tag<T>{}, Int<VEC>{}) with T = float or bf16 and VEC the 16-byte
// vector width (vector_path) or 1; f is a generic lambda (C++17: the .cu files
// build as C++17, which CMake 3.25 knows for nvcc 13).
template <class T>
struct Tag {
  using type = T;
};
template <int N>
using Int = std::integral_constant<int, N>;

template <class F>
void dispatch_dtype(kernels::DType dt, bool vector_path, F&& f) {
  if (dt == kernels::DType::F32) {
    if (vector_path) f(Tag<float>{}, Int<4>{});
    else f(Tag<float>{}, Int<1>{});
  } else {
    if (vector_path) f(Tag<bf16>{}, Int<8>{});
    else f(Tag<bf16>{}, Int<1>{});
  }
}

}  // namespace dyt::cuda::detail
