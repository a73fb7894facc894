// The flat parameter buffer's table of contents. Parameters, gradients and
// optimizer state are single buffers with the same offsets; data-parallel
// reduction, ZeRO sharding, checkpoints and export all walk this table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model_dims.h"

namespace dyt::trainer {

// Tensor-parallel split of a stored tensor (weights are stored [out, in]).
enum class Split {
  None,     // replicated (norm parameters, α, embedding scale)
  Rows,     // dim 0: column-parallel linears (q, k, v, gate, up) split their outputs
  Columns,  // dim 1: row-parallel linears (o, down) split their inputs
  Vocab,    // dim 0 over the vocabulary: embedding and LM head
};

// What a tensor is, which decides its initial value and whether it decays.
enum class ParamKind { Matrix, Embedding, NormWeight, NormAlpha, NormBias, EmbedScale };

// Which block kind a norm belongs to (decides α₀).
enum class NormSlot { None, Attention, Ffn, Final };

struct ParamEntry {
  std::string name;            // Hugging Face name, e.g. model.layers.3.mlp.up_proj.weight
  std::vector<int64_t> shape;  // global shape
  int64_t offset = 0;          // in elements, into the flat buffer
  int64_t numel = 0;
  Split split = Split::None;
  ParamKind kind = ParamKind::Matrix;
  NormSlot slot = NormSlot::None;

  // AdamW decays matrices only, never α, γ, β or the embedding scale.
  bool weight_decay() const { return kind == ParamKind::Matrix || kind == ParamKind::Embedding; }
};

class ParamLayout {
 public:
  explicit ParamLayout(const ModelDims& dims);

  const std::vector<ParamEntry>& entries() const { return entries_; }
  int64_t total() const { return total_; }
  // Throws std::out_of_range naming the tensor when absent.
  const ParamEntry& at(const std::string& name) const;
  const ParamEntry* find(const std::string& name) const;

 private:
  void add(std::string name, std::vector<int64_t> shape, Split split, ParamKind kind,
           NormSlot slot = NormSlot::None);

  std::vector<ParamEntry> entries_;
  int64_t total_ = 0;
};

// "model.layers.<i>.<suffix>"
std::string layer_name(int64_t layer, const std::string& suffix);

}  // namespace dyt::trainer
