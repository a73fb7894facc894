// Plain parameter structs shared by the ops of every device (kernels/cpu_ops.h,
// kernels/backend.h and the CUDA headers), so none of them includes another.
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace dyt::kernels {

enum class NormKind { RMSNorm, DyT, DyISRU };

// A norm's parameters (F32): γ [d]; α [1] for DyT/DyISRU (else empty);
// β [d] when the model has a norm bias (else empty).
struct NormParams {
  Tensor gamma, alpha, beta;
  bool has_beta() const { return beta.data != nullptr; }
};

// Causal grouped-query attention over q [B·T, Hq·hd], k and v [B·T, Hkv·hd]:
// query head h reads KV head h / (Hq / Hkv); scale 1/sqrt(hd).
struct AttentionShape {
  int64_t batch = 0, seq_len = 0, heads = 0, kv_heads = 0;
};

// The per-step constants of AdamW (trainer/optimizer.h computes them as
// torch does and rounds them to float); the element loop is the backend's.
struct AdamWScalars {
  float beta1 = 0, one_minus_beta1 = 0, beta2 = 0, one_minus_beta2 = 0, eps = 0;
  float neg_step_size = 0;  // −lr / (1 − β1^t)
  float bc2_sqrt = 0;       // sqrt(1 − β2^t)
  float decay = 1;          // 1 − lr·wd, applied where a segment decays
};
// A run of consecutive flat-buffer elements with one decay flag.
struct ParamSegment {
  int64_t begin = 0, end = 0;
  bool decay = false;
};

// A token id that names a row on another tensor-parallel rank (the
// vocab-parallel embedding and cross-entropy): its embedding row is zero, it
// adds nothing to the table's gradient, and as a target it has no logit here.
inline constexpr int32_t kAbsentToken = -1;

// Elements per partial sum of sum_squares: part of the numerical contract of
// the gradient norm (changing it changes the last bits of every norm).
inline constexpr int64_t kSumSquaresChunk = int64_t{1} << 15;

}  // namespace dyt::kernels
