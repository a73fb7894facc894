#include "kernels/cpu/check.h"

#include <stdexcept>

namespace dyt::cpu::detail {

void fail(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

std::string shape_str(const Tensor& t) { return kernels::shape_text(t); }

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(op, what);
}

static void require_typed(const char* op, const char* name, const Tensor& t, kernels::DType want,
                          const char* want_name) {
  require(t.dtype == want, op, std::string(name) + " must be " + want_name);
  require(t.device == kernels::Device::CPU, op, std::string(name) + " must be a CPU tensor");
  require(t.data != nullptr || t.numel() == 0, op, std::string(name) + " has no data");
}

void require_f32(const char* op, const char* name, const Tensor& t) {
  require_typed(op, name, t, kernels::DType::F32, "F32");
}
void require_i32(const char* op, const char* name, const Tensor& t) {
  require_typed(op, name, t, kernels::DType::I32, "I32");
}

void require_f64(const char* op, const char* name, const Tensor& t) {
  require_typed(op, name, t, kernels::DType::F64, "F64");
}

void require_rows(const char* op, const char* name, const Tensor& t, int64_t rows, int64_t cols) {
  require(t.rank >= 1 && last_dim(t) == cols && t.numel() == rows * cols, op,
          std::string(name) + " has shape " + shape_str(t) + ", expected " + std::to_string(rows) +
              " rows of width " + std::to_string(cols));
}

void require_matrix(const char* op, const char* name, const Tensor& t, int64_t rows, int64_t cols) {
  require(t.rank == 2 && t.shape[0] == rows && t.shape[1] == cols, op,
          std::string(name) + " has shape " + shape_str(t) + ", expected [" + std::to_string(rows) +
              ", " + std::to_string(cols) + "]");
}

void require_vector(const char* op, const char* name, const Tensor& t, int64_t n) {
  require(
      t.rank == 1 && t.shape[0] == n, op,
      std::string(name) + " has shape " + shape_str(t) + ", expected [" + std::to_string(n) + "]");
}

void require_numel(const char* op, const char* name, const Tensor& t, int64_t n) {
  require(t.numel() == n, op,
          std::string(name) + " has shape " + shape_str(t) + ", expected " + std::to_string(n) +
              " elements");
}

}  // namespace dyt::cpu::detail
