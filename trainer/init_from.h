// checkpoint.init_from: a fresh run (step 0, a fresh optimizer) whose
// weights come from a model it did not train: a training checkpoint (a
// step-XXXXXXXX directory, or a checkpoint root whose newest is taken) or a
// Hugging Face directory (model.safetensors + config.json, as dyt-export and
// dyt-train write; F32 tensors). Each rank reads only its own blocks.
#pragma once

#include <string>

#include "trainer/model_dims.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

// Fills this rank's block of every tensor of `layout` in `params`
// (layout.total() floats) from `dir`, after checking that it holds this
// model: every tensor present at the model's global shape, none that the
// model lacks, and the same attention heads, KV heads and norm kind (which
// shapes alone do not show). An HF export whose embedding scale was folded
// into the embedding rows (hf_model.h) seeds model.embed_scale with 1, the
// same function. Returns what was read, for the log. Throws
// checkpoint::CheckpointError naming `dir` and the tensor or setting.
std::string load_init_weights(const std::string& dir, const ModelDims& dims, const ParamLayout& layout,
                              float* params);

}  // namespace dyt::trainer
