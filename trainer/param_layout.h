// The flat parameter buffer's table of contents. Parameters, gradients and
// optimizer state are single buffers with the same offsets; data-parallel
// reduction, ZeRO sharding, checkpoints and export all walk this table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model_dims.h"

namespace dyt::trainer {

// How tensor parallelism divides a stored tensor, in Megatron's words
// (weights are stored [out, in], so "column-parallel" splits dim 0).
enum class Split {
  Replicated,      // every rank holds all of it: norm parameters, α, the embedding scale
  ColumnParallel,  // dim 0 (outputs): q, k, v, gate, up
  RowParallel,     // dim 1 (inputs): o, down; their outputs are all-reduced
  VocabParallel,   // dim 0 over the vocabulary: the embedding and the LM head
};
const char* split_name(Split s);  // "replicated", "column-parallel", ...

// One tensor-parallel rank's part of a tensor: its local shape and where it
// starts in the global tensor along the split dimension.
struct LocalShard {
  std::vector<int64_t> shape;  // local shape
  int split_dim = -1;          // -1 when replicated
  int64_t start = 0;           // first global index along split_dim
  int64_t numel = 0;
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
  Split split = Split::Replicated;
  ParamKind kind = ParamKind::Matrix;
  NormSlot slot = NormSlot::None;

  // AdamW decays matrices only, never α, γ, β or the embedding scale.
  bool weight_decay() const { return kind == ParamKind::Matrix || kind == ParamKind::Embedding; }
  // Rank tp_rank's part under tp ranks (equal contiguous blocks). Throws
  // std::invalid_argument naming the tensor when tp does not divide the
  // split dimension.
  LocalShard local_shard(int tp_rank, int tp) const;
};

// Every tensor starts at a multiple of this many elements (256 bytes of
// fp32, 128 of bf16), so each is aligned for vector loads and for cuBLASLt's
// widest algorithms whatever precedes it (α is one element). The gaps stay
// zero in every flat buffer: no gradient reaches them and AdamW skips them.
inline constexpr int64_t kParamAlign = 64;

class ParamLayout {
 public:
  explicit ParamLayout(const ModelDims& dims);

  const std::vector<ParamEntry>& entries() const { return entries_; }
  // Elements of a flat buffer: the last tensor's end (gaps included).
  int64_t total() const { return total_; }
  // The model's parameter count: the tensors' elements, without the gaps.
  int64_t parameters() const { return parameters_; }
  // Throws std::out_of_range naming the tensor when absent.
  const ParamEntry& at(const std::string& name) const;
  const ParamEntry* find(const std::string& name) const;

 private:
  void add(std::string name, std::vector<int64_t> shape, Split split, ParamKind kind,
           NormSlot slot = NormSlot::None);

  std::vector<ParamEntry> entries_;
  int64_t total_ = 0;
  int64_t parameters_ = 0;
};

// "model.layers.<i>.<suffix>"
std::string layer_name(int64_t layer, const std::string& suffix);

}  // namespace dyt::trainer
