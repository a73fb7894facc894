// A communicator of "device buffers" for the emulated CUDA backend, whose
// device memory is host memory: it runs every collective on an MPI
// communicator of the same ranks (its own split of the host group, so its
// counters are its own, as an NCCL communicator's are) and says
// device_buffers() == true, so TrainStep, TpGradSync and TensorCollectives
// take their non-staged device path (no host copies, chunks copied by the
// backend) exactly as they do with NCCL on a GPU. Sums are the MPI
// communicator's rank-order sums, so the direct path must give the staged
// path's bits.
#pragma once

#include <cstdlib>
#include <memory>

#include "parallel/communicator.h"

namespace dyt::testing {

class DeviceBuffersComm final : public parallel::Communicator {
 public:
  // Collective over host (it splits it).
  explicit DeviceBuffersComm(parallel::Communicator& host) : inner_(host.split(0, host.rank())) {}
  explicit DeviceBuffersComm(std::unique_ptr<parallel::Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool device_buffers() const override { return true; }
  [[noreturn]] void abort(int code) override {
    inner_->abort(code);
    std::abort();  // not reached: the inner abort ends the job
  }
  std::unique_ptr<parallel::Communicator> split(int colour, int key) override {
    return std::make_unique<DeviceBuffersComm>(inner_->split(colour, key));
  }

 protected:
  void do_allreduce_sum(float* d, size_t n) override { inner_->allreduce_sum(d, n); }
  void do_allreduce_sum(double* d, size_t n) override { inner_->allreduce_sum(d, n); }
  void do_reduce_scatter_sum(const float* in, float* out, size_t c) override { inner_->reduce_scatter_sum(in, out, c); }
  void do_reduce_scatter_sum(const double* in, double* out, size_t c) override {
    inner_->reduce_scatter_sum(in, out, c);
  }
  void do_allgather(const float* in, float* out, size_t c) override { inner_->allgather(in, out, c); }
  void do_allgather(const double* in, double* out, size_t c) override { inner_->allgather(in, out, c); }
  void do_allgather(const uint16_t* in, uint16_t* out, size_t c) override { inner_->allgather(in, out, c); }
  int64_t do_allreduce_max(int64_t v) override { return inner_->allreduce_max(v); }
  void do_barrier() override { inner_->barrier(); }
  void do_broadcast(void* d, size_t b, int root) override { inner_->broadcast(d, b, root); }
  void do_reduce_sum(float* d, size_t n, int root) override { inner_->reduce_sum(d, n, root); }

 private:
  std::unique_ptr<parallel::Communicator> inner_;
};

}  // namespace dyt::testing
