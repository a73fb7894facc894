// The model's own contracts, beyond the PyTorch parity of tests/reference:
// layout, deterministic initialisation, recomputation and accumulation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "configs/config.h"
#include "trainer/init.h"
#include "trainer/model_instance.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {
namespace {

config::ModelConfig small_model(config::NormKind norm = config::DYT) {
  config::ModelConfig m;
  m.set_vocab_size(53);
  m.set_d_model(24);
  m.set_n_layers(2);
  m.set_n_heads(4);
  m.set_n_kv_heads(2);
  m.set_ffn_hidden(40);
  m.set_norm(norm);
  return m;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(n);
  for (auto& x : t) x = dist(rng);
  return t;
}

TEST(ParamLayout, HuggingFaceNamesContiguousOffsetsAndDecayFlags) {
  config::ModelConfig m = small_model();
  m.set_norm_bias(true);
  const ParamLayout layout(model_dims(m));
  int64_t offset = 0;
  for (const ParamEntry& e : layout.entries()) {
    // Each tensor starts at the first aligned offset after the previous one.
    EXPECT_EQ(e.offset, (offset + kParamAlign - 1) / kParamAlign * kParamAlign) << e.name;
    offset = e.offset + e.numel;
    const bool is_matrix = e.shape.size() == 2;
    EXPECT_EQ(e.weight_decay(), is_matrix) << e.name;  // never α, γ, β or the embedding scale
  }
  EXPECT_EQ(offset, layout.total());
  EXPECT_EQ(layout.at("model.layers.1.self_attn.k_proj.weight").shape, (std::vector<int64_t>{12, 24}));
  EXPECT_EQ(layout.at("model.layers.0.mlp.down_proj.weight").shape, (std::vector<int64_t>{24, 40}));
  EXPECT_EQ(layout.at("model.layers.0.mlp.down_proj.weight").split, Split::RowParallel);
  EXPECT_EQ(layout.at("model.layers.0.mlp.up_proj.weight").split, Split::ColumnParallel);
  EXPECT_EQ(layout.at("lm_head.weight").split, Split::VocabParallel);
  EXPECT_NE(layout.find("model.layers.1.post_attention_layernorm.bias"), nullptr);
  EXPECT_NE(layout.find("model.embed_scale"), nullptr);
  EXPECT_EQ(layout.find("model.layers.2.input_layernorm.weight"), nullptr);
}

// Each tensor-parallel rank's part: the split dimension divided in equal
// contiguous blocks; replicated tensors whole on every rank.
TEST(ParamLayout, LocalShardsTileEachTensor) {
  const ParamLayout layout(model_dims(small_model()));
  const ParamEntry& down = layout.at("model.layers.0.mlp.down_proj.weight");  // [24, 40]
  const LocalShard s = down.local_shard(3, 4);
  EXPECT_EQ(s.split_dim, 1);
  EXPECT_EQ(s.shape, (std::vector<int64_t>{24, 10}));
  EXPECT_EQ(s.start, 30);
  EXPECT_EQ(s.numel, 240);
  const LocalShard q = layout.at("model.layers.0.self_attn.q_proj.weight").local_shard(1, 2);
  EXPECT_EQ(q.split_dim, 0);
  EXPECT_EQ(q.start, q.shape[0]);
  const LocalShard a = layout.at("model.norm.alpha").local_shard(1, 2);
  EXPECT_EQ(a.split_dim, -1);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{1}));
  for (const ParamEntry& e : layout.entries()) {
    if (e.split == Split::VocabParallel) continue;  // 53 does not divide; checked below
    int64_t total = 0;
    for (int r = 0; r < 2; ++r) total += e.local_shard(r, 2).numel;
    EXPECT_EQ(total, e.split == Split::Replicated ? 2 * e.numel : e.numel) << e.name;
  }
  // The vocabulary of 53 does not divide by 2: the error names the tensor.
  try {
    layout.at("lm_head.weight").local_shard(0, 2);
    ADD_FAILURE() << "an uneven vocab split was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight (vocab-parallel)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(down.local_shard(4, 4), std::invalid_argument);
}

TEST(ParamLayout, RmsNormHasNoAlphaNoScale) {
  const ParamLayout layout(model_dims(small_model(config::RMSNORM)));
  for (const ParamEntry& e : layout.entries()) {
    EXPECT_NE(e.kind, ParamKind::NormAlpha) << e.name;
    EXPECT_NE(e.kind, ParamKind::EmbedScale) << e.name;
  }
}

