// The CPU implementation of every op the model calls, fp32, OpenBLAS + OpenMP.
// It is the reference every CUDA kernel is tested against.
//
// Conventions of this header:
//  * Row-major activations [N, ...] where N = batch · seq (row n is position
//    n % T of sample n / T when a sequence length T is involved).
//  * Weights are stored [out, in] as in Hugging Face.
//  * Parameter gradients ACCUMULATE (+=), so micro-batches add up in place.
//  * Gradients w.r.t. an input accumulate where the op says "dx +=", since the
//    residual stream's gradient already holds the skip path; they are written
//    (=) where it says "dx =".
//  * Reductions over rows (dγ, dα, dβ, dW of embeddings) are two-stage with a
//    fixed chunking that does not depend on the thread count, so results are
//    bitwise reproducible on any number of threads.
//  * Shape or dtype mismatches throw std::invalid_argument (programmer errors).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/op_params.h"
#include "kernels/tensor.h"

namespace dyt::cpu {

using kernels::Tensor;

// ---- Linear: y[N,out] = x[N,in] · W[out,in]ᵀ ---------------------------------
void linear_forward(const Tensor& x, const Tensor& w, Tensor& y);
// dx[N,in] = dy·W (accumulate=false) or dx += dy·W (accumulate=true).
void linear_backward_input(const Tensor& dy, const Tensor& w, Tensor& dx, bool accumulate);
// dW[out,in] += dyᵀ·x.
void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw);

// ---- Embedding: out[N,d] = table[tokens[n], :] --------------------------------
// tokens is I32 [N]; every id must lie in [0, V) (checked, throws otherwise).
void embedding_forward(const Tensor& tokens, const Tensor& table, Tensor& out);
// dtable[tokens[n], :] += dout[n, :] (deterministic: no races, fixed order).
void embedding_backward(const Tensor& tokens, const Tensor& dout, Tensor& dtable);

// ---- Scalar scale: y = s·x ----------------------------------------------------
void scale_forward(const Tensor& x, float s, Tensor& y);
// dx = s·dy ; *ds += Σ dy ⊙ x.
void scale_backward(const Tensor& x, const Tensor& dy, float s, Tensor& dx, float* ds);

// ---- Residual add: x += y -------------------------------------------------------
void add_inplace(Tensor& x, const Tensor& y);

// ---- RMSNorm: y = γ ⊙ x / sqrt(mean(x²) + eps), rows of width d ----------------
// rstd[N] receives 1/sqrt(mean(x²)+eps) for the backward.
void rmsnorm_forward(const Tensor& x, const Tensor& gamma, float eps, Tensor& y, Tensor& rstd);
// dx += ..., dγ += Σ_n dy ⊙ x·rstd.
void rmsnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dgamma);

// ---- DyT: y = γ ⊙ tanh(α·x) [+ β] ----------------------------------------------
// alpha is a 1-element tensor; beta may be null (no bias).
void dyt_forward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                 Tensor& y);
// dx += ..., dα[0] += ..., dγ += ..., dβ += Σ_n dy (when dbeta is non-null).
void dyt_backward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor& dy,
                  Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta);

// ---- DyISRU: y = γ ⊙ α·x / sqrt(1 + (α·x)²) [+ β] -------------------------------
void dyisru_forward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                    Tensor& y);
void dyisru_backward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor& dy,
                     Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta);

// ---- A DyT/DyISRU input's health: (Σ x² as sum_squares sums it, #{|α·x| > threshold}) ----
void saturation_stats(const Tensor& x, float alpha, float threshold, double* sum_sq,
                      int64_t* saturated);

// ---- RoPE, rotate-half, in place on x[B·T, H·hd] viewed as [B, T, H, hd] --------
// For i < hd/2, angle = pos · theta^(−2i/hd), pos = row % seq_len:
//   y[i] = x[i]·cos − x[i+hd/2]·sin,  y[i+hd/2] = x[i+hd/2]·cos + x[i]·sin.
void rope_forward(Tensor& x, int64_t seq_len, int64_t n_heads, double theta);
// The transpose rotation, in place on the gradient.
void rope_backward(Tensor& dx, int64_t seq_len, int64_t n_heads, double theta);

