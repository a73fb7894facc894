// Causal grouped-query attention, flash style in what it keeps: the forward
// saves only each query row's log-sum-exp, and the backward recomputes the
// probabilities from it. Nothing T×T outlives a call; inside one, a task
// works on a block of kRows query rows at a time (a kRows × T scratch).
//
// Why the forward normalises through lse (p = exp(s − lse), not
// exp(s − m) / Σ): the backward recomputes exactly that expression from the
// same scores (the same sgemm call on the same block), so the forward's
// output and the backward's gradients belong to one function, bit for bit.
//
// The products are strided sgemm calls straight on the [B·T, H·hd]
// activations, one per query-row block; a block of rows [i0, i1) only meets
// keys [0, i1), so the masked upper triangle is skipped block by block.
// OpenMP splits (batch, head) tasks in the forward and (batch, KV head)
// tasks in the backward, whose query heads and row blocks add into dk/dv in a
// fixed order; each BLAS call runs single-threaded inside the parallel region
// (see tiled_sgemm.h), so the bits do not depend on the thread count.
//
// Compiled with -fno-trapping-math (kernels/CMakeLists.txt): without it GCC 12
// leaves the p = exp(s − lse) loops scalar and attention takes 1.8x the CPU time.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/check.h"
#include "kernels/cpu_ops.h"
#include "kernels/elementwise.h"

namespace dyt::cpu {

using namespace detail;

namespace {

// Query rows per block. Part of the numerics: the forward and the backward
// must cut the rows the same way so that they compute the same scores.
constexpr int64_t kRows = 64;

struct Dims {
  int64_t B, T, Hq, Hkv, hd, group, qs, ks;  // qs, ks: row strides of q and k/v
  float scale;                               // 1/sqrt(hd)
};

Dims check_dims(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& lse, int64_t batch, int64_t seq_len, int64_t n_heads,
                int64_t n_kv_heads) {
  require_f32(op, "q", q);
  require_f32(op, "k", k);
  require_f32(op, "v", v);
  require_f32(op, "lse", lse);
  require(batch > 0 && seq_len > 0 && n_heads > 0 && n_kv_heads > 0, op,
          "batch, seq_len, n_heads and n_kv_heads must be positive");
  require(n_heads % n_kv_heads == 0, op,
          "n_heads " + std::to_string(n_heads) + " is not a multiple of n_kv_heads " +
              std::to_string(n_kv_heads));
  const int64_t width = last_dim(q);
  require(width % n_heads == 0 && width > 0, op,
          "q width " + std::to_string(width) + " is not a positive multiple of n_heads " +
              std::to_string(n_heads));
  Dims d{batch, seq_len, n_heads, n_kv_heads, width / n_heads, n_heads / n_kv_heads, width, 0, 0};
  d.ks = n_kv_heads * d.hd;
  d.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.hd)));
  const int64_t rows = batch * seq_len;
  require_rows(op, "q", q, rows, d.qs);
  require_rows(op, "k", k, rows, d.ks);
  require_rows(op, "v", v, rows, d.ks);
  require_numel(op, "lse", lse, batch * n_heads * seq_len);
  return d;
}

// S[r, j] = scale · q_{i0+r} · k_j for the rows [i0, i0 + rb) and keys
// [0, i0 + rb), leading dimension kv (= i0 + rb). The one place scores are
// computed, so the forward and the backward get the same bits.
void scores(const Dims& d, const float* q_bh, const float* k_bg, int64_t i0, int64_t rb, float* S) {
  const int64_t kv = i0 + rb;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rb), static_cast<int>(kv),
              static_cast<int>(d.hd), d.scale, q_bh + i0 * d.qs, static_cast<int>(d.qs), k_bg,
              static_cast<int>(d.ks), 0.0f, S, static_cast<int>(kv));
}

