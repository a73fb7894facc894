#include "trainer/init.h"

#include <cmath>
#include <numbers>

namespace dyt::trainer {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Uniform in (0, 1]: 53 random bits, never 0 so log() is finite.
double unit_uniform(uint64_t bits) { return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53; }

}  // namespace

double counter_normal(uint64_t key, uint64_t index) {
  const uint64_t a = splitmix64(key ^ splitmix64(2 * index));
  const uint64_t b = splitmix64(key ^ splitmix64(2 * index + 1));
  // Box–Muller, one output per pair of uniforms.
  return std::sqrt(-2.0 * std::log(unit_uniform(a))) * std::cos(2.0 * std::numbers::pi * unit_uniform(b));
}

void init_parameters(const ParamLayout& layout, const config::ModelConfig& model, uint64_t seed,
                     float* params) {
  const config::AlphaInitValues alpha = config::resolve_alpha(model);
  const double std_dev = model.init_std();
  for (const ParamEntry& e : layout.entries()) {
    float* p = params + e.offset;
    switch (e.kind) {
      case ParamKind::Matrix:
      case ParamKind::Embedding: {
        // Each element draws from its index in the global tensor, so a
        // tensor-parallel block holds exactly its slice of the tp = 1 values.
        const uint64_t key = splitmix64(seed) ^ fnv1a(e.name);
        const int64_t cols = e.shape.back(), global_cols = e.global_shape.back();
        const int64_t row0 = e.shard.split_dim == 0 ? e.shard.start : 0;
        const int64_t col0 = e.shard.split_dim == 1 ? e.shard.start : 0;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < e.numel; ++i) {
          const int64_t global = (row0 + i / cols) * global_cols + col0 + i % cols;
          p[i] = static_cast<float>(std_dev * counter_normal(key, static_cast<uint64_t>(global)));
        }
        break;
      }
      case ParamKind::NormWeight:
        for (int64_t i = 0; i < e.numel; ++i) p[i] = 1.0f;
        break;
      case ParamKind::NormBias:
        for (int64_t i = 0; i < e.numel; ++i) p[i] = 0.0f;
        break;
      case ParamKind::NormAlpha:
        p[0] = static_cast<float>(e.slot == NormSlot::Attention ? alpha.attention
                                  : e.slot == NormSlot::Ffn     ? alpha.ffn
                                                                : alpha.final);
        break;
      case ParamKind::EmbedScale:
        p[0] = static_cast<float>(std::sqrt(static_cast<double>(model.d_model())));
        break;
    }
  }
}

}  // namespace dyt::trainer
