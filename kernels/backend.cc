#include "kernels/backend.h"

#include <stdexcept>
#include <string>

namespace dyt::kernels {

namespace {

int64_t count(std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("tensor view: negative dimension");
    n *= d;
  }
  return n;
}

Tensor at(const Tensor& t, int64_t offset, std::initializer_list<int64_t> shape) {
  char* base = static_cast<char*>(t.data) + offset * dtype_size(t.dtype);
  return Tensor(base, t.dtype, t.device, shape);
}

}  // namespace

Tensor Buffer::view(std::initializer_list<int64_t> shape, int64_t offset) const {
  const int64_t n = count(shape);
  if (offset < 0 || offset + n > numel_)
    throw std::out_of_range("Buffer::view: " + std::to_string(n) + " elements at offset " +
                            std::to_string(offset) + " exceed the buffer's " +
                            std::to_string(numel_));
  return at(Tensor(data_, dtype_, device_, {numel_}), offset, shape);
}

Tensor slice(const Tensor& t, int64_t offset, int64_t n) {
  if (offset < 0 || n < 0 || offset + n > t.numel())
    throw std::out_of_range("slice: " + std::to_string(n) + " elements at offset " +
                            std::to_string(offset) + " exceed the tensor's " +
                            std::to_string(t.numel()));
  return at(t, offset, {n});
}

Tensor reshape(const Tensor& t, std::initializer_list<int64_t> shape) {
  if (count(shape) != t.numel())
    throw std::invalid_argument("reshape: " + std::to_string(count(shape)) +
                                " elements asked of a tensor of " + std::to_string(t.numel()));
  return at(t, 0, shape);
}

}  // namespace dyt::kernels
