// Host-side internals shared by the pointwise .cu files (pointwise_ops.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dyt::cuda::detail {

// The second stage of the pointwise reductions (cross_entropy_kernels.cu):
// sums the n double partials in index order (one block: thread t takes
// t, t + 256, …, then the threads in a fixed order, all in double) and adds
// the total to *out_f32 (rounded to float once) or to *out_f64 — exactly one
// of the two is non-null.
void launch_sum_partials(const double* part, int64_t n, float* out_f32, double* out_f64,
                         cudaStream_t stream);

}  // namespace dyt::cuda::detail
