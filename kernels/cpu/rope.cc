// Rotary position embedding, rotate-half convention (Hugging Face LLaMA), in
// place on [B·T, H·hd]. The backward is the inverse rotation (sine negated).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/check.h"
#include "kernels/cpu_ops.h"
#include "kernels/elementwise.h"

namespace dyt::cpu {

using namespace detail;

namespace {

void rope_apply(const char* op, Tensor& x, int64_t seq_len, int64_t n_heads, double theta,
                float sign) {
  require_f32(op, "x", x);
  require(seq_len > 0 && n_heads > 0, op,
          "seq_len and n_heads must be positive, got " + std::to_string(seq_len) + " and " +
              std::to_string(n_heads));
  const int64_t width = last_dim(x), rows = row_count(x);
  require(width % n_heads == 0, op,
          "row width " + std::to_string(width) + " is not divisible by n_heads " +
              std::to_string(n_heads));
  const int64_t hd = width / n_heads, half = hd / 2;
  require(hd % 2 == 0, op, "head_dim " + std::to_string(hd) + " must be even");
  require(rows % seq_len == 0, op,
          std::to_string(rows) + " rows are not a whole number of sequences of length " +
              std::to_string(seq_len));
  // cos/sin per (position, pair), shared by every sample and head.
  const int64_t positions = std::min(seq_len, rows);
  std::vector<float> cs(positions * half), sn(positions * half);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double a = kernels::rope_angle(p, i, hd, theta);
      cs[p * half + i] = static_cast<float>(std::cos(a));
      sn[p * half + i] = sign * static_cast<float>(std::sin(a));
    }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cs.data() + (r % seq_len) * half;
    const float* s = sn.data() + (r % seq_len) * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x.f32() + r * width + h * hd;
      for (int64_t i = 0; i < half; ++i) kernels::rope_rotate(v[i], v[i + half], c[i], s[i]);
    }
  }
}

}  // namespace

void rope_forward(Tensor& x, int64_t seq_len, int64_t n_heads, double theta) {
  rope_apply("rope_forward", x, seq_len, n_heads, theta, 1.0f);
}

void rope_backward(Tensor& dx, int64_t seq_len, int64_t n_heads, double theta) {
  rope_apply("rope_backward", dx, seq_len, n_heads, theta, -1.0f);
}

}  // namespace dyt::cpu
