#include "trainer/state_pieces.h"

#include <algorithm>
#include <stdexcept>

namespace dyt::trainer {

FlatRange moment_range(const ParamLayout& layout, int dp, int dp_rank, bool zero1) {
  return zero1 ? dp_partition(layout.total(), dp, dp_rank) : FlatRange{0, layout.total()};
}

namespace {

// A box in the local block's coordinates, moved to the global tensor's.
checkpoint::Box to_global(const ParamEntry& e, checkpoint::Box b) {
  if (e.shard.split_dim >= 0) b.offset[static_cast<size_t>(e.shard.split_dim)] += e.shard.start;
  return b;
}

}  // namespace

checkpoint::Box block_box(const ParamEntry& e) {
  return to_global(e, {std::vector<int64_t>(e.shape.size(), 0), e.shape});
}

std::vector<FlatBox> entry_boxes(const ParamEntry& e, FlatRange r) {
  const int64_t lo = std::max(r.begin, e.offset) - e.offset;
  const int64_t hi = std::min(r.end, e.offset + e.numel) - e.offset;
  std::vector<FlatBox> out;
  if (lo >= hi) return out;
  const auto add = [&](checkpoint::Box local, int64_t first) { out.push_back({to_global(e, std::move(local)), e.offset + first}); };
  switch (e.shape.size()) {
    case 0:
      add({{}, {}}, 0);
      break;
    case 1:
      add({{lo}, {hi - lo}}, lo);
      break;
    case 2: {
      const int64_t cols = e.shape[1];
      int64_t b = lo;
      if (b % cols != 0) {  // partial first row
        const int64_t n = std::min(cols - b % cols, hi - b);
        add({{b / cols, b % cols}, {1, n}}, b);
        b += n;
      }
      if (const int64_t rows = (hi - b) / cols; rows > 0) {  // whole rows
        add({{b / cols, 0}, {rows, cols}}, b);
        b += rows * cols;
      }
      if (b < hi) {  // partial last row
        add({{b / cols, 0}, {1, hi - b}}, b);
      }
      break;
    }
    default:
      throw std::logic_error("entry_boxes: tensor " + e.name + " has " + std::to_string(e.shape.size()) +
                             " dimensions; checkpoints cut 1-D and 2-D tensors only");
  }
  return out;
}

}  // namespace dyt::trainer
