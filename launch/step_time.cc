#include "launch/step_time.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "bench/step_plan.h"
#include "launch/plan.h"
#include "trainer/model_dims.h"

namespace dyt::launch {

namespace {

int64_t micro_batches(const config::RunConfig& cfg) {
  const config::TrainConfig& t = cfg.train();
  return t.global_batch_tokens() / (t.seq_len() * t.micro_batch() * cfg.parallel().dp());
}

bool bf16(const config::RunConfig& cfg) { return cfg.train().precision() == config::BF16; }

// Seconds for a group's per-rank payload (the communicator's convention is
// NCCL's bus-bandwidth convention, so bytes / bus bandwidth).
double seconds(uint64_t bytes, double bytes_per_s) { return static_cast<double>(bytes) / bytes_per_s; }

}  // namespace

double peak_flops(const config::RunConfig& cfg, const HardwareProfile& hw) {
  return bf16(cfg) ? hw.peak_bf16_flops : hw.peak_fp32_flops;
}

// Per token, whole model. Matmuls: forward 2N, backward 4N, recompute +2N.
// Attention (q_dim = heads · head_dim): PaLM counts 12·L·q_dim·T for full
// attention (forward 4, backward 8); a causal kernel skips the masked half,
// so its forward is 2·L·q_dim·T, and FlashAttention's backward recomputes
// the scores (5 products against the forward's 2): 2.5× the forward. So
// 7·L·q_dim·T, and recompute adds the forward again.
double executed_flops_per_token(const config::RunConfig& cfg) {
  const trainer::ModelDims d = trainer::model_dims(cfg.model());
  const bench::StepFlops f = bench::step_flops(d, cfg.train().seq_len());
  const bool rc = cfg.train().recompute();
  return f.per_token_matmul * (rc ? 8.0 : 6.0) / 6.0 + f.per_token_attention * (rc ? 9.0 : 7.0) / 12.0;
}

// One rank, one step. Per token and layer, the forward's elementwise kernels
// read and write (elements): the two norms d in + d out each, the two
// residual adds 2d in + d out each (10·d, the norm region, on T/tp rows
// under sequence parallelism and replicated over tp otherwise); RoPE on q
// and k, in and out, 2·(q_dim + kv_dim); SwiGLU gate and up in, product
// out, 3·ffn; the last two sharded over tp. The backward moves about twice
// the forward (inputs, output gradient and input gradient, plus the saved
// activations it rereads); recompute adds a forward. The head: the final
// norm (2·d, norm region), the embedding row written (d), and cross-entropy
// reading the logits twice (max, then sum) and writing their gradient
// (3·vocab/tp). Per step, AdamW reads the gradient, master and both moments
// and writes master, moments and (BF16) the working copy: 30 bytes per
// element of the ZeRO shard under BF16, 28 under FP32; the gradient buffer
// is zeroed (4 bytes per element of the rank's buffer).
double elementwise_bytes_per_rank(const config::RunConfig& cfg) {
  const trainer::ModelDims d = trainer::model_dims(cfg.model());
  const config::TrainConfig& t = cfg.train();
  const double tp = static_cast<double>(cfg.parallel().tp());
  const double norm_div = cfg.parallel().sequence_parallel() ? tp : 1.0;
  const double s = bf16(cfg) ? 2.0 : 4.0;
  const double layer_fwd = 10.0 * d.d / norm_div + (2.0 * (d.q_dim() + d.kv_dim()) + 3.0 * d.ffn) / tp;
  const double passes = 3.0 + (t.recompute() ? 1.0 : 0.0);
  const double head = 3.0 * (2.0 * d.d / norm_div + d.d) + 3.0 * d.vocab / tp;
  const double tokens = static_cast<double>(t.global_batch_tokens()) / cfg.parallel().dp();
  const MemoryPlan mem = plan_memory(cfg);
  const double optimizer = (bf16(cfg) ? 30.0 : 28.0) * mem.zero_shard + 4.0 * mem.buffer_elements;
  return tokens * s * (passes * d.layers * layer_fwd + head) + optimizer;
}

StepTime predict_step(const config::RunConfig& cfg, const HardwareProfile& hw, const StepTimeOptions& o) {
  const int64_t tp = cfg.parallel().tp(), dp = cfg.parallel().dp();
  const double peak = peak_flops(cfg, hw);
  StepTime r;
  r.world = tp * dp;
  r.micro_batches = micro_batches(cfg);
  const double tokens = static_cast<double>(cfg.train().global_batch_tokens());
  const bench::StepFlops f = bench::step_flops(trainer::model_dims(cfg.model()), cfg.train().seq_len());
  r.model_flops_per_token = f.per_token();
  r.executed_flops_per_rank = executed_flops_per_token(cfg) * tokens / static_cast<double>(r.world);
  r.compute_s = r.executed_flops_per_rank / (peak * o.matmul_efficiency);
  r.hbm_bytes_per_rank = elementwise_bytes_per_rank(cfg);
  r.elementwise_s = r.hbm_bytes_per_rank / (hw.hbm_bytes_per_s * o.hbm_efficiency);

  // tp ranks are neighbours (tp innermost): a group stays in a node when tp
  // divides the node; the dp group does when the whole world fits one.
  r.tp_over_ib = tp > hw.gpus_per_node || hw.gpus_per_node % tp != 0;
  r.dp_over_ib = r.world > hw.gpus_per_node;
  const double tp_bw = r.tp_over_ib ? hw.ib_bytes_per_s : hw.nvlink_bytes_per_s;
  const double dp_bw = r.dp_over_ib ? hw.ib_bytes_per_s : hw.nvlink_bytes_per_s;
  const CommPlan comm = plan_comm(cfg);
  double dp_grad_s = 0;
  for (const CommLine& l : comm.lines) {
    if (l.group == "tp") r.tp_comm_s += seconds(l.traffic.bytes_sent, tp_bw);
    if (l.group != "dp") continue;
    const double s = seconds(l.traffic.bytes_sent, dp_bw);
    r.dp_comm_s += s;
    if (l.kind != parallel::Collective::allgather) dp_grad_s += s;
  }
  r.dp_exposed_s = r.dp_comm_s;
  if (o.dp_overlap) {
    // The gradient reduction runs under the last micro-batch's backward
    // (two thirds of its compute and tp traffic); the all-gather does not.
    const double last_backward = (r.compute_s + r.tp_comm_s) / r.micro_batches * 2.0 / 3.0;
    r.dp_exposed_s = r.dp_comm_s - std::min(dp_grad_s, last_backward);
  }
  r.step_s = r.compute_s + r.elementwise_s + r.tp_comm_s + r.dp_exposed_s;
  r.tokens_per_s = tokens / r.step_s;
  r.tokens_per_s_per_gpu = r.tokens_per_s / static_cast<double>(r.world);
  r.mfu = r.model_flops_per_token * r.tokens_per_s_per_gpu / peak;
  r.hfu = r.executed_flops_per_rank / (r.step_s * peak);
  return r;
}

std::string step_time_table(const StepTime& t, const HardwareProfile& hw) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "\npredicted step on %lld x %s (%lld per node)\n"
                "  compute             %8.3f s\n"
                "  elementwise (HBM)   %8.3f s\n"
                "  tp communication    %8.3f s  (%s)\n"
                "  dp communication    %8.3f s  (%s%s)\n"
                "  step                %8.3f s  (%lld micro-batches per rank)\n"
                "  tokens/s            %8.0f  (%.0f per GPU)\n"
                "  MFU                 %8.1f %%  (hardware FLOPs %.1f %%)\n",
                static_cast<long long>(t.world), hw.name.c_str(),
                static_cast<long long>(hw.gpus_per_node), t.compute_s, t.elementwise_s, t.tp_comm_s,
                t.tp_over_ib ? "InfiniBand" : "NVLink", t.dp_exposed_s,
                t.dp_over_ib ? "InfiniBand" : "NVLink",
                t.dp_exposed_s < t.dp_comm_s ? ", partly overlapped" : ", not overlapped", t.step_s,
                static_cast<long long>(t.micro_batches), t.tokens_per_s, t.tokens_per_s_per_gpu,
                100 * t.mfu, 100 * t.hfu);
  return buf;
}

