// Run under mpirun (CTest parallel.mpi_collectives, 3 ranks): the MPI
// communicator's sums against the fixed rank-order sum computed here from
// every rank's inputs, bit for bit, for sizes below, at and above the rank
// count and uneven ones; the same twice; and the max. Prints PASS on rank 0,
// exits non-zero on any rank that sees a difference.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
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
