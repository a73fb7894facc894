#include "trainer/grad_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dyt::trainer {
namespace {

// Σ x² over one chunk in a fixed order: eight interleaved double
// accumulators (vectorisable, still deterministic), then combined in order.
double chunk_sum_squares(const float* g, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double x = g[i + k];
      acc[k] += x * x;
    }
  for (int k = 0; i < n; ++i, ++k) {
    const double x = g[i];
    acc[k] += x * x;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

double grad_sum_squares(const float* g, int64_t n) {
  if (n <= 0) return 0.0;
  const int64_t chunks = (n + kNormChunk - 1) / kNormChunk;
  if (chunks == 1) return chunk_sum_squares(g, n);
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kNormChunk;
    const int64_t len = std::min(kNormChunk, n - begin);
    partial[static_cast<size_t>(c)] = chunk_sum_squares(g + begin, len);
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

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
  const float c = static_cast<float>(coef);
#pragma omp parallel for schedule(static) if (n > kNormChunk)
  for (int64_t i = 0; i < n; ++i) g[i] *= c;
  return coef;
}

double clip_grad_norm(float* g, int64_t n, double max_norm) {
  const double norm = global_grad_norm(g, n);
  clip_grads(g, n, norm, max_norm);
  return norm;
}

}  // namespace dyt::trainer
