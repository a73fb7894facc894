#include "parallel/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
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
template <>
MPI_Datatype mpi_type<uint16_t>() { return MPI_UINT16_T; }

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

MpiCommunicator::MpiCommunicator(size_t segment) : MpiCommunicator(MPI_COMM_WORLD, segment) {}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, size_t segment) : comm_(comm), segment_(segment) {
  if (segment_ < 1 || segment_ > static_cast<size_t>(INT_MAX))
    throw std::invalid_argument("MpiCommunicator: segment " + std::to_string(segment) +
                                " elements is outside [1, INT_MAX]");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_WORLD && !finalized) MPI_Comm_free(&comm_);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int colour, int key) {
  if (colour < 0)
    throw std::invalid_argument("split: colour " + std::to_string(colour) + " is negative");
  MPI_Comm group = MPI_COMM_NULL;
  check(MPI_Comm_split(comm_, colour, key, &group), "MPI_Comm_split");
  return std::unique_ptr<Communicator>(new MpiCommunicator(group, segment_));
}

template <class T>
void MpiCommunicator::sum_in_rank_order(T* data, size_t n) {
  if (size_ == 1 || n == 0) return;
  const size_t p = static_cast<size_t>(size_);
  const size_t segment = std::max(segment_, p);
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
                        recv_displs.data(), mpi_type<T>(), comm_),
          "MPI_Alltoallv");
    T* own = seg + displs[rank_];
    for (int i = 0; i < mine; ++i) {
      T s = copies[i];
      for (size_t r = 1; r < p; ++r) s += copies[r * static_cast<size_t>(mine) + i];
      own[i] = s;
    }
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, seg, counts.data(), displs.data(),
                         mpi_type<T>(), comm_),
          "MPI_Allgatherv");
  }
}

// The reduce-scatter half of sum_in_rank_order with the chunks given: in
// rounds of m ≤ segment/p elements of every chunk, packed contiguous
// (chunk r's piece at r·m) so every count and displacement fits an int
// however large the buffer; the copies are added in rank order exactly as
// sum_in_rank_order adds them, so the bits are the all-reduce's.
template <class T>
void MpiCommunicator::reduce_scatter_in_rank_order(const T* in, T* out, size_t count) {
  if (count == 0) return;
  const size_t p = static_cast<size_t>(size_);
  if (p == 1) {
    std::memcpy(out, in, count * sizeof(T));
    return;
  }
  const size_t round = std::max<size_t>(1, segment_ / p);
  for (size_t b = 0; b < count; b += round) {
    const size_t m = std::min(round, count - b);
    scratch_.resize(sizeof(T) * m * p);
    scratch2_.resize(sizeof(T) * m * p);
    T* send = reinterpret_cast<T*>(scratch_.data());
    T* copies = reinterpret_cast<T*>(scratch2_.data());
    for (size_t r = 0; r < p; ++r) std::memcpy(send + r * m, in + r * count + b, m * sizeof(T));
    check(MPI_Alltoall(send, static_cast<int>(m), mpi_type<T>(), copies, static_cast<int>(m), mpi_type<T>(),
                       comm_),
          "MPI_Alltoall");
    for (size_t i = 0; i < m; ++i) {
      T s = copies[i];
      for (size_t r = 1; r < p; ++r) s += copies[r * m + i];
      out[b + i] = s;
    }
  }
}

// One MPI_Allgather straight into out when the whole fits a round, else in
// rounds through scratch (out's rank-r block starts at r·count, which need
// not fit an int).
template <class T>
void MpiCommunicator::gather(const T* in, T* out, size_t count) {
  if (count == 0) return;
  const size_t p = static_cast<size_t>(size_);
  const size_t round = std::max<size_t>(1, segment_ / p);
  if (count <= round) {
    check(MPI_Allgather(in, static_cast<int>(count), mpi_type<T>(), out, static_cast<int>(count),
                        mpi_type<T>(), comm_),
          "MPI_Allgather");
    return;
  }
  for (size_t b = 0; b < count; b += round) {
    const size_t m = std::min(round, count - b);
    scratch_.resize(sizeof(T) * m * p);
    T* pieces = reinterpret_cast<T*>(scratch_.data());
    check(MPI_Allgather(in + b, static_cast<int>(m), mpi_type<T>(), pieces, static_cast<int>(m), mpi_type<T>(),
                        comm_),
          "MPI_Allgather");
    for (size_t r = 0; r < p; ++r) std::memcpy(out + r * count + b, pieces + r * m, m * sizeof(T));
  }
}

void MpiCommunicator::do_allreduce_sum(float* data, size_t n) { sum_in_rank_order(data, n); }
void MpiCommunicator::do_allreduce_sum(double* data, size_t n) { sum_in_rank_order(data, n); }
void MpiCommunicator::do_reduce_scatter_sum(const float* in, float* out, size_t c) {
  reduce_scatter_in_rank_order(in, out, c);
}
void MpiCommunicator::do_reduce_scatter_sum(const double* in, double* out, size_t c) {
  reduce_scatter_in_rank_order(in, out, c);
}
void MpiCommunicator::do_allgather(const float* in, float* out, size_t c) { gather(in, out, c); }
void MpiCommunicator::do_allgather(const double* in, double* out, size_t c) { gather(in, out, c); }
void MpiCommunicator::do_allgather(const uint16_t* in, uint16_t* out, size_t c) { gather(in, out, c); }

// In rounds of at most segment/p elements gathered onto the root, which adds
// the copies in rank order exactly as sum_in_rank_order does (the same bits
// as the all-reduce). The root reads its own round before writing it, so
// in place is safe.
void MpiCommunicator::do_reduce_sum(float* data, size_t n, int root) {
  if (size_ == 1 || n == 0) return;
  const size_t p = static_cast<size_t>(size_);
  const size_t round = std::max<size_t>(1, segment_ / p);
  for (size_t b = 0; b < n; b += round) {
    const size_t m = std::min(round, n - b);
    float* copies = nullptr;
    if (rank_ == root) {
      scratch_.resize(sizeof(float) * m * p);
      copies = reinterpret_cast<float*>(scratch_.data());
    }
    check(MPI_Gather(data + b, static_cast<int>(m), MPI_FLOAT, copies, static_cast<int>(m), MPI_FLOAT, root,
                     comm_),
          "MPI_Gather");
    if (rank_ != root) continue;
    for (size_t i = 0; i < m; ++i) {
      float s = copies[i];
      for (size_t r = 1; r < p; ++r) s += copies[r * m + i];
      data[b + i] = s;
    }
  }
}

int64_t MpiCommunicator::do_allreduce_max(int64_t value) {
  int64_t out = value;
  check(MPI_Allreduce(&value, &out, 1, MPI_INT64_T, MPI_MAX, comm_), "MPI_Allreduce");
  return out;
}

void MpiCommunicator::do_barrier() { check(MPI_Barrier(comm_), "MPI_Barrier"); }

// In pieces of at most 1 GiB, so every count fits an MPI int.
void MpiCommunicator::do_broadcast(void* data, size_t bytes, int root) {
  constexpr size_t kPiece = size_t{1} << 30;
  auto* b = static_cast<unsigned char*>(data);
  for (size_t at = 0; at < bytes; at += kPiece)
    check(MPI_Bcast(b + at, static_cast<int>(std::min(kPiece, bytes - at)), MPI_BYTE, root, comm_), "MPI_Bcast");
}

void MpiCommunicator::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

}  // namespace dyt::parallel
