// Boxes of a global tensor: the pieces a checkpoint stores and the blocks a
// reader asks for. Whether pieces tile a tensor exactly, and copying where a
// stored piece and a wanted block intersect. Plain index arithmetic: no
// files, no model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dyt::checkpoint {

// offset[d] .. offset[d] + extent[d] along each dimension d of a tensor.
struct Box {
  std::vector<int64_t> offset, extent;
};

// "" when `boxes` tile a tensor of `shape` exactly: each lies inside it, no
// two share an element, and together they cover every element. Otherwise
// what is wrong, naming the pieces by index ("piece 3 [offset [2, 0],
// extent [1, 4]] overlaps piece 5 …", "… leave 12 of 48 elements uncovered").
std::string tiling_problem(const std::vector<int64_t>& shape, const std::vector<Box>& boxes);

// Copies the elements that `src` and `dst` share from `src_data` (the
// floats of src, row-major over src.extent, possibly unaligned) into `out`
// (row-major over dst.extent). Both boxes have the same rank. Returns the
// number of elements copied (0 when they do not intersect).
int64_t copy_intersection(const Box& src, const void* src_data, const Box& dst, float* out);

}  // namespace dyt::checkpoint
