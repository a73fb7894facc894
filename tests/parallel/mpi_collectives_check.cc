// Run under mpirun (CTest parallel.mpi_collectives, 3 ranks): the MPI
// communicator's sums against the fixed rank-order sum computed here from
// every rank's inputs, bit for bit, for sizes below, at and above the rank
// count and uneven ones; the same twice; and the max. Broadcast from every
// root (root ≠ 0 included) of 0, 1, 13 and 2²⁰ + 3 bytes: every rank ends
// with the root's bytes, and the counters say (p−1)·b sent on the root and
// b received elsewhere; a root outside the group is refused by name on every
// rank (no hang) and not counted. The reduce onto every root, in place, of
// sizes around the communicator's round (a 64-element segment makes the
// multi-round path run on small buffers): the root holds the rank-order sum
// bit for bit, the others their inputs unchanged, counted as n sent off the
// root and (p−1)·n received on it; roots −1 and p refused.
// Prints PASS on rank 0, exits non-zero on any rank that sees a difference.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/mpi_communicator.h"

namespace {

// Inputs that differ by rank and index, with magnitudes spread enough that
// the order of the additions changes the bits.
template <class T>
T value(int rank, size_t i) {
  uint64_t h = (static_cast<uint64_t>(rank) + 1) * 0x9e3779b97f4a7c15ull ^ (i * 0xbf58476d1ce4e5b9ull);
  h ^= h >> 31;
  const double u = static_cast<double>(h >> 11) * 0x1p-53 - 0.5;
  return static_cast<T>(std::ldexp(u, static_cast<int>(h % 40) - 20));
}

template <class T>
int check_sum(dyt::parallel::Communicator& comm, size_t n, const char* type) {
  std::vector<T> data(n), again(n);
  for (size_t i = 0; i < n; ++i) data[i] = value<T>(comm.rank(), i);
  again = data;
  comm.allreduce_sum(data.data(), n);
  comm.allreduce_sum(again.data(), n);
  int bad = 0;
  for (size_t i = 0; i < n; ++i) {
    T want = value<T>(0, i);
    for (int r = 1; r < comm.size(); ++r) want += value<T>(r, i);
    if (std::memcmp(&data[i], &want, sizeof(T)) != 0 || std::memcmp(&again[i], &want, sizeof(T)) != 0) {
      if (bad++ == 0)
        std::fprintf(stderr, "rank %d: %s sum of %zu: element %zu is %.17g, rank-order sum %.17g\n",
                     comm.rank(), type, n, i, static_cast<double>(data[i]), static_cast<double>(want));
    }
  }
  return bad;
}

int check_broadcast(dyt::parallel::Communicator& comm) {
  using dyt::parallel::Collective;
  int bad = 0;
  const int p = comm.size(), me = comm.rank();
  for (int root = 0; root < p; ++root) {
    for (size_t bytes : {size_t{0}, size_t{1}, size_t{13}, (size_t{1} << 20) + 3}) {
      std::vector<unsigned char> data(bytes);
      for (size_t i = 0; i < bytes; ++i)
        data[i] = static_cast<unsigned char>(me == root ? (i * 131 + root * 7 + 1) % 251 : 0xEE);
      const dyt::parallel::Traffic before = comm.stats()[Collective::broadcast];
      comm.broadcast(data.data(), bytes, root);
      dyt::parallel::Traffic step = comm.stats()[Collective::broadcast];
      step -= before;
      for (size_t i = 0; i < bytes; ++i)
        if (data[i] != static_cast<unsigned char>((i * 131 + root * 7 + 1) % 251)) {
          std::fprintf(stderr, "rank %d: broadcast of %zu bytes from %d: byte %zu differs\n", me, bytes, root, i);
          ++bad;
          break;
        }
      const uint64_t sent = me == root ? static_cast<uint64_t>(p - 1) * bytes : 0;
      const uint64_t received = me == root ? 0 : bytes;
      if (!(step == dyt::parallel::Traffic{1, sent, received})) {
        std::fprintf(stderr, "rank %d: broadcast of %zu bytes from %d counted %llu calls %llu/%llu B\n", me, bytes,
                     root, static_cast<unsigned long long>(step.calls),
                     static_cast<unsigned long long>(step.bytes_sent),
                     static_cast<unsigned long long>(step.bytes_received));
        ++bad;
      }
    }
  }
  const uint64_t calls = comm.stats()[Collective::broadcast].calls;
  for (int root : {-1, p}) {
    int64_t word = 0;
    try {
      comm.broadcast(&word, sizeof word, root);
      std::fprintf(stderr, "rank %d: broadcast from root %d was not refused\n", me, root);
      ++bad;
    } catch (const std::invalid_argument& e) {
      const std::string want =
          "broadcast: root " + std::to_string(root) + " is not a rank of this group of " + std::to_string(p);
      if (std::string(e.what()).find(want) == std::string::npos) {
        std::fprintf(stderr, "rank %d: refusal says \"%s\", want \"%s\"\n", me, e.what(), want.c_str());
        ++bad;
      }
    }
  }
  if (comm.stats()[Collective::broadcast].calls != calls) {
    std::fprintf(stderr, "rank %d: a refused broadcast was counted\n", me);
    ++bad;
  }
  return bad;
}

int check_reduce(dyt::parallel::Communicator& comm) {
  using dyt::parallel::Collective;
  int bad = 0;
  const int p = comm.size(), me = comm.rank();
  for (int root = 0; root < p; ++root)
    for (size_t n : {size_t{0}, size_t{1}, size_t{20}, size_t{21}, size_t{1001}}) {
      std::vector<float> data(n);
      for (size_t i = 0; i < n; ++i) data[i] = value<float>(me, i);
      const dyt::parallel::Traffic before = comm.stats()[Collective::reduce_sum];
      comm.reduce_sum(data.data(), n, root);
      dyt::parallel::Traffic step = comm.stats()[Collective::reduce_sum];
      step -= before;
      for (size_t i = 0; i < n; ++i) {
        float want = value<float>(me, i);
        if (me == root) {
          want = value<float>(0, i);
          for (int r = 1; r < p; ++r) want += value<float>(r, i);
        }
        if (std::memcmp(&data[i], &want, sizeof(float)) != 0) {
          std::fprintf(stderr, "rank %d: reduce of %zu onto %d: element %zu is %.9g, want %.9g\n", me, n, root, i,
                       data[i], want);
          ++bad;
          break;
        }
      }
      const uint64_t bytes = n * sizeof(float);
      const dyt::parallel::Traffic want = me == root ? dyt::parallel::Traffic{1, 0, static_cast<uint64_t>(p - 1) * bytes}
                                                     : dyt::parallel::Traffic{1, bytes, 0};
      if (!(step == want)) {
        std::fprintf(stderr, "rank %d: reduce of %zu onto %d counted %llu/%llu B\n", me, n, root,
                     static_cast<unsigned long long>(step.bytes_sent),
                     static_cast<unsigned long long>(step.bytes_received));
        ++bad;
      }
    }
  for (int root : {-1, p}) {
    float x = 1;
    try {
      comm.reduce_sum(&x, 1, root);
      std::fprintf(stderr, "rank %d: reduce onto root %d was not refused\n", me, root);
      ++bad;
    } catch (const std::invalid_argument&) {
    }
  }
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  dyt::parallel::MpiSession session(&argc, &argv);
  dyt::parallel::MpiCommunicator comm;
  int bad = 0;
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{1000}, size_t{1001},
                   (size_t{1} << 20) + 3, (size_t{1} << 24) + 5}) {
    bad += check_sum<float>(comm, n, "float");
    bad += check_sum<double>(comm, n, "double");
  }
  bad += check_broadcast(comm);
  bad += check_reduce(comm);
  {
    dyt::parallel::MpiCommunicator small(64);
    bad += check_reduce(small);
  }
  if (comm.allreduce_max(10 * comm.rank() - 7) != 10 * (comm.size() - 1) - 7) {
    std::fprintf(stderr, "rank %d: allreduce_max is wrong\n", comm.rank());
    ++bad;
  }
  if (comm.size() < 2) {
    std::fprintf(stderr, "run this under mpirun with 2 or more ranks\n");
    ++bad;
  }
  const int64_t total = comm.allreduce_max(bad);
  if (comm.rank() == 0) std::printf(total == 0 ? "PASS (%d ranks)\n" : "FAIL\n", comm.size());
  return total == 0 ? 0 : 1;  // every rank fails together, so mpirun's status says it
}
