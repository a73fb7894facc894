// Bridges the flat buffers and the named tensors that checkpoint/ and export
// read and write: the layout is the only map between the two.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "trainer/param_layout.h"
#include "trainer/model_dims.h"

namespace dyt::trainer {

// One TensorRef per layout entry, pointing into `buffer`.
std::vector<checkpoint::TensorRef> named_views(const ParamLayout& layout, const float* buffer);

// Copies every layout tensor from `tensors` into `buffer`. A missing tensor,
// an extra one or a shape mismatch throws checkpoint::CheckpointError naming
// `source` and the tensor.
void load_named(const ParamLayout& layout,
                const std::map<std::string, checkpoint::LoadedTensor>& tensors,
                const std::string& source, float* buffer);

}  // namespace dyt::trainer
