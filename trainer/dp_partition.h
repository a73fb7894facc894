// How the data-parallel ranks share out a flat buffer of n elements: rank r
// owns [r·c, (r+1)·c) ∩ [0, n) with c = ceil(n / dp). ZeRO-1 keeps the
// master weights and AdamW's moments of exactly this range, the gradients
// are reduce-scattered onto it, and a checkpoint is written by each rank for
// its range: one definition, so the three always agree. The buffers that are
// reduce-scattered are padded to dp·c elements (the padding stays zero).
#pragma once

#include <algorithm>
#include <cstdint>

namespace dyt::trainer {

struct FlatRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// c = ceil(n / dp): every rank's share in the padded buffer.
inline int64_t dp_chunk(int64_t n, int dp) { return (n + dp - 1) / dp; }

inline FlatRange dp_partition(int64_t n, int dp, int dp_rank) {
  const int64_t c = dp_chunk(n, dp);
  return {std::min(n, c * dp_rank), std::min(n, c * (dp_rank + 1))};
}

}  // namespace dyt::trainer
