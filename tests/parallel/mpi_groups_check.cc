// Run under mpirun (CTest parallel.mpi_groups_2 and _4): for every layout
// dp × tp of the world (2: 2×1, 1×2; 4: 2×2, 4×1, 1×4), the dp and tp
// groups of make_groups, and the world itself:
//  - membership and order: each group's ranks, gathered, are the world ranks
//    the mesh puts in it, in the order of the rank's index;
//  - allreduce_sum equals the rank-order sum computed here from every
//    member's inputs, bit for bit; reduce_scatter_sum equals the same slice
//    of it, bit for bit; allgather of the slices gives it back whole;
//  - the results hash the same on every rank of the group;
//  - the 16-bit all-gather (ZeRO-1's bf16 weights) puts every member's
//    words, every bit pattern of the rank's values (NaN and -0 bits too),
//    at the member's block, counted at 2 bytes a word;
//  - a broadcast from the group's last rank reaches every member;
//  - each communicator's counters equal the convention's formulas (written
//    here again from docs/parallel.md, not through the library's), and an
//    uneven all-reduce moves 2·(p−1)·n elements each way over the group.
// Once with the default segment and once with a tiny one, so buffers of a
// few thousand elements take the multi-round paths. Prints PASS on rank 0;
// every rank exits 1 on any difference.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "parallel/groups.h"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"

namespace {

using dyt::parallel::Collective;
using dyt::parallel::CommStats;
using dyt::parallel::Communicator;
using dyt::parallel::Traffic;

int bad = 0;

void fail(int world_rank, const std::string& what) {
  if (bad++ < 20) std::fprintf(stderr, "rank %d: %s\n", world_rank, what.c_str());
}

// Inputs that differ by world rank and index, with magnitudes spread enough
// that the order of the additions changes the bits.
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
  return static_cast<int64_t>(h >> 1);  // non-negative, so it can be negated
}

// A communicator under test, the world ranks of its members in group order,
// and the counters it should show (accumulated by the formulas).
struct Group {
  const char* name;
  Communicator& comm;
  std::vector<int> members;
  int world_rank;
  CommStats want;

  int p() const { return comm.size(); }
  void expect(Collective c, uint64_t bytes) { expect(c, bytes, bytes); }
  void expect(Collective c, uint64_t sent, uint64_t received) {
    Traffic& t = want.kind[static_cast<int>(c)];
    t.calls += 1;
    t.bytes_sent += sent;
    t.bytes_received += received;
  }
  // The same bits on every rank of the group.
  void same_everywhere(int64_t h, const char* what) {
    const int64_t hi = comm.allreduce_max(h), lo = -comm.allreduce_max(-h);
    for (int k = 0; k < 2; ++k) expect(Collective::allreduce_max, 8ull * (p() - 1));
    if (hi != h || lo != h) fail(world_rank, std::string(name) + ": " + what + " differs between ranks");
  }
};

void check_membership(Group& g) {
  if (g.comm.size() != static_cast<int>(g.members.size())) {
    fail(g.world_rank, std::string(g.name) + ": size " + std::to_string(g.comm.size()) + ", want " +
                           std::to_string(g.members.size()));
    return;
  }
  const double me = g.world_rank;
  std::vector<double> got(g.members.size());
  g.comm.allgather(&me, got.data(), 1);
  g.expect(Collective::allgather, 8ull * (g.p() - 1));
  for (size_t j = 0; j < got.size(); ++j)
    if (got[j] != g.members[j])
      fail(g.world_rank, std::string(g.name) + ": member " + std::to_string(j) + " is world rank " +
                             std::to_string(got[j]) + ", want " + std::to_string(g.members[j]));
  if (g.members[g.comm.rank()] != g.world_rank) fail(g.world_rank, std::string(g.name) + ": rank() out of order");
}

