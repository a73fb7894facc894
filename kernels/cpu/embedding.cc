// Token embedding lookup and its scatter-add backward.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/check.h"
#include "kernels/cpu_ops.h"
#include "kernels/op_params.h"

namespace dyt::cpu {

using namespace detail;

namespace {

// Checked before any write, so a bad batch leaves the outputs untouched.
// kAbsentToken is a row on another tensor-parallel rank.
void check_tokens(const char* op, const Tensor& tokens, int64_t vocab) {
  const int32_t* t = tokens.i32();
  for (int64_t n = 0; n < tokens.numel(); ++n)
    if ((t[n] < 0 || t[n] >= vocab) && t[n] != kernels::kAbsentToken)
      fail(op, "token id " + std::to_string(t[n]) + " at position " + std::to_string(n) +
                   " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

}  // namespace

void embedding_forward(const Tensor& tokens, const Tensor& table, Tensor& out) {
  const char* op = "embedding_forward";
  require_i32(op, "tokens", tokens);
  require_f32(op, "table", table);
  require_f32(op, "out", out);
  require(table.rank == 2, op, "table must be rank 2 [V, d], got " + shape_str(table));
  const int64_t vocab = table.shape[0], d = table.shape[1], n = tokens.numel();
  require_rows(op, "out", out, n, d);
  check_tokens(op, tokens, vocab);
  const int32_t* tok = tokens.i32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    if (tok[r] == kernels::kAbsentToken)
      std::memset(out.f32() + r * d, 0, d * sizeof(float));
    else
      std::memcpy(out.f32() + r * d, table.f32() + int64_t{tok[r]} * d, d * sizeof(float));
  }
}

// Threads own disjoint column blocks and walk the rows in order, so every
// table entry receives its contributions in row order: no races, and the same
// bits as a serial loop on any thread count, with no V×d partial buffers.
void embedding_backward(const Tensor& tokens, const Tensor& dout, Tensor& dtable) {
  const char* op = "embedding_backward";
  require_i32(op, "tokens", tokens);
  require_f32(op, "dout", dout);
  require_f32(op, "dtable", dtable);
  require(dtable.rank == 2, op, "dtable must be rank 2 [V, d], got " + shape_str(dtable));
  const int64_t vocab = dtable.shape[0], d = dtable.shape[1], n = tokens.numel();
  require_rows(op, "dout", dout, n, d);
  check_tokens(op, tokens, vocab);
  const int32_t* tok = tokens.i32();
  constexpr int64_t kCols = 64;  // 256 bytes: whole cache lines per thread
  const int64_t blocks = (d + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kCols, c1 = std::min(d, c0 + kCols);
    for (int64_t r = 0; r < n; ++r) {
      if (tok[r] == kernels::kAbsentToken) continue;
      float* dst = dtable.f32() + int64_t{tok[r]} * d;
      const float* src = dout.f32() + r * d;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace dyt::cpu
