// Run under mpirun with one GPU per rank (CTest parallel.mpi_nccl_2): the
// NCCL communicator over several ranks, which needs a machine with several
// GPUs. Where there are fewer GPUs on a node than ranks on it (CI, which has
// none; the one-GPU machines this project is lent) every rank agrees over
// MPI to skip, rank 0 says why, and every rank exits 77 (CTest's
// SKIP_RETURN_CODE: the test shows as skipped, not passed). Before that,
// where a rank has no GPU at all, creation must be refused on every rank by
// name (cudaGetDevice on that rank, "another rank" on the others) without a
// hang: that part runs in CI, and a wrong refusal exits 1.
//
// For the world and for its split into two groups (colour = rank % 2):
//  - allreduce_sum run twice gives the same bits, on every rank the same
//    bits (the GPU contract), and is within p·2⁻²³ (float) / p·2⁻⁵² (double)
//    of Σ|x| of the rank-order sum computed here (NCCL's order is its own);
//  - reduce_scatter_sum is rank r's slice of the sum, to the same bound;
//  - allgather returns every member's input exactly (it only moves bytes);
//  - reduce_sum onto the last rank, in place: the sum there, to the same
//    bound; the other ranks' buffers unchanged;
//  - broadcast from the last rank gives its bytes; allreduce_max the max;
//  - the counters equal the convention's formulas, written out again here.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"

namespace {

using dyt::parallel::Collective;
using dyt::parallel::CommStats;
using dyt::parallel::Communicator;
using dyt::parallel::Traffic;

int bad = 0;
int world_rank = 0;

void fail(const std::string& what) {
  if (bad++ < 20) std::fprintf(stderr, "rank %d: %s\n", world_rank, what.c_str());
}

void cuda(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(call) + ": " + cudaGetErrorString(e));
}

template <class T>
T value(int rank, size_t i) {
  uint64_t h = (static_cast<uint64_t>(rank) + 1) * 0x9e3779b97f4a7c15ull ^ (i * 0xbf58476d1ce4e5b9ull);
  h ^= h >> 31;
  const double u = static_cast<double>(h >> 11) * 0x1p-53 - 0.5;
  return static_cast<T>(std::ldexp(u, static_cast<int>(h % 40) - 20));
}

template <class T>
int64_t hash(const std::vector<T>& v) {
  uint64_t h = 1469598103934665603ull;
  const auto* b = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(T); ++i) h = (h ^ b[i]) * 1099511628211ull;
  return static_cast<int64_t>(h >> 1);
}

