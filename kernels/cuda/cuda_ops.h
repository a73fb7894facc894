// The CUDA implementation of the normalization ops: RMSNorm (the baseline),
// DyT and DyISRU, plain and fused with the residual add. It mirrors the norm
// section of kernels/cpu_ops.h, which is its reference (tests/kernels/cuda).
//
// Conventions (those of cpu_ops.h, plus):
//  * Activations (x, y, dy, dx, the residual stream and its gradient) live on
//    the GPU and are all F32 or all BF16 within one call; the math is fp32.
//    Parameters (α [1], γ [d], β [d]), their gradients and rstd [rows] are
//    always F32 on the GPU.
//  * α is read on the device: no call here synchronizes with the host.
//  * Any width d >= 1 and any number of rows. Rows whose width is a multiple
//    of 8 (BF16) or 4 (F32), with 16-byte-aligned activation pointers, take
//    the 16-byte vector path; everything else a scalar path computing the
//    same function.
//  * Parameter gradients accumulate (+=), as does dx where it says so.
//  * Determinism: reductions over rows are two-stage with no float atomics:
//    each block writes its partial sums to a workspace, a second kernel adds
//    them in a fixed order. The layout depends only on the device's
//    multiprocessor count, the shape, the dtype and the path (vector or
//    scalar), so the same inputs on the same GPU model give the same bits.
//  * The backward ops take a workspace: pass one of at least
//    norm_backward_workspace_bytes(...) bytes, or nullptr to use a buffer
//    cached per (device, stream) that grows in stream order. Two backward
//    calls in flight on one stream share it safely; a caller-provided
//    workspace must not be used by two streams at once.
//  * Shape, dtype or device mismatches throw std::invalid_argument naming the
//    op and the argument (before any work is queued); CUDA failures throw
//    CudaError with the failing call and its file:line.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/tensor.h"

namespace dyt::cuda {

using kernels::DType;
using kernels::Tensor;

// ---- errors ----------------------------------------------------------------

class CudaError : public std::runtime_error {
 public:
  CudaError(cudaError_t code, const char* expr, const char* file, int line);
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

// Throws CudaError("file:line: expr failed: <name>: <description>").
#define DYT_CUDA_CHECK(expr)                                                         \
  do {                                                                               \
    const cudaError_t dyt_cuda_err_ = (expr);                                        \
    if (dyt_cuda_err_ != cudaSuccess)                                                \
      throw ::dyt::cuda::CudaError(dyt_cuda_err_, #expr, __FILE__, __LINE__);        \
  } while (0)
// After a kernel launch: a bad configuration (or an earlier asynchronous
// fault) surfaces here.
#define DYT_CUDA_CHECK_LAUNCH() DYT_CUDA_CHECK(cudaGetLastError())
#ifndef CUDA_CHECK
#define CUDA_CHECK(expr) DYT_CUDA_CHECK(expr)
#endif

// ---- workspace for the backward reductions -------------------------------------

struct Workspace {
  void* data = nullptr;  // device memory, 16-byte aligned
  size_t bytes = 0;
};

// Bytes that any norm backward below needs for `rows` rows of width d of the
// given activation dtype, on the current device (an upper bound over the ops
// and paths, so one workspace serves them all).
size_t norm_backward_workspace_bytes(int64_t rows, int64_t d, DType dtype, bool with_beta);

// ---- residual add: x += y -------------------------------------------------------
void add_inplace(Tensor& x, const Tensor& y, cudaStream_t stream);

// ---- RMSNorm: y = γ ⊙ x / sqrt(mean(x²) + eps) --------------------------------
// One pass per row; rstd [rows] (F32) receives 1/sqrt(mean(x²)+eps).
void rmsnorm_forward(const Tensor& x, const Tensor& gamma, float eps, Tensor& y, Tensor& rstd,
                     cudaStream_t stream);
// dx += ..., dγ += Σ_rows dy ⊙ x·rstd.
void rmsnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& rstd, const Tensor& dy,
                      Tensor& dx, Tensor& dgamma, cudaStream_t stream,
                      const Workspace* ws = nullptr);

// ---- DyT: y = γ ⊙ tanh(α·x) [+ β] ------------------------------------------------
// beta may be null (no bias, the LLaMA variant).
void dyt_forward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                 Tensor& y, cudaStream_t stream);
// dx += dy γ α (1 − t²), dα[0] += Σ dy γ x (1 − t²), dγ += Σ_rows dy t,
// dβ += Σ_rows dy (when dbeta is non-null). dx must not overlap x or dy.
void dyt_backward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor& dy,
                  Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta, cudaStream_t stream,
                  const Workspace* ws = nullptr);

// Fused residual + DyT, one pass: sum = residual + branch (rounded to the
// activation dtype), y = DyT(sum). sum may be the residual tensor itself
// (in-place update of the residual stream).
void dyt_residual_forward(const Tensor& residual, const Tensor& branch, const Tensor& alpha,
                          const Tensor& gamma, const Tensor* beta, Tensor& sum, Tensor& y,
                          cudaStream_t stream);
// Its backward: dsum = dresidual + (DyT's dx given dy at sum), which is the
// gradient of both the residual and the branch; plus dα, dγ, dβ (+=). dsum
// may be dresidual itself.
void dyt_residual_backward(const Tensor& sum, const Tensor& alpha, const Tensor& gamma,
                           const Tensor& dy, const Tensor& dresidual, Tensor& dsum,
                           Tensor& dalpha, Tensor& dgamma, Tensor* dbeta, cudaStream_t stream,
                           const Workspace* ws = nullptr);

// ---- DyISRU: y = γ ⊙ α·x / sqrt(1 + (α·x)²) [+ β], same contracts as DyT --------
void dyisru_forward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor* beta,
                    Tensor& y, cudaStream_t stream);
void dyisru_backward(const Tensor& x, const Tensor& alpha, const Tensor& gamma, const Tensor& dy,
                     Tensor& dx, Tensor& dalpha, Tensor& dgamma, Tensor* dbeta,
                     cudaStream_t stream, const Workspace* ws = nullptr);
void dyisru_residual_forward(const Tensor& residual, const Tensor& branch, const Tensor& alpha,
                             const Tensor& gamma, const Tensor* beta, Tensor& sum, Tensor& y,
                             cudaStream_t stream);
void dyisru_residual_backward(const Tensor& sum, const Tensor& alpha, const Tensor& gamma,
                              const Tensor& dy, const Tensor& dresidual, Tensor& dsum,
                              Tensor& dalpha, Tensor& dgamma, Tensor* dbeta, cudaStream_t stream,
                              const Workspace* ws = nullptr);

}  // namespace dyt::cuda
