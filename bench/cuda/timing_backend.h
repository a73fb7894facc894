// A kernels::Backend decorator that forwards every call to the real backend
// and, while enabled, brackets each op with a pair of CUDA events, so a step's
// GPU time splits by op family (dyt-bench-step-cuda's breakdown).
//
// Stream ordering: the events must follow the work they time, so they are
// recorded on the stream the real backend queues everything on
// (kernels/cuda/cuda_backend.h stream_of()): each event then falls between
// the op before and the op after, whatever else runs on the device. Timing
// every op costs an event pair per op, which is why dyt-bench-step-cuda
// measures its headline step time with timing disabled and the breakdown in
// separate steps.
//
// Events come from a pool created once and reused step after step; collect()
// synchronizes, adds each pair's elapsed time to its family and rewinds the pool.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <deque>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace dyt::bench {

enum class OpFamily {
  Gemm, Attention, Norm, Rope, Swiglu, CrossEntropy, Embedding, Optimizer, Other, kCount
};
inline const char* family_name(OpFamily f) {
  static const char* names[] = {"GEMM", "attention", "norms (DyT)", "RoPE", "SwiGLU",
                                "cross-entropy", "embedding", "optimizer/reductions", "other"};
  return names[static_cast<int>(f)];
}
inline constexpr int kFamilies = static_cast<int>(OpFamily::kCount);

class TimingBackend final : public kernels::Backend {
 public:
  // `stream`: the one `inner` queues its work on.
  TimingBackend(kernels::Backend& inner, cudaStream_t stream) : inner_(inner), stream_(stream) {}
  ~TimingBackend() override {
    for (auto& p : pool_) cudaEventDestroy(p.start), cudaEventDestroy(p.stop);
  }
  TimingBackend(const TimingBackend&) = delete;
  TimingBackend& operator=(const TimingBackend&) = delete;

  void set_enabled(bool on) { enabled_ = on; }
  // Waits for the recorded events, adds their times (ms) into `ms` by family
  // and the op counts into `calls`, and rewinds the pool.
  void collect(std::array<double, kFamilies>& ms, std::array<int64_t, kFamilies>& calls) {
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    for (size_t i = 0; i < used_; ++i) {
      float t = 0;
      check(cudaEventElapsedTime(&t, pool_[i].start, pool_[i].stop), "cudaEventElapsedTime");
      ms[static_cast<int>(pool_[i].family)] += t;
      ++calls[static_cast<int>(pool_[i].family)];
    }
    used_ = 0;
  }

  kernels::Device device() const override { return inner_.device(); }
  std::string describe() const override { return inner_.describe(); }
  int64_t peak_memory_bytes() const override { return inner_.peak_memory_bytes(); }
  kernels::Buffer allocate(kernels::DType dt, int64_t n) override { return inner_.allocate(dt, n); }
  void upload(const void* h, const kernels::Tensor& d) override {
    Span s(*this, OpFamily::Other);
    inner_.upload(h, d);
  }
  void download(const kernels::Tensor& s_, void* h) override {
    Span s(*this, OpFamily::Other);
    inner_.download(s_, h);
  }
  void zero(const kernels::Tensor& t) override {
    Span s(*this, OpFamily::Other);
    inner_.zero(t);
  }
  void convert(const kernels::Tensor& a, const kernels::Tensor& b) override {
    Span s(*this, OpFamily::Other);
    inner_.convert(a, b);
  }
  void synchronize() override { inner_.synchronize(); }