// Scratch of n floats starting on a 64-byte boundary, so that the forward's
// and the backward's vector loops see their rows at the same alignment.
struct Scratch {
  explicit Scratch(size_t n) : buf(n + 16) {}
  float* data() {
    const auto a = reinterpret_cast<uintptr_t>(buf.data());
    return reinterpret_cast<float*>((a + 63) & ~uintptr_t{63});
  }
  std::vector<float> buf;
};

// Row r of a block (query i = i0 + r, keys 0..i): p_j = exp(s_j − lse) in
// place, zero above the diagonal up to the block's last key.
void probs_row(float* p, int64_t i, int64_t kv, float lse) {
#pragma omp simd
  for (int64_t j = 0; j <= i; ++j) p[j] = kernels::exp_f32(p[j] - lse);
  std::fill(p + i + 1, p + kv, 0.0f);
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t batch,
                       int64_t seq_len, int64_t n_heads, int64_t n_kv_heads, Tensor& out,
                       Tensor& lse) {
  const char* op = "attention_forward";
  const Dims d = check_dims(op, q, k, v, lse, batch, seq_len, n_heads, n_kv_heads);
  require_f32(op, "out", out);
  require_rows(op, "out", out, d.B * d.T, d.qs);
  const int64_t T = d.T;

  // One independent task per (batch, head); the BLAS calls run
  // single-threaded inside the parallel region, so the threads split the
  // heads instead of each small product.
#pragma omp parallel
  {
    Scratch S(static_cast<size_t>(std::min(kRows, T) * T));
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t h = 0; h < d.Hq; ++h) {
        const float* q_bh = q.f32() + b * T * d.qs + h * d.hd;
        const int64_t kvoff = b * T * d.ks + (h / d.group) * d.hd;
        float* o_bh = out.f32() + b * T * d.qs + h * d.hd;
        float* lse_bh = lse.f32() + (b * d.Hq + h) * T;
        for (int64_t i0 = 0; i0 < T; i0 += kRows) {
          const int64_t rb = std::min(kRows, T - i0), kv = i0 + rb;
          scores(d, q_bh, k.f32() + kvoff, i0, rb, S.data());
          for (int64_t r = 0; r < rb; ++r) {
            const int64_t i = i0 + r;  // query i sees keys 0..i
            float* p = S.data() + r * kv;
            float m = p[0];
            for (int64_t j = 1; j <= i; ++j) m = std::max(m, p[j]);
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j <= i; ++j) sum += kernels::exp_f32(p[j] - m);
            lse_bh[i] = m + static_cast<float>(std::log(sum));
            probs_row(p, i, kv, lse_bh[i]);
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rb),
                      static_cast<int>(d.hd), static_cast<int>(kv), 1.0f, S.data(),
                      static_cast<int>(kv), v.f32() + kvoff, static_cast<int>(d.ks), 0.0f,
                      o_bh + i0 * d.qs, static_cast<int>(d.qs));
        }
      }
  }
}

