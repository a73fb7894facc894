#include "trainer/resume.h"

#include <google/protobuf/util/message_differencer.h>

#include <map>
#include <vector>

#include "trainer/named_tensors.h"

namespace dyt::trainer {
namespace {

constexpr const char* kExpAvg = "optimizer.exp_avg.";
constexpr const char* kExpAvgSq = "optimizer.exp_avg_sq.";

// The settings that decide what the run computes from here on; the others
// are cleared so that they compare equal.
config::RunConfig trajectory(const config::RunConfig& cfg) {
  config::RunConfig r = config::resolved(cfg);
  config::TrainConfig& t = *r.mutable_train();
  t.clear_log_every();
  t.clear_eval_every();
  t.clear_eval_batches();
  t.clear_max_nonfinite_steps();
  t.clear_recompute();
  t.clear_metrics_file();
  t.clear_run_dir();
  t.clear_micro_batch();
  r.mutable_data()->clear_val_shards();
  r.mutable_data()->clear_tokenizer();
  r.clear_checkpoint();
  r.clear_parallel();  // the state is replicated and the global batch layout-independent
  return r;
}

}  // namespace

std::vector<checkpoint::TensorRef> run_state_tensors(const ParamLayout& layout, const float* params,
                                                     const float* exp_avg, const float* exp_avg_sq) {
  std::vector<checkpoint::TensorRef> out = named_views(layout, params);
  for (auto [prefix, buffer] : {std::pair{kExpAvg, exp_avg}, std::pair{kExpAvgSq, exp_avg_sq}}) {
    for (checkpoint::TensorRef t : named_views(layout, buffer)) {
      t.name = prefix + t.name;
      out.push_back(std::move(t));
    }
  }
  return out;
}

void restore_run_state(const checkpoint::Checkpoint& ck, const ParamLayout& layout, float* params,
                       AdamW& optimizer) {
  std::map<std::string, checkpoint::LoadedTensor> weights, exp_avg, exp_avg_sq;
  for (const auto& [name, t] : ck.tensors) {
    if (name.rfind(kExpAvgSq, 0) == 0) exp_avg_sq.emplace(name.substr(std::string(kExpAvgSq).size()), t);
    else if (name.rfind(kExpAvg, 0) == 0) exp_avg.emplace(name.substr(std::string(kExpAvg).size()), t);
    else weights.emplace(name, t);
  }
  load_named(layout, weights, "checkpoint '" + ck.path + "' (parameters)", params);
  std::vector<float> m(static_cast<size_t>(layout.total())), v(m.size());
  load_named(layout, exp_avg, "checkpoint '" + ck.path + "' (optimizer " + kExpAvg + "*)", m.data());
  load_named(layout, exp_avg_sq, "checkpoint '" + ck.path + "' (optimizer " + kExpAvgSq + "*)",
             v.data());
  optimizer.set_moments(m.data(), v.data());
  optimizer.set_steps_taken(ck.progress.optimizer_steps);
}

void check_resumable(const checkpoint::Checkpoint& ck, const config::RunConfig& cfg) {
  const std::string source = ck.path + "/manifest.pbtxt (run_config)";
  const config::RunConfig saved = config::parse_run_config(ck.run_config, source, {});
  std::string diff;
  google::protobuf::util::MessageDifferencer differ;
  differ.ReportDifferencesToString(&diff);
  if (differ.Compare(trajectory(saved), trajectory(cfg))) return;
  const std::string first = diff.substr(0, diff.find('\n'));
  throw config::ConfigError(
      "checkpoint.dir holds " + ck.path + ", saved by a run with other settings (" + first +
      ", checkpoint -> this config): resuming continues a run only with the settings that "
      "decide its course unchanged. Restore them, or set checkpoint.dir to a new directory to "
      "start afresh");
}

}  // namespace dyt::trainer