  void linear_forward(const kernels::Tensor& x, const kernels::Tensor& w, const kernels::Tensor& y) override {
    Span s(*this, OpFamily::Gemm);
    inner_.linear_forward(x, w, y);
  }
  void linear_backward_input(const kernels::Tensor& dy, const kernels::Tensor& w, const kernels::Tensor& dx,
                             bool acc) override {
    Span s(*this, OpFamily::Gemm);
    inner_.linear_backward_input(dy, w, dx, acc);
  }
  void linear_backward_weight(const kernels::Tensor& dy, const kernels::Tensor& x,
                              const kernels::Tensor& dw) override {
    Span s(*this, OpFamily::Gemm);
    inner_.linear_backward_weight(dy, x, dw);
  }
  void embedding_forward(const kernels::Tensor& t, const kernels::Tensor& tab, const kernels::Tensor& o) override {
    Span s(*this, OpFamily::Embedding);
    inner_.embedding_forward(t, tab, o);
  }
  void embedding_backward(const kernels::Tensor& t, const kernels::Tensor& d, const kernels::Tensor& dt) override {
    Span s(*this, OpFamily::Embedding);
    inner_.embedding_backward(t, d, dt);
  }
  void scale_forward(const kernels::Tensor& x, const kernels::Tensor& sc, const kernels::Tensor& y) override {
    Span s(*this, OpFamily::Embedding);  // the embedding scale is its only user
    inner_.scale_forward(x, sc, y);
  }
  void scale_backward(const kernels::Tensor& x, const kernels::Tensor& dy, const kernels::Tensor& sc,
                      const kernels::Tensor& dx, const kernels::Tensor& ds) override {
    Span s(*this, OpFamily::Embedding);
    inner_.scale_backward(x, dy, sc, dx, ds);
  }
  void add_inplace(const kernels::Tensor& x, const kernels::Tensor& y) override {
    Span s(*this, OpFamily::Other);
    inner_.add_inplace(x, y);
  }
  void norm_forward(kernels::NormKind k, const kernels::Tensor& x, const kernels::NormParams& p, float eps,
                    const kernels::Tensor& y, const kernels::Tensor& r) override {
    Span s(*this, OpFamily::Norm);
    inner_.norm_forward(k, x, p, eps, y, r);
  }
  void norm_backward(kernels::NormKind k, const kernels::Tensor& x, const kernels::NormParams& p,
                     const kernels::Tensor& r, const kernels::Tensor& dy, const kernels::Tensor& dx,
                     const kernels::NormParams& g) override {
    Span s(*this, OpFamily::Norm);
    inner_.norm_backward(k, x, p, r, dy, dx, g);
  }
  void residual_norm_forward(kernels::NormKind k, const kernels::Tensor& res, const kernels::Tensor& br,
                             const kernels::NormParams& p, float eps, const kernels::Tensor& sum,
                             const kernels::Tensor& y, const kernels::Tensor& r) override {
    Span s(*this, OpFamily::Norm);
    inner_.residual_norm_forward(k, res, br, p, eps, sum, y, r);
  }
  void residual_norm_backward(kernels::NormKind k, const kernels::Tensor& sum, const kernels::NormParams& p,
                              const kernels::Tensor& r, const kernels::Tensor& dy, const kernels::Tensor& dres,
                              const kernels::Tensor& dsum, const kernels::NormParams& g) override {
    Span s(*this, OpFamily::Norm);
    inner_.residual_norm_backward(k, sum, p, r, dy, dres, dsum, g);
  }
  void rope_forward(const kernels::Tensor& x, int64_t t, int64_t h, double th) override {
    Span s(*this, OpFamily::Rope);
    inner_.rope_forward(x, t, h, th);
  }
  void rope_backward(const kernels::Tensor& dx, int64_t t, int64_t h, double th) override {
    Span s(*this, OpFamily::Rope);
    inner_.rope_backward(dx, t, h, th);
  }
  void attention_forward(const kernels::Tensor& q, const kernels::Tensor& k, const kernels::Tensor& v,
                         const kernels::AttentionShape& sh, const kernels::Tensor& o,
                         const kernels::Tensor& lse) override {
    Span s(*this, OpFamily::Attention);
    inner_.attention_forward(q, k, v, sh, o, lse);
  }
  void attention_backward(const kernels::Tensor& q, const kernels::Tensor& k, const kernels::Tensor& v,
                          const kernels::Tensor& o, const kernels::Tensor& lse, const kernels::Tensor& dout,
                          const kernels::AttentionShape& sh, const kernels::Tensor& dq,
                          const kernels::Tensor& dk, const kernels::Tensor& dv) override {
    Span s(*this, OpFamily::Attention);
    inner_.attention_backward(q, k, v, o, lse, dout, sh, dq, dk, dv);
  }
  void swiglu_forward(const kernels::Tensor& g, const kernels::Tensor& u, const kernels::Tensor& o) override {
    Span s(*this, OpFamily::Swiglu);
    inner_.swiglu_forward(g, u, o);
  }
  void swiglu_backward(const kernels::Tensor& g, const kernels::Tensor& u, const kernels::Tensor& d,
                       const kernels::Tensor& dg, const kernels::Tensor& du) override {
    Span s(*this, OpFamily::Swiglu);
    inner_.swiglu_backward(g, u, d, dg, du);
  }
  void cross_entropy(const kernels::Tensor& logits, const kernels::Tensor& targets, float gs,
                     const kernels::Tensor* dlogits, const kernels::Tensor& loss) override {
    Span s(*this, OpFamily::CrossEntropy);
    inner_.cross_entropy(logits, targets, gs, dlogits, loss);
  }
  void cross_entropy_stats(const kernels::Tensor& logits, const kernels::Tensor& targets,
                           const kernels::Tensor& stats) override {
    Span s(*this, OpFamily::CrossEntropy);
    inner_.cross_entropy_stats(logits, targets, stats);
  }
  void cross_entropy_grad(const kernels::Tensor& logits, const kernels::Tensor& targets,
                          const kernels::Tensor& row, float gs) override {
    Span s(*this, OpFamily::CrossEntropy);
    inner_.cross_entropy_grad(logits, targets, row, gs);
  }
  void saturation_stats(const kernels::Tensor& x, const kernels::Tensor& a, float threshold,
                        const kernels::Tensor& o) override {
    Span s(*this, OpFamily::Optimizer);
    inner_.saturation_stats(x, a, threshold, o);
  }
  void sum_squares(const kernels::Tensor& g, const kernels::Tensor& o) override {
    Span s(*this, OpFamily::Optimizer);
    inner_.sum_squares(g, o);
  }
  void scale_inplace(const kernels::Tensor& g, float f) override {
    Span s(*this, OpFamily::Optimizer);
    inner_.scale_inplace(g, f);
  }
  void adamw_step(const kernels::Tensor& p, const kernels::Tensor& g, const kernels::Tensor& m,
                  const kernels::Tensor& v, const std::vector<kernels::ParamSegment>& seg,
                  const kernels::AdamWScalars& sc, const kernels::Tensor* work) override {
    Span s(*this, OpFamily::Optimizer);
    inner_.adamw_step(p, g, m, v, seg, sc, work);
  }

