#include "parallel/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace dyt::parallel {
namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw std::runtime_error(std::string(what) + " failed: " + std::string(text, len));
}

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

// Elements per segment of one pair of collective calls: bounds the scratch
// buffer (a segment's worth: 64 MiB of floats) whatever the rank count, and
// keeps every count within an MPI int however large the buffer.
constexpr size_t kSegment = size_t{1} << 24;

}  // namespace

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
}

MpiSession::~MpiSession() { MPI_Finalize(); }

MpiCommunicator::MpiCommunicator() {
  check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
}

template <class T>
void MpiCommunicator::sum_in_rank_order(T* data, size_t n) {
  if (size_ == 1 || n == 0) return;
  const size_t p = static_cast<size_t>(size_);
  const size_t segment = std::max(kSegment, p);
  std::vector<int> counts(p), displs(p), recv_counts(p), recv_displs(p);
  for (size_t base = 0; base < n; base += segment) {
    const size_t m = std::min(segment, n - base);
    T* seg = data + base;
    for (size_t c = 0; c < p; ++c) {
      const size_t begin = m * c / p, end = m * (c + 1) / p;
      counts[c] = static_cast<int>(end - begin);
      displs[c] = static_cast<int>(begin);
    }
    const int mine = counts[rank_];
    for (size_t r = 0; r < p; ++r) {
      recv_counts[r] = mine;
      recv_displs[r] = static_cast<int>(r) * mine;
    }
    scratch_.resize(sizeof(T) * static_cast<size_t>(mine) * p);
    T* copies = reinterpret_cast<T*>(scratch_.data());
    check(MPI_Alltoallv(seg, counts.data(), displs.data(), mpi_type<T>(), copies, recv_counts.data(),
                        recv_displs.data(), mpi_type<T>(), MPI_COMM_WORLD),
          "MPI_Alltoallv");
    T* own = seg + displs[rank_];
    for (int i = 0; i < mine; ++i) {
      T s = copies[i];
      for (size_t r = 1; r < p; ++r) s += copies[r * static_cast<size_t>(mine) + i];
      own[i] = s;
    }
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, seg, counts.data(), displs.data(),
                         mpi_type<T>(), MPI_COMM_WORLD),
          "MPI_Allgatherv");
  }
}

void MpiCommunicator::allreduce_sum(float* data, size_t n) { sum_in_rank_order(data, n); }
void MpiCommunicator::allreduce_sum(double* data, size_t n) { sum_in_rank_order(data, n); }

int64_t MpiCommunicator::allreduce_max(int64_t value) {
  int64_t out = value;
  check(MPI_Allreduce(&value, &out, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  return out;
}

void MpiCommunicator::barrier() { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

void MpiCommunicator::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

}  // namespace dyt::parallel
