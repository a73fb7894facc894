#include "launch/plan.h"

#include <cstdio>
#include <sstream>

#include "kernels/backend.h"
#include "trainer/device_backend.h"
#include "trainer/grad_buckets.h"
#include "trainer/param_layout.h"
#include "trainer/param_store.h"

namespace dyt::launch {

namespace {

using parallel::Collective;
using parallel::Traffic;
using trainer::Split;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1ll << 30));
  return buf;
}

}  // namespace

MemoryPlan plan_memory(const config::RunConfig& cfg) {
  const trainer::ModelDims dims = trainer::model_dims(cfg.model());
  const trainer::ParamLayout layout(dims);
  const int64_t tp = cfg.parallel().tp(), dp = cfg.parallel().dp();
  const int64_t dz = cfg.parallel().zero1() ? dp : 1;
  const config::TrainConfig& t = cfg.train();
  const kernels::DType dt = trainer::compute_dtype(t);
  const bool bf16 = dt == kernels::DType::BF16;
  const int64_t act_size = bf16 ? 2 : 4;

  MemoryPlan p;
  p.parameters = layout.parameters();
  p.parameters_per_rank = trainer::ParamLayout(dims, {0, static_cast<int>(tp)}).parameters();

  // The rank's buffers are the ones a run of the shard dims allocates: the
  // same function the pre-run memory check calls (trainer/device_backend.h).
  const trainer::ModelDims rank_dims = trainer::shard_dims(dims, static_cast<int>(tp));
  // The arena of this rank's split: under sequence parallelism the norm
  // region holds rows/tp rows and three full-row buffers are added.
  const trainer::ArenaSplit split{static_cast<int>(tp), cfg.parallel().sequence_parallel() && tp > 1};
  const trainer::MemoryNeed need =
      trainer::memory_need(rank_dims, t.micro_batch(), t.seq_len(), false, dt, split, static_cast<int>(dz));
  const trainer::MemoryNeed need_rc =
      trainer::memory_need(rank_dims, t.micro_batch(), t.seq_len(), true, dt, split, static_cast<int>(dz));
  const trainer::ParamLayout layout_rank(dims, {0, static_cast<int>(tp)});
  p.buffer_elements = layout_rank.total();
  p.zero_shard = ceil_div(p.buffer_elements, dz);
  const int64_t n = p.buffer_elements;
  p.weight_bytes = n * act_size;
  p.grad_bytes = n * 4;
  // Under BF16 the master's shard; sharded (dz > 1), also the side buffer
  // of the tensors read in fp32, kept whole (trainer/param_store.h).
  p.master_bytes = bf16 ? p.zero_shard * 4 + (dz > 1 ? trainer::side_elements(layout_rank) * 4 : 0) : 0;
  p.optimizer_bytes = p.zero_shard * 8;
  // The trainer reduce-scatters the gradients into a chunk of its own
  // before they go back into the gradient buffer (trainer/train_step.cc).
  p.zero_staging_bytes = dz > 1 ? p.zero_shard * 4 : 0;

  const int64_t rows = t.micro_batch() * t.seq_len();
  p.activation_bytes = need.activations;
  p.activation_recompute_bytes = need_rc.activations;
  p.sp_gather_bytes = split.sequence_parallel ? 3 * rows * dims.d * act_size : 0;
  p.workspace_bytes = need.workspaces;
  return p;
}

Traffic CommPlan::total(const std::string& group) const {
  Traffic t;
  for (const CommLine& l : lines)
    if (l.group == group) t += l.traffic;
  return t;
}

