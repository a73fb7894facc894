// Global gradient norm, finiteness check and norm clipping over a flat
// gradient buffer (or any contiguous part of one).
//
// Determinism: the sum of squares is taken over fixed chunks of
// kNormChunk elements, each summed in double in a fixed order, and the chunk
// partials are added in index order. The result therefore depends only on
// the data and its length, never on the number of OpenMP threads.
//
// Distributed use: each rank calls grad_sum_squares() over the gradients it
// owns (each replicated tensor counted once across the group), the partials
// are all-reduced in double, and clip_grads() is called with sqrt(total).
#pragma once

#include <cstdint>

#include "kernels/op_params.h"

namespace dyt::trainer {

// Elements per partial sum. Part of the numerical contract: changing it
// changes the last bits of every norm.
inline constexpr int64_t kNormChunk = kernels::kSumSquaresChunk;

// Σ g[i]² in double (deterministic, see above). Non-finite if any g[i] is.
double grad_sum_squares(const float* g, int64_t n);

// sqrt(grad_sum_squares(g, n)): the L2 norm of the whole buffer, as
// torch.nn.utils.clip_grad_norm_ reports it over all parameters together.
double global_grad_norm(const float* g, int64_t n);

// True when no element is NaN or ±inf.
bool all_finite(const float* g, int64_t n);

// The factor torch.nn.utils.clip_grad_norm_ applies:
// min(1, max_norm / (norm + 1e-6)). Returns 1 (no clipping) when
// max_norm <= 0 (clipping off) or when norm is not finite — a non-finite
// norm means the step must be skipped, which is the caller's decision.
double clip_coefficient(double norm, double max_norm);

// Multiplies g by clip_coefficient(norm, max_norm) when it is below 1 (as a
// float, like torch's fp32 coefficient) and returns the factor applied
// (1 when nothing was done). `norm` is the global norm, possibly over more
// buffers or ranks than this one.
double clip_grads(float* g, int64_t n, double norm, double max_norm);

// global_grad_norm + clip_grads on one buffer, like
// torch.nn.utils.clip_grad_norm_(params, max_norm): returns the norm before
// clipping.
double clip_grad_norm(float* g, int64_t n, double max_norm);

}  // namespace dyt::trainer
