#include "parallel/tensor_collectives.h"

#include <stdexcept>
#include <string>

namespace dyt::parallel {

using kernels::DType;
using kernels::Tensor;

namespace {

int64_t rows_of(const Tensor& t) { return t.rank == 0 ? 1 : t.shape[0]; }

void require_rows(const char* op, const Tensor& local, const Tensor& full, int size) {
  if (local.dtype != full.dtype || rows_of(full) != rows_of(local) * size ||
      local.numel() * size != full.numel())
    throw std::invalid_argument(std::string(op) + ": full " + kernels::shape_text(full) +
                                " is not " + std::to_string(size) + " row blocks of local " +
                                kernels::shape_text(local));
}

}  // namespace

TensorCollectives::TensorCollectives(Communicator& comm, kernels::Backend& backend, Communicator* device)
    : comm_(comm), backend_(backend), device_(device) {
  if (device && (!device->device_buffers() || device->size() != comm.size() ||
                 backend.device() == kernels::Device::CPU))
    throw std::invalid_argument("TensorCollectives: a device communicator must take device buffers, "
                                "hold the host group's ranks and serve a device backend");
}

bool TensorCollectives::direct(const Tensor& t) const {
  const bool on_cpu = backend_.device() == kernels::Device::CPU;
  return t.dtype == DType::F32 && (device_ ? !on_cpu : on_cpu);
}

float* TensorCollectives::twin(int64_t numel, int which) {
  kernels::Buffer& b = twins_[which];
  if (b.numel() < numel) b = backend_.allocate(DType::F32, numel);
  return b.view({numel}, 0).f32();
}

float* TensorCollectives::stage_in(const Tensor& t, std::vector<float>& host, bool twin_for_output) {
  if (direct(t)) return t.f32();
  if (t.dtype != DType::F32 && t.dtype != DType::BF16)
    throw std::invalid_argument(std::string("TensorCollectives: ") + kernels::dtype_name(t.dtype) +
                                " tensors are not summed or gathered");
  const int64_t n = t.numel();
  const int which = twin_for_output ? 1 : 0;
  if (t.dtype == DType::BF16) {
    // On the device in fp32: the device communicator reads the twin itself.
    twin(n, which);
    const Tensor tw = twins_[which].view({n}, 0);
    backend_.convert(kernels::reshape(t, {n}), tw);
    if (device_) return tw.f32();
    host.resize(static_cast<size_t>(n));
    backend_.download(tw, host.data());
    return host.data();
  }
  host.resize(static_cast<size_t>(n));  // F32 on a device, with a host communicator
  backend_.download(t, host.data());
  return host.data();
}

void TensorCollectives::stage_out(const float* values, const Tensor& t) {
  if (direct(t)) return;  // the collective wrote the tensor itself
  const int64_t n = t.numel();
  if (t.dtype == DType::F32) {
    backend_.upload(values, t);
    return;
  }
  // BF16: values are the output twin (device communicator) or host memory.
  twin(n, 1);
  const Tensor tw = twins_[1].view({n}, 0);
  if (!device_) backend_.upload(values, tw);
  backend_.convert(tw, kernels::reshape(t, {n}));
}

void TensorCollectives::allreduce_sum(const Tensor& x) {
  if (comm_.size() == 1) return;
  // In place: the input's staging is also the output's.
  float* v = stage_in(x, in_, true);
  tensor_comm().allreduce_sum(v, static_cast<size_t>(x.numel()));
  stage_out(v, x);
}

void TensorCollectives::allgather_rows(const Tensor& local, const Tensor& full) {
  require_rows("allgather_rows", local, full, comm_.size());
  if (comm_.size() == 1 && local.data == full.data) return;
  const float* in = stage_in(local, in_);
  float* out = direct(full) ? full.f32() : device_ && full.dtype == DType::BF16 ? twin(full.numel(), 1)
                                                                             : host_out(full);
  tensor_comm().allgather(in, out, static_cast<size_t>(local.numel()));
  stage_out(out, full);
}

void TensorCollectives::reduce_scatter_rows(const Tensor& full, const Tensor& local) {
  require_rows("reduce_scatter_rows", local, full, comm_.size());
  if (comm_.size() == 1 && local.data == full.data) return;
  const float* in = stage_in(full, in_);
  float* out = direct(local) ? local.f32()
                             : device_ && local.dtype == DType::BF16 ? twin(local.numel(), 1)
                                                                     : host_out(local);
  tensor_comm().reduce_scatter_sum(in, out, static_cast<size_t>(local.numel()));
  stage_out(out, local);
}

float* TensorCollectives::host_out(const Tensor& t) {
  out_.resize(static_cast<size_t>(t.numel()));
  return out_.data();
}

}  // namespace dyt::parallel
