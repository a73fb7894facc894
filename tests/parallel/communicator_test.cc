// The single-process communicator's new collectives, splits and counters,
// the counting convention's formulas, make_groups on a world of one, and the
// argument checks every backend shares (they live in the base class).
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/groups.h"
#include "parallel/mesh.h"

namespace dyt::parallel {
namespace {

TEST(LocalCommunicator, ReduceScatterAndAllgatherCopy) {
  LocalCommunicator c;
  const std::vector<float> f{1.5f, -2.0f, 0.25f};
  std::vector<float> out(3, -1.0f);
  c.reduce_scatter_sum(f.data(), out.data(), 3);
  EXPECT_EQ(out, f);
  const std::vector<double> d{3.25, -7.0};
  std::vector<double> dout(2, 0.0);
  c.allgather(d.data(), dout.data(), 2);
  EXPECT_EQ(dout, d);
  const std::vector<uint16_t> w{0x3f80, 0xffff, 0x8000};  // bf16 1, a NaN, -0: bits, not values
  std::vector<uint16_t> wout(3, 0);
  c.allgather(w.data(), wout.data(), 3);
  EXPECT_EQ(wout, w);
}

// The 16-bit all-gather counts 2 bytes a word; its argument checks are the others'.
TEST(Communicator, SixteenBitAllgatherCountsTwoBytes) {
  EXPECT_EQ(allgather_traffic(5, 2, 4), (Traffic{1, 30, 30}));
  LocalCommunicator c;
  std::vector<uint16_t> w(4, 1);
  EXPECT_THROW(c.allgather(w.data(), w.data(), 2), std::invalid_argument);
  EXPECT_THROW(c.allgather(static_cast<const uint16_t*>(nullptr), w.data(), 1), std::invalid_argument);
  c.allgather(w.data(), w.data() + 2, 2);
  EXPECT_EQ(c.stats()[Collective::allgather], (Traffic{1, 0, 0}));
}

TEST(LocalCommunicator, CountsCallsButNoBytes) {
  LocalCommunicator c;
  std::vector<float> f(10, 1.0f), g(10);
  c.allreduce_sum(f.data(), f.size());
  c.allreduce_sum(f.data(), f.size());
  c.reduce_scatter_sum(f.data(), g.data(), 10);
  c.allgather(f.data(), g.data(), 10);
  c.allreduce_max(3);
  c.barrier();
  int64_t word = 7;
  c.broadcast(&word, sizeof word, 0);
  c.reduce_sum(f.data(), f.size(), 0);
  const CommStats& s = c.stats();
  EXPECT_EQ(s[Collective::allreduce_sum], (Traffic{2, 0, 0}));
  EXPECT_EQ(s[Collective::reduce_scatter_sum], (Traffic{1, 0, 0}));
  EXPECT_EQ(s[Collective::allgather], (Traffic{1, 0, 0}));
  EXPECT_EQ(s[Collective::allreduce_max], (Traffic{1, 0, 0}));
  EXPECT_EQ(s[Collective::barrier], (Traffic{1, 0, 0}));
  EXPECT_EQ(s[Collective::broadcast], (Traffic{1, 0, 0}));
  EXPECT_EQ(word, 7);  // a group of one broadcasts to itself
  EXPECT_EQ(s[Collective::reduce_sum], (Traffic{1, 0, 0}));
  EXPECT_EQ(f, std::vector<float>(10, 1.0f));  // and reduces onto itself: unchanged
  EXPECT_EQ(s.total().calls, 8u);
  EXPECT_FALSE(c.device_buffers());
}

TEST(CommStats, AStepIsTheDifferenceOfTwoSnapshots) {
  CommStats before, after;
  before.kind[0] = Traffic{2, 100, 90};
  after.kind[0] = Traffic{5, 400, 300};
  after.kind[2] = Traffic{1, 8, 8};
  const CommStats step = after - before;
  EXPECT_EQ(step[Collective::allreduce_sum], (Traffic{3, 300, 210}));
  EXPECT_EQ(step[Collective::allgather], (Traffic{1, 8, 8}));
  EXPECT_EQ(step.total(), (Traffic{4, 308, 218}));
}

TEST(LocalCommunicator, SplitIsAGroupOfOneWithFreshCounters) {
  LocalCommunicator c;
  c.barrier();
  const auto g = c.split(5, 0);
  EXPECT_EQ(g->size(), 1);
  EXPECT_EQ(g->rank(), 0);
  EXPECT_EQ(g->stats().total().calls, 0u);
  EXPECT_THROW(c.split(-1, 0), std::invalid_argument);
}

TEST(Traffic, RingFigureWhenRanksDivideTheBuffer) {
  // 2·(p−1)/p·n elements each way: p = 4, n = 8 floats → 12 floats = 48 bytes.
  for (int r = 0; r < 4; ++r) EXPECT_EQ(allreduce_traffic(8, 4, 4, r), (Traffic{1, 48, 48}));
  EXPECT_EQ(allreduce_traffic(1000, 8, 1, 0), (Traffic{1, 0, 0}));
  EXPECT_EQ(reduce_scatter_traffic(5, 4, 3), (Traffic{1, 40, 40}));
  EXPECT_EQ(allgather_traffic(5, 8, 4), (Traffic{1, 120, 120}));
  EXPECT_EQ(allreduce_max_traffic(3), (Traffic{1, 16, 16}));
}

TEST(Traffic, BroadcastIsSentByTheRootAndReceivedByTheOthers) {
  // 100 bytes over 4 ranks from root 2: the root sends 3 copies, the others receive one.
  EXPECT_EQ(broadcast_traffic(100, 4, 2, 2), (Traffic{1, 300, 0}));
  for (int r : {0, 1, 3}) EXPECT_EQ(broadcast_traffic(100, 4, r, 2), (Traffic{1, 0, 100}));
  EXPECT_EQ(broadcast_traffic(100, 1, 0, 0), (Traffic{1, 0, 0}));
}

TEST(Traffic, ReduceIsSentByTheOthersAndReceivedByTheRoot) {
  // 10 floats over 4 ranks onto root 1: the root receives 3 copies, the others send one;
  // over the group (p−1)·n, a reduce-scatter's total.
  EXPECT_EQ(reduce_traffic(10, 4, 4, 1, 1), (Traffic{1, 0, 120}));
  for (int r : {0, 2, 3}) EXPECT_EQ(reduce_traffic(10, 4, 4, r, 1), (Traffic{1, 40, 0}));
  EXPECT_EQ(reduce_traffic(10, 4, 1, 0, 0), (Traffic{1, 0, 0}));
}

TEST(Communicator, ReduceRefusesARootOutsideTheGroup) {
  LocalCommunicator c;
  float x = 3;
  for (int root : {-1, 1}) {
    try {
      c.reduce_sum(&x, 1, root);
      ADD_FAILURE() << "expected invalid_argument for root " << root;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("reduce_sum: root " + std::to_string(root)), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(c.stats()[Collective::reduce_sum].calls, 0u);
}

TEST(Communicator, BroadcastRefusesARootOutsideTheGroup) {
  LocalCommunicator c;
  int64_t word = 0;
  for (int root : {-1, 1}) {
    try {
      c.broadcast(&word, sizeof word, root);
      ADD_FAILURE() << "expected invalid_argument for root " << root;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("broadcast: root " + std::to_string(root) +
                                           " is not a rank of this group of 1"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(c.broadcast(nullptr, 8, 0), std::invalid_argument);
  EXPECT_NO_THROW(c.broadcast(nullptr, 0, 0));
  EXPECT_EQ(c.stats()[Collective::broadcast].calls, 1u);  // only the empty one ran
}

TEST(Traffic, UnevenChunksStillSumToTwiceThePayloadOverTheGroup) {
  // n = 10 over p = 3: chunks 3, 3, 4 → each way 7+6, 7+6, 6+8 elements.
  EXPECT_EQ(allreduce_traffic(10, 4, 3, 0).bytes_sent, 13u * 4);
  EXPECT_EQ(allreduce_traffic(10, 4, 3, 2).bytes_sent, 14u * 4);
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1001}, size_t{5'000'000'003}}) {
    for (int p : {1, 2, 3, 7, 16}) {
      uint64_t sent = 0;
      for (int r = 0; r < p; ++r) sent += allreduce_traffic(n, 2, p, r).bytes_sent;
      EXPECT_EQ(sent, 2ull * (p - 1) * n * 2) << "n " << n << " p " << p;
    }
  }
}

TEST(Communicator, BadArgumentsAreNamed) {
  LocalCommunicator c;
  std::vector<float> f(4);
  try {
    c.reduce_scatter_sum(f.data(), f.data() + 2, 4);
    ADD_FAILURE() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("reduce_scatter_sum: in and out overlap"), std::string::npos);
  }
  EXPECT_THROW(c.allgather(f.data(), f.data(), 1), std::invalid_argument);
  EXPECT_NO_THROW(c.allgather(f.data(), f.data() + 1, 1));  // adjacent, not overlapping
  EXPECT_THROW(c.allreduce_sum(static_cast<float*>(nullptr), 3), std::invalid_argument);
  EXPECT_NO_THROW(c.allreduce_sum(static_cast<float*>(nullptr), 0));
  EXPECT_THROW(c.allgather(static_cast<const float*>(nullptr), f.data(), 1), std::invalid_argument);
  EXPECT_EQ(c.stats()[Collective::allgather].calls, 1u);  // refused calls are not counted
}

TEST(Groups, AWorldOfOneHasGroupsOfOne) {
  LocalCommunicator world;
  const Groups g = make_groups(world, Mesh::make(1, 0, 1, 1));
  EXPECT_EQ(g.dp->size(), 1);
  EXPECT_EQ(g.tp->size(), 1);
  EXPECT_EQ(g.tp->rank(), 0);
}

TEST(Groups, AMeshOfAnotherWorldIsRefused) {
  LocalCommunicator world;
  try {
    make_groups(world, Mesh::make(4, 2, 2, 2));
    ADD_FAILURE() << "expected LayoutError";
  } catch (const LayoutError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 2 of 4"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 0 of 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dyt::parallel