// ---- Causal grouped-query attention, flash style ------------------------------
// q [B·T, Hq·hd], k and v [B·T, Hkv·hd], out [B·T, Hq·hd]; query head h uses
// KV head h / (Hq/Hkv). Scores s_ij = q_i·k_j / sqrt(hd) for keys j ≤ i.
// lse F32 [B, Hq, T] (index (b·Hq + h)·T + i) receives each query row's
// log-sum-exp m + ln Σ_j exp(s_ij − m), m = max_j s_ij: all the backward
// keeps (B·Hq·T floats, no T×T matrix). The forward computes lse first and
// then out = P·V with p_ij = exp(s_ij − lse_i), the same expression the
// backward recomputes, so the gradients are those of the function computed.
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t batch,
                       int64_t seq_len, int64_t n_heads, int64_t n_kv_heads, Tensor& out,
                       Tensor& lse);
// out and lse are the forward's. dq, dk, dv are written (=); dk/dv sum over the
// query heads of each group. With P recomputed from lse and dP = dout·Vᵀ:
// dS = P ⊙ (dP − D), dq = dS·K/sqrt(hd), dk = dSᵀ·Q/sqrt(hd), dv = Pᵀ·dout,
// where D_i = Σ_j p_ij dP_ij / Σ_j p_ij (in double) rather than
// Σ dout_i ⊙ out_i: it keeps Σ_j dS_ij = 0 although the recomputed p_ij sum
// to 1 + O(6e-8·|lse_i|) (attention.cc says why that matters). `out` is
// checked for shape but not read on the CPU.
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, int64_t batch, int64_t seq_len,
                        int64_t n_heads, int64_t n_kv_heads, Tensor& dq, Tensor& dk, Tensor& dv);

// ---- SwiGLU: out = silu(gate) ⊙ up ---------------------------------------------
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out);
// dgate, dup are written (=).
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout, Tensor& dgate,
                     Tensor& dup);

// ---- Cross-entropy over logits[N, V] with targets I32 [N] -----------------------
// Returns Σ_n −log softmax(logits[n])[target[n]] in double.
double cross_entropy_forward(const Tensor& logits, const Tensor& targets);
// dlogits = grad_scale · (softmax(logits) − onehot(target)); dlogits may alias logits.
// Returns the same loss sum as the forward, so a training step needs one pass.
double cross_entropy_backward(const Tensor& logits, const Tensor& targets, float grad_scale,
                              Tensor& dlogits);

// Vocab-parallel halves (kernels/backend.h): per-row (max, Σ exp(l − max),
// l[target] or 0 for kAbsentToken) into stats [N, 3] F64; and the gradient in
// place from the global (max, sum) rows [N, 2] F64.
void cross_entropy_stats(const Tensor& logits, const Tensor& targets, Tensor& stats);
void cross_entropy_grad(Tensor& logits, const Tensor& targets, const Tensor& row, float grad_scale);

// ---- Flat F32 buffers: the gradient norm and the optimizer -------------------------
// Σ g[i]² in double over chunks of kernels::kSumSquaresChunk elements, each
// summed in a fixed order (eight interleaved accumulators), the chunk partials
// added in index order: the same bits on any number of threads. Non-finite
// when any element is.
double sum_squares(const float* g, int64_t n);
// g ← g · factor.
void scale_inplace(float* g, int64_t n, float factor);
// One AdamW update, element by element in torch's fp32 operation order
// (trainer/optimizer.h documents the formula; `s` holds its per-step scalars).
void adamw_step(float* p, const float* g, float* m, float* v,
                const std::vector<kernels::ParamSegment>& segments, const kernels::AdamWScalars& s);

}  // namespace dyt::cpu