template <class T>
struct Device {
  T* p = nullptr;
  size_t n;
  explicit Device(size_t count) : n(count) { cuda(cudaMalloc(reinterpret_cast<void**>(&p), (n ? n : 1) * sizeof(T)), "cudaMalloc"); }
  ~Device() { cudaFree(p); }
  void put(const std::vector<T>& v) { cuda(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy"); }
  std::vector<T> get() const {
    std::vector<T> v(n);
    cuda(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return v;
  }
};

struct Group {
  const char* name;
  dyt::parallel::NcclCommunicator& comm;
  std::vector<int> members;  // world ranks, in group order
  CommStats want;
  int p() const { return comm.size(); }
  void expect(Collective c, uint64_t sent, uint64_t received) {
    Traffic& t = want.kind[static_cast<int>(c)];
    t.calls += 1;
    t.bytes_sent += sent;
    t.bytes_received += received;
  }
  void same_everywhere(int64_t h, const std::string& what) {
    const int64_t hi = comm.allreduce_max(h), lo = -comm.allreduce_max(-h);
    for (int k = 0; k < 2; ++k) expect(Collective::allreduce_max, 8ull * (p() - 1), 8ull * (p() - 1));
    if (hi != h || lo != h) fail(std::string(name) + ": " + what + " differs between ranks");
  }
};

template <class T>
void check_sums(Group& g, size_t c, const char* type) {
  const size_t p = static_cast<size_t>(g.p()), n = p * c, r = static_cast<size_t>(g.comm.rank());
  const std::string what = std::string(g.name) + " " + type + " c=" + std::to_string(c);
  const double eps = sizeof(T) == 4 ? 0x1p-23 : 0x1p-52;
  std::vector<T> in(n), want(n), mine_in(c);
  std::vector<double> mag(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    in[i] = value<T>(g.members[r], i);
    want[i] = value<T>(g.members[0], i);
    mag[i] = std::fabs(static_cast<double>(want[i]));
    for (size_t j = 1; j < p; ++j) {
      want[i] += value<T>(g.members[j], i);
      mag[i] += std::fabs(static_cast<double>(value<T>(g.members[j], i)));
    }
  }
  for (size_t i = 0; i < c; ++i) mine_in[i] = in[r * c + i];
  Device<T> a(n), b(n), rs(c), own(c), ag(n);
  a.put(in);
  b.put(in);
  g.comm.allreduce_sum(a.p, n);
  g.comm.allreduce_sum(b.p, n);
  Device<T> src(n);
  src.put(in);
  g.comm.reduce_scatter_sum(src.p, rs.p, c);
  own.put(mine_in);
  g.comm.allgather(own.p, ag.p, c);
  g.comm.synchronize();
  const std::vector<T> sum = a.get(), again = b.get(), slice = rs.get(), gathered = ag.get();
  for (int k = 0; k < 2; ++k)
    g.expect(Collective::allreduce_sum, 2 * (p - 1) * c * sizeof(T), 2 * (p - 1) * c * sizeof(T));
  g.expect(Collective::reduce_scatter_sum, (p - 1) * c * sizeof(T), (p - 1) * c * sizeof(T));
  g.expect(Collective::allgather, (p - 1) * c * sizeof(T), (p - 1) * c * sizeof(T));
  if (n && std::memcmp(sum.data(), again.data(), n * sizeof(T)) != 0)
    fail(what + ": two all-reduces of the same input differ");
  for (size_t i = 0; i < n; ++i)
    if (!(std::fabs(static_cast<double>(sum[i]) - static_cast<double>(want[i])) <= p * eps * mag[i])) {
      fail(what + ": all-reduce element " + std::to_string(i) + " is " + std::to_string(sum[i]) + ", sum " +
           std::to_string(want[i]));
      break;
    }
  for (size_t i = 0; i < c; ++i)
    if (!(std::fabs(static_cast<double>(slice[i]) - static_cast<double>(want[r * c + i])) <= p * eps * mag[r * c + i])) {
      fail(what + ": reduce-scatter element " + std::to_string(i) + " is not its slice of the sum");
      break;
    }
  for (size_t j = 0; j < p; ++j)
    for (size_t i = 0; i < c; ++i)
      if (gathered[j * c + i] != value<T>(g.members[j], j * c + i)) {
        fail(what + ": all-gather block " + std::to_string(j) + " is not that member's input");
        j = p;
        break;
      }
  g.same_everywhere(hash(sum), what + " all-reduce");
  if constexpr (sizeof(T) == 4) {
    const int root = g.p() - 1;
    Device<T> red(n);
    red.put(in);
    g.comm.reduce_sum(red.p, n, root);
    g.comm.synchronize();
    const std::vector<T> got = red.get();
    if (g.comm.rank() == root)
      g.expect(Collective::reduce_sum, 0, (p - 1) * n * sizeof(T));
    else
      g.expect(Collective::reduce_sum, n * sizeof(T), 0);
    for (size_t i = 0; i < n; ++i) {
      const bool ok = g.comm.rank() == root
                          ? std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i])) <= p * eps * mag[i]
                          : std::memcmp(&got[i], &in[i], sizeof(T)) == 0;
      if (!ok) {
        fail(what + ": reduce element " + std::to_string(i) +
             (g.comm.rank() == root ? " is not the sum" : " changed off the root"));
        break;
      }
    }
  }
}

