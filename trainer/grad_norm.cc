#include "trainer/grad_norm.h"

#include "kernels/cpu_ops.h"

#include <cmath>

namespace dyt::trainer {

double grad_sum_squares(const float* g, int64_t n) { return cpu::sum_squares(g, n); }

double global_grad_norm(const float* g, int64_t n) { return std::sqrt(grad_sum_squares(g, n)); }

bool all_finite(const float* g, int64_t n) {
  bool ok = true;
#pragma omp parallel for schedule(static) reduction(&& : ok) if (n > kNormChunk)
  for (int64_t i = 0; i < n; ++i) ok = ok && std::isfinite(g[i]);
  return ok;
}

double clip_coefficient(double norm, double max_norm) {
  if (!(max_norm > 0.0) || !std::isfinite(norm)) return 1.0;
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

double clip_grads(float* g, int64_t n, double norm, double max_norm) {
  const double coef = clip_coefficient(norm, max_norm);
  if (coef >= 1.0) return 1.0;
  cpu::scale_inplace(g, n, static_cast<float>(coef));
  return coef;
}

double clip_grad_norm(float* g, int64_t n, double max_norm) {
  const double norm = global_grad_norm(g, n);
  clip_grads(g, n, norm, max_norm);
  return norm;
}

}  // namespace dyt::trainer
