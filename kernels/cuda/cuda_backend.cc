// kernels::Backend on one GPU: each op forwards to the kernels of this
// folder on the backend's stream. Host code (compiled by the host compiler);
// the emulator builds it unchanged against its runtime and the cuBLASLt
// stand-in, so CI runs the whole CUDA step.
#include "kernels/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/embedding_ops.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/optimizer_ops.h"
#include "kernels/cuda/pointwise_ops.h"

namespace dyt::cuda {
namespace {

using kernels::AttentionShape;
using kernels::Buffer;
using kernels::Device;
using kernels::NormKind;
using kernels::NormParams;

std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  return buf;
}

// Selects `device` (or keeps the current one) after checking that a GPU is
// there; the device's index.
int select_device(int device) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    throw NoDeviceError(std::string("no usable CUDA device: cudaGetDeviceCount failed: ") +
                        cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
  if (count == 0) throw NoDeviceError("no CUDA device found (cudaGetDeviceCount = 0)");
  if (device >= count)
    throw NoDeviceError("CUDA device " + std::to_string(device) + " asked for, but only " +
                        std::to_string(count) + " found");
  if (device >= 0) DYT_CUDA_CHECK(cudaSetDevice(device));
  int current = 0;
  DYT_CUDA_CHECK(cudaGetDevice(&current));
  return current;
}

const Tensor* beta_or_null(const NormParams& p) { return p.has_beta() ? &p.beta : nullptr; }

class CudaBackend final : public kernels::Backend {
 public:
  explicit CudaBackend(int device) : device_(select_device(device)) {
    cudaDeviceProp prop;
    DYT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    describe_ = std::string("CUDA ") + prop.name + " (sm_" + std::to_string(prop.major) +
                std::to_string(prop.minor) + ", device " + std::to_string(device_) + ")";
    DYT_CUDA_CHECK(cudaStreamCreate(&stream_));
    gemm_ = std::make_unique<Gemm>(stream_);
  }
  ~CudaBackend() override {
    gemm_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::CUDA; }
  std::string describe() const override { return describe_; }
  int64_t peak_memory_bytes() const override { return usage_->peak.load(); }
  cudaStream_t stream() const { return stream_; }

