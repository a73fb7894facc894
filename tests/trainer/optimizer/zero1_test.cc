// ZeRO-1's pieces in one process: AdamW over a dp_partition range against
// the whole-buffer AdamW (bit for bit, moments included, decay flags kept
// across a cut tensor), and the gradient norm's counting rule
// (trainer/norm_partition.h): owned runs at tp = 1 and under tensor
// parallelism, every parameter counted once over the tp ranks, and pieces
// clipped to partitions that tile each run.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "configs/config.h"
#include "trainer/dp_partition.h"
#include "trainer/norm_partition.h"
#include "trainer/optimizer.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {
namespace {

ModelDims dims() {
  ModelDims d;
  d.vocab = 16;
  d.d = 8;
  d.layers = 2;
  d.heads = 4;
  d.kv_heads = 2;
  d.head_dim = 2;
  d.ffn = 12;
  d.norm = Norm::DyT;
  d.norm_bias = true;
  d.embed_scale = true;
  return d;
}

TEST(Zero1AdamW, RangesMatchTheWholeBufferBitForBit) {
  const ParamLayout layout(dims());
  const int64_t n = layout.total();
  config::TrainConfig t;
  t.set_weight_decay(0.1);
  std::vector<float> p0(static_cast<size_t>(n)), g(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p0[i] = static_cast<float>(0.5 * std::cos(0.37 * i));

  AdamW whole(layout, t);
  std::vector<float> pw = p0;
  for (int dp : {2, 3, 7}) {
    std::vector<AdamW> shards;
    std::vector<float> ps = p0;
    for (int r = 0; r < dp; ++r) shards.emplace_back(layout, t, kernels::cpu_backend(), dp_partition(n, dp, r));
    AdamW ref(layout, t);
    std::vector<float> pr = p0;
    for (int step = 1; step <= 3; ++step) {
      for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>(std::sin(0.11 * i * step + step));
      ref.step(pr.data(), g.data(), 1e-2);
      for (AdamW& s : shards) s.step(ps.data(), g.data(), 1e-2);
    }
    ASSERT_EQ(0, std::memcmp(pr.data(), ps.data(), pr.size() * sizeof(float))) << "dp " << dp;
    const std::vector<float> m = ref.exp_avg_to_host(), v = ref.exp_avg_sq_to_host();
    for (int r = 0; r < dp; ++r) {
      const FlatRange range = dp_partition(n, dp, r);
      EXPECT_EQ(shards[r].range().begin, range.begin);
      EXPECT_EQ(shards[r].sharded(), true);
      const std::vector<float> sm = shards[r].exp_avg_to_host(), sv = shards[r].exp_avg_sq_to_host();
      ASSERT_EQ(static_cast<int64_t>(sm.size()), range.size());
      EXPECT_EQ(0, std::memcmp(sm.data(), m.data() + range.begin, sm.size() * sizeof(float)));
      EXPECT_EQ(0, std::memcmp(sv.data(), v.data() + range.begin, sv.size() * sizeof(float)));
    }
  }
  EXPECT_FALSE(whole.sharded());
}

TEST(Zero1AdamW, SetMomentsTakesTheRangeAndBadRangesAreRefused) {
  const ParamLayout layout(dims());
  const int64_t n = layout.total();
  config::TrainConfig t;
  std::vector<float> m(static_cast<size_t>(n)), v(m.size());
  for (int64_t i = 0; i < n; ++i) m[i] = static_cast<float>(i), v[i] = static_cast<float>(2 * i);
  AdamW a(layout, t, kernels::cpu_backend(), dp_partition(n, 3, 1));
  a.set_moments(m.data(), v.data());
  const FlatRange r = a.range();
  EXPECT_EQ(a.exp_avg_to_host()[0], static_cast<float>(r.begin));
  EXPECT_EQ(a.exp_avg_sq_to_host().back(), static_cast<float>(2 * (r.end - 1)));
  EXPECT_THROW(AdamW(layout, t, kernels::cpu_backend(), FlatRange{-1, 4}), std::invalid_argument);
  EXPECT_THROW(AdamW(layout, t, kernels::cpu_backend(), FlatRange{5, 4}), std::invalid_argument);
  EXPECT_THROW(AdamW(layout, t, kernels::cpu_backend(), FlatRange{0, n + 1}), std::invalid_argument);
}

TEST(NormPartition, OneRunAtOneTpRank) {
  const ParamLayout layout(dims());
  const std::vector<FlatRange> runs = owned_runs(layout);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].begin, 0);
  EXPECT_EQ(runs[0].end, layout.total());
}

TEST(NormPartition, EveryParameterCountedOnceOverTheTpRanks) {
  for (int tp : {2, 4}) {  // 4 > n_kv_heads = 2: k and v replicated over 2 ranks
    std::vector<int64_t> counted;  // per entry index: owned elements over the ranks
    int64_t owned_elements = 0, global = 0;
    for (int rank = 0; rank < tp; ++rank) {
      const ParamLayout layout(dims(), TpRank{rank, tp});
      const std::vector<FlatRange> runs = owned_runs(layout);
      // Runs are ordered, disjoint, and cover exactly the owned entries (and gaps between them).
      std::vector<char> in_run(static_cast<size_t>(layout.total()), 0);
      for (size_t i = 0; i < runs.size(); ++i) {
        ASSERT_LT(runs[i].begin, runs[i].end);
        if (i) {
          ASSERT_LT(runs[i - 1].end, runs[i].begin);
        }
        for (int64_t j = runs[i].begin; j < runs[i].end; ++j) in_run[j] = 1;
      }
      counted.resize(layout.entries().size());
      for (size_t k = 0; k < layout.entries().size(); ++k) {
        const ParamEntry& e = layout.entries()[k];
        for (int64_t j = e.offset; j < e.offset + e.numel; ++j)
          ASSERT_EQ(in_run[j], e.shard.owner() ? 1 : 0) << e.name << " tp " << tp << " rank " << rank;
        if (e.shard.owner()) counted[k] += e.numel, owned_elements += e.numel;
      }
      if (rank == 0) {
        for (const ParamEntry& e : layout.entries()) {
          int64_t g = 1;
          for (int64_t s : e.global_shape) g *= s;
          global += g;
        }
      }
    }
    EXPECT_EQ(owned_elements, global) << "tp " << tp;
  }
}

TEST(NormPartition, PiecesTileTheRunsInOrder) {
  const std::vector<FlatRange> runs{{0, 10}, {20, 25}, {26, 40}};
  for (int dp : {1, 2, 3, 5, 64}) {
    std::vector<FlatRange> all;
    for (int k = 0; k < dp; ++k)
      for (const FlatRange& p : pieces_in(runs, dp_partition(40, dp, k))) {
        const FlatRange part = dp_partition(40, dp, k);
        ASSERT_GE(p.begin, part.begin);
        ASSERT_LE(p.end, part.end);
        all.push_back(p);
      }
    // Concatenated in partition order the pieces are the runs, cut at the partition edges.
    int64_t covered = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      covered += all[i].size();
      if (i) {
        ASSERT_LE(all[i - 1].end, all[i].begin);
      }
    }
    EXPECT_EQ(covered, 10 + 5 + 14) << "dp " << dp;
  }
  EXPECT_TRUE(pieces_in(runs, {10, 20}).empty());
}

}  // namespace
}  // namespace dyt::trainer
