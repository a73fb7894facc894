#include "launch/plan.h"

#include <cstdio>
#include <sstream>

#include "trainer/activations.h"
#include "trainer/param_layout.h"

namespace dyt::launch {

namespace {

using trainer::Split;

// Per-rank activation elements: tensor parallelism divides what lives on head
// or FFN shards and the vocabulary-parallel logits; the residual stream and
// norm outputs are replicated unless sequence parallelism shards them too.
int64_t rank_activation_elements(const trainer::ActivationSizes& s, int64_t tp, bool seq_parallel,
                                 bool recompute) {
  const trainer::LayerActivationSizes& l = s.layer;
  const int64_t rs = seq_parallel ? tp : 1;
  const int64_t sharded = l.q + l.k + l.v + l.lse + l.att + l.gate + l.up + l.act;
  const int64_t replicated = l.a1 + l.rstd1 + l.x_mid + l.a2 + l.rstd2;
  const int64_t layer_full = sharded / tp + replicated / rs + l.x_in / rs;
  const int64_t head = (s.embed + s.final_x + s.final_a + s.final_rstd) / rs + s.logits / tp;
  return recompute ? s.layers * (l.x_in / rs) + layer_full + head : s.layers * layer_full + head;
}

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
  const bool bf16 = cfg.train().precision() == config::BF16;

  MemoryPlan p;
  p.parameters = layout.parameters();
  for (const trainer::ParamEntry& e : layout.entries())
    p.parameters_per_rank += e.split == Split::Replicated ? e.numel : e.numel / tp;
  const int64_t n = p.parameters_per_rank;
  p.weight_bytes = n * (bf16 ? 2 : 4);
  p.master_bytes = bf16 ? n * 4 : 0;
  p.grad_bytes = n * 4;
  p.optimizer_bytes = n * 8 / (cfg.parallel().zero1() ? dp : 1);

  const trainer::ActivationSizes acts =
      trainer::activation_sizes(dims, cfg.train().micro_batch(), cfg.train().seq_len());
  const int64_t act_bytes = bf16 ? 2 : 4;
  const bool sp = cfg.parallel().sequence_parallel();
  p.activation_bytes = rank_activation_elements(acts, tp, sp, false) * act_bytes;
  p.activation_recompute_bytes = rank_activation_elements(acts, tp, sp, true) * act_bytes;
  return p;
}

std::string plan_table(const config::RunConfig& cfg, const MemoryPlan& p) {
  std::ostringstream o;
  const auto& t = cfg.train();
  o << "parameters            " << p.parameters << "\n"
    << "parameters per rank   " << p.parameters_per_rank << "  (tp " << cfg.parallel().tp()
    << ", dp " << cfg.parallel().dp() << ")\n"
    << "\nper-rank memory\n"
    << "  weights             " << gib(p.weight_bytes) << "\n";
  if (p.master_bytes) o << "  master weights      " << gib(p.master_bytes) << "\n";
  o << "  gradients           " << gib(p.grad_bytes) << "\n"
    << "  optimizer (AdamW)   " << gib(p.optimizer_bytes)
    << (cfg.parallel().zero1() ? "  (ZeRO-1)" : "") << "\n"
    << "  activations         " << gib(p.activation_bytes) << "  (micro-batch "
    << t.micro_batch() << " x seq " << t.seq_len() << ")\n"
    << "  activations, recompute " << gib(p.activation_recompute_bytes) << "\n"
    << "  total               " << gib(p.state_bytes() + p.activation_bytes)
    << "  (with recompute " << gib(p.state_bytes() + p.activation_recompute_bytes) << ")\n";
  return o.str();
}

std::string plan_json(const config::RunConfig& cfg, const MemoryPlan& p) {
  std::ostringstream o;
  o << "{\"parameters\": " << p.parameters << ", \"parameters_per_rank\": " << p.parameters_per_rank
    << ", \"tp\": " << cfg.parallel().tp() << ", \"dp\": " << cfg.parallel().dp()
    << ", \"weight_bytes\": " << p.weight_bytes << ", \"master_weight_bytes\": " << p.master_bytes
    << ", \"gradient_bytes\": " << p.grad_bytes << ", \"optimizer_bytes\": " << p.optimizer_bytes
    << ", \"activation_bytes\": " << p.activation_bytes
    << ", \"activation_recompute_bytes\": " << p.activation_recompute_bytes
    << ", \"total_bytes\": " << p.state_bytes() + p.activation_bytes
    << ", \"total_recompute_bytes\": " << p.state_bytes() + p.activation_recompute_bytes << "}\n";
  return o.str();
}

}  // namespace dyt::launch
