// The flat parameter buffer's table of contents. Parameters, gradients and
// optimizer state are single buffers with the same offsets; data-parallel
// reduction, ZeRO sharding, checkpoints and export all walk this table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/mesh.h"
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

// Which tensor-parallel rank a layout is for: rank `rank` of `size`.
struct TpRank {
  int rank = 0, size = 1;
};

// One tensor-parallel rank's part of a global tensor: a contiguous block
// along split_dim (or the whole tensor when split_dim is -1).
struct LocalShard {
  std::vector<int64_t> shape;  // local shape
  int split_dim = -1;          // -1 when the rank holds the whole tensor
  int64_t start = 0;           // first global index along split_dim
  int64_t numel = 0;
  // How many tp ranks hold this same block (1 for a true shard; tp for a
  // replicated tensor; tp / n_kv_heads for k and v when there are fewer KV
  // heads than ranks), and this rank's index among them. Gradients of a
  // block held by several ranks are summed over them when each saw only part
  // of the data; the block counts once in the gradient norm and is written
  // once in a checkpoint, by index 0.
  int replicas = 1;
  int replica_index = 0;
  bool owner() const { return replica_index == 0; }
};

// What a tensor is, which decides its initial value and whether it decays.
enum class ParamKind { Matrix, Embedding, NormWeight, NormAlpha, NormBias, EmbedScale };

// Which block kind a norm belongs to (decides α₀).
enum class NormSlot { None, Attention, Ffn, Final };

struct ParamEntry {
  std::string name;            // Hugging Face name, e.g. model.layers.3.mlp.up_proj.weight
  std::vector<int64_t> shape;  // this rank's shape (the global one when tp = 1)
  std::vector<int64_t> global_shape;
  LocalShard shard;            // where shape sits in global_shape
  int64_t offset = 0;          // in elements, into the flat buffer
  int64_t numel = 0;           // elements of this rank's block
  Split split = Split::Replicated;
  ParamKind kind = ParamKind::Matrix;
  NormSlot slot = NormSlot::None;

  // AdamW decays matrices only, never α, γ, β or the embedding scale.
  bool weight_decay() const { return kind == ParamKind::Matrix || kind == ParamKind::Embedding; }
};

// Every tensor starts at a multiple of this many elements (256 bytes of
// fp32, 128 of bf16), so each is aligned for vector loads and for cuBLASLt's
// widest algorithms whatever precedes it (α is one element). The gaps stay
// zero in every flat buffer: no gradient reaches them and AdamW skips them.
inline constexpr int64_t kParamAlign = 64;

// The flat buffers of one tensor-parallel rank: its block of every tensor
// (Megatron's placement, docs/parallel.md). Query heads, FFN columns and the
// vocabulary divide into tp equal blocks; KV heads too when tp divides them,
// and when there are fewer KV heads than ranks each rank holds the one KV
// head its query heads read (tp a multiple of n_kv_heads). Throws LayoutError
// naming the tensor and the dimension when tp cannot divide the model.
class ParamLayout {
 public:
  explicit ParamLayout(const ModelDims& dims, TpRank tp = {});

  const std::vector<ParamEntry>& entries() const { return entries_; }
  // Elements of a flat buffer: the last tensor's end (gaps included).
  int64_t total() const { return total_; }
  // The model's parameter count: the tensors' elements, without the gaps.
  int64_t parameters() const { return parameters_; }
  // Throws std::out_of_range naming the tensor when absent.
  const ParamEntry& at(const std::string& name) const;
  const ParamEntry* find(const std::string& name) const;
  TpRank tp() const { return tp_; }

 private:
  void add(const ModelDims& dims, std::string name, std::vector<int64_t> shape, Split split,
           ParamKind kind, NormSlot slot = NormSlot::None);

  TpRank tp_;
  std::vector<ParamEntry> entries_;
  int64_t total_ = 0;
  int64_t parameters_ = 0;
};

// Rank tp.rank's block of a tensor of `global_shape` split as `split`; k and
// v (is_kv) follow the KV-head rule above. Throws LayoutError.
LocalShard local_shard(const ModelDims& dims, const std::string& name,
                       const std::vector<int64_t>& global_shape, Split split, bool is_kv, TpRank tp);

// One rank's shapes under tensor parallelism: its query heads, KV heads
// (at least one), FFN width and vocabulary (what the model and the
// activation arena of that rank see). Throws LayoutError as ParamLayout.
ModelDims shard_dims(const ModelDims& dims, int tp);

// "model.layers.<i>.<suffix>"
std::string layer_name(int64_t layer, const std::string& suffix);

}  // namespace dyt::trainer