template <class T>
void check_sums(Group& g, size_t c, const char* type) {
  const size_t p = static_cast<size_t>(g.p()), n = p * c;
  const std::string what = std::string(g.name) + " " + type + " c=" + std::to_string(c);
  std::vector<T> in(n), full(n), want(n), mine(c), back(n);
  for (size_t i = 0; i < n; ++i) {
    in[i] = value<T>(g.world_rank, i);
    want[i] = value<T>(g.members[0], i);
    for (size_t j = 1; j < p; ++j) want[i] += value<T>(g.members[j], i);
  }
  full = in;
  g.comm.allreduce_sum(full.data(), n);
  g.expect(Collective::allreduce_sum, 2 * (p - 1) * c * sizeof(T));  // 2·(p−1)/p·n
  g.comm.reduce_scatter_sum(in.data(), mine.data(), c);
  g.expect(Collective::reduce_scatter_sum, (p - 1) * c * sizeof(T));
  g.comm.allgather(mine.data(), back.data(), c);
  g.expect(Collective::allgather, (p - 1) * c * sizeof(T));
  const size_t r = static_cast<size_t>(g.comm.rank());
  if (n && std::memcmp(full.data(), want.data(), n * sizeof(T)) != 0) fail(g.world_rank, what + ": allreduce_sum is not the rank-order sum");
  if (c && std::memcmp(mine.data(), full.data() + r * c, c * sizeof(T)) != 0)
    fail(g.world_rank, what + ": reduce_scatter_sum is not the slice of allreduce_sum");
  if (n && std::memcmp(back.data(), full.data(), n * sizeof(T)) != 0)
    fail(g.world_rank, what + ": allgather of the slices is not the allreduce_sum");
  g.same_everywhere(hash(full), (what + " allreduce").c_str());
  g.same_everywhere(hash(back), (what + " allgather").c_str());
}

// Every member's 16-bit words (bits of its world rank and the index,
// covering every pattern over 2¹⁶ indices) at its block, as they were sent.
void check_gather16(Group& g, size_t c) {
  const size_t p = static_cast<size_t>(g.p());
  const auto word = [](int rank, size_t i) { return static_cast<uint16_t>(i * 40503u + static_cast<unsigned>(rank) * 7919u); };
  std::vector<uint16_t> mine(c), all(p * c, 0xdead);
  for (size_t i = 0; i < c; ++i) mine[i] = word(g.world_rank, i);
  g.comm.allgather(mine.data(), all.data(), c);
  g.expect(Collective::allgather, (p - 1) * c * 2);
  for (size_t r = 0; r < p; ++r)
    for (size_t i = 0; i < c; ++i)
      if (all[r * c + i] != word(g.members[r], i)) {
        fail(g.world_rank, std::string(g.name) + ": 16-bit allgather c=" + std::to_string(c) + ": word " +
                               std::to_string(i) + " of rank " + std::to_string(r) + " differs");
        return;
      }
}

// A broadcast from the group's last rank (not 0 when p > 1): every member
// ends with its bytes (the root's world rank, repeated), the root counts
// (p−1)·b sent, the others b received.
void check_broadcast(Group& g) {
  const int root = g.p() - 1;
  std::vector<int32_t> v(7, g.world_rank);
  g.comm.broadcast(v.data(), v.size() * sizeof(int32_t), root);
  const uint64_t b = v.size() * sizeof(int32_t);
  if (g.comm.rank() == root)
    g.expect(Collective::broadcast, (g.p() - 1) * b, 0);
  else
    g.expect(Collective::broadcast, 0, b);
  for (int32_t x : v)
    if (x != g.members[root]) {
      fail(g.world_rank, std::string(g.name) + ": broadcast from rank " + std::to_string(root) + " gave " +
                             std::to_string(x) + ", want world rank " + std::to_string(g.members[root]));
      break;
    }
}