  Buffer allocate(kernels::DType dtype, int64_t numel) override {
    if (numel < 0) throw std::invalid_argument("CUDA allocate: negative size");
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(numel, 1) * kernels::dtype_size(dtype));
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // a failed cudaMalloc leaves its error to be read; clear it
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw std::runtime_error("CUDA backend: cannot allocate " + gib(bytes) + " (" +
                               std::to_string(numel) + " " + kernels::dtype_name(dtype) + ") on " +
                               describe_ + ": " + cudaGetErrorName(e) + "; " + gib(free_b) +
                               " free of " + gib(total_b));
    }
    DYT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
    const int64_t now = usage_->current += static_cast<int64_t>(bytes);
    for (int64_t peak = usage_->peak.load(); now > peak && !usage_->peak.compare_exchange_weak(peak, now);) {
    }
    const cudaStream_t s = stream_;
    return Buffer(p, dtype, Device::CUDA, numel, [s, bytes, usage = usage_](void* q) {
      cudaStreamSynchronize(s);  // no queued kernel may still use it
      cudaFree(q);
      usage->current -= static_cast<int64_t>(bytes);
    });
  }
  void upload(const void* host, const Tensor& dst) override {
    require_device("upload", dst);
    const size_t n = bytes_of(dst);
    if (n == 0) return;
    DYT_CUDA_CHECK(cudaMemcpyAsync(dst.data, host, n, cudaMemcpyHostToDevice, stream_));
    // The host memory may be reused as soon as this returns.
    DYT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void download(const Tensor& src, void* host) override {
    require_device("download", src);
    const size_t n = bytes_of(src);
    if (n == 0) return;
    DYT_CUDA_CHECK(cudaMemcpyAsync(host, src.data, n, cudaMemcpyDeviceToHost, stream_));
    DYT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void zero(const Tensor& t) override {
    require_device("zero", t);
    if (bytes_of(t) > 0) DYT_CUDA_CHECK(cudaMemsetAsync(t.data, 0, bytes_of(t), stream_));
  }
  void convert(const Tensor& src, const Tensor& dst) override {
    Tensor d = dst;
    cuda::convert(src, d, stream_);
  }
  void synchronize() override { DYT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& y) override {
    gemm_->linear_forward(x, w, y);
  }
  void linear_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                             bool accumulate) override {
    gemm_->linear_backward_input(dy, w, dx, accumulate);
  }
  void linear_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw) override {
    gemm_->linear_backward_weight(dy, x, dw);
  }

  void embedding_forward(const Tensor& tokens, const Tensor& table, const Tensor& out) override {
    cuda::embedding_forward(tokens, table, out, stream_);
  }
  void embedding_backward(const Tensor& tokens, const Tensor& dout, const Tensor& dtable) override {
    cuda::embedding_backward(tokens, dout, dtable, stream_);
  }
  void scale_forward(const Tensor& x, const Tensor& s, const Tensor& y) override {
    Tensor o = y;
    cuda::scale_forward(x, s, o, stream_);
  }
  void scale_backward(const Tensor& x, const Tensor& dy, const Tensor& s, const Tensor& dx,
                      const Tensor& ds) override {
    Tensor a = dx, b = ds;
    cuda::scale_backward(x, dy, s, a, b, stream_);
  }
  void add_inplace(const Tensor& x, const Tensor& y) override {
    Tensor o = x;
    cuda::add_inplace(o, y, stream_);
  }

  void norm_forward(NormKind kind, const Tensor& x, const NormParams& p, float eps,
                    const Tensor& y, const Tensor& rstd) override {
    Tensor out = y, r = rstd;
    switch (kind) {
      case NormKind::RMSNorm: cuda::rmsnorm_forward(x, p.gamma, eps, out, r, stream_); return;
      case NormKind::DyT: cuda::dyt_forward(x, p.alpha, p.gamma, beta_or_null(p), out, stream_); return;
      case NormKind::DyISRU:
        cuda::dyisru_forward(x, p.alpha, p.gamma, beta_or_null(p), out, stream_);
        return;
    }
  }
  void norm_backward(NormKind kind, const Tensor& x, const NormParams& p, const Tensor& rstd,
                     const Tensor& dy, const Tensor& dx, const NormParams& g) override {
    Tensor out = dx, dgamma = g.gamma, dalpha = g.alpha, dbeta = g.beta;
    Tensor* dbp = g.has_beta() ? &dbeta : nullptr;
    switch (kind) {
      case NormKind::RMSNorm:
        cuda::rmsnorm_backward(x, p.gamma, rstd, dy, out, dgamma, stream_);
        return;
      case NormKind::DyT:
        cuda::dyt_backward(x, p.alpha, p.gamma, dy, out, dalpha, dgamma, dbp, stream_);
        return;
      case NormKind::DyISRU:
        cuda::dyisru_backward(x, p.alpha, p.gamma, dy, out, dalpha, dgamma, dbp, stream_);
        return;
    }
  }
  // DyT and DyISRU: one fused kernel. RMSNorm (the baseline) has no fused
  // kernel yet: the add, then the norm.
  void residual_norm_forward(NormKind kind, const Tensor& residual, const Tensor& branch,
                             const NormParams& p, float eps, const Tensor& sum, const Tensor& y,
                             const Tensor& rstd) override {
    Tensor s = sum, out = y;
    switch (kind) {
      case NormKind::DyT:
        cuda::dyt_residual_forward(residual, branch, p.alpha, p.gamma, beta_or_null(p), s, out, stream_);
        return;
      case NormKind::DyISRU:
        cuda::dyisru_residual_forward(residual, branch, p.alpha, p.gamma, beta_or_null(p), s, out,
                                      stream_);
        return;
      case NormKind::RMSNorm:
        if (sum.data == branch.data) {
          cuda::add_inplace(s, residual, stream_);
        } else {
          if (sum.data != residual.data) convert(residual, sum);
          cuda::add_inplace(s, branch, stream_);
        }
        norm_forward(kind, sum, p, eps, y, rstd);
        return;
    }
  }
  void residual_norm_backward(NormKind kind, const Tensor& sum, const NormParams& p,
                              const Tensor& rstd, const Tensor& dy, const Tensor& dresidual,
                              const Tensor& dsum, const NormParams& g) override {
    Tensor ds = dsum, dgamma = g.gamma, dalpha = g.alpha, dbeta = g.beta;
    Tensor* dbp = g.has_beta() ? &dbeta : nullptr;
    switch (kind) {
      case NormKind::DyT:
        cuda::dyt_residual_backward(sum, p.alpha, p.gamma, dy, dresidual, ds, dalpha, dgamma, dbp,
                                    stream_);
        return;
      case NormKind::DyISRU:
        cuda::dyisru_residual_backward(sum, p.alpha, p.gamma, dy, dresidual, ds, dalpha, dgamma,
                                       dbp, stream_);
        return;
      case NormKind::RMSNorm:
        if (dsum.data != dresidual.data) convert(dresidual, dsum);
        norm_backward(kind, sum, p, rstd, dy, dsum, g);
        return;
    }
  }

  void rope_forward(const Tensor& x, int64_t seq_len, int64_t heads, double theta) override {
    Tensor o = x;
    cuda::rope_forward(o, seq_len, heads, theta, stream_);
  }
  void rope_backward(const Tensor& dx, int64_t seq_len, int64_t heads, double theta) override {
    Tensor o = dx;
    cuda::rope_backward(o, seq_len, heads, theta, stream_);
  }

  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionShape& s, const Tensor& out, const Tensor& lse) override {
    cuda::attention_forward(q, k, v, s, out, lse, stream_);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                          const Tensor& lse, const Tensor& dout, const AttentionShape& s,
                          const Tensor& dq, const Tensor& dk, const Tensor& dv) override {
    cuda::attention_backward(q, k, v, out, lse, dout, s, dq, dk, dv, stream_);
  }

  void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    Tensor o = out;
    cuda::swiglu_forward(gate, up, o, stream_);
  }
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                       const Tensor& dgate, const Tensor& dup) override {
    Tensor a = dgate, b = dup;
    cuda::swiglu_backward(gate, up, dout, a, b, stream_);
  }

  void cross_entropy(const Tensor& logits, const Tensor& targets, float grad_scale,
                     const Tensor* dlogits, const Tensor& loss_sum) override {
    Tensor l = loss_sum;
    cuda::cross_entropy(logits, targets, grad_scale, dlogits, l, stream_);
  }

  void cross_entropy_stats(const Tensor& logits, const Tensor& targets,
                           const Tensor& stats) override {
    Tensor s = stats;
    cuda::cross_entropy_stats(logits, targets, s, stream_);
  }
  void cross_entropy_grad(const Tensor& logits, const Tensor& targets, const Tensor& row,
                          float grad_scale) override {
    Tensor l = logits;
    cuda::cross_entropy_grad(l, targets, row, grad_scale, stream_);
  }

  void saturation_stats(const Tensor& x, const Tensor& alpha, float threshold,
                        const Tensor& out) override {
    cuda::saturation_stats(x, alpha, threshold, out, stream_);
  }
  void sum_squares(const Tensor& g, const Tensor& out) override {
    cuda::sum_squares(g, out, stream_);
  }
  void scale_inplace(const Tensor& g, float factor) override {
    cuda::scale_inplace(g, factor, stream_);
  }
  void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                  const std::vector<kernels::ParamSegment>& segments,
                  const kernels::AdamWScalars& s, const Tensor* work) override {
    cuda::adamw_step(p, g, m, v, segments, s, work, stream_);
  }

 private:
  static size_t bytes_of(const Tensor& t) {
    return static_cast<size_t>(t.numel() * kernels::dtype_size(t.dtype));
  }
  static void require_device(const char* op, const Tensor& t) {
    if (t.device != Device::CUDA || (t.data == nullptr && t.numel() > 0))
      throw std::invalid_argument(std::string(op) + ": the tensor must be CUDA memory");
  }

  int device_;
  std::string describe_;
  cudaStream_t stream_ = nullptr;
  // Bytes held by this backend's buffers now and at most; shared with each
  // buffer's release, which may run after the backend is gone.
  struct Usage {
    std::atomic<int64_t> current{0}, peak{0};
  };
  std::shared_ptr<Usage> usage_ = std::make_shared<Usage>();
  std::unique_ptr<Gemm> gemm_;
};

}  // namespace

std::unique_ptr<kernels::Backend> make_cuda_backend(int device) {
  return std::make_unique<CudaBackend>(device);
}

CUstream_st* stream_of(const kernels::Backend& backend) {
  const auto* b = dynamic_cast<const CudaBackend*>(&backend);
  if (!b) throw std::invalid_argument("stream_of: " + backend.describe() + " is not a CUDA backend");
  return b->stream();
}

DeviceInfo device_info(int device) {
  const int d = select_device(device);
  cudaDeviceProp prop;
  DYT_CUDA_CHECK(cudaGetDeviceProperties(&prop, d));
  DeviceInfo info;
  info.name = prop.name;
  info.sm = prop.major * 10 + prop.minor;
  DYT_CUDA_CHECK(cudaMemGetInfo(&info.free_bytes, &info.total_bytes));
  return info;
}

}  // namespace dyt::cuda
