#include "parallel/communicator.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace dyt::parallel {
namespace {

// [a, a + na) and [b, b + nb) share a byte (as integers: comparing pointers
// into different objects is unspecified).
bool overlap(const void* a, size_t na, const void* b, size_t nb) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return na != 0 && nb != 0 && x < y + nb && y < x + na;
}

void check_buffer(const void* p, size_t n, const char* call, const char* arg, const char* unit = "elements") {
  if (n != 0 && p == nullptr)
    throw std::invalid_argument(std::string(call) + ": " + arg + " is null with " + std::to_string(n) + " " +
                                unit);
}

// size()·count_per_rank elements, refused when it does not fit a size_t.
size_t whole(size_t count_per_rank, int p, const char* call, size_t elem) {
  if (count_per_rank > SIZE_MAX / elem / static_cast<size_t>(p))
    throw std::invalid_argument(std::string(call) + ": count_per_rank " + std::to_string(count_per_rank) +
                                " × " + std::to_string(p) + " ranks overflows");
  return count_per_rank * static_cast<size_t>(p);
}

Traffic both_ways(uint64_t bytes) { return Traffic{1, bytes, bytes}; }

}  // namespace

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::allreduce_sum: return "allreduce_sum";
    case Collective::reduce_scatter_sum: return "reduce_scatter_sum";
    case Collective::allgather: return "allgather";
    case Collective::allreduce_max: return "allreduce_max";
    case Collective::barrier: return "barrier";
    case Collective::broadcast: return "broadcast";
    case Collective::reduce_sum: return "reduce_sum";
  }
  return "?";
}

Traffic& Traffic::operator+=(const Traffic& o) {
  calls += o.calls;
  bytes_sent += o.bytes_sent;
  bytes_received += o.bytes_received;
  return *this;
}

Traffic& Traffic::operator-=(const Traffic& o) {
  calls -= o.calls;
  bytes_sent -= o.bytes_sent;
  bytes_received -= o.bytes_received;
  return *this;
}

CommStats CommStats::operator-(const CommStats& earlier) const {
  CommStats d = *this;
  for (int k = 0; k < kCollectiveKinds; ++k) d.kind[k] -= earlier.kind[k];
  return d;
}

Traffic CommStats::total() const {
  Traffic t;
  for (const Traffic& k : kind) t += k;
  return t;
}

Traffic allreduce_traffic(size_t n, size_t elem_bytes, int p, int rank) {
  const uint64_t pp = static_cast<uint64_t>(p), r = static_cast<uint64_t>(rank);
  // n·(r+1) in 128 bits: n can be billions and p thousands.
  const auto bound = [&](uint64_t c) {
    return static_cast<uint64_t>(static_cast<unsigned __int128>(n) * c / pp);
  };
  const uint64_t own = bound(r + 1) - bound(r);
  return both_ways(((n - own) + (pp - 1) * own) * elem_bytes);
}

Traffic reduce_scatter_traffic(size_t count_per_rank, size_t elem_bytes, int p) {
  return both_ways(static_cast<uint64_t>(p - 1) * count_per_rank * elem_bytes);
}

Traffic allgather_traffic(size_t count_per_rank, size_t elem_bytes, int p) {
  return both_ways(static_cast<uint64_t>(p - 1) * count_per_rank * elem_bytes);
}

Traffic allreduce_max_traffic(int p) { return both_ways(static_cast<uint64_t>(p - 1) * sizeof(int64_t)); }

Traffic broadcast_traffic(size_t bytes, int p, int rank, int root) {
  if (rank == root) return Traffic{1, static_cast<uint64_t>(p - 1) * bytes, 0};
  return Traffic{1, 0, bytes};
}

Traffic reduce_traffic(size_t n, size_t elem_bytes, int p, int rank, int root) {
  const uint64_t bytes = static_cast<uint64_t>(n) * elem_bytes;
  if (rank == root) return Traffic{1, 0, static_cast<uint64_t>(p - 1) * bytes};
  return Traffic{1, bytes, 0};
}

void Communicator::count(Collective c, const Traffic& t) { stats_.kind[static_cast<int>(c)] += t; }

template <class T>
void Communicator::allreduce_sum_counted(T* data, size_t n) {
  check_buffer(data, n, "allreduce_sum", "data");
  do_allreduce_sum(data, n);
  count(Collective::allreduce_sum, allreduce_traffic(n, sizeof(T), size(), rank()));
}

