#include "trainer/grad_buckets.h"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <utility>

namespace dyt::trainer {

int grad_stage(const std::string& name, int64_t layers) {
  static const std::string kLayers = "model.layers.";
  if (name.rfind(kLayers, 0) == 0) {
    const int64_t l = std::stoll(name.substr(kLayers.size()));
    return static_cast<int>(layers - l);
  }
  if (name.rfind("model.norm.", 0) == 0 || name.rfind("lm_head.", 0) == 0) return 0;
  return static_cast<int>(layers + 1);  // the embedding and its scale: the backward's last step
}

GradBucketPlan plan_grad_buckets(const ParamLayout& layout, int64_t layers, int dp, bool zero1,
                                 int64_t bucket_elements) {
  if (bucket_elements < 1)
    throw std::invalid_argument("parallel.grad_bucket_elements: " + std::to_string(bucket_elements) +
                                " must be at least 1");
  if (dp < 1) throw std::invalid_argument("plan_grad_buckets: dp " + std::to_string(dp) + " must be at least 1");
  const std::vector<ParamEntry>& entries = layout.entries();
  const int64_t n = layout.total();
  GradBucketPlan plan;
  plan.stage_ranges.assign(static_cast<size_t>(layers + 2), FlatRange{0, 0});
  std::vector<bool> seen(plan.stage_ranges.size(), false);
  // Walk the tensors from the last: each one's span reaches to the next
  // one's start (its alignment gap with it), the last one's to the end.
  int64_t end = n;
  int previous_stage = 0;
  std::vector<std::pair<FlatRange, int>> spans;  // descending
  for (auto e = entries.rbegin(); e != entries.rend(); ++e) {
    const int stage = grad_stage(e->name, layers);
    if (stage < previous_stage || stage > layers + 1)
      throw std::logic_error("plan_grad_buckets: '" + e->name + "' (stage " + std::to_string(stage) +
                             ") precedes a tensor of stage " + std::to_string(previous_stage) +
                             " in the layout: the backward would not finish the buffer from its end");
    previous_stage = stage;
    const int64_t begin = std::next(e) == entries.rend() ? 0 : e->offset;
    spans.push_back({{begin, end}, stage});
    FlatRange& r = plan.stage_ranges[static_cast<size_t>(stage)];
    r = seen[static_cast<size_t>(stage)] ? FlatRange{begin, r.end} : FlatRange{begin, end};
    seen[static_cast<size_t>(stage)] = true;
    end = begin;
  }
  // A stage with no tensors (none today) is empty where its predecessor begins.
  for (size_t s = 0; s < plan.stage_ranges.size(); ++s)
    if (!seen[s]) {
      const int64_t at = s == 0 ? n : plan.stage_ranges[s - 1].begin;
      plan.stage_ranges[s] = {at, at};
    }

  const int64_t chunk = dp_chunk(n, dp);
  const auto owner = [&](int64_t f) { return zero1 ? static_cast<int>(f / chunk) : -1; };
  // Accumulate spans into a bucket until it holds bucket_elements; under
  // ZeRO-1 also close it where a partition begins (a span may be split there).
  GradBucket open;  // empty until a span opens it
  for (const auto& [span, stage] : spans) {
    for (int64_t hi = span.end; hi > span.begin;) {
      const int64_t lo = zero1 ? std::max(span.begin, (hi - 1) / chunk * chunk) : span.begin;
      if (open.range.size() > 0 && (open.range.size() >= bucket_elements || owner(hi - 1) != open.owner)) {
        plan.buckets.push_back(open);
        open = GradBucket{};
      }
      if (open.range.size() == 0) open = GradBucket{{hi, hi}, stage, owner(hi - 1)};
      open.range.begin = lo;
      open.stage = stage;  // spans come in non-decreasing stage: the last one added completes it
      hi = lo;
    }
  }
  if (open.range.size() > 0) plan.buckets.push_back(open);
  return plan;
}

}  // namespace dyt::trainer
