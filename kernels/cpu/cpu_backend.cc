#include "kernels/cpu/cpu_backend.h"

#include <omp.h>
#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "kernels/cpu_ops.h"

namespace dyt::kernels {
namespace {

void require_host(const char* op, const char* name, const Tensor& t) {
  if (t.device != Device::CPU || (t.data == nullptr && t.numel() > 0))
    throw std::invalid_argument(std::string(op) + ": " + name + " must be a host tensor");
}

void require_same_numel(const char* op, const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel() || a.dtype != b.dtype)
    throw std::invalid_argument(std::string(op) + ": " + dtype_name(a.dtype) + " " +
                                shape_text(a) + " and " + dtype_name(b.dtype) + " " +
                                shape_text(b) + " differ");
}

// The scalar held by a 1-element F32 host tensor.
float scalar(const char* op, const char* name, const Tensor& t) {
  require_host(op, name, t);
  if (t.dtype != DType::F32 || t.numel() != 1)
    throw std::invalid_argument(std::string(op) + ": " + name + " must be an F32 scalar, not " +
                                dtype_name(t.dtype) + " " + shape_text(t));
  return t.f32()[0];
}

const Tensor* beta_or_null(const NormParams& p) { return p.has_beta() ? &p.beta : nullptr; }

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string describe() const override {
    return "CPU (fp32, OpenBLAS, " + std::to_string(omp_get_max_threads()) + " threads)";
  }

  int64_t peak_memory_bytes() const override {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
  }

