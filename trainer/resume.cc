#include "trainer/resume.h"

#include <google/protobuf/util/message_differencer.h>

#include <stdexcept>
#include <vector>

#include "common/shape_text.h"
#include "trainer/state_pieces.h"

namespace dyt::trainer {
namespace {

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
  r.clear_parallel();  // the checkpoint is in model space and the global batch layout-independent
  return r;
}

// The three tensors of an entry: name in the checkpoint, where its floats
// live, and whether they are indexed from moments.begin (the moments, and a
// sharded master's parameters) or from 0.
template <class T>
struct Part {
  std::string name;
  T* data;
  bool ranged;
};
template <class T>
std::vector<Part<T>> parts(const ParamEntry& e, const RankStateT<T>& s) {
  return {{e.name, s.params, s.params_in_range},
          {kExpAvgPrefix + e.name, s.exp_avg, true},
          {kExpAvgSqPrefix + e.name, s.exp_avg_sq, true}};
}

}  // namespace

std::vector<checkpoint::TensorShape> run_state_shapes(const ParamLayout& layout) {
  std::vector<checkpoint::TensorShape> out;
  for (const char* prefix : {"", kExpAvgPrefix, kExpAvgSqPrefix})
    for (const ParamEntry& e : layout.entries()) out.push_back({prefix + e.name, e.global_shape});
  return out;
}

HostRankState rank_state_to_host(const ParamStore& params, const AdamW& optimizer, FlatRange moments) {
  const auto text = [](FlatRange r) { return "[" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ")"; };
  const FlatRange held = params.master_range(), opt = optimizer.range();
  if (opt.begin != moments.begin || opt.end != moments.end)
    throw std::logic_error("rank_state_to_host: the optimizer holds the moments of " + text(opt) +
                           ", moment_range says " + text(moments));
  HostRankState s;
  s.moments = moments;
  s.params_in_range = params.master_sharded();
  if (s.params_in_range && (held.begin != moments.begin || held.end != moments.end))
    throw std::logic_error("rank_state_to_host: the sharded master holds " + text(held) + ", moment_range says " +
                           text(moments));
  s.params = s.params_in_range ? params.master_range_to_host() : params.master_to_host();
  s.exp_avg = optimizer.exp_avg_to_host();
  s.exp_avg_sq = optimizer.exp_avg_sq_to_host();
  return s;
}

std::vector<checkpoint::PieceRef> run_state_pieces(const ParamLayout& layout, FlatRange save,
                                                   const ConstRankState& s) {
  if (save.begin < s.moments.begin || save.end > s.moments.end)
    throw std::logic_error("run_state_pieces: the range saved [" + std::to_string(save.begin) + ", " +
                           std::to_string(save.end) + ") is not inside the moments held [" +
                           std::to_string(s.moments.begin) + ", " + std::to_string(s.moments.end) + ")");
  std::vector<checkpoint::PieceRef> out;
  for (const ParamEntry& e : layout.entries()) {
    if (!e.shard.owner()) continue;  // another tp rank writes this block
    for (const FlatBox& b : entry_boxes(e, save))
      for (const Part<const float>& p : parts(e, s))
        out.push_back({p.name, b.box, p.data + (b.flat_begin - (p.ranged ? s.moments.begin : 0))});
  }
  return out;
}

void restore_run_state(const checkpoint::Checkpoint& ck, const ParamLayout& layout, const RankState& s) {
  if (s.params_in_range) throw std::logic_error("restore_run_state: the parameters are read whole");
  const std::string where = "checkpoint '" + ck.path + "'";
  // The checkpoint holds exactly this model's tensors, at its global shapes.
  for (const checkpoint::TensorShape& t : run_state_shapes(layout)) {
    if (!ck.has(t.name))
      throw checkpoint::CheckpointError(where + " has no tensor " + t.name + ", which the model being resumed has");
    if (ck.shape(t.name) != t.shape)
      throw checkpoint::CheckpointError(where + ": tensor " + t.name + " has global shape " +
                                        shape_text(ck.shape(t.name)) + ", the model being resumed has " +
                                        shape_text(t.shape) + " (check the config's model)");
  }
  for (const auto& [name, shape] : ck.shapes()) {
    const bool known = layout.find(name) ||
                       (name.rfind(kExpAvgSqPrefix, 0) == 0 && layout.find(name.substr(std::string(kExpAvgSqPrefix).size()))) ||
                       (name.rfind(kExpAvgPrefix, 0) == 0 && layout.find(name.substr(std::string(kExpAvgPrefix).size())));
    if (!known)
      throw checkpoint::CheckpointError(where + ": tensor " + name +
                                        " is not part of this model (check the config's norm, norm_bias "
                                        "and embed_scale)");
  }
  for (const ParamEntry& e : layout.entries()) {
    ck.read(e.name, block_box(e), s.params + e.offset);
    for (const FlatBox& b : entry_boxes(e, s.moments)) {
      ck.read(kExpAvgPrefix + e.name, b.box, s.exp_avg + (b.flat_begin - s.moments.begin));
      ck.read(kExpAvgSqPrefix + e.name, b.box, s.exp_avg_sq + (b.flat_begin - s.moments.begin));
    }
  }
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
