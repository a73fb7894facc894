#include "trainer/param_store.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace dyt::trainer {

using kernels::DType;
using kernels::Tensor;

ParamStore::ParamStore(const ParamLayout& layout, kernels::Backend& backend, DType compute_dtype,
                       int64_t padded_total)
    : layout_(layout), backend_(backend), compute_dtype_(compute_dtype) {
  if (compute_dtype != DType::F32 && compute_dtype != DType::BF16)
    throw std::invalid_argument("ParamStore: compute dtype must be F32 or BF16");
  if (padded_total < 0)
    throw std::invalid_argument("ParamStore: padded_total must be >= 0, got " +
                                std::to_string(padded_total));
  const int64_t n = std::max(layout.total(), padded_total);
  master_ = backend.allocate(DType::F32, n);  // zero-filled: the padding stays zero
  grads_ = backend.allocate(DType::F32, n);
  if (compute_dtype == DType::BF16) work_ = backend.allocate(DType::BF16, layout.total());
}

Tensor ParamStore::view(const kernels::Buffer& b, const std::string& name) const {
  const ParamEntry& e = layout_.at(name);
  switch (e.shape.size()) {
    case 1: return b.view({e.shape[0]}, e.offset);
    case 2: return b.view({e.shape[0], e.shape[1]}, e.offset);
    default: throw std::logic_error("ParamStore: tensor " + name + " has rank " +
                                    std::to_string(e.shape.size()));
  }
}

Tensor ParamStore::weight(const std::string& name) const {
  return view(has_work_copy() ? work_ : master_, name);
}
Tensor ParamStore::f32_param(const std::string& name) const { return view(master_, name); }
Tensor ParamStore::grad(const std::string& name) const { return view(grads_, name); }

void ParamStore::set_master(const float* host) {
  backend_.upload(host, master());
  refresh_work();
}

std::vector<float> ParamStore::master_to_host() const {
  std::vector<float> out(static_cast<size_t>(total()));
  backend_.download(master(), out.data());
  return out;
}

std::vector<float> ParamStore::grads_to_host() const {
  std::vector<float> out(static_cast<size_t>(total()));
  backend_.download(grads(), out.data());
  return out;
}

void ParamStore::refresh_work() {
  if (has_work_copy()) backend_.convert(master(), work_.flat());
}

void ParamStore::zero_grads() { backend_.zero(grads_padded()); }

float* ParamStore::host_master() const {
  if (backend_.device() != kernels::Device::CPU)
    throw std::logic_error("ParamStore::host_master: the parameters are not in host memory");
  return master().f32();
}

float* ParamStore::host_grads() const {
  if (backend_.device() != kernels::Device::CPU)
    throw std::logic_error("ParamStore::host_grads: the gradients are not in host memory");
  return grads().f32();
}

}  // namespace dyt::trainer