std::string step_time_json(const StepTime& t, const HardwareProfile& hw) {
  std::ostringstream o;
  o.precision(9);
  o << "{\"gpu\": \"" << hw.name << "\", \"gpus_per_node\": " << hw.gpus_per_node
    << ", \"world\": " << t.world << ", \"micro_batches\": " << t.micro_batches
    << ", \"model_flops_per_token\": " << t.model_flops_per_token
    << ", \"executed_flops_per_rank\": " << t.executed_flops_per_rank
    << ", \"hbm_bytes_per_rank\": " << t.hbm_bytes_per_rank << ", \"compute_s\": " << t.compute_s
    << ", \"elementwise_s\": " << t.elementwise_s << ", \"tp_comm_s\": " << t.tp_comm_s
    << ", \"tp_over_ib\": " << (t.tp_over_ib ? "true" : "false") << ", \"dp_comm_s\": " << t.dp_comm_s
    << ", \"dp_exposed_s\": " << t.dp_exposed_s << ", \"dp_over_ib\": " << (t.dp_over_ib ? "true" : "false")
    << ", \"step_s\": " << t.step_s << ", \"tokens_per_s\": " << t.tokens_per_s
    << ", \"tokens_per_s_per_gpu\": " << t.tokens_per_s_per_gpu << ", \"mfu\": " << t.mfu
    << ", \"hfu\": " << t.hfu << "}";
  return o.str();
}

}  // namespace dyt::launch
