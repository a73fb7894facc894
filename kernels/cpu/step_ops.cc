// The gradient norm's sum of squares, clipping's scale and AdamW's element
// loop over flat fp32 buffers. Every element (or chunk) is independent and
// combined in a fixed order, so results do not depend on the thread count.
#include <cmath>
#include <vector>

#include "kernels/cpu_ops.h"
#include "kernels/optimizer_math.h"

namespace dyt::cpu {
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

double sum_squares(const float* g, int64_t n) {
  constexpr int64_t chunk = kernels::kSumSquaresChunk;
  if (n <= 0) return 0.0;
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks == 1) return chunk_sum_squares(g, n);
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * chunk;
    const int64_t len = n - begin < chunk ? n - begin : chunk;
    partial[static_cast<size_t>(c)] = chunk_sum_squares(g + begin, len);
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

void scale_inplace(float* g, int64_t n, float factor) {
#pragma omp parallel for schedule(static) if (n > kernels::kSumSquaresChunk)
  for (int64_t i = 0; i < n; ++i) g[i] *= factor;
}

void adamw_step(float* p_, const float* g_, float* m_, float* v_,
                const std::vector<kernels::ParamSegment>& segments, const kernels::AdamWScalars& s) {
  float* __restrict m = m_;
  float* __restrict v = v_;
  float* __restrict p = p_;
  const float* __restrict g = g_;
  int64_t total = 0;
  for (const kernels::ParamSegment& seg : segments) total += seg.end - seg.begin;

#pragma omp parallel if (total > 65536)
  for (const kernels::ParamSegment& seg : segments) {
    const bool decay = seg.decay;
    const kernels::AdamWScalars local = s;  // a private copy: lets the loop vectorize
#pragma omp for schedule(static) nowait
    for (int64_t i = seg.begin; i < seg.end; ++i) kernels::adamw_update(p[i], m[i], v[i], g[i], local, decay);
  }
}

}  // namespace dyt::cpu
