// A consolidated Hugging Face model (model.safetensors + config.json, and the
// modelling code of DyT / DyISRU: trainer/hf_model.h) from a checkpoint of any
// layout: what dyt-export writes.
#pragma once

#include <string>

#include "checkpoint/checkpoint.h"
#include "trainer/model_dims.h"

namespace dyt::trainer {

// Writes the Hugging Face directory of write_hf_model (every parameter of
// `dims`, whole, in the layout's order and under its Hugging Face name: the
// same bytes as the run's own export), reading one tensor at a time from
// `ck`, so the host holds one tensor, not the model.
// Throws checkpoint::CheckpointError naming the checkpoint and the tensor
// that is missing or of another shape.
void export_checkpoint(const checkpoint::Checkpoint& ck, const ModelDims& dims, const std::string& out_dir);

// The model's dims from the run config a checkpoint's manifest records.
ModelDims checkpoint_model_dims(const checkpoint::Checkpoint& ck);

}  // namespace dyt::trainer
