// The GEMMs of the CUDA backend (the linear layers), through cuBLASLt. It
// mirrors the linear section of kernels/cpu_ops.h, which is its reference
// (tests/kernels/cuda/test_gemm_cuda.cc); docs/cuda_kernels.md ("GEMM") says
// why each choice below was made.
//
// Conventions (those of kernels/backend.h, plus):
//  * Weights are stored [out, in], activations row-major [N, width] (any rank,
//    viewed as [rows, last dim]); everything lives on the GPU.
//  * linear_forward and linear_backward_input: x, w, y (dy, w, dx) all F32
//    or all BF16. linear_backward_weight: dy and x F32 or BF16 (the same),
//    dW always F32.
//  * Math: fp32 multiply-accumulate in both modes (CUBLAS_COMPUTE_32F). BF16
//    operands and outputs; F32 ("parity mode") is fp32 throughout with no
//    TF32 or other down-conversion of the operands.
//  * Deterministic: the same inputs, shapes and pointers' alignments on the
//    same GPU model, toolkit and Gemm give the same bits (one algorithm per
//    problem, chosen once; our own workspace; only split-K reductions that
//    run in a fixed order).
//  * A Gemm is bound to one stream: its one workspace is reused by every call
//    in stream order, so two streams must not share a Gemm (make one each).
//    It is bound to the device current when it was made, too.
//  * Shape, dtype, device or aliasing mismatches throw std::invalid_argument
//    "<op>: <what>" before any work is queued; a failing cuBLASLt call throws
//    CublasError naming the op, the call, the status and the problem (shapes,
//    dtypes, leading dimensions, alignments).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/tensor.h"

namespace dyt::cuda {

using kernels::DType;
using kernels::Tensor;

// A cuBLASLt call that returned a status other than success.
class CublasError : public std::runtime_error {
 public:
  CublasError(int status, const std::string& what) : std::runtime_error(what), status_(status) {}
  int status() const { return status_; }  // the cublasStatus_t

 private:
  int status_;
};

// 32 MiB: the workspace cuBLAS's documentation recommends for Hopper
// (cublasSetWorkspace; 4 MiB for earlier GPUs); one buffer, allocated once.
inline constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

// Counters of the algorithm cache, for tests and logs.
struct GemmStats {
  int64_t heuristic_queries = 0;  // problems seen for the first time (one heuristic call each)
  int64_t cache_hits = 0;         // calls that reused a chosen algorithm
  int64_t matmuls = 0;            // cublasLtMatmul calls made
};

class Gemm {
 public:
  // Creates the cuBLASLt handle and allocates the workspace (cudaMalloc) on
  // the current device. Throws CudaError / CublasError when it cannot.
  explicit Gemm(cudaStream_t stream, size_t workspace_bytes = kGemmWorkspaceBytes);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // y[N,out] = x[N,in] · W[out,in]ᵀ
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& y);
  // dx[N,in] = dy[N,out] · W (accumulate = false: dx is not read) or
  // dx += dy · W (accumulate = true).
  void linear_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx, bool accumulate);
  // dW[out,in] (F32) += dyᵀ · x.
  void linear_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw);

  GemmStats stats() const;
  cudaStream_t stream() const;
  size_t workspace_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dyt::cuda
