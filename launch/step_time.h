// The step-time model: how long one optimizer step of a configured layout
// takes on a cluster (launch/hardware.h), from the FLOPs, HBM bytes and the
// communicator's per-group byte counts (launch/plan.h's plan_comm, the one
// source of truth for bytes). Four terms, added (nothing overlaps unless
// said; docs/planner.md gives the formulas and their constants):
//   compute      executed matmul + attention FLOPs / (peak · matmul_efficiency)
//   elementwise  HBM bytes of the norms, residual adds, RoPE, SwiGLU,
//                cross-entropy and the optimizer / (HBM bandwidth · hbm_efficiency)
//   tp comm      the tp group's bytes / (NVLink if the group fits a node, else IB)
//   dp comm      the dp group's bytes / (NVLink if dp·tp fits a node, else IB);
//                not overlapped with the backward (the CUDA trainer's dp
//                reduction is not yet), unless StepTimeOptions::dp_overlap
#pragma once

#include <cstdint>
#include <string>

#include "configs/config.h"
#include "launch/hardware.h"

namespace dyt::launch {

struct StepTimeOptions {
  // Fraction of the dense peak the GEMMs and attention reach. A bf16
  // 8192×8192×8192 product ran at 769–798 TFLOP/s (0.78–0.81 of 989.4) on the
  // H200 lent to this project (/work/.library/device/KINDS.md, same chip
  // as the H100); the model's GEMMs are smaller (K = 4096, N = d/tp or
  // ffn/tp, M = micro-batch tokens), so a little less.
  double matmul_efficiency = 0.75;
  // Fraction of the HBM bandwidth elementwise kernels reach: a
  // device-to-device copy moved 4.3 of 4.8 TB/s (0.9) on that machine;
  // kernels that also reduce (norm backwards, cross-entropy) reach less.
  double hbm_efficiency = 0.8;
  // Hide the dp gradient reduction behind the last micro-batch's backward
  // (Megatron's bucketed overlap). Off: this trainer does not overlap yet.
  bool dp_overlap = false;
};

struct StepTime {
  int64_t world = 0;
  int64_t micro_batches = 0;             // per rank per step
  double model_flops_per_token = 0;      // PaLM's count (full attention): the MFU numerator
  double executed_flops_per_rank = 0;    // per step: causal attention, FlashAttention's backward, recompute
  double hbm_bytes_per_rank = 0;         // per step, the elementwise term's bytes
  double compute_s = 0;
  double elementwise_s = 0;
  double tp_comm_s = 0;
  double dp_comm_s = 0;       // gradient reduction + ZeRO-1 all-gather + scalars
  double dp_exposed_s = 0;    // the part of dp_comm_s on the critical path
  bool tp_over_ib = false;
  bool dp_over_ib = false;
  double step_s = 0;
  double tokens_per_s = 0;          // whole cluster
  double tokens_per_s_per_gpu = 0;
  double mfu = 0;  // model_flops_per_token · tokens/s/GPU / peak (PaLM's definition)
  double hfu = 0;  // executed FLOPs / (step_s · peak): never above matmul_efficiency
};

// The peak a run of this precision is held to (BF16 or FP32).
double peak_flops(const config::RunConfig& cfg, const HardwareProfile& hw);

// Executed FLOPs of one trained token over the whole model (divide by tp for a rank).
double executed_flops_per_token(const config::RunConfig& cfg);

// HBM bytes one rank's elementwise kernels move in one step.
double elementwise_bytes_per_rank(const config::RunConfig& cfg);

StepTime predict_step(const config::RunConfig& cfg, const HardwareProfile& hw,
                      const StepTimeOptions& options = {});

std::string step_time_table(const StepTime& t, const HardwareProfile& hw);
std::string step_time_json(const StepTime& t, const HardwareProfile& hw);

}  // namespace dyt::launch