void check_group(Group& g) {
  for (size_t c : {size_t{1}, size_t{1001}}) {
    check_sums<float>(g, c, "float");
    check_sums<double>(g, c, "double");
  }
  const int root = g.p() - 1;
  std::vector<int32_t> v(5, world_rank);
  Device<int32_t> d(v.size());
  d.put(v);
  g.comm.broadcast(d.p, v.size() * sizeof(int32_t), root);
  g.comm.synchronize();
  const uint64_t b = v.size() * sizeof(int32_t);
  if (g.comm.rank() == root)
    g.expect(Collective::broadcast, (g.p() - 1) * b, 0);
  else
    g.expect(Collective::broadcast, 0, b);
  for (int32_t x : d.get())
    if (x != g.members[root]) {
      fail(std::string(g.name) + ": broadcast gave " + std::to_string(x));
      break;
    }
  const int64_t m = g.comm.allreduce_max(100 - world_rank);
  g.expect(Collective::allreduce_max, 8ull * (g.p() - 1), 8ull * (g.p() - 1));
  if (m != 100 - g.members[0]) fail(std::string(g.name) + ": allreduce_max is " + std::to_string(m));
  for (int k = 0; k < dyt::parallel::kCollectiveKinds; ++k) {
    const Traffic got = g.comm.stats().kind[k], want = g.want.kind[k];
    if (!(got == want))
      fail(std::string(g.name) + " " + dyt::parallel::collective_name(static_cast<Collective>(k)) + ": counted " +
           std::to_string(got.calls) + " calls " + std::to_string(got.bytes_sent) + "/" +
           std::to_string(got.bytes_received) + " B, want " + std::to_string(want.calls) + " calls " +
           std::to_string(want.bytes_sent) + "/" + std::to_string(want.bytes_received));
  }
}

}  // namespace

int main(int argc, char** argv) {
  dyt::parallel::MpiSession session(&argc, &argv);
  int rc = 0;
  {
    dyt::parallel::MpiCommunicator world;
    world_rank = world.rank();
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    const char* local_n = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int local_rank = local ? std::atoi(local) : world.rank();
    const int local_size = local_n ? std::atoi(local_n) : world.size();
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess) gpus = 0;
    const int64_t short_of_gpus = world.allreduce_max(gpus < local_size ? 1 : 0);
    // Where some rank has no GPU at all, creation must be refused on every
    // rank, by name, without a hang (the group agrees before any id moves).
    if (world.allreduce_max(gpus == 0 ? 1 : 0) != 0) {
      const std::string want = gpus == 0 ? "make_nccl_communicator: cudaGetDevice failed: "
                                         : "another rank of the group failed to prepare NCCL";
      try {
        dyt::parallel::make_nccl_communicator(world, nullptr);
        fail("make_nccl_communicator without a GPU was not refused");
      } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(want) == std::string::npos)
          fail(std::string("refusal says \"") + e.what() + "\", want \"" + want + "\"");
      }
      if (world.allreduce_max(bad) != 0) return 1;
    }
    if (short_of_gpus != 0 || world.size() < 2) {
      if (world.rank() == 0)
        std::printf("SKIP: %d ranks need one GPU each (this node has %d) and at least 2 ranks: "
                    "the multi-rank NCCL check is not run\n", world.size(), gpus);
      return 77;
    }
    try {
      cuda(cudaSetDevice(local_rank), "cudaSetDevice");
      cudaStream_t stream = nullptr;
      cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
      {
        auto nccl = dyt::parallel::make_nccl_communicator(world, stream);
        Group w{"world", *nccl, {}, {}};
        for (int j = 0; j < world.size(); ++j) w.members.push_back(j);
        check_group(w);
        auto half = nccl->split(world.rank() % 2, world.rank());
        auto* hp = dynamic_cast<dyt::parallel::NcclCommunicator*>(half.get());
        if (hp == nullptr) throw std::runtime_error("split of an NcclCommunicator is not one");
        auto& h = *hp;
        Group g{"split", h, {}, {}};
        for (int j = world.rank() % 2; j < world.size(); j += 2) g.members.push_back(j);
        if (h.size() != static_cast<int>(g.members.size()) || g.members[h.rank()] != world.rank())
          fail("split: rank " + std::to_string(h.rank()) + " of " + std::to_string(h.size()) + " is not as ordered");
        else
          check_group(g);
      }
      cudaStreamDestroy(stream);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "rank %d: %s\n", world.rank(), e.what());
      world.abort(1);
    }
    const int64_t total = world.allreduce_max(bad);
    if (world.rank() == 0) std::printf(total == 0 ? "PASS (%d ranks)\n" : "FAIL\n", world.size());
    rc = total == 0 ? 0 : 1;
  }
  return rc;
}
