// The backend seam: what the model, the optimizer, the gradient norm and the
// step loop are written against, once, for every device. A backend owns its
// storage (Buffer: device memory with a dtype) and runs every op of a
// training step on it, forward and backward, fused ops included.
//
// Two implementations: kernels/cpu/cpu_backend.h (fp32, OpenBLAS, the
// reference; it calls the ops of kernels/cpu_ops.h) and
// kernels/cuda/cuda_backend.h (bf16 or fp32 activations, cuBLASLt, fused
// kernels). CUDA tests compare the second against the first.
//
// Conventions (those of kernels/cpu_ops.h, plus):
//  * Every Tensor handed to a backend lives on its device.
//  * Activations are all of one dtype per call (F32, or BF16 on CUDA); norm
//    parameters, α, the embedding scale, every gradient buffer and the
//    optimizer state are F32; rstd and the attention log-sum-exp are F32;
//    token ids I32; loss accumulators F64 [1].
//  * Parameter gradients accumulate (+=); input gradients accumulate where
//    the op says "+=" and are written where it says "=".
//  * Ops are queued in order on the backend's stream; nothing synchronizes
//    with the host except download() and synchronize().
//  * Reductions that decide results are fixed-order (no float atomics), so
//    the same inputs on the same machine give the same bits.
//  * Shape or dtype mismatches throw std::invalid_argument naming the op.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "kernels/op_params.h"
#include "kernels/tensor.h"

namespace dyt::kernels {

// Memory owned by a backend. Move-only; freed by the backend that made it.
class Buffer {
 public:
  using Release = std::function<void(void*)>;
  Buffer() = default;
  Buffer(void* data, DType dtype, Device device, int64_t numel, Release release)
      : data_(data), dtype_(dtype), device_(device), numel_(numel), release_(std::move(release)) {}
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (data_ && release_) release_(data_);
  }

  void* data() const { return data_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int64_t numel() const { return numel_; }
  int64_t bytes() const { return numel_ * dtype_size(dtype_); }
  bool empty() const { return numel_ == 0; }

  // A view of `shape` starting `offset` elements in; throws
  // std::out_of_range when it does not fit.
  Tensor view(std::initializer_list<int64_t> shape, int64_t offset = 0) const;
  // The whole buffer as a 1-D tensor.
  Tensor flat() const { return view({numel_}); }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(data_, o.data_), std::swap(dtype_, o.dtype_), std::swap(device_, o.device_);
    std::swap(numel_, o.numel_), std::swap(release_, o.release_);
  }
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  int64_t numel_ = 0;
  Release release_;
};

