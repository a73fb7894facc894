#include "trainer/norm_partition.h"

#include <algorithm>

namespace dyt::trainer {

std::vector<FlatRange> owned_runs(const ParamLayout& layout) {
  std::vector<FlatRange> runs;
  bool open = false;  // the last non-empty entry was owned: the next owned one extends its run
  for (const ParamEntry& e : layout.entries()) {
    if (e.numel == 0) continue;
    if (!e.shard.owner()) {
      open = false;
      continue;
    }
    if (open)
      runs.back().end = e.offset + e.numel;
    else
      runs.push_back({e.offset, e.offset + e.numel});
    open = true;
  }
  return runs;
}

std::vector<FlatRange> pieces_in(const std::vector<FlatRange>& runs, FlatRange part) {
  std::vector<FlatRange> out;
  for (const FlatRange& r : runs) {
    const FlatRange p{std::max(r.begin, part.begin), std::min(r.end, part.end)};
    if (p.size() > 0) out.push_back(p);
  }
  return out;
}

}  // namespace dyt::trainer
