#include "trainer/param_layout.h"

#include <stdexcept>

namespace dyt::trainer {

std::string layer_name(int64_t layer, const std::string& suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

ParamLayout::ParamLayout(const ModelDims& dims) {
  const int64_t d = dims.d;
  auto norm = [&](const std::string& prefix, NormSlot slot) {
    add(prefix + ".weight", {d}, Split::Replicated, ParamKind::NormWeight, slot);
    if (dims.has_alpha()) add(prefix + ".alpha", {1}, Split::Replicated, ParamKind::NormAlpha, slot);
    if (dims.norm_bias) add(prefix + ".bias", {d}, Split::Replicated, ParamKind::NormBias, slot);
  };

  add("model.embed_tokens.weight", {dims.vocab, d}, Split::VocabParallel, ParamKind::Embedding);
  if (dims.embed_scale) add("model.embed_scale", {1}, Split::Replicated, ParamKind::EmbedScale);
  for (int64_t l = 0; l < dims.layers; ++l) {
    norm(layer_name(l, "input_layernorm"), NormSlot::Attention);
    add(layer_name(l, "self_attn.q_proj.weight"), {dims.q_dim(), d}, Split::ColumnParallel, ParamKind::Matrix);
    add(layer_name(l, "self_attn.k_proj.weight"), {dims.kv_dim(), d}, Split::ColumnParallel, ParamKind::Matrix);
    add(layer_name(l, "self_attn.v_proj.weight"), {dims.kv_dim(), d}, Split::ColumnParallel, ParamKind::Matrix);
    add(layer_name(l, "self_attn.o_proj.weight"), {d, dims.q_dim()}, Split::RowParallel, ParamKind::Matrix);
    norm(layer_name(l, "post_attention_layernorm"), NormSlot::Ffn);
    add(layer_name(l, "mlp.gate_proj.weight"), {dims.ffn, d}, Split::ColumnParallel, ParamKind::Matrix);
    add(layer_name(l, "mlp.up_proj.weight"), {dims.ffn, d}, Split::ColumnParallel, ParamKind::Matrix);
    add(layer_name(l, "mlp.down_proj.weight"), {d, dims.ffn}, Split::RowParallel, ParamKind::Matrix);
  }
  norm("model.norm", NormSlot::Final);
  add("lm_head.weight", {dims.vocab, d}, Split::VocabParallel, ParamKind::Matrix);
}

void ParamLayout::add(std::string name, std::vector<int64_t> shape, Split split, ParamKind kind,
                      NormSlot slot) {
  ParamEntry e;
  e.name = std::move(name);
  e.numel = 1;
  for (int64_t s : shape) e.numel *= s;
  e.shape = std::move(shape);
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

LocalShard ParamEntry::local_shard(int tp_rank, int tp) const {
  if (tp < 1 || tp_rank < 0 || tp_rank >= tp)
    throw std::invalid_argument(name + ": tensor-parallel rank " + std::to_string(tp_rank) +
                                " of " + std::to_string(tp) + " does not exist");
  LocalShard s;
  s.shape = shape;
  s.split_dim = split == Split::Replicated ? -1 : split == Split::RowParallel ? 1 : 0;
  if (s.split_dim >= 0) {
    const int64_t global = shape.at(static_cast<size_t>(s.split_dim));
    if (global % tp != 0)
      throw std::invalid_argument(name + " (" + split_name(split) + "): dimension " +
                                  std::to_string(s.split_dim) + " of " + std::to_string(global) +
                                  " does not divide over " + std::to_string(tp) + " ranks");
    s.shape[static_cast<size_t>(s.split_dim)] = global / tp;
    s.start = global / tp * tp_rank;
  }
  s.numel = 1;
  for (int64_t d : s.shape) s.numel *= d;
  return s;
}

}  // namespace dyt::trainer
