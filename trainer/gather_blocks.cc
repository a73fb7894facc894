#include "trainer/gather_blocks.h"

#include <algorithm>

namespace dyt::trainer {

namespace {

// Calls f(block_index, global_index, run_length) for each row run of the
// block: split_dim 0 blocks are one contiguous run, split_dim 1 blocks one
// run per row.
template <class F>
void for_each_run(const ParamEntry& e, const ParamEntry& whole, F f) {
  if (e.shard.split_dim != 1) {
    const int64_t first = e.shard.split_dim == 0 ? e.shard.start * whole.shape.back() : 0;
    f(int64_t{0}, first, e.numel);
    return;
  }
  const int64_t cols = e.shape[1], gcols = whole.shape[1];
  for (int64_t r = 0; r < e.shape[0]; ++r) f(r * cols, r * gcols + e.shard.start, cols);
}

}  // namespace

void copy_block(const ParamEntry& e, const float* block, const ParamEntry& whole, float* global) {
  for_each_run(e, whole, [&](int64_t b, int64_t g, int64_t n) {
    std::copy(block + e.offset + b, block + e.offset + b + n, global + whole.offset + g);
  });
}

void copy_to_block(const ParamEntry& e, float* block, const ParamEntry& whole, const float* global) {
  for_each_run(e, whole, [&](int64_t b, int64_t g, int64_t n) {
    std::copy(global + whole.offset + g, global + whole.offset + g + n, block + e.offset + b);
  });
}

std::vector<float> gather_blocks(const ModelDims& dims, const ParamLayout& mine, const float* local,
                                 parallel::Communicator& tp) {
  const ParamLayout whole(dims);
  std::vector<float> global(static_cast<size_t>(whole.total()), 0.0f);
  const int p = tp.size();
  const size_t n = static_cast<size_t>(mine.total());
  std::vector<float> all(n * static_cast<size_t>(p));
  tp.allgather(local, all.data(), n);
  for (int r = 0; r < p; ++r) {
    const ParamLayout rank(dims, TpRank{r, p});
    for (const ParamEntry& e : rank.entries())
      if (e.shard.owner()) copy_block(e, all.data() + n * static_cast<size_t>(r), whole.at(e.name), global.data());
  }
  return global;
}

}  // namespace dyt::trainer
