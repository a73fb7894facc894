// The step-time model (launch/step_time.h): its compute term against FLOPs
// counted here by hand, and properties any sane model must have (more
// bandwidth never slows a step; tp beyond a node goes over InfiniBand;
// utilisation never above the assumed efficiency).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "configs/config.h"
#include "launch/hardware.h"
#include "launch/layout_search.h"
#include "launch/plan.h"
#include "launch/step_time.h"

namespace dyt::launch {
namespace {

config::RunConfig load(const std::string& name, const std::vector<std::string>& sets = {}) {
  return config::load_run_config(std::string(DYT_CONFIG_DIR) + "/" + name + ".pbtxt", sets);
}

// Links and HBM so fast that only the compute term is left.
HardwareProfile compute_only(HardwareProfile hw) {
  hw.hbm_bytes_per_s = hw.nvlink_bytes_per_s = hw.ib_bytes_per_s = 1e300;
  return hw;
}

// tiny: L 4, d 128, 4 heads of 32, 2 KV heads, ffn 352, vocab 4096, T 128,
// 8192 tokens a step, FP32. Matmul weights per layer: q 128·128, k and v
// 128·64 each, o 128·128, gate/up/down 3·128·352 = 184,320; 4 layers and
// the LM head 4096·128: N = 1,261,568. Executed per token: 6·N matmul +
// 7·L·q_dim·T attention (causal forward 2, FlashAttention backward 5) =
// 7,569,408 + 458,752; recompute: 8·N + 9·L·q_dim·T.
TEST(StepTime, ComputeTermIsHandCountedFlops) {
  const HardwareProfile hw = compute_only(hardware_profile("h100"));
  for (const bool rc : {false, true}) {
    SCOPED_TRACE(rc ? "recompute" : "no recompute");
    const auto cfg = load("tiny", {std::string("train.recompute=") + (rc ? "true" : "false")});
    const double N = 1261568, LqT = 4.0 * 128 * 128;
    const double per_token = rc ? 8 * N + 9 * LqT : 6 * N + 7 * LqT;
    EXPECT_DOUBLE_EQ(executed_flops_per_token(cfg), per_token);
    StepTimeOptions o;
    const StepTime t = predict_step(cfg, hw, o);
    EXPECT_DOUBLE_EQ(t.compute_s, per_token * 8192 / (66.9e12 * o.matmul_efficiency));
    EXPECT_DOUBLE_EQ(t.model_flops_per_token, 6 * N + 12 * LqT);  // PaLM's count, for MFU
    EXPECT_NEAR(t.step_s, t.compute_s, 1e-12 * t.step_s);
    EXPECT_NEAR(t.hfu, o.matmul_efficiency, 1e-12);
  }
}

// A rank's compute is the model's over the world: tp and dp both divide it.
TEST(StepTime, ComputeDividesOverTheWorld) {
  const HardwareProfile hw = hardware_profile("h100");
  const StepTime one = predict_step(load("llama7b", {"parallel.tp=1", "parallel.dp=1"}), hw);
  const StepTime many = predict_step(load("llama7b", {"parallel.tp=4", "parallel.dp=16"}), hw);
  EXPECT_NEAR(many.compute_s * 64, one.compute_s, 1e-9 * one.compute_s);
}

std::vector<config::RunConfig> layouts() {
  std::vector<config::RunConfig> v;
  for (const std::string tp : {"1", "2", "8", "16"})
    for (const std::string sp : {"false", "true"})
      for (const std::string z : {"false", "true"})
        v.push_back(load("llama7b", {"parallel.tp=" + tp, "parallel.dp=" + std::to_string(128 / std::stoi(tp)),
                                     "parallel.sequence_parallel=" + sp, "parallel.zero1=" + z}));
  v.push_back(load("llama70b"));
  v.push_back(load("llama70b", {"train.recompute=false", "parallel.dp=4"}));
  return v;
}

TEST(StepTime, MoreBandwidthNeverSlowsAStep) {
  for (const std::string gpu : {"h100", "h200", "a100"}) {
    const HardwareProfile hw = hardware_profile(gpu);
    for (const auto& cfg : layouts()) {
      SCOPED_TRACE(gpu + " tp " + std::to_string(cfg.parallel().tp()));
      const StepTime base = predict_step(cfg, hw);
      for (double HardwareProfile::*bw : {&HardwareProfile::ib_bytes_per_s, &HardwareProfile::nvlink_bytes_per_s,
                                          &HardwareProfile::hbm_bytes_per_s}) {
        HardwareProfile faster = hw;
        faster.*bw *= 2;
        const StepTime f = predict_step(cfg, faster);
        EXPECT_LE(f.step_s, base.step_s);
        EXPECT_GE(f.tokens_per_s, base.tokens_per_s);
      }
    }
  }
}

// The IB term is the plan's bytes over the IB rate when (and only when) the
// group leaves the node.
TEST(StepTime, TensorParallelAcrossNodesUsesInfiniBand) {
  const auto cfg = load("llama7b", {"parallel.tp=16", "parallel.dp=4"});
  const double tp_bytes = static_cast<double>(plan_comm(cfg).total("tp").bytes_sent);
  ASSERT_GT(tp_bytes, 0);
  HardwareProfile hw = hardware_profile("h100");
  const StepTime across = predict_step(cfg, hw);
  EXPECT_TRUE(across.tp_over_ib);
  EXPECT_DOUBLE_EQ(across.tp_comm_s, tp_bytes / hw.ib_bytes_per_s);
  hw.gpus_per_node = 16;
  const StepTime inside = predict_step(cfg, hw);
  EXPECT_FALSE(inside.tp_over_ib);
  EXPECT_DOUBLE_EQ(inside.tp_comm_s, tp_bytes / hw.nvlink_bytes_per_s);
  EXPECT_LT(inside.step_s, across.step_s);
  hw.gpus_per_node = 12;  // 16 does not divide a node of 12: the group straddles nodes
  EXPECT_TRUE(predict_step(cfg, hw).tp_over_ib);
}

TEST(StepTime, DataParallelInsideOneNodeUsesNvlink) {
  const auto cfg = load("llama7b", {"parallel.tp=2", "parallel.dp=4"});
  const HardwareProfile hw = hardware_profile("h100");
  const StepTime t = predict_step(cfg, hw);
  EXPECT_FALSE(t.dp_over_ib);
  EXPECT_DOUBLE_EQ(t.dp_comm_s, static_cast<double>(plan_comm(cfg).total("dp").bytes_sent) / hw.nvlink_bytes_per_s);
  EXPECT_TRUE(predict_step(load("llama7b"), hw).dp_over_ib);  // 64 GPUs
}

// Utilisation of executed FLOPs can never pass the efficiency the compute
// term assumes; MFU differs from it only by PaLM's count over the executed one.
TEST(StepTime, UtilisationNeverAboveMatmulEfficiency) {
  const HardwareProfile hw = hardware_profile("h100");
  for (const bool overlap : {false, true}) {
    StepTimeOptions o;
    o.dp_overlap = overlap;
    for (const Candidate& c : enumerate_layouts(load("llama7b"), 64, hw, o)) {
      SCOPED_TRACE(c.layout.describe());
      EXPECT_LE(c.time.hfu, o.matmul_efficiency * (1 + 1e-12));
      EXPECT_GT(c.time.hfu, 0);
      const double ratio = c.time.model_flops_per_token /
                           executed_flops_per_token(with_layout(load("llama7b"), c.layout));
      EXPECT_NEAR(c.time.mfu, c.time.hfu * ratio, 1e-9);
      if (c.layout.recompute) {
        EXPECT_LE(c.time.mfu, o.matmul_efficiency);  // executed > PaLM's count
      }
    }
  }
}

// Overlap hides at most the gradient reduction, never the ZeRO-1 all-gather.
TEST(StepTime, DpOverlapHidesOnlyTheGradientReduction) {
  const HardwareProfile hw = hardware_profile("h100");
  for (const auto& cfg : layouts()) {
    StepTimeOptions o;
    const StepTime plain = predict_step(cfg, hw, o);
    o.dp_overlap = true;
    const StepTime hidden = predict_step(cfg, hw, o);
    EXPECT_EQ(plain.dp_exposed_s, plain.dp_comm_s);
    EXPECT_LE(hidden.step_s, plain.step_s);
    double gather = 0;
    for (const CommLine& l : plan_comm(cfg).lines)
      if (l.group == "dp" && l.kind == parallel::Collective::allgather)
        gather += static_cast<double>(l.traffic.bytes_sent) / (plain.dp_over_ib ? hw.ib_bytes_per_s : hw.nvlink_bytes_per_s);
    EXPECT_GE(hidden.dp_exposed_s, gather * (1 - 1e-12));
  }
}

TEST(Hardware, ProfilesAndUnknownName) {
  const HardwareProfile h100 = hardware_profile("h100"), h200 = hardware_profile("h200");
  EXPECT_EQ(h100.gpus_per_node, 8);
  EXPECT_DOUBLE_EQ(h100.ib_bytes_per_s, 50e9);       // 400 Gb/s
  EXPECT_DOUBLE_EQ(h100.nvlink_bytes_per_s, 450e9);  // 900 GB/s both ways
  EXPECT_EQ(h200.peak_bf16_flops, h100.peak_bf16_flops);
  EXPECT_GT(h200.memory_bytes, h100.memory_bytes);
  try {
    hardware_profile("b200");
    FAIL() << "b200 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("b200"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("h100"), std::string::npos);
  }
}

}  // namespace
}  // namespace dyt::launch
