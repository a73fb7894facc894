// The planner's memory figures against the pre-run memory check's
// (trainer::memory_need) and against counts derived here from the model's
// shape, so a change to one that the other does not follow fails.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "configs/config.h"
#include "launch/plan.h"
#include "trainer/device_backend.h"
#include "trainer/param_layout.h"

namespace dyt::launch {
namespace {

config::RunConfig load(const std::string& name, const std::vector<std::string>& sets) {
  return config::load_run_config(std::string(DYT_CONFIG_DIR) + "/" + name + ".pbtxt", sets);
}

// At tp = dp = 1 the plan is the run's own up-front allocation, byte for byte.
TEST(Plan, EqualsMemoryNeedAtOneRank) {
  for (const std::string name : {"tiny", "llama7b"})
    for (const std::string prec : {"FP32", "BF16"})
      for (const std::string rc : {"false", "true"}) {
        SCOPED_TRACE(name + " " + prec + " recompute=" + rc);
        const auto cfg = load(name, {"parallel.tp=1", "parallel.dp=1", "parallel.zero1=false",
                                     "parallel.sequence_parallel=false", "train.device=CUDA",
                                     "train.precision=" + prec, "train.recompute=" + rc});
        const MemoryPlan p = plan_memory(cfg);
        const trainer::MemoryNeed need = trainer::memory_need(cfg);
        EXPECT_EQ(p.state_bytes(), need.parameters + need.optimizer);
        EXPECT_EQ(rc == "true" ? p.activation_recompute_bytes : p.activation_bytes, need.activations);
        EXPECT_EQ(p.workspace_bytes, need.workspaces);
        EXPECT_EQ(p.total_bytes(rc == "true"), need.total());
        EXPECT_EQ(p.sp_gather_bytes, 0);
      }
}

// The shard dims' layout holds exactly the parameters the Split tags give a rank.
TEST(Plan, ShardDimsMatchSplitCounts) {
  const auto cfg = load("llama70b", {"parallel.tp=8"});
  const MemoryPlan p = plan_memory(cfg);
  const auto rank = trainer::ParamLayout(trainer::model_dims(cfg.model()), {0, 8});
  EXPECT_EQ(rank.parameters(), p.parameters_per_rank);
  EXPECT_EQ(rank.total(), p.buffer_elements);
}

// BF16's lse (and rstd) live in the fp32 part of the arena: 4 bytes each.
TEST(Plan, LseCountedAtFourBytesUnderBf16) {
  // tiny: every activation is a multiple of 64 elements, so no alignment padding.
  const auto cfg = load("tiny", {"train.device=CUDA", "train.precision=BF16", "model.norm=DYT"});
  const trainer::ModelDims d = trainer::model_dims(cfg.model());
  const int64_t B = cfg.train().micro_batch(), T = cfg.train().seq_len(), N = B * T;
  // a1, x_mid, a2; q, att; k, v; gate, up, act (bf16). The block inputs are counted below.
  const int64_t per_layer_act = 3 * N * d.d + 2 * N * d.q_dim() + 2 * N * d.kv_dim() + 3 * N * d.ffn;
  const int64_t lse = B * d.heads * T;
  const int64_t head = (d.layers + 1) * N * d.d /*layer inputs*/ + N * d.d /*final_a*/ +
                       N * d.vocab + (d.embed_scale ? 2 * N * d.d : 0);
  const int64_t scratch = 2 * N * d.d + 2 * N * d.q_dim() + 2 * N * d.kv_dim() + 3 * N * d.ffn;
  const int64_t act = d.layers * per_layer_act + head + scratch;
  const int64_t expect = act * 2 + d.layers * lse * 4 + 2 * N * 4 + 8;
  EXPECT_EQ(plan_memory(cfg).activation_bytes, expect);
}

}  // namespace
}  // namespace dyt::launch