template <class T>
void Communicator::reduce_scatter_counted(const T* in, T* out, size_t count_per_rank) {
  const size_t n = whole(count_per_rank, size(), "reduce_scatter_sum", sizeof(T));
  check_buffer(in, n, "reduce_scatter_sum", "in");
  check_buffer(out, count_per_rank, "reduce_scatter_sum", "out");
  if (overlap(in, n * sizeof(T), out, count_per_rank * sizeof(T)))
    throw std::invalid_argument("reduce_scatter_sum: in and out overlap");
  do_reduce_scatter_sum(in, out, count_per_rank);
  count(Collective::reduce_scatter_sum, reduce_scatter_traffic(count_per_rank, sizeof(T), size()));
}

template <class T>
void Communicator::allgather_counted(const T* in, T* out, size_t count_per_rank) {
  const size_t n = whole(count_per_rank, size(), "allgather", sizeof(T));
  check_buffer(in, count_per_rank, "allgather", "in");
  check_buffer(out, n, "allgather", "out");
  if (overlap(in, count_per_rank * sizeof(T), out, n * sizeof(T)))
    throw std::invalid_argument("allgather: in and out overlap");
  do_allgather(in, out, count_per_rank);
  count(Collective::allgather, allgather_traffic(count_per_rank, sizeof(T), size()));
}

void Communicator::allreduce_sum(float* data, size_t n) { allreduce_sum_counted(data, n); }
void Communicator::allreduce_sum(double* data, size_t n) { allreduce_sum_counted(data, n); }
void Communicator::reduce_scatter_sum(const float* in, float* out, size_t c) { reduce_scatter_counted(in, out, c); }
void Communicator::reduce_scatter_sum(const double* in, double* out, size_t c) {
  reduce_scatter_counted(in, out, c);
}
void Communicator::allgather(const float* in, float* out, size_t c) { allgather_counted(in, out, c); }
void Communicator::allgather(const double* in, double* out, size_t c) { allgather_counted(in, out, c); }
void Communicator::allgather(const uint16_t* in, uint16_t* out, size_t c) { allgather_counted(in, out, c); }

int64_t Communicator::allreduce_max(int64_t value) {
  const int64_t out = do_allreduce_max(value);
  count(Collective::allreduce_max, allreduce_max_traffic(size()));
  return out;
}

void Communicator::barrier() {
  do_barrier();
  count(Collective::barrier, Traffic{1, 0, 0});
}

void Communicator::broadcast(void* data, size_t bytes, int root) {
  check_buffer(data, bytes, "broadcast", "data", "bytes");
  if (root < 0 || root >= size())
    throw std::invalid_argument("broadcast: root " + std::to_string(root) + " is not a rank of this group of " +
                                std::to_string(size()));
  do_broadcast(data, bytes, root);
  count(Collective::broadcast, broadcast_traffic(bytes, size(), rank(), root));
}

void Communicator::reduce_sum(float* data, size_t n, int root) {
  check_buffer(data, n, "reduce_sum", "data");
  if (root < 0 || root >= size())
    throw std::invalid_argument("reduce_sum: root " + std::to_string(root) + " is not a rank of this group of " +
                                std::to_string(size()));
  do_reduce_sum(data, n, root);
  count(Collective::reduce_sum, reduce_traffic(n, sizeof(float), size(), rank(), root));
}

void LocalCommunicator::abort(int code) { std::exit(code); }

std::unique_ptr<Communicator> LocalCommunicator::split(int colour, int) {
  if (colour < 0)
    throw std::invalid_argument("split: colour " + std::to_string(colour) + " is negative");
  return std::make_unique<LocalCommunicator>();
}

void LocalCommunicator::do_reduce_scatter_sum(const float* in, float* out, size_t c) {
  if (c) std::memcpy(out, in, c * sizeof(float));
}
void LocalCommunicator::do_reduce_scatter_sum(const double* in, double* out, size_t c) {
  if (c) std::memcpy(out, in, c * sizeof(double));
}
void LocalCommunicator::do_allgather(const float* in, float* out, size_t c) {
  if (c) std::memcpy(out, in, c * sizeof(float));
}
void LocalCommunicator::do_allgather(const double* in, double* out, size_t c) {
  if (c) std::memcpy(out, in, c * sizeof(double));
}
void LocalCommunicator::do_allgather(const uint16_t* in, uint16_t* out, size_t c) {
  if (c) std::memcpy(out, in, c * sizeof(uint16_t));
}

}  // namespace dyt::parallel
