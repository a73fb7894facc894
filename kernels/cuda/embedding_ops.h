// The CUDA token embedding: the row gather of the forward and the
// deterministic scatter-add of its backward. The CPU ops of kernels/cpu_ops.h
// (kernels/cpu/embedding.cc) are the reference, to the bit:
// docs/cuda_kernels.md.
//
// Conventions (those of kernels/cuda/cuda_ops.h): tensors live on the GPU;
// token ids are I32 of any rank (N of them, taken flat); the rows are the last
// dimension; nothing synchronizes with the host; argument errors throw
// std::invalid_argument "<op>: <what>" before any work is queued; CUDA
// failures throw CudaError.
//
// kernels::kAbsentToken (−1) is a row on another tensor-parallel rank (the
// vocab-parallel embedding): the forward writes a zero row, the backward
// adds nothing for it, as the CPU ops do.
// Other token ids outside [0, V): the host loader validates ids before they
// reach a device (the CPU ops throw), so here they can only come from a bug.
// They never cause an access outside the tensors: the forward writes a NaN
// row (the loss then shows it), the backward skips the row.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"

namespace dyt::cuda {

// out[n, :] = table[tokens[n], :]: table [V, d] F32 or BF16, out [N, d] F32
// or BF16 (converted: F32 → BF16 rounds to nearest even, BF16 → F32 is exact).
void embedding_forward(const Tensor& tokens, const Tensor& table, const Tensor& out,
                       cudaStream_t stream);

// dtable[tokens[n], :] += dout[n, :] with dout [N, d] F32 or BF16 and dtable
// [V, d] F32, deterministic without float atomics and bitwise equal to
// cpu::embedding_backward: the (token, position) pairs are sorted (a bitonic
// sort of 64-bit keys, plain kernels), and each run of equal tokens is added
// by one block per column tile, in position order, onto the row's old value:
// the CPU's serial order. ws: at least embedding_backward_workspace_bytes(N),
// or nullptr for the buffer cached per (device, stream) (cuda_ops.h).
void embedding_backward(const Tensor& tokens, const Tensor& dout, const Tensor& dtable,
                        cudaStream_t stream, const Workspace* ws = nullptr);
size_t embedding_backward_workspace_bytes(int64_t n_tokens);

}  // namespace dyt::cuda
