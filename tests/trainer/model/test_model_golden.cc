// The golden files (tests/trainer/model/golden/*.safetensors): what the CPU
// backend computes for one forward and backward of each model_cases() model
// — its loss and every gradient. The CUDA tests (on a GPU and through the
// emulator) read them, so both backends are held to the same numbers; this
// test keeps them honest: the CPU backend must still reproduce them — the
// loss to 1e-6, every gradient to 1e-5 of (|g| + the tensor's rms), a tenth
// of the 1e-4 the CUDA tests allow, so a stale file cannot use up their
// budget. Builds differ below that: another -march (FMA contraction in the
// compiled ops) moves the cancelling attention q/k gradients by ~1e-6 (1.2e-6
// measured between the -march=native and the sanitizer builds). A scalar
// parameter's gradient is judged against the rms of every scalar gradient of
// its kind (see below): alone it can cancel to nearly nothing.
// DYT_WRITE_GOLDEN=1 rewrites them from the current CPU backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "tests/trainer/model/model_cases.h"
#include "trainer/model_instance.h"
#include "trainer/named_tensors.h"

namespace dyt::trainer {
namespace {

using test::ModelCase;

TEST(Golden, CpuBackendReproducesTheGoldenFiles) {
  const bool write = std::getenv("DYT_WRITE_GOLDEN") != nullptr;
  for (const ModelCase& c : test::model_cases()) {
    ModelInstance m(test::case_model(c), test::kCaseBatch, test::kCaseSeq, false);
    m.init(test::kCaseSeed);
    const auto tokens = test::case_ids(m.dims().vocab, 1), targets = test::case_ids(m.dims().vocab, 2);
    const int64_t n = test::kCaseBatch * test::kCaseSeq;
    const float loss = static_cast<float>(m.forward_backward(tokens.data(), targets.data(), 1.0f / n) / n);
    const std::vector<float> grads = m.params().grads_to_host();
    if (write) {
      std::vector<checkpoint::TensorRef> refs = named_views(m.layout(), grads.data());
      refs.push_back({"loss", {1}, &loss});
      checkpoint::write_safetensors(test::golden_path(c), refs);
      continue;
    }
    const auto golden = checkpoint::read_safetensors(test::golden_path(c));
    ASSERT_EQ(golden.count("loss"), 1u) << c.name;
    EXPECT_NEAR(loss, golden.at("loss").data[0], 1e-6 * std::fabs(loss)) << c.name;
    // A scalar parameter's gradient (each α, the embedding scale) is one sum
    // over a whole layer's activations, which can cancel to far below its
    // terms (layer 0's attention dα of dyt_mha_bias: −3.0e-7 where the other
    // α's are 3e-6 to 4e-4, and an AVX-512 -march=native build moves it by
    // 1.5e-11): its scale is the rms of every scalar gradient of its kind.
    std::map<ParamKind, std::pair<double, int>> scalar_sq;
    for (const ParamEntry& e : m.layout().entries())
      if (e.numel == 1) {
        const double x = golden.at(e.name).data[0];
        scalar_sq[e.kind].first += x * x, ++scalar_sq[e.kind].second;
      }
    for (const ParamEntry& e : m.layout().entries()) {
      const std::vector<float>& g = golden.at(e.name).data;
      double rms = 0;
      for (float x : g) rms += double(x) * x;
      rms = std::sqrt(rms / g.size());
      if (e.numel == 1) rms = std::sqrt(scalar_sq[e.kind].first / scalar_sq[e.kind].second);
      for (int64_t i = 0; i < e.numel; ++i)
        ASSERT_NEAR(grads[e.offset + i], g[i], 1e-5 * (std::fabs(g[i]) + rms))
            << c.name << " " << e.name << "[" << i << "]";
    }
  }
}

}  // namespace
}  // namespace dyt::trainer
