// The CUDA optimizer step and the reductions around it: AdamW with the bf16
// cast of the updated weights, the sum of squares behind the gradient norm,
// and the in-place scale that clips. The CPU code is the reference, to the
// bit: trainer/optimizer.cc (AdamW, whose element update both share through
// kernels/optimizer_math.h) and trainer/grad_norm.cc (grad_sum_squares,
// clip_grads); docs/cuda_kernels.md.
//
// Conventions (those of kernels/cuda/cuda_ops.h): tensors live on the GPU;
// any rank, taken as flat; nothing synchronizes with the host; argument
// errors throw std::invalid_argument "<op>: <what>" before any work is
// queued; CUDA failures throw CudaError. No float atomics anywhere: every
// result is the same bits run after run, and the same bits as the CPU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"

namespace dyt::cuda {

using kernels::AdamWScalars;
using kernels::ParamSegment;

// AdamW over the F32 master parameters p, gradients g and state m, v (same
// numel), on the elements the segments list, each segment with its decay
// flag (kernels::adamw_update: the same fp32 operations, hence the same bits,
// as the CPU's AdamW). Segments must lie in [0, numel) in increasing order
// without overlapping (begin ≤ end ≤ next begin); empty ones are skipped and
// elements outside every segment are untouched. When `work` is non-null (a
// BF16 tensor of the same numel) it receives the updated p rounded to
// nearest even, in the same pass. The segment table travels in the launch
// parameters, 32 segments per launch: no copy, no allocation.
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                const std::vector<ParamSegment>& segments, const AdamWScalars& s,
                const Tensor* work, cudaStream_t stream);

// Elements per partial sum of sum_squares: trainer::kNormChunk, which the
// tests check (kernels/ may not include trainer/).
using kernels::kSumSquaresChunk;  // kernels/op_params.h: one constant for both devices

// out[0] (F64 [1], written) = Σ g[i]² over the F32 tensor g, bitwise equal to
// trainer::grad_sum_squares: chunks of kSumSquaresChunk elements,
// in each chunk eight double accumulators (element i into accumulator i mod 8,
// in index order) combined as ((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7)), then the
// chunk sums added in index order starting from 0. NaN or ±inf when any
// element is. ws: as for the norm backward ops (cuda_ops.h), at least
// sum_squares_workspace_bytes(numel), or nullptr for the cached buffer.
void sum_squares(const Tensor& g, const Tensor& out, cudaStream_t stream,
                 const Workspace* ws = nullptr);
size_t sum_squares_workspace_bytes(int64_t n);

// out (F64 [2]) += (Σ x², #{i : |α·x_i| > threshold}) over x (F32 or
// BF16, any rank), α an F32 [1] on the device: the Σ x² of sum_squares (the
// same chunks and order, on the values as floats) and the count exact; α·x is
// one fp32 multiply. Bitwise equal to the CPU backend's saturation_stats. ws:
// at least saturation_stats_workspace_bytes(numel), or nullptr.
void saturation_stats(const Tensor& x, const Tensor& alpha, float threshold, const Tensor& out,
                      cudaStream_t stream, const Workspace* ws = nullptr);
size_t saturation_stats_workspace_bytes(int64_t n);

// g ← g · factor (F32; one fp32 multiply per element, like trainer::clip_grads).
void scale_inplace(const Tensor& g, float factor, cudaStream_t stream);

}  // namespace dyt::cuda
