// The model as a Hugging Face directory that `transformers` loads: the
// weights (model.safetensors), config.json, and for DyT / DyISRU the
// modelling code beside them (trainer/hf/*.py, compiled into the program).
// What is written for each kind is in docs/huggingface.md.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "trainer/model_dims.h"

namespace dyt::trainer {

// An RMSNorm model is exported as a plain LlamaForCausalLM, which has no
// embedding scale: the scalar is multiplied into model.embed_tokens.weight
// (each element rounded once, the same product the forward computes, so the
// exported model's fp32 forward is the same) and model.embed_scale is left out.
bool hf_folds_embed_scale(const ModelDims& dims);

// config.json. `exported` = false describes the model's own tensors (every
// tensor of the layout, as dyt-grad writes them); true describes what
// write_hf_model writes (the scale folded where hf_folds_embed_scale). Both
// carry LlamaConfig's fields (max_position_embeddings, rope_theta,
// rms_norm_eps, num_key_value_heads, tie_word_embeddings false, torch_dtype
// float32, …) and `norm`, `norm_bias`, `embed_scale` for what LlamaConfig
// lacks; DyT / DyISRU name the modelling code in auto_map.
std::string hf_config_json(const ModelDims& dims, bool exported = false);

// Fills `out` with the whole (tp = 1) tensor of the layout named `name`.
using HfTensorReader = std::function<void(const std::string& name, std::vector<float>& out)>;

// Writes <out_dir>/model.safetensors (format "pt", the layout's tensors in
// its order, one at a time through `read`), config.json (exported), and for
// DyT / DyISRU configuration_dyt_llama.py and modeling_dyt_llama.py.
void write_hf_model(const std::string& out_dir, const ModelDims& dims, const HfTensorReader& read);

// The modelling code beside a config.json: written for DyT / DyISRU,
// removed for RMSNorm (a file left by an earlier export of another kind
// would contradict config.json).
void write_hf_sources(const std::string& out_dir, const ModelDims& dims);

// The modelling code's files, as compiled in: {file name, text}.
struct HfSourceFile {
  const char* name;
  const char* text;
};
const std::vector<HfSourceFile>& hf_source_files();

}  // namespace dyt::trainer
