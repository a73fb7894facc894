// bench/step_plan.h: the model dyt-bench-step-cuda times, the layer fitting
// and the FLOP count behind its MFU, checked without a GPU.
#include "bench/step_plan.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "trainer/model_dims.h"
#include "trainer/param_layout.h"

namespace dyt::bench {
namespace {

TEST(StepPlan, ModelIsLlama7bShaped) {
  const config::RunConfig cfg = llama7b_shaped(32, 4096);
  const trainer::ModelDims d = trainer::model_dims(cfg.model());
  EXPECT_EQ(d.d, 4096);
  EXPECT_EQ(d.heads, 32);
  EXPECT_EQ(d.kv_heads, 32);
  EXPECT_EQ(d.ffn, 11008);
  EXPECT_EQ(d.vocab, 32000);
  EXPECT_EQ(d.layers, 32);
  EXPECT_EQ(d.norm, trainer::Norm::DyT);
  EXPECT_TRUE(d.embed_scale);
  EXPECT_EQ(cfg.train().seq_len(), 4096);
  EXPECT_EQ(cfg.train().micro_batch(), 1);
  EXPECT_EQ(cfg.train().global_batch_tokens(), 4096);
  EXPECT_EQ(cfg.train().precision(), config::BF16);
  EXPECT_EQ(cfg.train().device(), config::CUDA);
  EXPECT_FALSE(cfg.train().recompute());
  EXPECT_THROW(llama7b_shaped(0, 4096), std::invalid_argument);
}

// N (matmul weights) against the layout's own tensors: everything else in
// the layout is the embedding table, the 2L+1 norm γ and α, and the embed scale.
// With RMSNorm weights instead, the total is LLaMA-7B's published count.
TEST(StepPlan, MatmulParamsAreTheLayoutLessEmbeddingAndNorms) {
  for (int64_t layers : {1, 7, 32}) {
    const trainer::ModelDims d = trainer::model_dims(llama7b_shaped(layers, 4096).model());
    const StepFlops f = step_flops(d, 4096);
    const int64_t norms = 2 * layers + 1;
    EXPECT_EQ(trainer::ParamLayout(d).parameters(),
              f.matmul_params + d.vocab * d.d + norms * d.d /* γ */ + norms /* α */ + 1 /* embed scale */)
        << layers << " layers";
    if (layers == 32) {
      EXPECT_EQ(f.matmul_params + d.vocab * d.d + norms * d.d, 6738415616);
    }
  }
}

TEST(StepPlan, PalmFlopCount) {
  const trainer::ModelDims d = trainer::model_dims(llama7b_shaped(32, 4096).model());
  const StepFlops f = step_flops(d, 4096);
  EXPECT_EQ(f.matmul_params, 6607077376);
  EXPECT_DOUBLE_EQ(f.per_token_matmul, 6.0 * 6607077376.0);
  EXPECT_DOUBLE_EQ(f.per_token_attention, 12.0 * 32 * 4096 * 4096);
  EXPECT_DOUBLE_EQ(f.per_token(), 46084915200.0);
  EXPECT_DOUBLE_EQ(f.per_token_causal(), 6.0 * 6607077376.0 + 6.0 * 32 * 4096 * 4096);
  // 10,000 tokens/s at 46.08 GFLOP each is 460.8 TFLOP/s: 46.6% of 989.4.
  EXPECT_NEAR(mfu(1e4, f.per_token(), kHopperBf16PeakFlops), 460.849152e12 / 989.4e12, 1e-12);
}

TEST(StepPlan, FitLayersFindsTheLargestThatFits) {
  auto need = [](int64_t l) { return 100 + 10 * l; };
  EXPECT_EQ(fit_layers(need, 100 + 10 * 7, 32), 7);      // exactly at the budget
  EXPECT_EQ(fit_layers(need, 100 + 10 * 7 + 9, 32), 7);  // just short of 8
  EXPECT_EQ(fit_layers(need, 100 + 10 * 1, 32), 1);
  EXPECT_EQ(fit_layers(need, 100 + 10 * 1 - 1, 32), 0);  // not even one
  EXPECT_EQ(fit_layers(need, 1 << 30, 32), 32);          // capped at max_layers
  for (int64_t budget = 100; budget < 500; budget += 3)
    for (int64_t max_layers : {1, 2, 5, 32}) {
      int64_t expect = 0;
      for (int64_t l = 1; l <= max_layers; ++l)
        if (need(l) <= budget) expect = l;
      EXPECT_EQ(fit_layers(need, budget, max_layers), expect) << budget << " " << max_layers;
    }
  EXPECT_THROW(fit_layers(need, 1000, 0), std::invalid_argument);
}

}  // namespace
}  // namespace dyt::bench