// A sub-range of a 1-D (or any contiguous) tensor: `count` elements from `offset`.
Tensor slice(const Tensor& t, int64_t offset, int64_t count);
// The same memory seen with another shape (same numel; throws otherwise).
Tensor reshape(const Tensor& t, std::initializer_list<int64_t> shape);

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  // For messages, e.g. "CPU (OpenBLAS, 2 threads)" or "CUDA NVIDIA H100 (sm_90)".
  virtual std::string describe() const = 0;
  // The most memory this process has held for the run so far, in bytes: on
  // the CPU the peak resident set (getrusage), on a GPU the high-water mark
  // of the backend's own allocations (kernel workspaces, bounded and few,
  // are not counted). For the progress line.
  virtual int64_t peak_memory_bytes() const = 0;

  // ---- storage -------------------------------------------------------------------
  // Zero-filled. Throws std::runtime_error naming the size when it cannot.
  virtual Buffer allocate(DType dtype, int64_t numel) = 0;
  // dst ← host (dst.numel() elements of dst.dtype).
  virtual void upload(const void* host, const Tensor& dst) = 0;
  // host ← src; waits for the queued work that writes src.
  virtual void download(const Tensor& src, void* host) = 0;
  virtual void zero(const Tensor& t) = 0;
  // dst ← src elementwise, converting F32 ↔ BF16 (round to nearest even).
  virtual void convert(const Tensor& src, const Tensor& dst) = 0;
  virtual void synchronize() = 0;

  // ---- GEMMs: weights stored [out, in] -----------------------------------------
  // y[N,out] = x[N,in] · W[out,in]ᵀ
  virtual void linear_forward(const Tensor& x, const Tensor& w, const Tensor& y) = 0;
  // dx = dy·W, or dx += dy·W when accumulate.
  virtual void linear_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                     bool accumulate) = 0;
  // dW (F32) += dyᵀ·x.
  virtual void linear_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw) = 0;

  // ---- embedding and its scale ---------------------------------------------------
  // out[N,d] = table[tokens[n], :]; kAbsentToken (a row on another
  // tensor-parallel rank) gives a zero row and adds nothing in the backward;
  // other ids outside [0, V) throw (CPU) or are reported by the loader
  // before they reach a device.
  virtual void embedding_forward(const Tensor& tokens, const Tensor& table, const Tensor& out) = 0;
  // dtable[tokens[n], :] += dout[n, :], deterministic (no float atomics).
  virtual void embedding_backward(const Tensor& tokens, const Tensor& dout,
                                  const Tensor& dtable) = 0;
  // y = s[0]·x with s an F32 [1] on the device.
  virtual void scale_forward(const Tensor& x, const Tensor& s, const Tensor& y) = 0;
  // dx = s·dy; ds[0] += Σ dy ⊙ x.
  virtual void scale_backward(const Tensor& x, const Tensor& dy, const Tensor& s,
                              const Tensor& dx, const Tensor& ds) = 0;
  // x += y
  virtual void add_inplace(const Tensor& x, const Tensor& y) = 0;

  // ---- norms: RMSNorm (eps, rstd [N]) or DyT / DyISRU (α; rstd unused) ---------------
  virtual void norm_forward(NormKind kind, const Tensor& x, const NormParams& p, float eps,
                            const Tensor& y, const Tensor& rstd) = 0;
  // dx += …; dγ, dα, dβ += … (grads has the shape of p).
  virtual void norm_backward(NormKind kind, const Tensor& x, const NormParams& p,
                             const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                             const NormParams& grads) = 0;
  // Fused residual add + norm: sum = residual + branch, y = norm(sum). sum
  // may be the residual or the branch itself (the model writes the branch's
  // GEMM output into sum's buffer and adds the residual in place).
  virtual void residual_norm_forward(NormKind kind, const Tensor& residual, const Tensor& branch,
                                     const NormParams& p, float eps, const Tensor& sum,
                                     const Tensor& y, const Tensor& rstd) = 0;
  // dsum = dresidual + (norm's dx given dy at sum): the gradient of both the
  // residual and the branch. dsum may be dresidual itself.
  virtual void residual_norm_backward(NormKind kind, const Tensor& sum, const NormParams& p,
                                      const Tensor& rstd, const Tensor& dy,
                                      const Tensor& dresidual, const Tensor& dsum,
                                      const NormParams& grads) = 0;

  // ---- health of a DyT/DyISRU input (trainer/norm_health.h) --------------------------
  // out [2] (F64) += (Σ x², #{i : |α·x_i| > threshold}) over x (F32, or BF16
  // on the CUDA backend), α an F32 [1]. The product α·x is an fp32 multiply;
  // Σ x² is summed exactly as sum_squares sums before it is added, so both
  // backends give the same bits.
  virtual void saturation_stats(const Tensor& x, const Tensor& alpha, float threshold,
                                const Tensor& out) = 0;

  // ---- RoPE (rotate-half, θ), in place on x [B·T, H·hd] ---------------------------
  virtual void rope_forward(const Tensor& x, int64_t seq_len, int64_t heads, double theta) = 0;
  virtual void rope_backward(const Tensor& dx, int64_t seq_len, int64_t heads, double theta) = 0;

  // ---- causal attention, flash style --------------------------------------------------
  // out [B·T, Hq·hd]; lse [B, Hq, T] (F32) receives each row's log Σ exp of
  // the scaled scores, all the backward keeps.
  virtual void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const AttentionShape& s, const Tensor& out, const Tensor& lse) = 0;
  // dq, dk, dv written (=); the probabilities are recomputed from lse.
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const Tensor& dout,
                                  const AttentionShape& s, const Tensor& dq, const Tensor& dk,
                                  const Tensor& dv) = 0;

  // ---- SwiGLU: out = silu(gate) ⊙ up; dgate, dup written (=) -------------------------
  virtual void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  virtual void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                               const Tensor& dgate, const Tensor& dup) = 0;

  // ---- cross-entropy fused with its softmax and gradient ------------------------------
  // loss_sum[0] (F64) += Σ_n −log softmax(logits[n])[targets[n]]. With
  // dlogits non-null: dlogits = grad_scale·(softmax − onehot), which may alias
  // logits (no second copy of the logits exists).
  virtual void cross_entropy(const Tensor& logits, const Tensor& targets, float grad_scale,
                             const Tensor* dlogits, const Tensor& loss_sum) = 0;

  // ---- vocab-parallel cross-entropy: two steps around the tp group's all-gather ------
  // Each rank holds logits [N, V/tp] of its vocabulary slice and targets in
  // its own ids (kAbsentToken when the target is another rank's).
  // stats [N, 3] (F64) = per row: m = max_j l, s = Σ_j exp(l_j − m) (each exp
  // in fp32 as cross_entropy does, summed in double) and l[target] (0 when
  // absent). The ranks' rows combine as M = max m, S = Σ s·exp(m − M), loss =
  // log S + M − Σ l[target] (trainer/vocab_parallel_loss.h).
  virtual void cross_entropy_stats(const Tensor& logits, const Tensor& targets,
                                   const Tensor& stats) = 0;
  // In place: logits ← grad_scale·(exp(l − M)/S − onehot), with row [N, 2]
  // (F64) = (M, S) of every rank's vocabulary; the target's entry, when it is
  // here, in cross_entropy's form grad_scale·(exp(l_t − M − log S) − 1).
  virtual void cross_entropy_grad(const Tensor& logits, const Tensor& targets, const Tensor& row,
                                  float grad_scale) = 0;

  // ---- optimizer and the reductions around it ----------------------------------------
  // out[0] (F64) = Σ g² over the F32 tensor g, fixed order (trainer/grad_norm.h's
  // chunking on the CPU); non-finite when any element is.
  virtual void sum_squares(const Tensor& g, const Tensor& out) = 0;
  // g ← g · factor (F32).
  virtual void scale_inplace(const Tensor& g, float factor) = 0;
  // AdamW over the F32 master params p, grads g and state m, v (all the same
  // length), segment by segment; when `work` is non-empty (BF16), it receives
  // the updated parameters rounded.
  virtual void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                          const std::vector<ParamSegment>& segments, const AdamWScalars& s,
                          const Tensor* work) = 0;
};

}  // namespace dyt::kernels
