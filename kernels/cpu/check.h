// Argument validation shared by the CPU ops. Every failure throws
// std::invalid_argument("<op>: <what>") so the caller sees which op and which
// argument disagreed. Activations may have any rank; they are viewed as
// [rows, last dim].
#pragma once

#include <cstdint>
#include <string>

#include "kernels/tensor.h"

namespace dyt::cpu::detail {

using kernels::Tensor;

[[noreturn]] void fail(const char* op, const std::string& what);
std::string shape_str(const Tensor& t);

// dtype F32 (or I32, F64), device CPU, data non-null when the tensor is non-empty.
void require_f32(const char* op, const char* name, const Tensor& t);
void require_i32(const char* op, const char* name, const Tensor& t);
void require_f64(const char* op, const char* name, const Tensor& t);

// t viewed as [rows, cols]: rank >= 1, last dim == cols, numel == rows·cols.
void require_rows(const char* op, const char* name, const Tensor& t, int64_t rows, int64_t cols);
// Exactly rank 2 with the given shape (weights, tables).
void require_matrix(const char* op, const char* name, const Tensor& t, int64_t rows, int64_t cols);
// Exactly rank 1 of length n (per-channel parameters γ, β).
void require_vector(const char* op, const char* name, const Tensor& t, int64_t n);
void require_numel(const char* op, const char* name, const Tensor& t, int64_t n);
void require(bool ok, const char* op, const std::string& what);

inline int64_t last_dim(const Tensor& t) { return t.rank == 0 ? 1 : t.shape[t.rank - 1]; }
inline int64_t row_count(const Tensor& t) {
  const int64_t w = last_dim(t);
  return w == 0 ? 0 : t.numel() / w;
}

}  // namespace dyt::cpu::detail
