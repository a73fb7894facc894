#include "trainer/init_from.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "checkpoint/boxes.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/json_lite.h"
#include "checkpoint/safetensors.h"
#include "common/shape_text.h"
#include "configs/config.h"
#include "trainer/resume.h"
#include "trainer/state_pieces.h"

namespace dyt::trainer {
namespace {

using checkpoint::CheckpointError;
namespace fs = std::filesystem;

// What the source says of the settings its tensors' shapes do not show.
struct SourceModel {
  int64_t heads = 0, kv_heads = 0;
  std::string norm;             // "rmsnorm", "dyt", "dyisru"
  bool embed_scale_folded = false;
};

// A source of whole tensors: their global shapes, and a box of one.
struct Source {
  std::string what;  // for messages: "checkpoint '…'" or "Hugging Face directory '…'"
  std::map<std::string, std::vector<int64_t>> shapes;
  std::function<void(const std::string& name, const checkpoint::Box& box, float* out)> read;
  SourceModel model;
};

void check_model(const Source& s, const ModelDims& d) {
  const auto differs = [&](const std::string& setting, const std::string& theirs, const std::string& ours) {
    throw CheckpointError("checkpoint.init_from: " + s.what + " holds a model with " + setting + " " + theirs +
                          ", this run's model has " + ours + " (check the config's model)");
  };
  if (s.model.norm != norm_name(d.norm)) differs("norm", s.model.norm, norm_name(d.norm));
  if (s.model.heads != d.heads)
    differs("attention heads (n_heads)", std::to_string(s.model.heads), std::to_string(d.heads));
  if (s.model.kv_heads != d.kv_heads)
    differs("KV heads (n_kv_heads)", std::to_string(s.model.kv_heads), std::to_string(d.kv_heads));
}

Source checkpoint_source(const checkpoint::Checkpoint& ck) {
  Source s;
  s.what = "checkpoint '" + ck.path + "'";
  for (const auto& [name, shape] : ck.shapes())
    if (name.rfind(kExpAvgPrefix, 0) != 0 && name.rfind(kExpAvgSqPrefix, 0) != 0) s.shapes[name] = shape;
  s.read = [ck](const std::string& name, const checkpoint::Box& box, float* out) { ck.read(name, box, out); };
  const ModelDims theirs = model_dims(
      config::parse_run_config(ck.run_config, ck.path + "/manifest.pbtxt (run_config)", {}).model());
  s.model = {theirs.heads, theirs.kv_heads, norm_name(theirs.norm), false};
  return s;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream o;
  o << f.rdbuf();
  if (!f) throw CheckpointError("cannot read " + p.string());
  return o.str();
}

SourceModel hf_config(const fs::path& path) {
  checkpoint::json::Value v;
  try {
    v = checkpoint::json::parse(read_text(path), checkpoint::json::Numbers::kRealsToo);
  } catch (const checkpoint::json::JsonError& e) {
    throw CheckpointError(path.string() + ": not JSON: " + e.what());
  }
  const auto integer = [&](const char* key) -> std::optional<int64_t> {
    const checkpoint::json::Value* x = v.find(key);
    if (!x) return std::nullopt;
    if (!x->is_int() || x->as_int() < 1)
      throw CheckpointError(path.string() + ": " + key + " must be a positive integer");
    return x->as_int();
  };
  if (!v.is_object()) throw CheckpointError(path.string() + ": not a JSON object");
  SourceModel m;
  const std::optional<int64_t> heads = integer("num_attention_heads");
  if (!heads) throw CheckpointError(path.string() + ": no num_attention_heads");
  m.heads = *heads;
  m.kv_heads = integer("num_key_value_heads").value_or(m.heads);  // LlamaConfig's default
  // A plain Llama config (no "norm") is RMSNorm.
  const checkpoint::json::Value* norm = v.find("norm");
  if (norm && !norm->is_string()) throw CheckpointError(path.string() + ": norm must be a string");
  m.norm = norm ? norm->as_string() : "rmsnorm";
  const checkpoint::json::Value* folded = v.find("embed_scale_folded");
  m.embed_scale_folded = folded && folded->is_bool() && folded->as_bool();
  return m;
}

}  // namespace

std::string load_init_weights(const std::string& dir, const ModelDims& dims, const ParamLayout& layout,
                              float* params) {
  const fs::path root(dir);
  std::optional<checkpoint::Checkpoint> ck;
  std::shared_ptr<checkpoint::MappedSafetensors> file;
  Source s;
  if (fs::exists(root / "manifest.pbtxt")) {
    ck = checkpoint::load_checkpoint(dir);
  } else if (fs::exists(root / "model.safetensors")) {
    if (!fs::exists(root / "config.json"))
      throw CheckpointError("checkpoint.init_from: '" + dir + "' has model.safetensors but no config.json");
    file = std::make_shared<checkpoint::MappedSafetensors>((root / "model.safetensors").string());
    s.what = "Hugging Face directory '" + dir + "'";
    for (const auto& [name, entry] : file->header().tensors) s.shapes[name] = entry.shape;
    s.read = [file](const std::string& name, const checkpoint::Box& box, float* out) {
      const std::vector<int64_t>& shape = file->header().tensors.at(name).shape;
      const checkpoint::Box whole{std::vector<int64_t>(shape.size(), 0), shape};
      checkpoint::copy_intersection(whole, file->f32_bytes(name), box, out);
    };
    s.model = hf_config(root / "config.json");
  } else if (fs::is_directory(root)) {
    ck = checkpoint::load_latest_checkpoint(dir);
    if (!ck)
      throw CheckpointError("checkpoint.init_from: '" + dir +
                            "' holds no checkpoint (no manifest.pbtxt, no step-* directory) and no Hugging "
                            "Face model (model.safetensors + config.json)");
  } else {
    throw CheckpointError("checkpoint.init_from: '" + dir + "' is not a directory");
  }
  if (ck) s = checkpoint_source(*ck);

  check_model(s, dims);
  // Folded into the embedding rows: the scalar that leaves them as they are.
  const bool seed_scale = dims.embed_scale && !s.shapes.count("model.embed_scale") && s.model.embed_scale_folded;
  for (const ParamEntry& e : layout.entries()) {
    if (seed_scale && e.name == "model.embed_scale") continue;
    const auto it = s.shapes.find(e.name);
    if (it == s.shapes.end())
      throw CheckpointError("checkpoint.init_from: " + s.what + " has no tensor " + e.name +
                            ", which this run's model has (check the config's norm, norm_bias and embed_scale)");
    if (it->second != e.global_shape)
      throw CheckpointError("checkpoint.init_from: " + s.what + ": tensor " + e.name + " has shape " +
                            shape_text(it->second) + ", this run's model has " + shape_text(e.global_shape) +
                            " (check the config's model)");
  }
  for (const auto& [name, shape] : s.shapes)
    if (!layout.find(name))
      throw CheckpointError("checkpoint.init_from: " + s.what + ": tensor " + name +
                            " is not part of this run's model (check the config's norm, norm_bias and "
                            "embed_scale)");
  for (const ParamEntry& e : layout.entries()) {
    if (seed_scale && e.name == "model.embed_scale")
      params[e.offset] = 1.0f;
    else
      s.read(e.name, block_box(e), params + e.offset);
  }
  return s.what + (seed_scale ? " (model.embed_scale = 1: the export folded the scale into the embedding)" : "");
}

}  // namespace dyt::trainer
