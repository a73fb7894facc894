// The layout search (launch/layout_search.h): it returns the best of a list
// enumerated here independently, never a layout that does not fit, and only
// layouts the trainer would accept.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "configs/config.h"
#include "launch/hardware.h"
#include "launch/layout_search.h"
#include "launch/plan.h"
#include "launch/step_time.h"

namespace dyt::launch {
namespace {

config::RunConfig load(const std::string& name) {
  return config::load_run_config(std::string(DYT_CONFIG_DIR) + "/" + name + ".pbtxt", {});
}

TEST(LayoutSearch, NeverSuggestsALayoutThatDoesNotFit) {
  const HardwareProfile hw = hardware_profile("h100");
  const auto base = load("llama70b");
  const auto all = enumerate_layouts(base, 128, hw);
  const auto ranked = rank_fitting(all);
  ASSERT_FALSE(ranked.empty());
  ASSERT_LT(ranked.size(), all.size());  // some do not fit, so the filter is exercised
  for (const Candidate& c : ranked) {
    SCOPED_TRACE(c.layout.describe());
    const auto cfg = with_layout(base, c.layout);
    EXPECT_LE(plan_memory(cfg).total_bytes(c.layout.recompute), usable_memory(hw));
  }
  // On 8 GPUs 70B's state alone (> 100 GiB a rank) fits nowhere.
  EXPECT_TRUE(rank_fitting(enumerate_layouts(base, 8, hw)).empty());
}

// Every layout the trainer accepts, enumerated here without the library's
// loops: the search's pick is the fastest of those that fit.
TEST(LayoutSearch, PicksTheBestOfAnExplicitList) {
  const HardwareProfile hw = hardware_profile("h100");
  for (const std::string name : {"llama7b", "llama70b"}) {
    SCOPED_TRACE(name);
    const auto base = load(name);
    const int64_t gpus = 64;
    double best = 0;
    int valid = 0;
    for (const int64_t tp : {1, 2, 4, 8, 16, 32, 64})
      for (const int64_t mb : {1, 2, 4, 8})
        for (const bool sp : {false, true})
          for (const bool z : {false, true})
            for (const bool rc : {false, true}) {
              if ((sp && tp == 1) || (z && tp == gpus)) continue;
              const auto cfg = with_layout(base, Layout{tp, gpus / tp, mb, sp, z, rc});
              if (!config::validate(cfg).empty()) continue;
              ++valid;
              if (plan_memory(cfg).total_bytes(rc) > usable_memory(hw)) continue;
              best = std::max(best, predict_step(cfg, hw).tokens_per_s);
            }
    const auto all = enumerate_layouts(base, gpus, hw);
    EXPECT_EQ(static_cast<int>(all.size()), valid);
    const auto ranked = rank_fitting(all);
    ASSERT_FALSE(ranked.empty());
    EXPECT_EQ(ranked.front().time.tokens_per_s, best);
    for (size_t i = 1; i < ranked.size(); ++i)
      EXPECT_GE(ranked[i - 1].time.tokens_per_s, ranked[i].time.tokens_per_s);
  }
}

TEST(LayoutSearch, OnlyLayoutsTheTrainerAccepts) {
  const HardwareProfile hw = hardware_profile("h100");
  const auto base = load("llama70b");
  std::set<int64_t> tps;
  for (const Candidate& c : enumerate_layouts(base, 256, hw)) {
    EXPECT_EQ(c.layout.tp * c.layout.dp, 256);
    EXPECT_TRUE(config::validate(with_layout(base, c.layout)).empty());
    if (c.layout.sequence_parallel) {
      EXPECT_GT(c.layout.tp, 1);
    }
    if (c.layout.zero1) {
      EXPECT_GT(c.layout.dp, 1);
    }
    tps.insert(c.layout.tp);
  }
  // 64 query heads cap tp at 64; beyond tp 8 the 8 KV heads are replicated
  // over tp / 8 ranks (docs/parallel.md).
  EXPECT_EQ(tps, (std::set<int64_t>{1, 2, 4, 8, 16, 32, 64}));
}

// A faster network changes the pick only towards layouts that use it more:
// never a slower pick.
TEST(LayoutSearch, FasterNetworkNeverGivesASlowerPick) {
  HardwareProfile hw = hardware_profile("h100");
  const auto base = load("llama7b");
  const double before = rank_fitting(enumerate_layouts(base, 64, hw)).front().time.tokens_per_s;
  hw.ib_bytes_per_s *= 2;
  EXPECT_GE(rank_fitting(enumerate_layouts(base, 64, hw)).front().time.tokens_per_s, before);
}

TEST(LayoutSearch, BadArguments) {
  const HardwareProfile hw = hardware_profile("h100");
  const auto base = load("tiny");
  EXPECT_THROW(enumerate_layouts(base, 0, hw), std::invalid_argument);
  EXPECT_THROW(enumerate_layouts(base, 4, hw, {}, {}), std::invalid_argument);
  EXPECT_THROW(enumerate_layouts(base, 4, hw, {}, {0}), std::invalid_argument);
}

}  // namespace
}  // namespace dyt::launch