CommPlan plan_comm(const config::RunConfig& cfg) {
  const trainer::ModelDims dims = trainer::model_dims(cfg.model());
  const config::TrainConfig& t = cfg.train();
  const int tp = static_cast<int>(cfg.parallel().tp()), dp = static_cast<int>(cfg.parallel().dp());
  const bool bf16 = t.precision() == config::BF16;
  const size_t act_size = bf16 ? 2 : 4;
  const MemoryPlan mem = plan_memory(cfg);
  CommPlan c;
  const auto add = [&](const char* group, std::string what, Collective kind, Traffic one, int64_t times) {
    Traffic tr;
    for (int64_t i = 0; i < times; ++i) tr += one;
    c.lines.push_back({group, std::move(what), kind, tr});
  };

  // dp group, once per step: gradients accumulate locally over micro-batches.
  const size_t n = static_cast<size_t>(mem.buffer_elements);
  // Overlapped (parallel.overlap_grad_reduce): the gradient sum goes in the
  // trainer's buckets of tp rank 0's buffer (trainer/grad_buckets.h), one
  // call each; under ZeRO-1 each onto the rank whose partition holds it.
  const bool overlap = cfg.parallel().overlap_grad_reduce() && dp > 1;
  trainer::GradBucketPlan buckets;
  if (overlap)
    buckets = trainer::plan_grad_buckets(trainer::ParamLayout(dims, {0, tp}), dims.layers, dp,
                                         cfg.parallel().zero1(), cfg.parallel().grad_bucket_elements());
  const std::string in_buckets =
      " in " + std::to_string(buckets.buckets.size()) + " buckets during the backward";
  if (overlap) {
    Traffic tr;
    for (const trainer::GradBucket& b : buckets.buckets) {
      const size_t size = static_cast<size_t>(b.range.size());
      tr += cfg.parallel().zero1() ? parallel::reduce_traffic(size, 4, dp, 0, b.owner)
                                   : parallel::allreduce_traffic(size, 4, dp, 0);
    }
    c.lines.push_back({"dp",
                       cfg.parallel().zero1() ? "reduce of the fp32 gradients onto their owners" + in_buckets
                                              : "all-reduce of the fp32 gradients" + in_buckets,
                       cfg.parallel().zero1() ? Collective::reduce_sum : Collective::allreduce_sum, tr});
  }
  if (cfg.parallel().zero1()) {
    const size_t shard = static_cast<size_t>(mem.zero_shard);
    if (!overlap)
      add("dp", "reduce-scatter of the fp32 gradients", Collective::reduce_scatter_sum,
          parallel::reduce_scatter_traffic(shard, 4, dp), 1);
    if (bf16 && dp > 1) {
      // The master is sharded (Megatron's distributed optimizer): TrainStep
      // gathers the updated bf16 working copy, and the fp32 side buffer
      // (norm parameters, α, scale: each rank sends all of it, every
      // element is taken from its owner).
      add("dp", "all-gather of the updated bf16 weights", Collective::allgather,
          parallel::allgather_traffic(shard, 2, dp), 1);
      add("dp", "all-gather of the fp32 norm parameters (side buffer)", Collective::allgather,
          parallel::allgather_traffic(static_cast<size_t>(trainer::side_elements(
                                          trainer::ParamLayout(dims, {0, tp}))),
                                      4, dp),
          1);
    } else {
      // FP32: the master is the working copy; whole on every rank.
      add("dp", "all-gather of the updated fp32 master weights", Collective::allgather,
          parallel::allgather_traffic(shard, 4, dp), 1);
    }
    add("dp", "all-reduce of the shards' squared gradient norm (f64)", Collective::allreduce_sum,
        parallel::allreduce_traffic(1, 8, dp, 0), 1);
  } else if (!overlap) {
    add("dp", "all-reduce of the fp32 gradients", Collective::allreduce_sum,
        parallel::allreduce_traffic(n, 4, dp, 0), 1);
  }
  // Overlapped, TpGradSync sums each backward stage's tensors before its
  // buckets (trainer/train_step.cc): one call per stage that has any.
  const auto stage_sums = [&](const char* group, std::string what, const auto& pick, int p) {
    std::vector<size_t> per_stage(static_cast<size_t>(dims.layers + 2), 0);
    const trainer::ParamLayout layout(dims, {0, tp});
    for (const trainer::ParamEntry& e : layout.entries())
      if (pick(e)) per_stage[static_cast<size_t>(trainer::grad_stage(e.name, dims.layers))] += static_cast<size_t>(e.numel);
    Traffic tr;
    for (const size_t s : per_stage)
      if (s) tr += parallel::allreduce_traffic(s, 4, p, 0);
    c.lines.push_back({group, std::move(what), Collective::allreduce_sum, tr});
  };
  add("dp", "all-reduce of the loss sum (f64)", Collective::allreduce_sum,
      parallel::allreduce_traffic(1, 8, dp, 0), 1);

  // tp group, per micro-batch (Megatron's tensor parallelism), then per step.
  if (tp > 1) {
    const int64_t micro = t.global_batch_tokens() / (t.seq_len() * t.micro_batch() * dp);
    const size_t rows = static_cast<size_t>(t.micro_batch() * t.seq_len());
    const size_t nd = rows * static_cast<size_t>(dims.d);
    const int64_t L = dims.layers;
    const int64_t fwd = t.recompute() ? 2 : 1;  // recomputation reruns each block's forward
    if (!cfg.parallel().sequence_parallel()) {
      const Traffic ar = parallel::allreduce_traffic(nd, act_size, tp, 0);
      add("tp", "block forward: all-reduce after o_proj and down_proj", Collective::allreduce_sum, ar,
          2 * L * fwd * micro);
      add("tp", "block backward: all-reduce of the norm outputs' gradients", Collective::allreduce_sum,
          ar, 2 * L * micro);
      add("tp", "embedding forward + LM head backward: all-reduce", Collective::allreduce_sum, ar,
          2 * micro);
    } else {
      const size_t c = nd / static_cast<size_t>(tp);
      const Traffic ag = parallel::allgather_traffic(c, act_size, tp);
      const Traffic rs = parallel::reduce_scatter_traffic(c, act_size, tp);
      add("tp", "block forward: all-gather of the norm outputs", Collective::allgather, ag,
          2 * L * fwd * micro);
      add("tp", "block forward: reduce-scatter after o_proj and down_proj",
          Collective::reduce_scatter_sum, rs, 2 * L * fwd * micro);
      add("tp", "block backward: all-gather of the output gradients", Collective::allgather, ag,
          2 * L * micro);
      add("tp", "block backward: reduce-scatter of the norm outputs' gradients",
          Collective::reduce_scatter_sum, rs, 2 * L * micro);
      add("tp", "block backward: re-gather of the norm outputs (for weight gradients)",
          Collective::allgather, ag, 2 * L * micro);
      add("tp", "embedding forward: reduce-scatter", Collective::reduce_scatter_sum, rs, micro);
      add("tp", "embedding backward: all-gather of its output gradient", Collective::allgather, ag,
          micro);
      add("tp", "LM head: all-gather of the final norm output (the backward reuses it)",
          Collective::allgather, ag, micro);
      add("tp", "LM head backward: reduce-scatter of the final norm output's gradient",
          Collective::reduce_scatter_sum, rs, micro);
      // The norms see T/tp rows: their (replicated) parameters' gradients sum over tp.
      const auto replicated_entry = [](const trainer::ParamEntry& e) { return e.split == Split::Replicated; };
      if (overlap) {
        stage_sums("tp", "all-reduce of the replicated (norm) parameters' fp32 gradients, by backward stage",
                   replicated_entry, tp);
      } else {
        size_t replicated = 0;
        const trainer::ParamLayout layout(dims);  // named: the loop must not outlive it
        for (const trainer::ParamEntry& e : layout.entries())
          if (replicated_entry(e)) replicated += static_cast<size_t>(e.numel);
        add("tp", "all-reduce of the replicated (norm) parameters' fp32 gradients",
            Collective::allreduce_sum, parallel::allreduce_traffic(replicated, 4, tp, 0), 1);
      }
    }
    // The gradient norm's tp ranks' partials (trainer/norm_partition.h).
    add("tp", "all-reduce of the owned blocks' squared gradient norm (f64)", Collective::allreduce_sum,
        parallel::allreduce_traffic(1, 8, tp, 0), 1);
    add("tp", "vocab-parallel cross-entropy: all-gather of (max, exp-sum, target logit) per row, f64",
        Collective::allgather, parallel::allgather_traffic(3 * rows, 8, tp), micro);
    // Fewer KV heads than ranks: the ranks sharing a KV head sum its k and v
    // gradients once per step (trainer/tp_grad_sync.h).
    if (dims.kv_heads < tp) {
      const int kv_group = tp / static_cast<int>(dims.kv_heads);
      if (overlap) {
        stage_sums("tp-kv", "all-reduce of the replicated KV heads' k and v fp32 gradients, by backward stage",
                   [](const trainer::ParamEntry& e) { return e.split != Split::Replicated && e.shard.replicas > 1; },
                   kv_group);
      } else {
        const size_t kv = static_cast<size_t>(2 * L * dims.head_dim * dims.d);
        add("tp-kv", "all-reduce of the replicated KV heads' k and v fp32 gradients",
            Collective::allreduce_sum, parallel::allreduce_traffic(kv, 4, kv_group, 0), 1);
      }
    }
  }
  return c;
}

