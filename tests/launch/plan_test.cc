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
#include "trainer/param_store.h"

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

// ZeRO-1 shards AdamW's moments and, under BF16, the fp32 master (the norm
// parameters kept whole beside it): per parameter 6 + 12/dp bytes under
// BF16, 8 + 8/dp under FP32, in the planner and in the pre-run check alike;
// and under BF16 the dp group gathers the bf16 weights and the side buffer.
TEST(Plan, ZeroOneShardsTheMasterUnderBf16) {
  for (const std::string prec : {"FP32", "BF16"})
    for (const int tp : {1, 2})
      for (const int dp : {2, 4, 8}) {
        SCOPED_TRACE(prec + " tp " + std::to_string(tp) + " dp " + std::to_string(dp));
        const auto cfg = load("tiny", {"parallel.tp=" + std::to_string(tp), "parallel.dp=" + std::to_string(dp),
                                       "parallel.zero1=true", "train.device=CUDA", "train.micro_batch=1",
                                       "train.precision=" + prec});
        const MemoryPlan p = plan_memory(cfg);
        const trainer::MemoryNeed need = trainer::memory_need(cfg);
        const trainer::ParamLayout layout(trainer::model_dims(cfg.model()), {0, tp});
        const int64_t n = layout.total(), shard = (n + dp - 1) / dp, side = trainer::side_elements(layout);
        EXPECT_GT(side, 0);
        EXPECT_EQ(side % trainer::kParamAlign, 0);
        const bool bf16 = prec == "BF16";
        // 2 + 4 + (4 + 8)/dp, the side buffer whole; 4 + 4 + 8/dp.
        const int64_t want = bf16 ? 6 * n + 12 * shard + 4 * side : 8 * n + 8 * shard;
        EXPECT_EQ(need.parameters + need.optimizer, want);
        EXPECT_EQ(p.state_bytes() - p.zero_staging_bytes, want);
        EXPECT_EQ(p.total_bytes(false), need.total() + p.zero_staging_bytes);
        parallel::Traffic gathered;
        for (const CommLine& l : plan_comm(cfg).lines)
          if (l.group == "dp" && l.kind == parallel::Collective::allgather) gathered += l.traffic;
        const parallel::Traffic expect =
            bf16 ? parallel::Traffic{2, static_cast<uint64_t>((dp - 1) * (2 * shard + 4 * side)),
                                     static_cast<uint64_t>((dp - 1) * (2 * shard + 4 * side))}
                 : parallel::Traffic{1, static_cast<uint64_t>((dp - 1) * 4 * shard),
                                     static_cast<uint64_t>((dp - 1) * 4 * shard)};
        EXPECT_EQ(gathered, expect);
      }
}

// Overlapped reduction in one bucket per partition (a bucket larger than the
// buffer): plain dp is the whole buffer's all-reduce again; ZeRO-1 is one
// reduce per partition onto its owner, rank 0 sending everything but its
// range and receiving p − 1 copies of it; the all-gathers unchanged. With
// small buckets the calls grow and the bytes do not (ZeRO-1).
TEST(Plan, OverlappedReductionCountsTheBuckets) {
  using parallel::Collective;
  for (const int dp : {2, 4}) {
    SCOPED_TRACE("dp " + std::to_string(dp));
    const auto line = [](const CommPlan& c, Collective k) {
      parallel::Traffic t;
      for (const CommLine& l : c.lines)
        if (l.group == "dp" && l.kind == k) t += l.traffic;
      return t;
    };
    const std::vector<std::string> base = {"parallel.dp=" + std::to_string(dp)};
    const auto with = [&](std::vector<std::string> more) {
      more.insert(more.begin(), base.begin(), base.end());
      return plan_comm(load("tiny", more));
    };
    const std::string huge = "parallel.grad_bucket_elements=1000000000000";
    const CommPlan plain = with({}), plain_ov = with({"parallel.overlap_grad_reduce=true", huge});
    EXPECT_EQ(line(plain_ov, Collective::allreduce_sum), line(plain, Collective::allreduce_sum));
    const CommPlan z = with({"parallel.zero1=true"}),
                   z_ov = with({"parallel.zero1=true", "parallel.overlap_grad_reduce=true", huge}),
                   z_small = with({"parallel.zero1=true", "parallel.overlap_grad_reduce=true",
                                   "parallel.grad_bucket_elements=1000"});
    const int64_t n = trainer::ParamLayout(trainer::model_dims(load("tiny", base).model())).total();
    const int64_t c = (n + dp - 1) / dp;
    EXPECT_EQ(line(z_ov, Collective::reduce_scatter_sum), parallel::Traffic{});
    EXPECT_EQ(line(z_ov, Collective::reduce_sum),
              (parallel::Traffic{static_cast<uint64_t>(dp), static_cast<uint64_t>(4 * (n - c)),
                                 static_cast<uint64_t>(4 * (dp - 1) * c)}));
    EXPECT_EQ(line(z_ov, Collective::allgather), line(z, Collective::allgather));
    EXPECT_EQ(line(z_ov, Collective::allreduce_sum), line(z, Collective::allreduce_sum));
    const parallel::Traffic small = line(z_small, Collective::reduce_sum);
    EXPECT_GT(small.calls, static_cast<uint64_t>(3 * dp));  // cut at tensors as well as partitions
    EXPECT_EQ(small.bytes_sent, line(z_ov, Collective::reduce_sum).bytes_sent);
    EXPECT_EQ(small.bytes_received, line(z_ov, Collective::reduce_sum).bytes_received);
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
