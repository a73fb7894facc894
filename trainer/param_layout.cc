#include "trainer/param_layout.h"

#include <stdexcept>

#include "parallel/mesh.h"

namespace dyt::trainer {

std::string layer_name(int64_t layer, const std::string& suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

ParamLayout::ParamLayout(const ModelDims& dims, TpRank tp) : tp_(tp) {
  shard_dims(dims, tp.size);  // heads, KV heads, FFN and vocabulary must divide (LayoutError)
  const int64_t d = dims.d;
  const auto add_ = [&](std::string name, std::vector<int64_t> shape, Split split, ParamKind kind,
                        NormSlot slot = NormSlot::None) {
    add(dims, std::move(name), std::move(shape), split, kind, slot);
  };
  auto norm = [&](const std::string& prefix, NormSlot slot) {
    add_(prefix + ".weight", {d}, Split::Replicated, ParamKind::NormWeight, slot);
    if (dims.has_alpha()) add_(prefix + ".alpha", {1}, Split::Replicated, ParamKind::NormAlpha, slot);
    if (dims.norm_bias) add_(prefix + ".bias", {d}, Split::Replicated, ParamKind::NormBias, slot);
  };

  add_("model.embed_tokens.weight", {dims.vocab, d}, Split::VocabParallel, ParamKind::Embedding);
  if (dims.embed_scale) add_("model.embed_scale", {1}, Split::Replicated, ParamKind::EmbedScale);
  for (int64_t l = 0; l < dims.layers; ++l) {
    norm(layer_name(l, "input_layernorm"), NormSlot::Attention);
    add_(layer_name(l, "self_attn.q_proj.weight"), {dims.q_dim(), d}, Split::ColumnParallel, ParamKind::Matrix);
    add_(layer_name(l, "self_attn.k_proj.weight"), {dims.kv_dim(), d}, Split::ColumnParallel, ParamKind::Matrix);
    add_(layer_name(l, "self_attn.v_proj.weight"), {dims.kv_dim(), d}, Split::ColumnParallel, ParamKind::Matrix);
    add_(layer_name(l, "self_attn.o_proj.weight"), {d, dims.q_dim()}, Split::RowParallel, ParamKind::Matrix);
    norm(layer_name(l, "post_attention_layernorm"), NormSlot::Ffn);
    add_(layer_name(l, "mlp.gate_proj.weight"), {dims.ffn, d}, Split::ColumnParallel, ParamKind::Matrix);
    add_(layer_name(l, "mlp.up_proj.weight"), {dims.ffn, d}, Split::ColumnParallel, ParamKind::Matrix);
    add_(layer_name(l, "mlp.down_proj.weight"), {d, dims.ffn}, Split::RowParallel, ParamKind::Matrix);
  }
  norm("model.norm", NormSlot::Final);
  add_("lm_head.weight", {dims.vocab, d}, Split::VocabParallel, ParamKind::Matrix);
}

void ParamLayout::add(const ModelDims& dims, std::string name, std::vector<int64_t> shape,
                      Split split, ParamKind kind, NormSlot slot) {
  const bool is_kv = name.ends_with("self_attn.k_proj.weight") || name.ends_with("self_attn.v_proj.weight");
  ParamEntry e;
  e.shard = local_shard(dims, name, shape, split, is_kv, tp_);
  e.name = std::move(name);
  e.global_shape = std::move(shape);
  e.shape = e.shard.shape;
  e.numel = e.shard.numel;
  e.offset = (total_ + kParamAlign - 1) / kParamAlign * kParamAlign;
  e.split = split;
  e.kind = kind;
  e.slot = slot;
  total_ = e.offset + e.numel;
  parameters_ += e.numel;
  entries_.push_back(std::move(e));
}

const ParamEntry* ParamLayout::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const ParamEntry& ParamLayout::at(const std::string& name) const {
  if (const ParamEntry* e = find(name)) return *e;
  throw std::out_of_range("parameter layout has no tensor named " + name);
}

const char* split_name(Split s) {
  switch (s) {
    case Split::Replicated: return "replicated";
    case Split::ColumnParallel: return "column-parallel";
    case Split::RowParallel: return "row-parallel";
    case Split::VocabParallel: return "vocab-parallel";
  }
  return "?";
}

namespace {

[[noreturn]] void not_divisible(const std::string& what, int64_t n, int tp, const char* why) {
  throw parallel::LayoutError("parallel.tp = " + std::to_string(tp) + " cannot split " + what +
                              " (" + std::to_string(n) + "): " + why);
}

}  // namespace

LocalShard local_shard(const ModelDims& dims, const std::string& name,
                       const std::vector<int64_t>& global_shape, Split split, bool is_kv, TpRank tp) {
  if (tp.size < 1 || tp.rank < 0 || tp.rank >= tp.size)
    throw parallel::LayoutError(name + ": tensor-parallel rank " + std::to_string(tp.rank) + " of " +
                                std::to_string(tp.size) + " does not exist");
  LocalShard s;
  s.shape = global_shape;
  s.numel = 1;
  if (split == Split::Replicated) {
    s.replicas = tp.size;
    s.replica_index = tp.rank;
  } else {
    s.split_dim = split == Split::RowParallel ? 1 : 0;
    const int64_t global = global_shape.at(static_cast<size_t>(s.split_dim));
    if (is_kv && dims.kv_heads < tp.size) {
      // Fewer KV heads than ranks: rank r reads KV head r·kv/tp (its query
      // heads' group), which tp/kv neighbouring ranks hold alike.
      if (tp.size % dims.kv_heads != 0)
        not_divisible(name + "'s KV heads", dims.kv_heads, tp.size,
                      "with fewer KV heads than ranks, tp must be a multiple of n_kv_heads");
      s.replicas = static_cast<int>(tp.size / dims.kv_heads);
      s.replica_index = tp.rank % s.replicas;
      s.shape[0] = dims.head_dim;
      s.start = dims.head_dim * (tp.rank / s.replicas);
    } else {
      if (global % tp.size != 0)
        not_divisible(name + " (" + split_name(split) + ") dimension " + std::to_string(s.split_dim),
                      global, tp.size, "tp must divide it");
      s.shape[static_cast<size_t>(s.split_dim)] = global / tp.size;
      s.start = global / tp.size * tp.rank;
    }
  }
  for (int64_t d : s.shape) s.numel *= d;
  return s;
}

ModelDims shard_dims(const ModelDims& dims, int tp) {
  const auto divide = [&](int64_t n, const char* what) {
    if (n % tp != 0) not_divisible(what, n, tp, "tp must divide it");
    return n / tp;
  };
  ModelDims s = dims;
  s.heads = divide(dims.heads, "model.n_heads");
  if (dims.kv_heads >= tp) {
    s.kv_heads = divide(dims.kv_heads, "model.n_kv_heads");
  } else {
    if (tp % dims.kv_heads != 0)
      not_divisible("model.n_kv_heads", dims.kv_heads, tp,
                    "with fewer KV heads than ranks, tp must be a multiple of n_kv_heads");
    s.kv_heads = 1;
  }
  s.ffn = divide(dims.ffn, "model.ffn_hidden");
  s.vocab = divide(dims.vocab, "model.vocab_size");
  return s;
}

}  // namespace dyt::trainer
