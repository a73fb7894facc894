// "[2, 3, 4]": the project's one way of writing a shape in a message, for
// every layer (kernels, checkpoint files, the trainer). Header-only, no
// dependencies, so any layer may include it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dyt {

template <class Dims>
std::string shape_text(const Dims& dims, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

inline std::string shape_text(const std::vector<int64_t>& dims) {
  return shape_text(dims, static_cast<int>(dims.size()));
}

}  // namespace dyt
