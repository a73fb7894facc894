// Causal grouped-query flash attention on the GPU, forward and backward: the
// CUDA side of Backend::attention_forward / attention_backward
// (kernels/backend.h), in the conventions of cuda_ops.h. Design, tiling and
// determinism: docs/cuda_kernels.md, "Attention".
//
//  * q, out, dout, dq [B·T, Hq·hd]; k, v, dk, dv [B·T, Hkv·hd]; row b·T + t.
//    All activations F32 or all BF16 (one dtype per call). Query head h
//    reads KV head h / (Hq/Hkv); K and V are never copied per query head.
//  * hd ∈ {32, 64, 128}; any T ≥ 1 (tails masked); Hq a multiple of Hkv.
//  * Scale 1/sqrt(hd) (rounded to float as the CPU op does). lse [B, Hq, T]
//    F32, index (b·Hq + h)·T + i: the natural log of Σ_{j≤i} exp(s_ij) over
//    the scaled scores s_ij — all the backward keeps of the forward.
//  * BF16: tensor cores (wmma m16n16k16, fp32 accumulation), softmax in
//    fp32, the probabilities rounded to bf16 before P·V (and dS before dS·K,
//    dSᵀ·Q), outputs rounded once. F32: the same tiles through plain fp32
//    FMAs (no tf32), the parity mode.
//  * Backward: dq, dk, dv written (=); the probabilities are recomputed from
//    lse; D_i = Σ dout_i ⊙ out_i goes to a workspace [B·Hq·T] F32. No float
//    atomics: a dK/dV kernel where each block owns a KV tile and loops over
//    the group's query heads and the query tiles in a fixed order, and a dQ
//    kernel where each block owns a query tile. The same inputs on the same
//    GPU give the same bits.
//  * Activation pointers must be 16-byte aligned (whole-tile 16-byte loads);
//    misaligned, mismatched or unsupported arguments throw
//    std::invalid_argument naming the op and the argument, before any work is
//    queued; CUDA failures throw CudaError.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"

namespace dyt::cuda {

using kernels::AttentionShape;

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s,
                       const Tensor& out, const Tensor& lse, cudaStream_t stream);

// Bytes of the backward's workspace (D, B·Hq·T floats).
size_t attention_backward_workspace_bytes(const AttentionShape& s);

// ws: at least attention_backward_workspace_bytes(s), or nullptr for the
// buffer cached per (device, stream) (cuda_ops.h, "workspace").
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const AttentionShape& s,
                        const Tensor& dq, const Tensor& dk, const Tensor& dv, cudaStream_t stream,
                        const Workspace* ws = nullptr);

}  // namespace dyt::cuda