std::string plan_table(const config::RunConfig& cfg, const MemoryPlan& p, const CommPlan& comm) {
  std::ostringstream o;
  const auto& t = cfg.train();
  const auto& par = cfg.parallel();
  o << "parameters            " << p.parameters << "\n"
    << "parameters per rank   " << p.parameters_per_rank << "  (tp " << par.tp() << ", dp "
    << par.dp() << (par.sequence_parallel() ? ", sequence parallel" : "")
    << (par.zero1() ? ", ZeRO-1" : "") << ")\n"
    << "\nper-rank memory\n"
    << "  weights             " << gib(p.weight_bytes) << "\n";
  if (p.master_bytes) o << "  master weights      " << gib(p.master_bytes) << "\n";
  o << "  gradients           " << gib(p.grad_bytes) << "\n"
    << "  optimizer (AdamW)   " << gib(p.optimizer_bytes) << (par.zero1() ? "  (ZeRO-1)" : "") << "\n"
    << (p.zero_staging_bytes ? "  ZeRO-1 grad chunk   " + gib(p.zero_staging_bytes) + "\n" : std::string())
    << "  activations         " << gib(p.activation_bytes) << "  (micro-batch " << t.micro_batch()
    << " x seq " << t.seq_len() << ")\n"
    << "  activations, recompute " << gib(p.activation_recompute_bytes) << "\n";
  if (p.sp_gather_bytes) o << "  sequence-parallel gather " << gib(p.sp_gather_bytes) << "\n";
  o << "  workspaces          " << gib(p.workspace_bytes) << "\n"
    << "  total               " << gib(p.total_bytes(false)) << "  (with recompute "
    << gib(p.total_bytes(true)) << ")\n"
    << "\nper-rank communication per step (rank 0 of each group; bytes sent = received)\n";
  for (const CommLine& l : comm.lines)
    o << "  " << l.group << "  " << gib(static_cast<int64_t>(l.traffic.bytes_sent)) << "  "
      << l.traffic.calls << " calls  " << l.what << "\n";
  for (const char* g : {"dp", "tp", "tp-kv"}) {
    const Traffic tr = comm.total(g);
    o << "  " << g << " total  " << gib(static_cast<int64_t>(tr.bytes_sent)) << "  " << tr.calls
      << " calls\n";
  }
  return o.str();
}