TEST(Init, DeterministicPerSeedAndTakesAlphaFromConfig) {
  config::ModelConfig m = small_model();
  m.mutable_alpha_init()->set_attention(0.7);
  m.mutable_alpha_init()->set_final(0.3);
  ModelInstance a(m, 1, 4, false), b(m, 1, 4, false), c(m, 1, 4, false);
  a.init(7);
  b.init(7);
  c.init(8);
  EXPECT_EQ(0, std::memcmp(a.params().host_master(), b.params().host_master(), a.layout().total() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(a.params().host_master(), c.params().host_master(), a.layout().total() * sizeof(float)));
  const auto& L = a.layout();
  const float* p = a.params().host_master();
  EXPECT_FLOAT_EQ(p[L.at("model.layers.1.input_layernorm.alpha").offset], 0.7f);
  EXPECT_FLOAT_EQ(p[L.at("model.layers.1.post_attention_layernorm.alpha").offset],
                  static_cast<float>(config::width_rule_alpha(24, false)));
  EXPECT_FLOAT_EQ(p[L.at("model.norm.alpha").offset], 0.3f);
  EXPECT_FLOAT_EQ(p[L.at("model.embed_scale").offset], std::sqrt(24.0f));
  EXPECT_FLOAT_EQ(p[L.at("model.norm.weight").offset + 5], 1.0f);
  // Matrices: N(0, init_std²), checked loosely on the largest one.
  const ParamEntry& e = L.at("lm_head.weight");
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < e.numel; ++i) s += p[e.offset + i], s2 += double(p[e.offset + i]) * p[e.offset + i];
  EXPECT_NEAR(s / e.numel, 0.0, 0.004);
  EXPECT_NEAR(std::sqrt(s2 / e.numel), 0.02, 0.002);
}

TEST(Init, CounterNormalIsStandardNormal) {
  double s = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double z = counter_normal(99, i);
    s += z;
    s2 += z * z;
  }
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(s2 / n, 1.0, 0.01);
}

// Recomputing the block activations in the backward gives the same bits.
TEST(Model, RecomputeIsBitIdentical) {
  for (auto norm : {config::RMSNORM, config::DYT, config::DYISRU}) {
    const config::ModelConfig m = small_model(norm);
    ModelInstance plain(m, 2, 6, false), recompute(m, 2, 6, true);
    plain.init(3);
    recompute.init(3);
    const auto tok = random_tokens(13, m.vocab_size(), 1);
    const double l1 = plain.forward_backward(tok.data(), tok.data() + 1, 1.0f / 12);
    const double l2 = recompute.forward_backward(tok.data(), tok.data() + 1, 1.0f / 12);
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(0, std::memcmp(plain.params().host_grads(), recompute.params().host_grads(),
                             plain.layout().total() * sizeof(float)))
        << "norm " << norm;
  }
}

// Two micro-batches of one sequence accumulate to the gradient of one
// micro-batch of two sequences (up to fp32 summation order).
TEST(Model, GradientAccumulationMatchesLargerBatch) {
  const config::ModelConfig m = small_model();
  const int64_t T = 5;
  ModelInstance one(m, 1, T, false), two(m, 2, T, false);
  one.init(11);
  two.init(11);
  auto tokens = random_tokens(2 * T, m.vocab_size(), 2), targets = random_tokens(2 * T, m.vocab_size(), 3);
  const float scale = 1.0f / (2 * T);
  const double big = two.forward_backward(tokens.data(), targets.data(), scale);
  double acc = one.forward_backward(tokens.data(), targets.data(), scale);
  acc += one.forward_backward(tokens.data() + T, targets.data() + T, scale);
  EXPECT_NEAR(acc, big, 1e-9 * std::abs(big) + 1e-9);
  double num = 0, den = 0;
  for (int64_t i = 0; i < one.layout().total(); ++i) {
    const double d = double(one.params().host_grads()[i]) - two.params().host_grads()[i];
    num += d * d;
    den += double(two.params().host_grads()[i]) * two.params().host_grads()[i];
  }
  EXPECT_LT(std::sqrt(num / den), 1e-6);
}

TEST(Model, ForwardLossEqualsForwardBackwardLoss) {
  const config::ModelConfig m = small_model();
  ModelInstance model(m, 2, 4, false);
  model.init(5);
  const auto tok = random_tokens(9, m.vocab_size(), 4);
  const double f = model.forward(tok.data(), tok.data() + 1);
  const double fb = model.forward_backward(tok.data(), tok.data() + 1, 1.0f);
  EXPECT_NEAR(f, fb, 1e-6 * std::abs(f));
  EXPECT_NEAR(f / 8, std::log(53.0), 0.1);  // an untrained model is near uniform
}

TEST(Model, OutOfRangeTokenThrows) {
  const config::ModelConfig m = small_model();
  ModelInstance model(m, 1, 4, false);
  model.init(5);
  std::vector<int32_t> tok = {1, 2, 53, 4}, tgt = {1, 2, 3, 4};
  EXPECT_THROW(model.forward(tok.data(), tgt.data()), std::invalid_argument);
}

}  // namespace
}  // namespace dyt::trainer
