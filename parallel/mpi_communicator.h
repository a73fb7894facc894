// The MPI world as a Communicator, and the process-wide MPI session.
#pragma once

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

// MPI_COMM_WORLD. Sums are reduce-scatter + all-gather with a fixed order:
// rank r owns the r-th of `size` near-equal chunks, receives that chunk from
// every rank (MPI_Alltoallv), adds the copies in rank order, and the owned
// sums are gathered back (MPI_Allgatherv). Each rank sends and receives
// about 2·(size−1)/size of the buffer, as a ring all-reduce does.
class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator();
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* data, size_t n) override;
  void allreduce_sum(double* data, size_t n) override;
  int64_t allreduce_max(int64_t value) override;
  void barrier() override;
  [[noreturn]] void abort(int code) override;

 private:
  template <class T>
  void sum_in_rank_order(T* data, size_t n);
  int rank_ = 0, size_ = 1;
  std::vector<unsigned char> scratch_;
};

}  // namespace dyt::parallel