 private:
  struct Pair {
    cudaEvent_t start = nullptr, stop = nullptr;
    OpFamily family = OpFamily::Other;
  };
  // Records the start event on construction and the stop event on
  // destruction (also when the op throws, so the pool stays paired).
  class Span {
   public:
    Span(TimingBackend& b, OpFamily f) : b_(b), pair_(b.enabled_ ? &b.next(f) : nullptr) {
      if (pair_) check(cudaEventRecord(pair_->start, b_.stream_), "cudaEventRecord");
    }
    ~Span() {
      if (pair_) cudaEventRecord(pair_->stop, b_.stream_);
    }

   private:
    TimingBackend& b_;
    Pair* pair_;
  };

  Pair& next(OpFamily f) {
    if (used_ == pool_.size()) {
      Pair p;
      check(cudaEventCreate(&p.start), "cudaEventCreate");
      check(cudaEventCreate(&p.stop), "cudaEventCreate");
      pool_.push_back(p);
    }
    Pair& p = pool_[used_++];
    p.family = f;
    return p;
  }
  static void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("TimingBackend: ") + what + ": " + cudaGetErrorString(e));
  }

  kernels::Backend& inner_;
  cudaStream_t stream_;
  bool enabled_ = false;
  std::deque<Pair> pool_;  // stable addresses while the pool grows
  size_t used_ = 0;
};

}  // namespace dyt::bench
