// The MPI world as a Communicator, and the process-wide MPI session.
#pragma once

#include <mpi.h>

#include <memory>
#include <vector>

#include "parallel/communicator.h"

namespace dyt::parallel {

// True when this process was started by an MPI launcher (mpirun/mpiexec,
// srun with PMI/PMIx): programs then start MPI; a plain start stays a single
// process without touching MPI, so it needs no launcher, no network and
// none of MPI's rules (e.g. Open MPI's refusal to run as root).
bool launched_by_mpi();

// MPI_Init on construction (MPI_THREAD_FUNNELED: OpenMP threads never call
// MPI), MPI_Finalize on destruction; one per process.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// An MPI communicator: MPI_COMM_WORLD, or a group split from it. Sums are
// reduce-scatter + all-gather with a fixed order: rank r owns the r-th of
// `size` near-equal chunks, receives that chunk from every rank
// (MPI_Alltoallv), adds the copies in rank order, and the owned sums are
// gathered back (MPI_Allgatherv). Each rank sends and receives about
// 2·(size−1)/size of the buffer, as a ring all-reduce does. MPI's own
// reductions are never used for floating point: their order is the
// library's choice.
//
// Buffers go in segments of at most `segment` elements per call pair (the
// scratch memory bound, and every count within an MPI int); tests pass a
// small one to reach the multi-segment paths with small buffers. Splits
// inherit it.
class MpiCommunicator final : public Communicator {
 public:
  static constexpr size_t kDefaultSegment = size_t{1} << 24;  // 64 MiB of floats
  explicit MpiCommunicator(size_t segment = kDefaultSegment);
  ~MpiCommunicator() override;  // frees a split's MPI_Comm
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // Aborts MPI_COMM_WORLD even from a group: the other groups would wait.
  [[noreturn]] void abort(int code) override;
  std::unique_ptr<Communicator> split(int colour, int key) override;

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
  MpiCommunicator(MPI_Comm comm, size_t segment);
  template <class T>
  void sum_in_rank_order(T* data, size_t n);
  template <class T>
  void reduce_scatter_in_rank_order(const T* in, T* out, size_t count_per_rank);
  template <class T>
  void gather(const T* in, T* out, size_t count_per_rank);
  MPI_Comm comm_ = MPI_COMM_WORLD;
  size_t segment_ = kDefaultSegment;
  int rank_ = 0, size_ = 1;
  std::vector<unsigned char> scratch_, scratch2_;
};

}  // namespace dyt::parallel
