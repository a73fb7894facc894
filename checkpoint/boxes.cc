#include "checkpoint/boxes.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "common/shape_text.h"

namespace dyt::checkpoint {
namespace {

std::string box_text(const Box& b) {
  return "[offset " + shape_text(b.offset) + ", extent " + shape_text(b.extent) + "]";
}

bool empty(const Box& b) {
  return std::any_of(b.extent.begin(), b.extent.end(), [](int64_t e) { return e == 0; });
}

bool overlap(const Box& a, const Box& b) {
  for (size_t d = 0; d < a.offset.size(); ++d)
    if (a.offset[d] >= b.offset[d] + b.extent[d] || b.offset[d] >= a.offset[d] + a.extent[d]) return false;
  return true;
}

}  // namespace

std::string tiling_problem(const std::vector<int64_t>& shape, const std::vector<Box>& boxes) {
  const size_t rank = shape.size();
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) return "shape " + shape_text(shape) + " has a negative dimension";
    if (d != 0 && numel > std::numeric_limits<int64_t>::max() / d)
      return "shape " + shape_text(shape) + " is too large";
    numel *= d;
  }
  // Inside the tensor; then no volume overflows (each <= numel), and their
  // sum is kept <= numel (more means an overlap, which the sweep names).
  int64_t covered = 0;
  bool excess = false;
  for (size_t i = 0; i < boxes.size(); ++i) {
    const Box& b = boxes[i];
    if (b.offset.size() != rank || b.extent.size() != rank)
      return "piece " + std::to_string(i) + " " + box_text(b) + " does not have the tensor's " +
             std::to_string(rank) + " dimensions";
    int64_t volume = 1;
    for (size_t d = 0; d < rank; ++d) {
      if (b.offset[d] < 0 || b.extent[d] < 0 || b.offset[d] > shape[d] - b.extent[d])
        return "piece " + std::to_string(i) + " " + box_text(b) + " lies outside the tensor's shape " +
               shape_text(shape);
      volume *= b.extent[d];
    }
    if (volume > numel - covered) excess = true;
    else covered += volume;
  }
  if (rank == 0) {
    if (boxes.size() != 1)
      return std::to_string(boxes.size()) + " pieces for a tensor of one element (shape [])";
    return "";
  }
  // Overlap: a sweep along dimension 0 compares only pieces whose rows meet.
  std::vector<size_t> order;
  for (size_t i = 0; i < boxes.size(); ++i)
    if (!empty(boxes[i])) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return boxes[a].offset[0] != boxes[b].offset[0] ? boxes[a].offset[0] < boxes[b].offset[0] : a < b;
  });
  for (size_t k = 0; k < order.size(); ++k) {
    const Box& a = boxes[order[k]];
    for (size_t l = k + 1; l < order.size() && boxes[order[l]].offset[0] < a.offset[0] + a.extent[0]; ++l) {
      const Box& b = boxes[order[l]];
      if (overlap(a, b)) {
        const size_t i = std::min(order[k], order[l]), j = std::max(order[k], order[l]);
        return "piece " + std::to_string(i) + " " + box_text(boxes[i]) + " overlaps piece " +
               std::to_string(j) + " " + box_text(boxes[j]);
      }
    }
  }
  if (excess) return "the pieces hold more than the tensor's " + std::to_string(numel) + " elements";
  // Disjoint and inside: they tile the tensor exactly when their volumes add up.
  if (covered != numel)
    return "the pieces leave " + std::to_string(numel - covered) + " of " + std::to_string(numel) +
           " elements uncovered";
  return "";
}

int64_t copy_intersection(const Box& src, const void* src_data, const Box& dst, float* out) {
  const size_t rank = src.offset.size();
  const char* from = static_cast<const char*>(src_data);
  if (rank == 0) {
    std::memcpy(out, from, sizeof(float));
    return 1;
  }
  std::vector<int64_t> lo(rank), hi(rank);
  for (size_t d = 0; d < rank; ++d) {
    lo[d] = std::max(src.offset[d], dst.offset[d]);
    hi[d] = std::min(src.offset[d] + src.extent[d], dst.offset[d] + dst.extent[d]);
    if (lo[d] >= hi[d]) return 0;
  }
  // Row-major strides of both boxes.
  std::vector<int64_t> ss(rank, 1), ds(rank, 1);
  for (size_t d = rank - 1; d-- > 0;) {
    ss[d] = ss[d + 1] * src.extent[d + 1];
    ds[d] = ds[d + 1] * dst.extent[d + 1];
  }
  // One contiguous run along the last dimension per index of the others.
  const int64_t run = hi[rank - 1] - lo[rank - 1];
  std::vector<int64_t> idx(lo.begin(), lo.end());
  int64_t copied = 0;
  for (;;) {
    int64_t s = 0, t = 0;
    for (size_t d = 0; d < rank; ++d) {
      s += (idx[d] - src.offset[d]) * ss[d];
      t += (idx[d] - dst.offset[d]) * ds[d];
    }
    std::memcpy(out + t, from + s * static_cast<int64_t>(sizeof(float)), static_cast<size_t>(run) * sizeof(float));
    copied += run;
    size_t d = rank - 1;  // advance the index over all but the last dimension
    while (d-- > 0) {
      if (++idx[d] < hi[d]) break;
      idx[d] = lo[d];
    }
    if (d == static_cast<size_t>(-1)) break;
  }
  return copied;
}

}  // namespace dyt::checkpoint