  Buffer allocate(DType dtype, int64_t numel) override {
    if (numel < 0) throw std::invalid_argument("CPU allocate: negative size");
    if (dtype == DType::BF16)
      throw std::invalid_argument("CPU backend: BF16 storage is not supported (the CPU computes in FP32)");
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(numel, 1) * dtype_size(dtype));
    // 64-byte alignment: whole cache lines and any vector width.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p)
      throw std::runtime_error("CPU backend: cannot allocate " + std::to_string(bytes) +
                               " bytes (" + std::to_string(numel) + " " + dtype_name(dtype) + ")");
    std::memset(p, 0, bytes);
    return Buffer(p, dtype, Device::CPU, numel, [](void* q) { std::free(q); });
  }
  void upload(const void* host, const Tensor& dst) override {
    require_host("upload", "dst", dst);
    if (dst.numel() > 0) std::memcpy(dst.data, host, dst.numel() * dtype_size(dst.dtype));
  }
  void download(const Tensor& src, void* host) override {
    require_host("download", "src", src);
    if (src.numel() > 0) std::memcpy(host, src.data, src.numel() * dtype_size(src.dtype));
  }
  void zero(const Tensor& t) override {
    require_host("zero", "t", t);
    if (t.numel() > 0) std::memset(t.data, 0, t.numel() * dtype_size(t.dtype));
  }
  void convert(const Tensor& src, const Tensor& dst) override {
    require_host("convert", "src", src);
    require_host("convert", "dst", dst);
    require_same_numel("convert", src, dst);  // F32 only on the CPU: a copy
    if (src.data != dst.data && src.numel() > 0)
      std::memcpy(dst.data, src.data, src.numel() * dtype_size(src.dtype));
  }
  void synchronize() override {}

  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& y) override {
    Tensor out = y;
    cpu::linear_forward(x, w, out);
  }
  void linear_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                             bool accumulate) override {
    Tensor out = dx;
    cpu::linear_backward_input(dy, w, out, accumulate);
  }
  void linear_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw) override {
    Tensor out = dw;
    cpu::linear_backward_weight(dy, x, out);
  }

  void embedding_forward(const Tensor& tokens, const Tensor& table, const Tensor& out) override {
    Tensor o = out;
    cpu::embedding_forward(tokens, table, o);
  }
  void embedding_backward(const Tensor& tokens, const Tensor& dout, const Tensor& dtable) override {
    Tensor o = dtable;
    cpu::embedding_backward(tokens, dout, o);
  }
  void scale_forward(const Tensor& x, const Tensor& s, const Tensor& y) override {
    Tensor o = y;
    cpu::scale_forward(x, scalar("scale_forward", "s", s), o);
  }
  void scale_backward(const Tensor& x, const Tensor& dy, const Tensor& s, const Tensor& dx,
                      const Tensor& ds) override {
    scalar("scale_backward", "ds", ds);
    Tensor o = dx;
    cpu::scale_backward(x, dy, scalar("scale_backward", "s", s), o, ds.f32());
  }
  void add_inplace(const Tensor& x, const Tensor& y) override {
    Tensor o = x;
    cpu::add_inplace(o, y);
  }

  void norm_forward(NormKind kind, const Tensor& x, const NormParams& p, float eps,
                    const Tensor& y, const Tensor& rstd) override {
    Tensor out = y, r = rstd;
    switch (kind) {
      case NormKind::RMSNorm: cpu::rmsnorm_forward(x, p.gamma, eps, out, r); return;
      case NormKind::DyT: cpu::dyt_forward(x, p.alpha, p.gamma, beta_or_null(p), out); return;
      case NormKind::DyISRU: cpu::dyisru_forward(x, p.alpha, p.gamma, beta_or_null(p), out); return;
    }
  }
  void norm_backward(NormKind kind, const Tensor& x, const NormParams& p, const Tensor& rstd,
                     const Tensor& dy, const Tensor& dx, const NormParams& g) override {
    Tensor out = dx, dgamma = g.gamma, dalpha = g.alpha, dbeta = g.beta;
    Tensor* dbp = g.has_beta() ? &dbeta : nullptr;
    switch (kind) {
      case NormKind::RMSNorm: cpu::rmsnorm_backward(x, p.gamma, rstd, dy, out, dgamma); return;
      case NormKind::DyT:
        cpu::dyt_backward(x, p.alpha, p.gamma, dy, out, dalpha, dgamma, dbp);
        return;
      case NormKind::DyISRU:
        cpu::dyisru_backward(x, p.alpha, p.gamma, dy, out, dalpha, dgamma, dbp);
        return;
    }
  }
  // On the CPU the fusion is the composition: one add, then the norm.
  void residual_norm_forward(NormKind kind, const Tensor& residual, const Tensor& branch,
                             const NormParams& p, float eps, const Tensor& sum, const Tensor& y,
                             const Tensor& rstd) override {
    Tensor s = sum;
    if (sum.data == branch.data) {
      cpu::add_inplace(s, residual);
    } else {
      if (sum.data != residual.data) convert(residual, sum);
      cpu::add_inplace(s, branch);
    }
    norm_forward(kind, sum, p, eps, y, rstd);
  }
  void residual_norm_backward(NormKind kind, const Tensor& sum, const NormParams& p,
                              const Tensor& rstd, const Tensor& dy, const Tensor& dresidual,
                              const Tensor& dsum, const NormParams& g) override {
    if (dsum.data != dresidual.data) convert(dresidual, dsum);
    norm_backward(kind, sum, p, rstd, dy, dsum, g);
  }

  void saturation_stats(const Tensor& x, const Tensor& alpha, float threshold,
                        const Tensor& out) override {
    require_host("saturation_stats", "out", out);
    if (out.dtype != DType::F64 || out.numel() != 2)
      throw std::invalid_argument("saturation_stats: out must be F64 [2]");
    double sum_sq = 0;
    int64_t saturated = 0;
    cpu::saturation_stats(x, scalar("saturation_stats", "alpha", alpha), threshold, &sum_sq,
                          &saturated);
    out.f64()[0] += sum_sq;
    out.f64()[1] += static_cast<double>(saturated);
  }

  void rope_forward(const Tensor& x, int64_t seq_len, int64_t heads, double theta) override {
    Tensor o = x;
    cpu::rope_forward(o, seq_len, heads, theta);
  }
  void rope_backward(const Tensor& dx, int64_t seq_len, int64_t heads, double theta) override {
    Tensor o = dx;
    cpu::rope_backward(o, seq_len, heads, theta);
  }

  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionShape& s, const Tensor& out, const Tensor& lse) override {
    Tensor o = out, l = lse;
    cpu::attention_forward(q, k, v, s.batch, s.seq_len, s.heads, s.kv_heads, o, l);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                          const Tensor& lse, const Tensor& dout, const AttentionShape& s,
                          const Tensor& dq, const Tensor& dk, const Tensor& dv) override {
    Tensor a = dq, b = dk, c = dv;
    cpu::attention_backward(q, k, v, out, lse, dout, s.batch, s.seq_len, s.heads, s.kv_heads, a,
                            b, c);
  }

  void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    Tensor o = out;
    cpu::swiglu_forward(gate, up, o);
  }
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                       const Tensor& dgate, const Tensor& dup) override {
    Tensor a = dgate, b = dup;
    cpu::swiglu_backward(gate, up, dout, a, b);
  }

  void cross_entropy(const Tensor& logits, const Tensor& targets, float grad_scale,
                     const Tensor* dlogits, const Tensor& loss_sum) override {
    require_host("cross_entropy", "loss_sum", loss_sum);
    if (loss_sum.dtype != DType::F64 || loss_sum.numel() != 1)
      throw std::invalid_argument("cross_entropy: loss_sum must be an F64 scalar");
    if (dlogits) {
      Tensor d = *dlogits;
      loss_sum.f64()[0] += cpu::cross_entropy_backward(logits, targets, grad_scale, d);
    } else {
      loss_sum.f64()[0] += cpu::cross_entropy_forward(logits, targets);
    }
  }

  void cross_entropy_stats(const Tensor& logits, const Tensor& targets,
                           const Tensor& stats) override {
    Tensor s = stats;
    cpu::cross_entropy_stats(logits, targets, s);
  }
  void cross_entropy_grad(const Tensor& logits, const Tensor& targets, const Tensor& row,
                          float grad_scale) override {
    Tensor l = logits;
    cpu::cross_entropy_grad(l, targets, row, grad_scale);
  }

  void sum_squares(const Tensor& g, const Tensor& out) override {
    require_f32_flat("sum_squares", g);
    require_host("sum_squares", "out", out);
    if (out.dtype != DType::F64 || out.numel() != 1)
      throw std::invalid_argument("sum_squares: out must be an F64 scalar");
    out.f64()[0] = cpu::sum_squares(g.f32(), g.numel());
  }
  void scale_inplace(const Tensor& g, float factor) override {
    require_f32_flat("scale_inplace", g);
    cpu::scale_inplace(g.f32(), g.numel(), factor);
  }
  void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                  const std::vector<ParamSegment>& segments, const AdamWScalars& s,
                  const Tensor* work) override {
    const char* op = "adamw_step";
    for (const Tensor* t : {&p, &g, &m, &v}) {
      require_f32_flat(op, *t);
      if (t->numel() != p.numel()) throw std::invalid_argument("adamw_step: buffers differ in length");
    }
    for (const ParamSegment& seg : segments)
      if (seg.begin < 0 || seg.end < seg.begin || seg.end > p.numel())
        throw std::invalid_argument("adamw_step: a segment lies outside the buffers");
    if (work && work->data)
      throw std::invalid_argument("adamw_step: the CPU backend keeps no BF16 working copy");
    cpu::adamw_step(p.f32(), g.f32(), m.f32(), v.f32(), segments, s);
  }

 private:
  static void require_f32_flat(const char* op, const Tensor& t) {
    require_host(op, "buffer", t);
    if (t.dtype != DType::F32)
      throw std::invalid_argument(std::string(op) + ": expects F32, got " + dtype_name(t.dtype));
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace dyt::kernels
