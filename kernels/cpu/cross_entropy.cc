// Softmax cross-entropy over the vocabulary, max-subtracted for stability.
// Per-row losses are summed in double in fixed row chunks (reproducible).
#include <algorithm>
#include <cmath>

#include "kernels/cpu/check.h"
#include "kernels/cpu/row_reduce.h"
#include "kernels/cpu_ops.h"
#include "kernels/elementwise.h"
#include "kernels/op_params.h"

namespace dyt::cpu {

using namespace detail;

namespace {

// absent_ok: kAbsentToken is a target on another rank (vocab-parallel halves).
int64_t check_ce(const char* op, const Tensor& logits, const Tensor& targets, bool absent_ok = false) {
  require_f32(op, "logits", logits);
  require_i32(op, "targets", targets);
  const int64_t vocab = last_dim(logits), n = row_count(logits);
  require(vocab > 0, op, "logits have an empty vocabulary dimension");
  require_numel(op, "targets", targets, n);
  const int32_t* t = targets.i32();
  for (int64_t r = 0; r < n; ++r)
    if ((t[r] < 0 || t[r] >= vocab) && !(absent_ok && t[r] == kernels::kAbsentToken))
      fail(op, "target " + std::to_string(t[r]) + " at row " + std::to_string(r) +
                   " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  return vocab;
}

float row_max(const float* l, int64_t vocab) {
  float m = l[0];
#pragma omp simd reduction(max : m)
  for (int64_t j = 1; j < vocab; ++j) m = l[j] > m ? l[j] : m;
  return m;
}

// Σ_j exp(l_j − m), each exp in float and the sum in double.
double exp_sum(const float* l, int64_t vocab, float m) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < vocab; ++j) s += kernels::exp_f32(l[j] - m);
  return s;
}

}  // namespace

double cross_entropy_forward(const Tensor& logits, const Tensor& targets) {
  const char* op = "cross_entropy_forward";
  const int64_t vocab = check_ce(op, logits, targets);
  const int32_t* t = targets.i32();
  return reduce_row_chunks(row_count(logits), 0, 1,
                           [&](int64_t r0, int64_t r1, float*, double* loss) {
                             for (int64_t r = r0; r < r1; ++r) {
                               const float* l = logits.f32() + r * vocab;
                               const float m = row_max(l, vocab);
                               loss[0] += std::log(exp_sum(l, vocab, m)) + m - l[t[r]];
                             }
                           })
      .d[0];
}

double cross_entropy_backward(const Tensor& logits, const Tensor& targets, float grad_scale,
                              Tensor& dlogits) {
  const char* op = "cross_entropy_backward";
  const int64_t vocab = check_ce(op, logits, targets);
  require_f32(op, "dlogits", dlogits);
  require_rows(op, "dlogits", dlogits, row_count(logits), vocab);
  const int32_t* t = targets.i32();
  return reduce_row_chunks(
             row_count(logits), 0, 1,
             [&](int64_t r0, int64_t r1, float*, double* loss) {
               for (int64_t r = r0; r < r1; ++r) {
                 const float* l = logits.f32() + r * vocab;
                 float* g =
                     dlogits.f32() + r * vocab;  // may alias l: l[j] is read before g[j] is written
                 const float m = row_max(l, vocab);
                 const double lt = l[t[r]];  // read before g (maybe l) is written
                 // One exp per logit: g holds exp(l − m) until the sum is known.
                 double sum = 0.0;
#pragma omp simd reduction(+ : sum)
                 for (int64_t j = 0; j < vocab; ++j) {
                   const float e = kernels::exp_f32(l[j] - m);
                   g[j] = e;
                   sum += e;
                 }
                 const double log_sum = std::log(sum);
                 loss[0] += log_sum + m - lt;
                 const float scale = static_cast<float>(grad_scale / sum);
#pragma omp simd
                 for (int64_t j = 0; j < vocab; ++j) g[j] *= scale;
                 // p_t − 1 in double: no cancellation when the model is confident.
                 g[t[r]] = grad_scale * static_cast<float>(std::exp(lt - m - log_sum) - 1.0);
               }
             })
      .d[0];
}

void cross_entropy_stats(const Tensor& logits, const Tensor& targets, Tensor& stats) {
  const char* op = "cross_entropy_stats";
  const int64_t vocab = check_ce(op, logits, targets, true), n = row_count(logits);
  require_f64(op, "stats", stats);
  require_numel(op, "stats", stats, 3 * n);
  const int32_t* t = targets.i32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* l = logits.f32() + r * vocab;
    const float m = row_max(l, vocab);
    double* out = stats.f64() + 3 * r;
    out[0] = m;
    out[1] = exp_sum(l, vocab, m);
    out[2] = t[r] == kernels::kAbsentToken ? 0.0 : l[t[r]];
  }
}

// The same arithmetic as cross_entropy_backward with (M, S) given: at tp = 1
// (M, S) are this op's own max and sum, and the gradients agree to the bit.
void cross_entropy_grad(Tensor& logits, const Tensor& targets, const Tensor& row, float grad_scale) {
  const char* op = "cross_entropy_grad";
  const int64_t vocab = check_ce(op, logits, targets, true), n = row_count(logits);
  require_f64(op, "row", row);
  require_numel(op, "row", row, 2 * n);
  const int32_t* t = targets.i32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    float* g = logits.f32() + r * vocab;
    const float m = static_cast<float>(row.f64()[2 * r]);
    const double sum = row.f64()[2 * r + 1];
    const double log_sum = std::log(sum);
    const double lt = t[r] == kernels::kAbsentToken ? 0.0 : g[t[r]];
    const float scale = static_cast<float>(grad_scale / sum);
#pragma omp simd
    for (int64_t j = 0; j < vocab; ++j) g[j] = kernels::exp_f32(g[j] - m) * scale;
    if (t[r] != kernels::kAbsentToken)
      g[t[r]] = grad_scale * static_cast<float>(std::exp(lt - m - log_sum) - 1.0);
  }
}

}  // namespace dyt::cpu
