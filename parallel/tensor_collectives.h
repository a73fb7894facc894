// The collectives of one group on a backend's tensors: what the
// tensor-parallel model calls (all-reduce of a partial sum, all-gather and
// reduce-scatter of row blocks for sequence parallelism) and what the step
// calls for gradients. It hides where the bytes travel: a CPU tensor goes to
// the host communicator as it is; a device tensor goes to the device
// communicator (NCCL) when there is one, or else is staged through host
// memory. A BF16 tensor is converted to F32 on the device first, summed in
// fp32 and rounded back, either way.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "parallel/communicator.h"

namespace dyt::parallel {

class TensorCollectives {
 public:
  // comm: the group's host communicator; device: the same group's
  // communicator of device buffers (device_buffers() true), or null.
  TensorCollectives(Communicator& comm, kernels::Backend& backend, Communicator* device = nullptr);

  // The host communicator (host values: the loss's statistics, norms).
  Communicator& comm() const { return comm_; }
  // Where this group's tensors travel.
  Communicator& tensor_comm() const { return device_ ? *device_ : comm_; }
  int size() const { return comm_.size(); }
  int rank() const { return comm_.rank(); }

  // x ← Σ over the group of x (F32 or BF16), in rank order.
  void allreduce_sum(const kernels::Tensor& x);
  // full [size·n, d] ← every rank's local [n, d], in rank order.
  void allgather_rows(const kernels::Tensor& local, const kernels::Tensor& full);
  // local [n, d] ← rows [rank·n, (rank+1)·n) of Σ over the group of full [size·n, d].
  void reduce_scatter_rows(const kernels::Tensor& full, const kernels::Tensor& local);

 private:
  // The tensor's values as F32 where tensor_comm() reads them: the tensor
  // itself when it is F32 and already there, else a staging copy (host
  // memory, or the device twin of a BF16 tensor).
  float* stage_in(const kernels::Tensor& t, std::vector<float>& host, bool twin_for_output = false);
  void stage_out(const float* values, const kernels::Tensor& t);
  bool direct(const kernels::Tensor& t) const;
  float* twin(int64_t numel, int which);
  float* host_out(const kernels::Tensor& t);

  Communicator& comm_;
  kernels::Backend& backend_;
  Communicator* device_;
  std::vector<float> in_, out_;
  kernels::Buffer twins_[2];  // F32 twins of BF16 tensors (input, output; grow to the largest)
};

}  // namespace dyt::parallel
