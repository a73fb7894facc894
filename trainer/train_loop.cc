#include "trainer/train_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "parallel/mesh.h"
#include "trainer/data/loader.h"
#include "trainer/grad_norm.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/named_tensors.h"
#include "trainer/optimizer.h"
#include "trainer/program.h"
#include "trainer/resume.h"
#include "trainer/schedule.h"
#include "trainer/stop_request.h"

namespace dyt::trainer {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Mean validation loss over the fixed validation batches, which the
// data-parallel ranks share out (batch j on rank j mod dp).
double evaluate(Model& model, const data::EvalBatches& batches, std::vector<int32_t>& tokens,
                std::vector<int32_t>& targets, const parallel::Mesh& mesh, parallel::Communicator& comm) {
  double sum = 0;
  for (int64_t j = mesh.dp_rank; j < batches.num_batches(); j += mesh.dp) {
    batches.fill_batch(j, tokens.data(), targets.data());
    sum += model.forward(tokens.data(), targets.data());
  }
  comm.allreduce_sum(&sum, 1);
  return sum / static_cast<double>(batches.num_batches() * model.batch() * model.seq_len());
}

// The layout of this run over the ranks `comm` holds (ConfigError if they
// cannot hold it, or if it asks for what dyt-train cannot do yet).
parallel::Mesh make_mesh(const config::ParallelConfig& p, const parallel::Communicator& comm) {
  if (p.tp() != 1)
    throw config::ConfigError("parallel.tp = " + std::to_string(p.tp()) +
                              ": dyt-train has no tensor parallelism yet; set parallel.tp=1 and "
                              "use parallel.dp for more ranks");
  if (p.zero1()) throw config::ConfigError("parallel.zero1: not in dyt-train yet; set it to false");
  if (p.sequence_parallel())
    throw config::ConfigError("parallel.sequence_parallel: not in dyt-train yet; set it to false");
  try {
    return parallel::Mesh::make(comm.size(), comm.rank(), p.dp(), p.tp());
  } catch (const parallel::LayoutError& e) {
    throw config::ConfigError(e.what());
  }
}

std::vector<std::pair<std::string, float>> alphas(const Model& model) {
  std::vector<std::pair<std::string, float>> out;
  for (const ParamEntry& e : model.layout().entries())
    if (e.kind == ParamKind::NormAlpha) out.emplace_back(e.name, model.params()[e.offset]);
  return out;
}

struct ResumeState {
  int64_t step = 0;
  int64_t skipped_steps = 0;
  int64_t nonfinite_in_a_row = 0;
};

// Takes model and optimizer to where `ck` left them, after checking that it
// belongs to this run (or saying what differs, when differences are allowed).
ResumeState resume_from(const checkpoint::Checkpoint& ck, const config::RunConfig& cfg, Model& model,
                        AdamW& optimizer, std::FILE* out) {
  try {
    check_resumable(ck, cfg);
  } catch (const config::ConfigError& e) {
    if (!cfg.checkpoint().allow_config_change()) throw;
    std::fprintf(out, "dyt-train: checkpoint.allow_config_change: %s\n", e.what());
  }
  restore_run_state(ck, model.layout(), model.params().data(), optimizer);
  std::fprintf(out, "dyt-train: resuming from %s after step %lld\n", ck.path.c_str(),
               static_cast<long long>(ck.progress.step));
  return {ck.progress.step, ck.progress.skipped_steps, ck.progress.nonfinite_in_a_row};
}

}  // namespace

