#include "trainer/hf_model.h"

#include <charconv>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "checkpoint/safetensors.h"
#include "common/shape_text.h"
#include "trainer/param_layout.h"
#include "trainer/program.h"

namespace dyt::trainer {
namespace {

// The shortest text that reads back as the same double (1e-05, 10000, 0.02).
std::string number(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

const char* boolean(bool b) { return b ? "true" : "false"; }

constexpr const char* kEmbedScale = "model.embed_scale";
constexpr const char* kEmbedTokens = "model.embed_tokens.weight";

}  // namespace

bool hf_folds_embed_scale(const ModelDims& d) { return d.norm == Norm::RMSNorm && d.embed_scale; }

std::string hf_config_json(const ModelDims& d, bool exported) {
  const bool llama = d.norm == Norm::RMSNorm;
  const bool folded = exported && hf_folds_embed_scale(d);
  std::ostringstream o;
  o << "{\n";
  if (llama) {
    o << "  \"architectures\": [\"LlamaForCausalLM\"],\n"
      << "  \"model_type\": \"llama\",\n";
  } else {
    o << "  \"architectures\": [\"DytLlamaForCausalLM\"],\n"
      << "  \"model_type\": \"dyt_llama\",\n"
      << "  \"auto_map\": {\n"
      << "    \"AutoConfig\": \"configuration_dyt_llama.DytLlamaConfig\",\n"
      << "    \"AutoModel\": \"modeling_dyt_llama.DytLlamaModel\",\n"
      << "    \"AutoModelForCausalLM\": \"modeling_dyt_llama.DytLlamaForCausalLM\"\n"
      << "  },\n";
  }
  o << "  \"vocab_size\": " << d.vocab << ",\n"
    << "  \"hidden_size\": " << d.d << ",\n"
    << "  \"intermediate_size\": " << d.ffn << ",\n"
    << "  \"num_hidden_layers\": " << d.layers << ",\n"
    << "  \"num_attention_heads\": " << d.heads << ",\n"
    << "  \"num_key_value_heads\": " << d.kv_heads << ",\n"
    << "  \"head_dim\": " << d.head_dim << ",\n"
    << "  \"max_position_embeddings\": " << d.max_seq_len << ",\n"
    << "  \"rope_theta\": " << number(d.rope_theta) << ",\n"
    << "  \"rope_scaling\": null,\n"
    << "  \"rms_norm_eps\": " << number(d.norm_eps) << ",\n"
    << "  \"hidden_act\": \"silu\",\n"
    << "  \"attention_bias\": false,\n"
    << "  \"attention_dropout\": 0.0,\n"
    << "  \"mlp_bias\": false,\n"
    << "  \"pretraining_tp\": 1,\n"
    << "  \"initializer_range\": " << number(d.init_std) << ",\n"
    << "  \"tie_word_embeddings\": false,\n"
    << "  \"use_cache\": true,\n"
    << "  \"torch_dtype\": \"float32\",\n";
  if (!llama)
    o << "  \"alpha_init_attention\": " << number(d.alpha0.attention) << ",\n"
      << "  \"alpha_init_ffn\": " << number(d.alpha0.ffn) << ",\n"
      << "  \"alpha_init_final\": " << number(d.alpha0.final) << ",\n";
  if (folded) o << "  \"embed_scale_folded\": true,\n";
  o << "  \"norm\": \"" << norm_name(d.norm) << "\",\n"
    << "  \"norm_bias\": " << boolean(d.norm_bias) << ",\n"
    << "  \"embed_scale\": " << boolean(d.embed_scale && !folded) << "\n"
    << "}\n";
  return o.str();
}

void write_hf_model(const std::string& out_dir, const ModelDims& dims, const HfTensorReader& read) {
  const bool fold = hf_folds_embed_scale(dims);
  const ParamLayout layout(dims);  // tp = 1: every tensor whole, in the export's order
  std::vector<checkpoint::TensorSpec> specs;
  for (const ParamEntry& e : layout.entries())
    if (!(fold && e.name == kEmbedScale)) specs.push_back({e.name, e.global_shape});
  float scale = 1.0f;
  if (fold) {
    std::vector<float> s;
    read(kEmbedScale, s);
    if (s.size() != 1)
      throw std::logic_error(std::string("write_hf_model: ") + kEmbedScale + " read as " +
                             std::to_string(s.size()) + " values");
    scale = s[0];
  }
  const std::filesystem::path out(out_dir);
  std::filesystem::create_directories(out);
  checkpoint::write_safetensors(
      (out / "model.safetensors").string(), specs,
      [&](size_t i, std::vector<float>& scratch) {
        read(specs[i].name, scratch);
        if (static_cast<int64_t>(scratch.size()) != layout.find(specs[i].name)->numel)
          throw std::logic_error("write_hf_model: " + specs[i].name + " read as " +
                                 std::to_string(scratch.size()) + " values, its shape is " +
                                 shape_text(specs[i].shape));
        // The product the forward computes (scale_forward: s · x in fp32).
        if (fold && specs[i].name == kEmbedTokens)
          for (float& x : scratch) x = scale * x;
        return scratch.data();
      },
      {{"format", "pt"}});
  write_text_file((out / "config.json").string(), hf_config_json(dims, /*exported=*/true));
  write_hf_sources(out_dir, dims);
}

void write_hf_sources(const std::string& out_dir, const ModelDims& dims) {
  for (const HfSourceFile& f : hf_source_files()) {
    const std::filesystem::path p = std::filesystem::path(out_dir) / f.name;
    if (dims.norm == Norm::RMSNorm)
      std::filesystem::remove(p);
    else
      write_text_file(p.string(), f.text);
  }
}

}  // namespace dyt::trainer
