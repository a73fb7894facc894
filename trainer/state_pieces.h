// Which parts of a rank's flat buffers go into a checkpoint and come back
// out of one, as boxes of the global tensors (checkpoint/boxes.h): the
// bridge between the layout's flat offsets and the checkpoint's model space.
#pragma once

#include <vector>

#include "checkpoint/boxes.h"
#include "trainer/dp_partition.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

// The part of the flat buffer whose AdamW moments this rank holds: its
// dp_partition range of layout.total() under ZeRO-1, the whole buffer
// otherwise. Saving and restoring the moments go through this one function,
// so they follow whatever the optimizer keeps.
FlatRange moment_range(const ParamLayout& layout, int dp, int dp_rank, bool zero1);

// The part of entry e's local block that lies in the flat range r, as boxes
// of the global tensor: a 2-D block cut by a flat range is a partial first
// row, whole rows and a partial last row (each contiguous in the buffer,
// starting at flat_begin); local columns and rows map to global ones through
// e.shard (split_dim, start). Empty when r misses the entry. Tensors of more
// than 2 dimensions are a programmer error (std::logic_error).
struct FlatBox {
  checkpoint::Box box;
  int64_t flat_begin = 0;  // index in the flat buffer of the box's first element
};
std::vector<FlatBox> entry_boxes(const ParamEntry& e, FlatRange r);

// The box of the global tensor that e's local block is.
checkpoint::Box block_box(const ParamEntry& e);

}  // namespace dyt::trainer
