// Which elements of a flat gradient buffer the global gradient norm counts,
// and in what order it adds them, so that every parameter counts exactly
// once whatever the layout and the bits do not depend on ZeRO-1.
//
// The rule (docs/parallel.md, "The gradient norm"):
//   norm² = Σ over tp ranks, in rank order (an all-reduce over tp), of
//           Σ over the dp partitions k = 0, 1, … (dp_partition, in order) of
//           the partial P_k = Σ, over the pieces of partition k in buffer
//           order, of the piece's sum of squares (Backend::sum_squares).
// The pieces are this tp rank's owned runs (maximal runs of consecutive
// layout entries whose shard.owner() is true, the alignment gaps between
// them included — they are zero) clipped to the partition. A block held by
// several tp ranks (a replicated norm parameter, a replicated KV head) is
// counted by its owner only.
//
// Under ZeRO-1 dp rank k computes P_k alone and the P_k are all-reduced
// over dp, which adds them in rank order: ((P_0 + P_1) + P_2) + …; without
// ZeRO-1 every rank holds every reduced gradient and adds P_0, P_1, … in
// the same order itself. The two give the same bits, hence the same clip
// factor and the same updates. At dp = tp = 1 there is one partition and one
// run, [0, total): the sum of squares of the whole buffer, as before.
#pragma once

#include <vector>

#include "trainer/dp_partition.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

// This tp rank's owned runs, in buffer order (empty entries neither start
// nor break a run).
std::vector<FlatRange> owned_runs(const ParamLayout& layout);

// The runs clipped to `part`, in order, empty pieces dropped.
std::vector<FlatRange> pieces_in(const std::vector<FlatRange>& runs, FlatRange part);

}  // namespace dyt::trainer
