// Linear layer as three GEMMs. Weights are [out, in] (Hugging Face), so the
// forward multiplies by Wᵀ. Each GEMM is cut into fixed output tiles
// (tiled_sgemm.h), so the bits do not depend on the thread count.
#include <algorithm>

#include "kernels/cpu/check.h"
#include "kernels/cpu/tiled_sgemm.h"
#include "kernels/cpu_ops.h"

namespace dyt::cpu {

using namespace detail;

void linear_forward(const Tensor& x, const Tensor& w, Tensor& y) {
  const char* op = "linear_forward";
  require_f32(op, "x", x);
  require_f32(op, "w", w);
  require_f32(op, "y", y);
  require(w.rank == 2, op, "w must be rank 2 [out, in], got " + shape_str(w));
  const int64_t out = w.shape[0], in = w.shape[1], n = row_count(x);
  require_rows(op, "x", x, n, in);
  require_rows(op, "y", y, n, out);
  if (n == 0 || out == 0) return;
  if (in == 0) {
    std::fill_n(y.f32(), n * out, 0.0f);
    return;
  }
  sgemm_tiled(CblasNoTrans, CblasTrans, n, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f, y.f32(),
              out);
}

void linear_backward_input(const Tensor& dy, const Tensor& w, Tensor& dx, bool accumulate) {
  const char* op = "linear_backward_input";
  require_f32(op, "dy", dy);
  require_f32(op, "w", w);
  require_f32(op, "dx", dx);
  require(w.rank == 2, op, "w must be rank 2 [out, in], got " + shape_str(w));
  const int64_t out = w.shape[0], in = w.shape[1], n = row_count(dy);
  require_rows(op, "dy", dy, n, out);
  require_rows(op, "dx", dx, n, in);
  if (n == 0 || in == 0) return;
  if (out == 0) {
    if (!accumulate) std::fill_n(dx.f32(), n * in, 0.0f);
    return;
  }
  sgemm_tiled(CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy.f32(), out, w.f32(), in,
              accumulate ? 1.0f : 0.0f, dx.f32(), in);
}

void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw) {
  const char* op = "linear_backward_weight";
  require_f32(op, "dy", dy);
  require_f32(op, "x", x);
  require_f32(op, "dw", dw);
  require(dw.rank == 2, op, "dw must be rank 2 [out, in], got " + shape_str(dw));
  const int64_t out = dw.shape[0], in = dw.shape[1], n = row_count(dy);
  require_rows(op, "dy", dy, n, out);
  require_rows(op, "x", x, n, in);
  if (n == 0 || out == 0 || in == 0) return;
  sgemm_tiled(CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy.f32(), out, x.f32(), in, 1.0f,
              dw.f32(), in);
}

}  // namespace dyt::cpu