void check_counters(Group& g) {
  for (int k = 0; k < dyt::parallel::kCollectiveKinds; ++k) {
    const Traffic got = g.comm.stats().kind[k], want = g.want.kind[k];
    if (!(got == want))
      fail(g.world_rank, std::string(g.name) + " " + dyt::parallel::collective_name(static_cast<Collective>(k)) +
                             ": counted " + std::to_string(got.calls) + " calls " + std::to_string(got.bytes_sent) +
                             "/" + std::to_string(got.bytes_received) + " B, want " + std::to_string(want.calls) +
                             " calls " + std::to_string(want.bytes_sent) + "/" + std::to_string(want.bytes_received));
  }
  // An uneven all-reduce (n = 2p + 1): per rank the chunks differ, over the
  // group it is 2·(p−1)·n elements each way.
  const size_t n = 2 * static_cast<size_t>(g.p()) + 1;
  std::vector<float> x(n, 1.0f);
  const CommStats before = g.comm.stats();
  g.comm.allreduce_sum(x.data(), n);
  const CommStats step = g.comm.stats() - before;
  if (step.total().calls != 1) fail(g.world_rank, std::string(g.name) + ": one all-reduce counted as several calls");
  double moved = static_cast<double>(step[Collective::allreduce_sum].bytes_sent);
  g.comm.allreduce_sum(&moved, 1);
  if (moved != 2.0 * (g.p() - 1) * n * 4)
    fail(g.world_rank, std::string(g.name) + ": uneven allreduce moved " + std::to_string(moved) + " B over the group");
}

void check_layout(int world, int rank, int dp, int tp, size_t segment) {
  dyt::parallel::MpiCommunicator wc(segment);
  const dyt::parallel::Mesh mesh = dyt::parallel::Mesh::make(world, rank, dp, tp);
  dyt::parallel::Groups groups = dyt::parallel::make_groups(wc, mesh);
  std::vector<Group> gs;
  gs.push_back(Group{"world", wc, {}, rank, {}});
  for (int j = 0; j < world; ++j) gs.back().members.push_back(j);
  gs.push_back(Group{"tp", *groups.tp, {}, rank, {}});
  for (int j = 0; j < tp; ++j) gs.back().members.push_back(mesh.dp_rank * tp + j);
  gs.push_back(Group{"dp", *groups.dp, {}, rank, {}});
  for (int j = 0; j < dp; ++j) gs.back().members.push_back(j * tp + mesh.tp_rank);
  const int before = bad;
  for (Group& g : gs) {
    check_membership(g);
    if (bad != before) continue;  // the sums would only repeat it
    for (size_t c : {size_t{0}, size_t{1}, size_t{3}, size_t{1001}}) {
      check_sums<float>(g, c, "float");
      check_sums<double>(g, c, "double");
    }
    for (size_t c : {size_t{0}, size_t{1}, size_t{1001}, size_t{1} << 16}) check_gather16(g, c);
    check_broadcast(g);
    check_counters(g);
  }
  if (bad != before && rank == 0)
    std::fprintf(stderr, "  (layout dp %d × tp %d, segment %zu)\n", dp, tp, segment);
}

}  // namespace

int main(int argc, char** argv) {
  dyt::parallel::MpiSession session(&argc, &argv);
  int layouts = 0;
  {
    dyt::parallel::MpiCommunicator top;
    const int world = top.size(), rank = top.rank();
    for (int dp = 1; dp <= world; ++dp) {
      if (world % dp) continue;
      for (size_t segment : {dyt::parallel::MpiCommunicator::kDefaultSegment, size_t{64}}) {
        check_layout(world, rank, dp, world / dp, segment);
        ++layouts;
      }
    }
    if (world < 2) fail(rank, "run this under mpirun with 2 or more ranks");
    const int64_t total = top.allreduce_max(bad);
    if (rank == 0) std::printf(total == 0 ? "PASS (%d ranks, %d layout runs)\n" : "FAIL\n", world, layouts);
    if (total != 0) return 1;  // every rank fails together, so mpirun's status says it
  }
  return 0;
}
