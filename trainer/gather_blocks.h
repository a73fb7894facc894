// Reassembles whole tensors from the tensor-parallel ranks' blocks: the
// final export of a tp > 1 run (Hugging Face files hold whole tensors) and
// the tests that compare a tp run with the single process.
#pragma once

#include <vector>

#include "parallel/communicator.h"
#include "trainer/model_dims.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

// Every rank of `tp` passes its flat buffer (mine.total() floats, mine being
// its ParamLayout of `dims`); every rank gets the flat buffer of
// ParamLayout(dims) (tp = 1 offsets) holding the whole tensors. Collective
// over tp; costs one all-gather of the ranks' buffers.
std::vector<float> gather_blocks(const ModelDims& dims, const ParamLayout& mine, const float* local,
                                 parallel::Communicator& tp);

// Copies the block of `entry` (its shard within global entry `whole`) from
// the rank's buffer into the whole tensor's buffer, or (to_block) back.
void copy_block(const ParamEntry& entry, const float* block, const ParamEntry& whole, float* global);
void copy_to_block(const ParamEntry& entry, float* block, const ParamEntry& whole, const float* global);

}  // namespace dyt::trainer
