// A non-owning view of a dense, row-major tensor: pointer, dtype, device, shape.
// Ops in kernels/ take views and never allocate the tensors they are handed.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/shape_text.h"

namespace dyt::kernels {

enum class DType { F32, BF16, I32, F64 };
enum class Device { CPU, CUDA };

inline int64_t dtype_size(DType t) {
  return t == DType::BF16 ? 2 : t == DType::F64 ? 8 : 4;
}

struct Tensor {
  static constexpr int kMaxRank = 4;

  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  int rank = 0;
  std::array<int64_t, kMaxRank> shape{};

  Tensor() = default;
  Tensor(void* ptr, DType t, Device dev, std::initializer_list<int64_t> dims)
      : data(ptr), dtype(t), device(dev) {
    if (dims.size() > kMaxRank) throw std::invalid_argument("Tensor: rank above 4");
    for (int64_t d : dims) shape[rank++] = d;
  }

  int64_t size(int i) const { return shape[i < 0 ? rank + i : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  float* f32() const { return static_cast<float*>(data); }
  int32_t* i32() const { return static_cast<int32_t*>(data); }
  double* f64() const { return static_cast<double*>(data); }
};

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::F64: return "F64";
  }
  return "?";
}

using dyt::shape_text;
inline std::string shape_text(const Tensor& t) { return shape_text(t.shape, t.rank); }

// Views of host fp32 / int32 memory, the common case on the CPU path.
inline Tensor cpu_f32(float* p, std::initializer_list<int64_t> dims) {
  return Tensor(p, DType::F32, Device::CPU, dims);
}
inline Tensor cpu_i32(int32_t* p, std::initializer_list<int64_t> dims) {
  return Tensor(p, DType::I32, Device::CPU, dims);
}

}  // namespace dyt::kernels
