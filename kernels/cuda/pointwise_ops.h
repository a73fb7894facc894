// The CUDA implementation of the pointwise and per-row ops of a training step
// other than the norms: RoPE, SwiGLU, the embedding scale, the F32 ↔ BF16
// conversion, the fused cross-entropy and its vocab-parallel halves. Each mirrors its op in
// kernels/cpu_ops.h, its reference (tests/kernels/cuda/test_pointwise_cuda.cc);
// docs/cuda_kernels.md describes layouts and reduction orders.
//
// Conventions (those of cuda_ops.h):
//  * Activations (x, gate, up, logits and their gradients) are CUDA tensors,
//    all F32 or all BF16 within one call; the math is fp32 (double where
//    said). The scale s and its gradient are F32 [1], targets I32, the loss
//    accumulator F64 [1], all on the device and read there: no call
//    synchronizes with the host.
//  * Tensors of any rank are viewed as [rows, last dim]; empty tensors queue
//    nothing. Where a width and 16-byte-aligned pointers allow it, kernels
//    take the 16-byte vector path (8 BF16 or 4 F32 elements per access);
//    otherwise a scalar path computing the same function.
//  * Reductions (dscale, the loss sum) are two-stage and fixed-order, with no
//    float atomics: partials go to a workspace, a second kernel adds them in
//    index order. Their layout depends only on the shape, the dtype and the
//    path, not on the device, so the same inputs give the same bits.
//  * Ops with a workspace take an optional one (16-byte aligned, at least
//    the *_workspace_bytes below); nullptr uses the buffer cached per
//    (device, stream) that the norm backwards share (cuda_ops.h).
//  * Bad shapes, dtypes or devices throw std::invalid_argument "<op>: <what>"
//    before any work is queued; CUDA failures throw CudaError.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"

namespace dyt::cuda {

// ---- RoPE, rotate-half, in place on x [B·T, H·hd] (row r is position r % T) -------
// For i < hd/2: angle = pos·θ^(−2i/hd) formed in double (as the CPU op,
// kernels/elementwise.h rope_angle), cos and sin in double rounded to float,
// the rotation in fp32. hd must be even and the rows a whole number of
// sequences. The backward applies the transpose rotation (sine negated).
void rope_forward(Tensor& x, int64_t seq_len, int64_t n_heads, double theta, cudaStream_t stream);
void rope_backward(Tensor& dx, int64_t seq_len, int64_t n_heads, double theta,
                   cudaStream_t stream);

// ---- SwiGLU: out = silu(gate) ⊙ up -------------------------------------------------
// out may alias gate or up (each element is read before it is written).
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out, cudaStream_t stream);
// dgate, dup written (=); either may alias gate, up or dout element for element.
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout, Tensor& dgate,
                     Tensor& dup, cudaStream_t stream);

// ---- scalar scale with s an F32 [1] on the device ------------------------------------
// y = s[0]·x (y may be x).
void scale_forward(const Tensor& x, const Tensor& s, Tensor& y, cudaStream_t stream);
// dx = s[0]·dy (dx may be dy); ds[0] += Σ dy ⊙ x, each product exact in double,
// summed in double in a fixed order, rounded to float once (as the CPU op).
void scale_backward(const Tensor& x, const Tensor& dy, const Tensor& s, Tensor& dx, Tensor& ds,
                    cudaStream_t stream, const Workspace* ws = nullptr);
size_t scale_backward_workspace_bytes(int64_t numel);

// ---- conversion: dst ← src elementwise, F32 → BF16 (round to nearest even) or
// BF16 → F32 (exact); the same dtype copies. Any length; same element count.
void convert(const Tensor& src, Tensor& dst, cudaStream_t stream);

// ---- cross-entropy fused with its softmax and gradient -------------------------------
// logits [N, V] (F32 or BF16), targets I32 [N], loss_sum F64 [1]:
//   loss_sum[0] += Σ_n (log Σ_j exp(l_nj − m_n) + m_n − l_n,target)
// with per-row losses in double, added over rows in a fixed order. With
// dlogits non-null (the logits' dtype and shape, either the logits themselves
// or disjoint from them): dlogits = grad_scale·(softmax − onehot).
// A target outside [0, V) is never used as an index: that row's loss is NaN
// (so the sum is NaN) and its gradient row grad_scale·softmax. The loader
// validates ids on the host; this only keeps a bad id from reading out of bounds.
void cross_entropy(const Tensor& logits, const Tensor& targets, float grad_scale,
                   const Tensor* dlogits, Tensor& loss_sum, cudaStream_t stream,
                   const Workspace* ws = nullptr);
size_t cross_entropy_workspace_bytes(int64_t rows);

// ---- vocab-parallel cross-entropy: the two halves around the tp all-gather ------------
// kernels/backend.h states the contract; the CPU ops (cpu::cross_entropy_stats,
// cpu::cross_entropy_grad) are the reference. logits [N, V] are this rank's
// vocabulary slice (F32 or BF16), targets I32 [N] in its own ids, with
// kernels::kAbsentToken (−1) for a target on another rank. Rows, threads and
// the vector path are chosen as cross_entropy's, and the arithmetic is its
// (the same device functions), so at tp = 1 the gradient is cross_entropy's
// to the bit. No workspace, no host synchronization.
//
// stats [N, 3] F64 (N·3 elements, device): per row (M, S, l[target]) with
// M the max, S = Σ_j exp(l_j − M) (cross_entropy's sum), l[target] 0 for
// kAbsentToken. Any other target outside [0, V) gives NaN there (never an
// index: the combined loss shows the bug).
void cross_entropy_stats(const Tensor& logits, const Tensor& targets, Tensor& stats,
                         cudaStream_t stream);
// In place: logits ← grad_scale·(exp(l − M)/S − onehot) with row [N, 2] F64
// = (M, S) of the whole vocabulary; the target's entry, when it is in
// [0, V), grad_scale·(exp(l_t − M − log S) − 1) in double. kAbsentToken (and
// any id outside [0, V)) subtracts nothing.
void cross_entropy_grad(Tensor& logits, const Tensor& targets, const Tensor& row,
                        float grad_scale, cudaStream_t stream);

}  // namespace dyt::cuda
