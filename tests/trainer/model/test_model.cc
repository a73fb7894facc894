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
#include "trainer/norm_health.h"
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

// Each tensor-parallel rank's block: the split dimension divided in equal
// contiguous blocks; replicated tensors whole on every rank; the blocks of
// the ranks tile each tensor once (counting each replicated block once).
TEST(ParamLayout, LocalShardsTileEachTensor) {
  config::ModelConfig m = small_model();
  m.set_vocab_size(56);
  const ModelDims dims = model_dims(m);
  const ParamLayout whole(dims);
  for (int tp : {1, 2, 4}) {
    std::vector<ParamLayout> ranks;
    for (int r = 0; r < tp; ++r) ranks.emplace_back(dims, TpRank{r, tp});
    for (const ParamEntry& g : whole.entries()) {
      int64_t owned = 0;
      for (const ParamLayout& rank : ranks) {
        const ParamEntry& e = rank.at(g.name);
        EXPECT_EQ(e.global_shape, g.shape) << g.name;
        EXPECT_EQ(e.numel, e.shard.numel);
        if (e.shard.owner()) owned += e.numel;
      }
      EXPECT_EQ(owned, g.numel) << g.name << " at tp " << tp;
    }
  }
  const ParamLayout r3(dims, {3, 4});
  const LocalShard& down = r3.at("model.layers.0.mlp.down_proj.weight").shard;  // [24, 40]
  EXPECT_EQ(down.split_dim, 1);
  EXPECT_EQ(down.shape, (std::vector<int64_t>{24, 10}));
  EXPECT_EQ(down.start, 30);
  EXPECT_EQ(down.replicas, 1);
  const LocalShard& a = r3.at("model.norm.alpha").shard;
  EXPECT_EQ(a.split_dim, -1);
  EXPECT_EQ(a.replicas, 4);
  EXPECT_EQ(a.replica_index, 3);
  // 2 KV heads over 4 ranks: ranks 2 and 3 hold KV head 1 (rows 6..11).
  const LocalShard& k = r3.at("model.layers.1.self_attn.k_proj.weight").shard;
  EXPECT_EQ(k.shape, (std::vector<int64_t>{6, 24}));
  EXPECT_EQ(k.start, 6);
  EXPECT_EQ(k.replicas, 2);
  EXPECT_EQ(k.replica_index, 1);
  EXPECT_EQ(shard_dims(dims, 4).kv_heads, 1);
}

// A tp that cannot divide the model is refused, naming what does not divide.
TEST(ParamLayout, UndividableTpNamesTheDimension) {
  const ModelDims dims = model_dims(small_model());  // vocab 53, 4 heads, 2 KV heads, ffn 40
  const auto message = [&](int tp) {
    try {
      ParamLayout layout(dims, {0, tp});
    } catch (const parallel::LayoutError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(2).find("model.vocab_size (53)"), std::string::npos) << message(2);
  EXPECT_NE(message(3).find("model.n_heads (4)"), std::string::npos) << message(3);
  config::ModelConfig m = small_model();
  m.set_vocab_size(56);
  m.set_n_heads(8);
  m.set_n_kv_heads(2);
  m.set_d_model(48);
  m.set_ffn_hidden(48);
  // 8 query heads and 2 KV heads over 8 ranks: fine (4 ranks per KV head);
  // over 16 ranks the query heads do not divide.
  EXPECT_NO_THROW(ParamLayout(model_dims(m), {0, 8}));
  EXPECT_THROW(ParamLayout(model_dims(m), {0, 16}), parallel::LayoutError);
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

// The norm-input probe (trainer/norm_health.h): each slot holds (Σ x², count
// of |α·x| > 3) of exactly the tensor that norm reads, measured on the host
// from the activations; the backward's recomputation adds nothing; a second
// probed forward adds as much again; RMSNorm models have no probe.
TEST(Model, NormProbeMeasuresEachNormInputOnce) {
  config::ModelConfig m = small_model(config::DYT);
  m.mutable_alpha_init()->set_attention(30);  // large enough that some inputs saturate
  m.mutable_alpha_init()->set_ffn(20);
  m.mutable_alpha_init()->set_final(10);
  const auto tok = random_tokens(13, m.vocab_size(), 6);
  std::vector<double> plain_probe;
  for (bool recompute : {false, true}) {
    ModelInstance model(m, 2, 6, recompute);
    model.init(7);
    model.probe_norms(true);
    model.forward_backward(tok.data(), tok.data() + 1, 1.0f / 12);
    model.probe_norms(false);
    const std::vector<double> probe = model.norm_probe();
    ASSERT_EQ(probe.size(), 2u * (2 * 2 + 1));
    if (recompute) {
      EXPECT_EQ(probe, plain_probe) << "the recomputed forward must not probe again";
      continue;
    }
    plain_probe = probe;
    const auto expect = [&](int64_t slot, const kernels::Tensor& x, const std::string& norm) {
      float alpha = 0;
      model.backend().download(model.params().f32_param(norm + ".alpha"), &alpha);
      double ss = 0, count = 0;
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float v = x.f32()[i];
        ss += double(v) * v;
        count += std::fabs(alpha * v) > kSaturationThreshold;
      }
      EXPECT_NEAR(probe[2 * slot], ss, 1e-12 * ss) << norm;
      EXPECT_EQ(probe[2 * slot + 1], count) << norm;
      return count;
    };
    double saturated = 0;
    for (int64_t l = 0; l < 2; ++l) {
      saturated += expect(2 * l, model.acts().layer_in(l), layer_name(l, "input_layernorm"));
      saturated += expect(2 * l + 1, model.acts().layer(l).x_mid, layer_name(l, "post_attention_layernorm"));
    }
    saturated += expect(4, model.acts().layer_in(2), "model.norm");
    EXPECT_GT(saturated, 0) << "the check needs saturated inputs";
    EXPECT_LT(saturated, 5 * 12 * 24) << "and unsaturated ones";

    // Unprobed forwards leave the sums; a probed one adds the same again.
    model.forward(tok.data(), tok.data() + 1);
    EXPECT_EQ(model.norm_probe(), probe);
    model.probe_norms(true);
    model.forward(tok.data(), tok.data() + 1);
    model.forward(tok.data(), tok.data() + 1);
    model.probe_norms(false);
    const std::vector<double> twice = model.norm_probe();
    for (size_t i = 0; i < probe.size(); ++i) EXPECT_EQ(twice[i], 2 * probe[i]) << i;
  }
  ModelInstance rms(small_model(config::RMSNORM), 2, 6, false);
  rms.probe_norms(true);
  EXPECT_TRUE(rms.norm_probe().empty());
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