std::string plan_json(const config::RunConfig& cfg, const MemoryPlan& p, const CommPlan& comm,
                      const std::string& step_time) {
  std::ostringstream o;
  o << "{\"parameters\": " << p.parameters << ", \"parameters_per_rank\": " << p.parameters_per_rank
    << ", \"tp\": " << cfg.parallel().tp() << ", \"dp\": " << cfg.parallel().dp()
    << ", \"buffer_elements\": " << p.buffer_elements << ", \"zero_shard\": " << p.zero_shard
    << ", \"weight_bytes\": " << p.weight_bytes << ", \"master_weight_bytes\": " << p.master_bytes
    << ", \"gradient_bytes\": " << p.grad_bytes << ", \"optimizer_bytes\": " << p.optimizer_bytes
    << ", \"zero_staging_bytes\": " << p.zero_staging_bytes
    << ", \"activation_bytes\": " << p.activation_bytes
    << ", \"activation_recompute_bytes\": " << p.activation_recompute_bytes
    << ", \"sp_gather_bytes\": " << p.sp_gather_bytes << ", \"workspace_bytes\": " << p.workspace_bytes
    << ", \"total_bytes\": " << p.total_bytes(false)
    << ", \"total_recompute_bytes\": " << p.total_bytes(true) << ", \"comm\": [";
  for (size_t i = 0; i < comm.lines.size(); ++i) {
    const CommLine& l = comm.lines[i];
    o << (i ? ", " : "") << "{\"group\": \"" << l.group << "\", \"collective\": \""
      << parallel::collective_name(l.kind) << "\", \"what\": \"" << l.what
      << "\", \"calls\": " << l.traffic.calls << ", \"bytes_sent\": " << l.traffic.bytes_sent
      << ", \"bytes_received\": " << l.traffic.bytes_received << "}";
  }
  o << "], \"comm_total\": {";
  bool first = true;
  for (const char* g : {"dp", "tp", "tp-kv"}) {
    const Traffic tr = comm.total(g);
    o << (first ? "" : ", ") << "\"" << g << "\": {\"calls\": " << tr.calls
      << ", \"bytes_sent\": " << tr.bytes_sent << ", \"bytes_received\": " << tr.bytes_received << "}";
    first = false;
  }
  o << "}";
  if (!step_time.empty()) o << ", \"step_time\": " << step_time;
  o << "}\n";
  return o.str();
}

}  // namespace dyt::launch
