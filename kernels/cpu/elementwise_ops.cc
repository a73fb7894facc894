// Ops that act element by element: the embedding scale, the residual add and
// SwiGLU. Each element is read before it is written, so outputs may alias
// inputs of the same shape.
#include <algorithm>

#include "kernels/cpu/check.h"
#include "kernels/cpu/row_reduce.h"
#include "kernels/cpu_ops.h"
#include "kernels/elementwise.h"

namespace dyt::cpu {

using namespace detail;

void scale_forward(const Tensor& x, float s, Tensor& y) {
  const char* op = "scale_forward";
  require_f32(op, "x", x);
  require_f32(op, "y", y);
  const int64_t n = x.numel();
  require_numel(op, "y", y, n);
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) yp[i] = s * xp[i];
}

void scale_backward(const Tensor& x, const Tensor& dy, float s, Tensor& dx, float* ds) {
  const char* op = "scale_backward";
  require_f32(op, "x", x);
  require_f32(op, "dy", dy);
  require_f32(op, "dx", dx);
  require(ds != nullptr, op, "ds must not be null");
  const int64_t n = x.numel();
  require_numel(op, "dy", dy, n);
  require_numel(op, "dx", dx, n);
  const float* xp = x.f32();
  const float* dyp = dy.f32();
  float* dxp = dx.f32();
  // Flat "rows" of 256 elements, so the chunking is fixed whatever x's shape.
  constexpr int64_t kWidth = 256;
  const RowSums sums = reduce_row_chunks((n + kWidth - 1) / kWidth, 0, 1,
                                         [&](int64_t r0, int64_t r1, float*, double* pd) {
                                           const int64_t e1 = std::min(n, r1 * kWidth);
                                           for (int64_t i = r0 * kWidth; i < e1; ++i) {
                                             const float g = dyp[i];
                                             pd[0] += static_cast<double>(g) * xp[i];
                                             dxp[i] = s * g;
                                           }
                                         });
  *ds += static_cast<float>(sums.d[0]);
}

void add_inplace(Tensor& x, const Tensor& y) {
  const char* op = "add_inplace";
  require_f32(op, "x", x);
  require_f32(op, "y", y);
  const int64_t n = x.numel();
  require(y.numel() == n && last_dim(y) == last_dim(x), op,
          "y has shape " + shape_str(y) + ", x has shape " + shape_str(x));
  float* xp = x.f32();
  const float* yp = y.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) xp[i] += yp[i];
}

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  const char* op = "swiglu_forward";
  require_f32(op, "gate", gate);
  require_f32(op, "up", up);
  require_f32(op, "out", out);
  const int64_t d = last_dim(gate), n = row_count(gate);
  require_rows(op, "up", up, n, d);
  require_rows(op, "out", out, n, d);
  const int64_t total = n * d;
  const float* g = gate.f32();
  const float* u = up.f32();
  float* o = out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) o[i] = kernels::silu(g[i]) * u[i];
}

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout, Tensor& dgate,
                     Tensor& dup) {
  const char* op = "swiglu_backward";
  require_f32(op, "gate", gate);
  require_f32(op, "up", up);
  require_f32(op, "dout", dout);
  require_f32(op, "dgate", dgate);
  require_f32(op, "dup", dup);
  const int64_t d = last_dim(gate), n = row_count(gate);
  require_rows(op, "up", up, n, d);
  require_rows(op, "dout", dout, n, d);
  require_rows(op, "dgate", dgate, n, d);
  require_rows(op, "dup", dup, n, d);
  const int64_t total = n * d;
  const float* g = gate.f32();
  const float* u = up.f32();
  const float* go = dout.f32();
  float* dg = dgate.f32();
  float* du = dup.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) {
    const float gi = g[i], ui = u[i], doi = go[i];
    const float sg = kernels::sigmoidf_(gi);  // one exp serves silu and its slope
    dg[i] = doi * ui * (sg * (1.0f + gi * (1.0f - sg)));
    du[i] = doi * gi * sg;
  }
}

}  // namespace dyt::cpu