// Per block of query rows, with P = exp(S − lse), dP = dO Vᵀ and dS = P ⊙ (dP − D):
//   dQ = scale · dS K,  dK += scale · dSᵀ Q,  dV += Pᵀ dO  (summed over the group).
//
// D_i = Σ_j p_ij dP_ij / Σ_j p_ij, in double, not the flash kernels'
// rowsum(dO ⊙ O). The softmax gradient is blind to a shift of a row's scores
// (Σ_j dS_ij = 0), and dq_i = Σ_j dS_ij k_j relies on it wherever the keys
// share a large common part. The recomputed p_ij sum to 1 + ε_i, ε_i ~
// 6e-8·|lse_i| from lse's rounding to float and the same for the whole row;
// rowsum(dO ⊙ O) = Σ_j p_ij dP_ij (+ O's rounding) then leaves Σ_j dS_ij =
// −ε_i·D_i, and so does a D rounded to float. On the trained tiny model
// (parity_dyt_trained) that put the saturated layers' q/k gradients 10-20×
// further from float64 than PyTorch float32; dividing by the row's own Σ p
// keeps them within it. `out` is therefore only checked, not read.
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, int64_t batch, int64_t seq_len,
                        int64_t n_heads, int64_t n_kv_heads, Tensor& dq, Tensor& dk, Tensor& dv) {
  const char* op = "attention_backward";
  const Dims d = check_dims(op, q, k, v, lse, batch, seq_len, n_heads, n_kv_heads);
  require_f32(op, "out", out);
  require_f32(op, "dout", dout);
  require_f32(op, "dq", dq);
  require_f32(op, "dk", dk);
  require_f32(op, "dv", dv);
  const int64_t rows = d.B * d.T;
  require_rows(op, "out", out, rows, d.qs);
  require_rows(op, "dout", dout, rows, d.qs);
  require_rows(op, "dq", dq, rows, d.qs);
  require_rows(op, "dk", dk, rows, d.ks);
  require_rows(op, "dv", dv, rows, d.ks);
  const int64_t T = d.T, hd = d.hd;
  // One task per (batch, KV head): its query heads, and each head's row
  // blocks, run in order inside the task, so dk/dv sum in a fixed order.
#pragma omp parallel
  {
    const size_t block = static_cast<size_t>(std::min(kRows, T) * T);
    Scratch P(block), dS(block);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t g = 0; g < d.Hkv; ++g) {
        const int64_t kvoff = b * T * d.ks + g * hd;
        float* dk_bg = dk.f32() + kvoff;
        float* dv_bg = dv.f32() + kvoff;
        for (int64_t t = 0; t < T; ++t) {  // the blocks below add into dk, dv
          std::fill(dk_bg + t * d.ks, dk_bg + t * d.ks + hd, 0.0f);
          std::fill(dv_bg + t * d.ks, dv_bg + t * d.ks + hd, 0.0f);
        }
        for (int64_t h = g * d.group; h < (g + 1) * d.group; ++h) {
          const int64_t qoff = b * T * d.qs + h * hd;
          const float* lse_bh = lse.f32() + (b * d.Hq + h) * T;
          for (int64_t i0 = 0; i0 < T; i0 += kRows) {
            const int64_t rb = std::min(kRows, T - i0), kv = i0 + rb;
            const int ikv = static_cast<int>(kv), irb = static_cast<int>(rb);
            const int ihd = static_cast<int>(hd), iqs = static_cast<int>(d.qs);
            const int iks = static_cast<int>(d.ks);
            const float* q_blk = q.f32() + qoff + i0 * d.qs;
            const float* do_blk = dout.f32() + qoff + i0 * d.qs;
            scores(d, q.f32() + qoff, k.f32() + kvoff, i0, rb, P.data());
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, irb, ikv, ihd, 1.0f, do_blk, iqs,
                        v.f32() + kvoff, iks, 0.0f, dS.data(), ikv);
            for (int64_t r = 0; r < rb; ++r) {
              const int64_t i = i0 + r;
              float* p = P.data() + r * kv;
              float* gr = dS.data() + r * kv;
              probs_row(p, i, kv, lse_bh[i]);
              double dot = 0.0, psum = 0.0;
#pragma omp simd reduction(+ : dot, psum)
              for (int64_t j = 0; j <= i; ++j) {
                dot += static_cast<double>(p[j]) * gr[j];
                psum += p[j];
              }
              const double D = dot / psum;
              for (int64_t j = 0; j <= i; ++j)
                gr[j] = static_cast<float>(d.scale * p[j] * (gr[j] - D));
              std::fill(gr + i + 1, gr + kv, 0.0f);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, irb, ihd, ikv, 1.0f, dS.data(),
                        ikv, k.f32() + kvoff, iks, 0.0f, dq.f32() + qoff + i0 * d.qs, iqs);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ikv, ihd, irb, 1.0f, dS.data(),
                        ikv, q_blk, iqs, 1.0f, dk_bg, iks);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ikv, ihd, irb, 1.0f, P.data(), ikv,
                        do_blk, iqs, 1.0f, dv_bg, iks);
          }
        }
      }
  }
}

}  // namespace dyt::cpu
