// NCCL as a Communicator, for the CUDA backend.
//
// ***  EVERY BUFFER IS A DEVICE POINTER  ***
// The float/double collectives and broadcast of an NcclCommunicator take
// pointers to memory on this communicator's GPU (device_buffers() is true),
// never host memory; passing a host pointer is an NCCL error ("invalid
// argument") or a crash inside NCCL. allreduce_max and barrier take and give
// host values (they stage through a small device buffer of their own).
//
// Stream semantics: the collectives are enqueued on the communicator's stream
// and return before they run, like kernels: their inputs must be ready in
// that stream's order and their outputs are ready when the stream reaches
// them (synchronize(), or an event). allreduce_max and barrier wait for the
// stream (they return a host value / mean "every rank got here").
// The calls are counted on enqueue, by the convention of communicator.h.
//
// Determinism: the sums are NCCL's, not in rank order. With the settings of
// nccl_env.h (pinned at creation) a layout gives the same bits every run on
// the same machine; reduce_scatter_sum is NOT guaranteed to give the bits of
// the all-reduce's slice, unlike the MPI communicator (docs/parallel.md).
//
// Errors: every failed NCCL or CUDA call throws std::runtime_error naming
// the call and NCCL's (or CUDA's) error string; asynchronous NCCL errors are
// checked after every call (ncclCommGetAsyncError).
//
// Lifetime, in this order of destruction:
//   1. every NcclCommunicator (splits included) — destruction is collective
//      over its group (ncclCommFinalize waits until the group is quiescent),
//      so every rank destroys a group's communicators in the same order;
//   2. its stream (the caller's);
//   3. the host communicator it was made from (it is kept by reference for
//      abort and split), then the MpiSession.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "parallel/communicator.h"

struct ncclComm;  // nccl.h: typedef struct ncclComm* ncclComm_t

namespace dyt::parallel {

class NcclCommunicator final : public Communicator {
 public:
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool device_buffers() const override { return true; }
  // ncclCommAbort, then the host communicator's abort (MPI_Abort of the world).
  [[noreturn]] void abort(int code) override;
  // Collective over this group: splits the host group (MPI_Comm_split) and
  // the NCCL communicator (ncclCommSplit, NCCL >= 2.18; before that a fresh
  // id broadcast over the host split) with the same colour and key, so both
  // order the ranks alike (key, then rank here). The child uses the same
  // stream and device and owns its host group.
  std::unique_ptr<Communicator> split(int colour, int key) override;

  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  // Waits for everything enqueued on the stream, then checks NCCL's
  // asynchronous error state.
  void synchronize();

 protected:
  void do_allreduce_sum(float* data, size_t n) override;
  void do_allreduce_sum(double* data, size_t n) override;
  void do_reduce_scatter_sum(const float* in, float* out, size_t count_per_rank) override;
  void do_reduce_scatter_sum(const double* in, double* out, size_t count_per_rank) override;
  void do_allgather(const float* in, float* out, size_t count_per_rank) override;
  void do_allgather(const double* in, double* out, size_t count_per_rank) override;
  void do_allgather(const uint16_t* in, uint16_t* out, size_t count_per_rank) override;
  int64_t do_allreduce_max(int64_t value) override;
  void do_barrier() override;
  void do_broadcast(void* data, size_t bytes, int root) override;
  void do_reduce_sum(float* data, size_t n, int root) override;

 private:
  friend std::unique_ptr<NcclCommunicator> make_nccl_communicator(Communicator& host_group, cudaStream_t stream);
  // The creation path of make_nccl_communicator and of split's fallback
  // (owned: the host split the child keeps; null for the first).
  static std::unique_ptr<NcclCommunicator> create(Communicator& host, std::unique_ptr<Communicator> owned,
                                                  cudaStream_t stream);
  NcclCommunicator(ncclComm* comm, Communicator& host, std::unique_ptr<Communicator> owned_host,
                   cudaStream_t stream, int device);
  void check_async(const char* after);
  int64_t max_on_device(int64_t value, const char* call);

  ncclComm* comm_ = nullptr;
  Communicator& host_;
  std::unique_ptr<Communicator> owned_host_;  // a split's host group; null for the first
  cudaStream_t stream_ = nullptr;
  int device_ = 0, rank_ = 0, size_ = 1;
  int64_t* scratch_ = nullptr;  // one int64 on the device for allreduce_max and barrier
};

// Collective over host_group (an MpiCommunicator, or a LocalCommunicator for
// one process): pins NCCL's determinism settings (nccl_env.h; refused when
// contradicted), then rank 0 of the group makes an ncclUniqueId and
// broadcasts it over host_group, and every rank joins with ncclCommInitRank
// on the CURRENT CUDA device (cudaSetDevice first: one GPU per rank). The
// NCCL group has host_group's ranks in host_group's order. A failure before
// NCCL starts (no device, a refused setting) is agreed over host_group with
// an allreduce_max, and one of ncclGetUniqueId on rank 0 is broadcast with
// the id, so in both cases every rank throws rather than waiting; a failure
// inside ncclCommInitRank throws on the rank that saw it, whose caller must
// abort() the job (the others wait in NCCL). Creation adds one allreduce_max
// and one broadcast of 132 bytes to host_group's counters.
std::unique_ptr<NcclCommunicator> make_nccl_communicator(Communicator& host_group, cudaStream_t stream);

// The NCCL library's version as NCCL_VERSION_CODE counts it (e.g. 22809 for
// 2.28.9), read from the library at run time (ncclGetVersion).
int nccl_runtime_version();

}  // namespace dyt::parallel
