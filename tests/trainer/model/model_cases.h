// The small models whose step the CUDA backend must reproduce: one per norm,
// GQA, a norm bias. Shared by the CPU golden-file test and the CUDA tests, so
// both hold the backends to the same numbers (tests/trainer/model/golden/).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "configs/config.h"

namespace dyt::trainer::test {

struct ModelCase {
  std::string name;
  config::NormKind norm;
  int kv_heads;
  bool norm_bias;
};

inline std::vector<ModelCase> model_cases() {
  return {{"dyt_gqa", config::DYT, 1, false},
          {"rmsnorm_gqa", config::RMSNORM, 1, false},
          {"dyisru_gqa", config::DYISRU, 1, false},
          {"dyt_mha_bias", config::DYT, 2, true}};
}

// Head size 32 (the CUDA attention's smallest), two layers, an odd vocabulary.
inline config::ModelConfig case_model(const ModelCase& c) {
  config::ModelConfig m;
  m.set_vocab_size(97);
  m.set_d_model(64);
  m.set_n_layers(2);
  m.set_n_heads(2);
  m.set_n_kv_heads(c.kv_heads);
  m.set_ffn_hidden(96);
  m.set_max_seq_len(64);
  m.set_norm(c.norm);
  m.set_norm_bias(c.norm_bias);
  return m;
}

inline constexpr int64_t kCaseBatch = 2, kCaseSeq = 13;
inline constexpr uint64_t kCaseSeed = 20240520;

// batch·seq token ids (and the same count of targets) from a fixed stream.
inline std::vector<int32_t> case_ids(int64_t vocab, unsigned stream) {
  std::mt19937 rng(1000 + stream);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(kCaseBatch * kCaseSeq));
  for (auto& x : ids) x = dist(rng);
  return ids;
}

inline std::string golden_path(const ModelCase& c) {
  return std::string(DYT_GOLDEN_DIR) + "/" + c.name + ".safetensors";
}

}  // namespace dyt::trainer::test
