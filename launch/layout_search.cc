#include "launch/layout_search.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "launch/plan.h"

namespace dyt::launch {

std::vector<std::string> Layout::overrides() const {
  const auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  return {"parallel.tp=" + std::to_string(tp), "parallel.dp=" + std::to_string(dp),
          "parallel.sequence_parallel=" + b(sequence_parallel), "parallel.zero1=" + b(zero1),
          "train.recompute=" + b(recompute), "train.micro_batch=" + std::to_string(micro_batch)};
}

std::string Layout::describe() const {
  std::ostringstream o;
  o << "tp " << tp << " dp " << dp << (sequence_parallel ? " sp" : "") << (zero1 ? " zero1" : "")
    << (recompute ? " rc" : "") << " mb " << micro_batch;
  return o.str();
}

config::RunConfig with_layout(const config::RunConfig& base, const Layout& l) {
  config::RunConfig c = base;
  c.mutable_parallel()->set_tp(l.tp);
  c.mutable_parallel()->set_dp(l.dp);
  c.mutable_parallel()->set_sequence_parallel(l.sequence_parallel);
  c.mutable_parallel()->set_zero1(l.zero1);
  c.mutable_train()->set_recompute(l.recompute);
  c.mutable_train()->set_micro_batch(l.micro_batch);
  return c;
}

std::vector<Candidate> enumerate_layouts(const config::RunConfig& base, int64_t gpus,
                                         const HardwareProfile& hw, const StepTimeOptions& options,
                                         const std::vector<int64_t>& micro_batches) {
  if (gpus < 1) throw std::invalid_argument("layout search: --gpus must be >= 1, got " + std::to_string(gpus));
  if (micro_batches.empty()) throw std::invalid_argument("layout search: no micro-batch sizes to try");
  for (int64_t mb : micro_batches)
    if (mb < 1) throw std::invalid_argument("layout search: micro-batch size " + std::to_string(mb) + " < 1");
  std::vector<Candidate> out;
  for (int64_t tp = 1; tp <= gpus; tp *= 2) {
    if (gpus % tp != 0) continue;
    for (int64_t mb : micro_batches)
      for (bool sp : {false, true}) {
        if (sp && tp == 1) continue;
        for (bool z : {false, true}) {
          if (z && gpus / tp == 1) continue;
          for (bool rc : {false, true}) {
            Candidate c;
            c.layout = {tp, gpus / tp, mb, sp, z, rc};
            const config::RunConfig cfg = with_layout(base, c.layout);
            if (!config::validate(cfg).empty()) continue;
            c.memory_bytes = plan_memory(cfg).total_bytes(rc);
            c.fits = c.memory_bytes <= usable_memory(hw);
            c.time = predict_step(cfg, hw, options);
            out.push_back(c);
          }
        }
      }
  }
  return out;
}

std::vector<Candidate> rank_fitting(std::vector<Candidate> candidates) {
  candidates.erase(std::remove_if(candidates.begin(), candidates.end(), [](const Candidate& c) { return !c.fits; }),
                   candidates.end());
  std::stable_sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.time.tokens_per_s != b.time.tokens_per_s) return a.time.tokens_per_s > b.time.tokens_per_s;
    return a.memory_bytes < b.memory_bytes;
  });
  return candidates;
}

std::string search_table(const std::vector<Candidate>& ranked, size_t top, const HardwareProfile& hw,
                         int64_t gpus, size_t considered) {
  std::ostringstream o;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "layouts of %lld x %s (%lld per node, %.1f GiB usable each): %zu valid, %zu fit\n",
                static_cast<long long>(gpus), hw.name.c_str(), static_cast<long long>(hw.gpus_per_node),
                static_cast<double>(usable_memory(hw)) / (1ll << 30), considered, ranked.size());
  o << buf;
  if (ranked.empty()) return o.str();
  o << "  layout                        memory   step s  compute  elemwise  tp comm  dp comm  tok/s/GPU    MFU\n";
  for (size_t i = 0; i < ranked.size() && i < top; ++i) {
    const Candidate& c = ranked[i];
    const StepTime& t = c.time;
    std::snprintf(buf, sizeof buf, "  %-28s %6.1f G %8.3f %8.3f %9.3f %8.3f %8.3f %10.0f %5.1f %%\n",
                  c.layout.describe().c_str(), static_cast<double>(c.memory_bytes) / (1ll << 30), t.step_s,
                  t.compute_s, t.elementwise_s, t.tp_comm_s, t.dp_exposed_s, t.tokens_per_s_per_gpu,
                  100 * t.mfu);
    o << buf;
  }
  o << "pick: " << ranked.front().layout.describe() << "\n ";
  for (const std::string& s : ranked.front().layout.overrides()) o << " --set " << s;
  o << "\n";
  return o.str();
}

}  // namespace dyt::launch
