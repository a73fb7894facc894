// Where the data-parallel gradient reduction can start before the backward
// ends (parallel.overlap_grad_reduce, docs/parallel.md "Overlapped
// gradient reduction"). The backward finishes the flat gradient buffer from its end
// to its start, in stages: stage 0 when the LM head and the final norm are
// done, stage layers − l when block l is, stage layers + 1 when the
// embedding is. The buffer is cut, from the end, into buckets of at least
// `bucket_elements` at tensor boundaries (Megatron's and PyTorch DDP's
// buckets); each bucket is reduced as soon as the stage that completes it is
// reported, while the backward goes on with earlier layers.
//
// Under ZeRO-1 the buckets are also cut at the dp partitions' boundaries, so
// each lies in one rank's partition and is reduced onto that rank
// (Communicator::reduce_sum): the ranges each rank owns stay those of
// dp_partition, and checkpoints, the norm and AdamW are unchanged. Every
// rank then sends each gradient it does not own once and receives the p−1
// copies of its own, the reduce-scatter's volume without its padding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/dp_partition.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

// The stage after which the named tensor's gradient is final.
int grad_stage(const std::string& name, int64_t layers);

struct GradBucket {
  FlatRange range;
  int stage = 0;   // reduce once this stage is reported
  int owner = -1;  // ZeRO-1: the dp rank whose partition holds it; -1: all-reduced
};

struct GradBucketPlan {
  // stage_ranges[s]: the tensors stage s completes (alignment gaps included),
  // contiguous, descending; together [0, layout.total()).
  std::vector<FlatRange> stage_ranges;
  // In launch order: descending offsets, stages non-decreasing; together
  // [0, layout.total()) exactly once.
  std::vector<GradBucket> buckets;
};

// std::invalid_argument when bucket_elements < 1 or dp < 1; std::logic_error
// when the layout is not in backward-stage order (a layout change that
// would make the overlap reduce unfinished gradients).
GradBucketPlan plan_grad_buckets(const ParamLayout& layout, int64_t layers, int dp, bool zero1,
                                 int64_t bucket_elements);

}  // namespace dyt::trainer
