// The overlapped dp reduction's two promises (trainer/grad_buckets.h): the
// backward reports each stage exactly when the stage's gradients are final,
// and the bucket plan tiles the flat buffer in the order they finish, each
// bucket after the stage that completes it (and, under ZeRO-1, inside one
// rank's partition).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/trainer/model/model_cases.h"
#include "trainer/grad_buckets.h"
#include "trainer/model_dims.h"
#include "trainer/model_instance.h"

namespace dyt::trainer {
namespace {

// In each stage's report, the stage's gradients already have their final
// bits, and the next stage's are still untouched (zero): the report comes
// neither early nor late. With and without recomputation.
TEST(GradBuckets, EachStageIsReportedWhenItsGradientsAreFinal) {
  const auto c = test::model_cases()[0];
  const config::ModelConfig m = test::case_model(c);
  for (const bool recompute : {false, true}) {
    ModelInstance model(m, test::kCaseBatch, test::kCaseSeq, recompute);
    model.init(test::kCaseSeed);
    model.params().zero_grads();
    const GradBucketPlan plan = plan_grad_buckets(model.layout(), m.n_layers(), 1, false, 1);
    ASSERT_EQ(plan.stage_ranges.size(), static_cast<size_t>(m.n_layers() + 2));
    std::vector<int> order;
    std::vector<std::vector<float>> at_report;
    const GradsReady ready = [&](int stage) {
      order.push_back(stage);
      const std::vector<float> g = model.params().grads_to_host();
      const FlatRange r = plan.stage_ranges.at(static_cast<size_t>(stage));
      at_report.emplace_back(g.begin() + r.begin, g.begin() + r.end);
      if (static_cast<size_t>(stage + 1) < plan.stage_ranges.size()) {
        const FlatRange next = plan.stage_ranges[static_cast<size_t>(stage + 1)];
        EXPECT_TRUE(std::all_of(g.begin() + next.begin, g.begin() + next.end, [](float x) { return x == 0.0f; }))
            << "stage " << stage + 1 << " was written before stage " << stage << " was reported";
      }
    };
    const std::vector<int32_t> tokens = test::case_ids(m.vocab_size(), 0), targets = test::case_ids(m.vocab_size(), 1);
    model.accumulate(tokens.data(), targets.data(), 0.01f, &ready);
    std::vector<int> want(plan.stage_ranges.size());
    for (size_t s = 0; s < want.size(); ++s) want[s] = static_cast<int>(s);
    EXPECT_EQ(order, want);
    const std::vector<float> final_grads = model.params().grads_to_host();
    for (size_t s = 0; s < at_report.size(); ++s) {
      const FlatRange r = plan.stage_ranges[s];
      ASSERT_EQ(at_report[s].size(), static_cast<size_t>(r.size()));
      EXPECT_GT(r.size(), 0) << "stage " << s;
      EXPECT_EQ(std::memcmp(at_report[s].data(), final_grads.data() + r.begin, r.size() * sizeof(float)), 0)
          << "stage " << s << "'s gradients changed after it was reported (recompute " << recompute << ")";
    }
  }
}

// The stage of a bucket computed here from the tensors it touches.
int touched_stage(const ParamLayout& layout, FlatRange b, int64_t layers) {
  int stage = 0;
  const auto& e = layout.entries();
  for (size_t i = 0; i < e.size(); ++i) {
    const int64_t begin = i == 0 ? 0 : e[i].offset, end = i + 1 < e.size() ? e[i + 1].offset : layout.total();
    if (begin < b.end && b.begin < end) stage = std::max(stage, grad_stage(e[i].name, layers));
  }
  return stage;
}

TEST(GradBuckets, PlanTilesTheBufferInBackwardOrder) {
  for (const auto& c : test::model_cases()) {
    config::ModelConfig m = test::case_model(c);
    m.set_vocab_size(96);  // tp 2 splits the vocabulary
    const ModelDims dims = model_dims(m);
    for (const int tp : {1, 2}) {
      const ParamLayout layout(dims, TpRank{tp - 1, tp});
      const int64_t n = layout.total();
      for (const int dp : {1, 2, 3})
        for (const bool zero1 : {false, true})
          for (const int64_t bucket : {int64_t{1}, int64_t{1000}, int64_t{1} << 40}) {
            const std::string where = c.name + " tp " + std::to_string(tp) + " dp " + std::to_string(dp) +
                                      (zero1 ? " zero1" : "") + " bucket " + std::to_string(bucket);
            const GradBucketPlan plan = plan_grad_buckets(layout, dims.layers, dp, zero1, bucket);
            const auto& bs = plan.buckets;
            ASSERT_FALSE(bs.empty()) << where;
            EXPECT_EQ(bs.front().range.end, n) << where;
            EXPECT_EQ(bs.back().range.begin, 0) << where;
            const int64_t chunk = dp_chunk(n, dp);
            for (size_t i = 0; i < bs.size(); ++i) {
              const GradBucket& b = bs[i];
              EXPECT_GT(b.range.size(), 0) << where;
              if (i + 1 < bs.size()) {
                EXPECT_EQ(bs[i + 1].range.end, b.range.begin) << where << ": buckets " << i << ", " << i + 1;
                EXPECT_LE(b.stage, bs[i + 1].stage) << where;
                // Short only where the next bucket has another owner.
                if (b.range.size() < bucket) EXPECT_TRUE(zero1 && bs[i + 1].owner != b.owner) << where << " " << i;
              }
              EXPECT_EQ(b.stage, touched_stage(layout, b.range, dims.layers)) << where << " bucket " << i;
              if (zero1) {
                EXPECT_EQ(b.owner, b.range.begin / chunk) << where;
                EXPECT_EQ(b.owner, (b.range.end - 1) / chunk) << where << ": bucket " << i << " crosses a partition";
              } else {
                EXPECT_EQ(b.owner, -1) << where;
              }
            }
            if (!zero1 && bucket == 1) EXPECT_EQ(bs.size(), layout.entries().size()) << where;
            if (bucket > n) EXPECT_EQ(bs.size(), zero1 ? static_cast<size_t>((n + chunk - 1) / chunk) : 1u) << where;
            // The stage ranges tile the buffer from its end.
            int64_t end = n;
            for (const FlatRange& r : plan.stage_ranges) {
              EXPECT_EQ(r.end, end) << where;
              end = r.begin;
            }
            EXPECT_EQ(end, 0) << where;
          }
    }
  }
}

TEST(GradBuckets, RefusesAnEmptyBucket) {
  const ModelDims dims = model_dims(test::case_model(test::model_cases()[0]));
  const ParamLayout layout(dims);
  for (const int64_t bucket : {int64_t{0}, int64_t{-5}}) {
    try {
      plan_grad_buckets(layout, dims.layers, 2, false, bucket);
      ADD_FAILURE() << "bucket " << bucket << " was not refused";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("parallel.grad_bucket_elements"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace dyt::trainer