TrainSummary train(const config::RunConfig& cfg, std::FILE* out, parallel::Communicator& comm) {
  const config::TrainConfig& t = cfg.train();
  const parallel::Mesh mesh = make_mesh(cfg.parallel(), comm);
  // Rank 0 speaks and writes (progress, metrics, checkpoints, the final
  // weights); every rank computes the same replicated state.
  const bool root = mesh.rank == 0;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> devnull(root ? nullptr : std::fopen("/dev/null", "w"),
                                                          &std::fclose);
  if (!root) {
    if (!devnull) throw std::runtime_error("cannot open /dev/null");
    out = devnull.get();
  }
  if (t.precision() != config::FP32)
    throw config::ConfigError("train.precision: the CPU trainer computes in FP32; set train.precision=FP32 "
                              "(BF16 needs the CUDA path)");
  const int64_t T = t.seq_len(), B = t.micro_batch();

  // Everything that can be wrong with the data is found before any work.
  const data::TokenDataset train_set = data::TokenDataset::open(cfg.data().train_shards(), T, "data.train_shards");
  train_set.check_vocab(cfg.model().vocab_size());
  std::optional<data::TokenDataset> val_set;
  std::optional<data::EvalBatches> val_batches;
  if (t.eval_every() > 0 && t.eval_batches() > 0 && !cfg.data().val_shards().empty()) {
    val_set.emplace(data::TokenDataset::open(cfg.data().val_shards(), T, "data.val_shards"));
    val_set->check_vocab(cfg.model().vocab_size());
    val_batches.emplace(*val_set, t.eval_batches(), B);
  }
  const data::BatchSampler sampler(train_set, t.seed(), t.global_batch_tokens(), B, mesh.dp_rank, mesh.dp);

  Model model(cfg.model(), B, T, t.recompute());
  model.init(t.seed());
  AdamW optimizer(model.layout(), t);

  // A checkpoint in checkpoint.dir means this run goes on from it; whether it
  // belongs to this run is settled before anything is written.
  const config::CheckpointConfig& ckc = cfg.checkpoint();
  const std::string run_config_text = config::to_text(config::resolved(cfg));
  TrainSummary summary;
  ResumeState resumed;
  if (!ckc.dir().empty()) {
    if (auto ck = checkpoint::load_latest_checkpoint(ckc.dir())) {
      resumed = resume_from(*ck, cfg, model, optimizer, out);
      summary.checkpoint = ck->path;
    }
  }
  summary.start_step = summary.steps = resumed.step;
  summary.skipped_steps = resumed.skipped_steps;

  const std::filesystem::path run_dir = t.run_dir();
  std::optional<MetricsLog> metrics;
  if (root) {
    std::filesystem::create_directories(run_dir);
    write_text_file((run_dir / "config.pbtxt").string(), run_config_text);
    metrics.emplace(t.metrics_file().empty() ? (run_dir / "metrics.jsonl").string() : t.metrics_file(),
                    resumed.step > 0 ? resumed.step : -1);
  }

  const int64_t tokens_per_step = sampler.global_batch_samples() * T;
  std::fprintf(out,
               "dyt-train: %lld parameters, norm %s, %lld steps of %lld tokens "
               "(%d data-parallel ranks x %lld micro-batches of %lld x %lld), %lld training samples, "
               "run dir %s\n",
               static_cast<long long>(model.layout().total()), norm_name(model.dims().norm),
               static_cast<long long>(t.steps()), static_cast<long long>(tokens_per_step), mesh.dp,
               static_cast<long long>(sampler.micro_batches_per_step()), static_cast<long long>(B),
               static_cast<long long>(T), static_cast<long long>(train_set.num_samples()),
               run_dir.string().c_str());

  std::vector<int32_t> tokens(B * T), targets(B * T);
  summary.initial_val_loss = summary.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  if (val_batches && resumed.step == 0) {
    summary.initial_val_loss = evaluate(model, *val_batches, tokens, targets, mesh, comm);
    if (metrics) metrics->log_eval(0, summary.initial_val_loss);
    std::fprintf(out, "step 0 | val loss %.4f\n", summary.initial_val_loss);
  }

  std::vector<float>& grads = model.grads();
  const int64_t n_params = model.layout().total();
  const float grad_scale = 1.0f / static_cast<float>(tokens_per_step);
  int64_t nonfinite_in_a_row = resumed.nonfinite_in_a_row;
  int64_t saved_at = -1;
  const auto save = [&](int64_t steps_done) {
    saved_at = steps_done;
    if (!root) return;  // the state is replicated; one copy is saved
    const checkpoint::Progress progress{steps_done, optimizer.steps_taken(), summary.skipped_steps,
                                        nonfinite_in_a_row};
    summary.checkpoint = checkpoint::save_checkpoint(
        ckc.dir(), progress, run_config_text,
        run_state_tensors(model.layout(), model.params().data(), optimizer), ckc.keep());
    std::fprintf(out, "step %lld | checkpoint %s\n", static_cast<long long>(steps_done),
                 summary.checkpoint.c_str());
    std::fflush(out);
  };
  const int64_t stop_at =
      ckc.exit_at_step() > 0 ? std::min<int64_t>(ckc.exit_at_step(), t.steps()) : t.steps();
  const StopRequest stop;
  const auto start = Clock::now();
  for (int64_t step = resumed.step; step < stop_at; ++step) {
    const auto step_start = Clock::now();
    model.zero_grads();
    double loss_sum = 0;
    for (int64_t micro = 0; micro < sampler.micro_batches_per_step(); ++micro) {
      sampler.fill_micro_batch(step, micro, tokens.data(), targets.data());
      loss_sum += model.forward_backward(tokens.data(), targets.data(), grad_scale);
    }
    // Each rank holds its slice's share of the mean gradient; the sum over
    // ranks (fixed rank order) is the global batch's, the same bits on all.
    comm.allreduce_sum(grads.data(), static_cast<size_t>(n_params));
    comm.allreduce_sum(&loss_sum, 1);

    StepMetrics m;
    m.step = step + 1;
    m.loss = loss_sum / static_cast<double>(tokens_per_step);
    m.lr = learning_rate(step, t);
    m.grad_norm = global_grad_norm(grads.data(), n_params);
    if (std::isfinite(m.loss) && std::isfinite(m.grad_norm)) {
      nonfinite_in_a_row = 0;
      clip_grads(grads.data(), n_params, m.grad_norm, t.grad_clip());
      optimizer.step(model.params().data(), grads.data(), m.lr);
    } else {
      // The update is skipped; the data position still advances so a bad
      // batch is not retried forever.
      m.skipped = true;
      ++summary.skipped_steps;
      ++nonfinite_in_a_row;
    }
    m.skipped_steps = summary.skipped_steps;
    m.tokens_per_s = static_cast<double>(tokens_per_step) / seconds_since(step_start);
    m.alphas = alphas(model);
    if (metrics) metrics->log_step(m);
    summary.final_train_loss = m.loss;
    summary.steps = step + 1;

    const bool last = step + 1 == t.steps();
    if (m.skipped || last || step == resumed.step || (step + 1) % t.log_every() == 0) {
      const double elapsed = seconds_since(start);
      const double eta = elapsed / static_cast<double>(step + 1 - resumed.step) *
                         static_cast<double>(t.steps() - step - 1);
      std::fprintf(out, "%s\n", progress_line(m, t.steps(), eta).c_str());
      std::fflush(out);
    }
    if (nonfinite_in_a_row >= t.max_nonfinite_steps())
      throw TrainingError("stopping at step " + std::to_string(step + 1) + ": " +
                          std::to_string(nonfinite_in_a_row) +
                          " steps in a row had a non-finite loss or gradient "
                          "(train.max_nonfinite_steps = " + std::to_string(t.max_nonfinite_steps()) +
                          "); lower train.lr or check the data; metrics in " +
                          (run_dir / "metrics.jsonl").string());
    if (val_batches && ((step + 1) % t.eval_every() == 0 || last)) {
      summary.final_val_loss = evaluate(model, *val_batches, tokens, targets, mesh, comm);
      if (metrics) metrics->log_eval(step + 1, summary.final_val_loss);
      std::fprintf(out, "step %lld | val loss %.4f\n", static_cast<long long>(step + 1),
                   summary.final_val_loss);
    }
    if (!ckc.dir().empty() &&
        (step + 1 == stop_at || (ckc.every_steps() > 0 && (step + 1) % ckc.every_steps() == 0)))
      save(step + 1);
    // Every rank stops after the same step, whichever got the signal.
    if (const int sig = static_cast<int>(comm.allreduce_max(stop.signal()))) {
      summary.stop_signal = sig;
      std::fprintf(out, "dyt-train: %s after step %lld: stopping\n", StopRequest::name(sig),
                   static_cast<long long>(step + 1));
      if (!ckc.dir().empty() && saved_at != step + 1) save(step + 1);
      break;
    }
  }
  summary.seconds = seconds_since(start);
  summary.finished = summary.steps >= t.steps();  // >: resumed past a shortened run (allow_config_change)
  if (!summary.finished) return summary;  // the checkpoint holds the state; no final export yet

  if (!root) return summary;
  // The trained weights, in Hugging Face names, beside their config.
  checkpoint::write_safetensors((run_dir / "model.safetensors").string(),
                                named_views(model.layout(), model.params().data()));
  write_text_file((run_dir / "config.json").string(), hf_config_json(model.dims()));
  return summary;
}

}  // namespace dyt::trainer
