// Causal grouped-query attention, materialising the [T, T] probabilities per
// (batch, head) — this is the reference, not a flash kernel. The products are
// strided sgemm calls straight on the [B·T, H·hd] activations; OpenMP splits
// the (batch, head) tasks and the group's query heads add into dk/dv in a
// fixed order (deterministic).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/check.h"
#include "kernels/cpu_ops.h"
#include "kernels/elementwise.h"

namespace dyt::cpu {

using namespace detail;

namespace {

struct Dims {
  int64_t B, T, Hq, Hkv, hd, group, qs, ks;  // qs, ks: row strides of q and k/v
};

Dims check_dims(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& probs, int64_t batch, int64_t seq_len, int64_t n_heads,
                int64_t n_kv_heads) {
  require_f32(op, "q", q);
  require_f32(op, "k", k);
  require_f32(op, "v", v);
  require_f32(op, "probs", probs);
  require(batch > 0 && seq_len > 0 && n_heads > 0 && n_kv_heads > 0, op,
          "batch, seq_len, n_heads and n_kv_heads must be positive");
  require(n_heads % n_kv_heads == 0, op,
          "n_heads " + std::to_string(n_heads) + " is not a multiple of n_kv_heads " +
              std::to_string(n_kv_heads));
  const int64_t width = last_dim(q);
  require(width % n_heads == 0 && width > 0, op,
          "q width " + std::to_string(width) + " is not a positive multiple of n_heads " +
              std::to_string(n_heads));
  Dims d{batch, seq_len, n_heads, n_kv_heads, width / n_heads, n_heads / n_kv_heads, width, 0};
  d.ks = n_kv_heads * d.hd;
  const int64_t rows = batch * seq_len;
  require_rows(op, "q", q, rows, d.qs);
  require_rows(op, "k", k, rows, d.ks);
  require_rows(op, "v", v, rows, d.ks);
  require_numel(op, "probs", probs, batch * n_heads * seq_len * seq_len);
  return d;
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t batch,
                       int64_t seq_len, int64_t n_heads, int64_t n_kv_heads, Tensor& out,
                       Tensor& probs) {
  const char* op = "attention_forward";
  const Dims d = check_dims(op, q, k, v, probs, batch, seq_len, n_heads, n_kv_heads);
  require_f32(op, "out", out);
  require_rows(op, "out", out, d.B * d.T, d.qs);
  const int64_t T = d.T, TT = T * T;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.hd)));
  auto q_at = [&](int64_t b, int64_t h) { return q.f32() + b * T * d.qs + h * d.hd; };
  auto kv_at = [&](const Tensor& t, int64_t b, int64_t h) {
    return t.f32() + b * T * d.ks + (h / d.group) * d.hd;
  };

  // One independent task per (batch, head): scores, causal softmax, P·V. The
  // BLAS calls run single-threaded inside the parallel region (OpenMP build of
  // OpenBLAS), so the threads split the heads instead of each tiny product.
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.Hq; ++h) {
      float* P = probs.f32() + (b * d.Hq + h) * TT;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d.hd, scale, q_at(b, h), d.qs,
                  kv_at(k, b, h), d.ks, 0.0f, P, T);
      for (int64_t i = 0; i < T; ++i) {  // query i sees keys 0..i
        float* p = P + i * T;
        float m = p[0];
        for (int64_t j = 1; j <= i; ++j) m = std::max(m, p[j]);
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j <= i; ++j) {
          p[j] = kernels::exp_f32(p[j] - m);
          sum += p[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
        std::fill(p + i + 1, p + T, 0.0f);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d.hd, T, 1.0f, P, T,
                  kv_at(v, b, h), d.ks, 0.0f, out.f32() + b * T * d.qs + h * d.hd, d.qs);
    }
}

// With dP = dO Vᵀ and dS = P ⊙ (dP − rowsum(P ⊙ dP)):
//   dQ = scale · dS K,  dK += scale · dSᵀ Q,  dV += Pᵀ dO  (summed over the group).
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const Tensor& dout, int64_t batch, int64_t seq_len, int64_t n_heads,
                        int64_t n_kv_heads, Tensor& dq, Tensor& dk, Tensor& dv) {
  const char* op = "attention_backward";
  const Dims d = check_dims(op, q, k, v, probs, batch, seq_len, n_heads, n_kv_heads);
  require_f32(op, "dout", dout);
  require_f32(op, "dq", dq);
  require_f32(op, "dk", dk);
  require_f32(op, "dv", dv);
  const int64_t rows = d.B * d.T;
  require_rows(op, "dout", dout, rows, d.qs);
  require_rows(op, "dq", dq, rows, d.qs);
  require_rows(op, "dk", dk, rows, d.ks);
  require_rows(op, "dv", dv, rows, d.ks);
  const int64_t T = d.T, TT = T * T;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.hd)));
  // One task per (batch, KV head): its query heads run in order inside the
  // task, so dk/dv sum over the group in a fixed order (deterministic).
#pragma omp parallel
  {
    std::vector<float> ds(TT);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t g = 0; g < d.Hkv; ++g)
        for (int64_t h = g * d.group; h < (g + 1) * d.group; ++h) {
          const int64_t qoff = b * T * d.qs + h * d.hd;
          const int64_t kvoff = b * T * d.ks + g * d.hd;
          const float* P = probs.f32() + (b * d.Hq + h) * TT;
          const float beta = h == g * d.group ? 0.0f : 1.0f;  // first head of the group writes

          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d.hd, 1.0f,
                      dout.f32() + qoff, d.qs, v.f32() + kvoff, d.ks, 0.0f, ds.data(), T);
          for (int64_t i = 0; i < T; ++i) {
            const float* p = P + i * T;
            float* gr = ds.data() + i * T;
            double dot = 0.0;
            for (int64_t j = 0; j <= i; ++j) dot += static_cast<double>(p[j]) * gr[j];
            const float c = static_cast<float>(dot);
            for (int64_t j = 0; j <= i; ++j) gr[j] = scale * p[j] * (gr[j] - c);
            std::fill(gr + i + 1, gr + T, 0.0f);
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d.hd, T, 1.0f, ds.data(), T,
                      k.f32() + kvoff, d.ks, 0.0f, dq.f32() + qoff, d.qs);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, d.hd, T, 1.0f, ds.data(), T,
                      q.f32() + qoff, d.qs, beta, dk.f32() + kvoff, d.ks);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, d.hd, T, 1.0f, P, T,
                      dout.f32() + qoff, d.qs, beta, dv.f32() + kvoff, d.ks);
        }
  }
}

}  // namespace dyt::cpu
