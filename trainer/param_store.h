// Where a model's parameters live on a backend: the fp32 master weights the
// optimizer updates, the working copy the forward and backward read (BF16
// under train.precision BF16; the master itself under FP32) and the fp32
// gradients. All three are flat with ParamLayout's offsets, so data-parallel
// reduction, clipping, checkpoints and export walk one table.
//
// The master and gradient buffers may be allocated longer than the layout
// (padded_total): ZeRO-1 reduce-scatters the gradients and all-gathers the
// master weights over dp equal chunks (trainer/dp_partition.h), which needs
// dp·chunk elements. The padding stays zero; master() and grads() are the
// layout's total elements, the *_padded() views the whole allocation.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "kernels/backend.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

class ParamStore {
 public:
  // compute_dtype: F32, or BF16 for a BF16 working copy beside the master.
  // padded_total (0 = none): allocate master and gradients with at least
  // this many elements. Throws std::invalid_argument on a bad dtype.
  ParamStore(const ParamLayout& layout, kernels::Backend& backend, kernels::DType compute_dtype,
             int64_t padded_total = 0);

  const ParamLayout& layout() const { return layout_; }
  kernels::Backend& backend() const { return backend_; }
  kernels::DType compute_dtype() const { return compute_dtype_; }
  int64_t total() const { return layout_.total(); }

  kernels::Tensor master() const { return kernels::slice(master_.flat(), 0, total()); }
  kernels::Tensor grads() const { return kernels::slice(grads_.flat(), 0, total()); }
  // The whole allocations, padding included (padded_total() elements).
  kernels::Tensor master_padded() const { return master_.flat(); }
  kernels::Tensor grads_padded() const { return grads_.flat(); }
  int64_t padded_total() const { return master_.numel(); }
  // What the GEMMs and the embedding read: the BF16 copy, or the master.
  kernels::Tensor work() const { return has_work_copy() ? work_.flat() : master(); }
  bool has_work_copy() const { return !work_.empty(); }

  // Views of the tensor named `name`: a weight or table from work(); norm
  // parameters, α and the embedding scale (F32 always) from master(); and
  // its gradient. Throws std::out_of_range naming the tensor when absent.
  kernels::Tensor weight(const std::string& name) const;
  kernels::Tensor f32_param(const std::string& name) const;
  kernels::Tensor grad(const std::string& name) const;

  // Master ← host (layout.total() floats), then the working copy from it.
  void set_master(const float* host);
  std::vector<float> master_to_host() const;
  std::vector<float> grads_to_host() const;
  // The working copy ← master, rounded (after an update made elsewhere).
  void refresh_work();
  void zero_grads();

  // Host pointers into master and gradients when the backend is the CPU
  // (tools and tests); throws std::logic_error on any other device.
  float* host_master() const;
  float* host_grads() const;

 private:
  kernels::Tensor view(const kernels::Buffer& b, const std::string& name) const;

  const ParamLayout& layout_;
  kernels::Backend& backend_;
  kernels::DType compute_dtype_;
  kernels::Buffer master_, work_, grads_;
};

}  // namespace dyt::trainer
