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
#include "trainer/device_backend.h"
#include "trainer/metrics.h"
#include "trainer/model_instance.h"
#include "trainer/named_tensors.h"
#include "trainer/optimizer.h"
#include "trainer/program.h"
#include "trainer/resume.h"
#include "trainer/schedule.h"
#include "trainer/stop_request.h"
#include "trainer/train_data.h"
#include "trainer/train_step.h"

namespace dyt::trainer {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
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

// Every DyT/DyISRU α by name: read from the device only for a metrics line.
std::vector<std::pair<std::string, float>> alphas(const ModelInstance& model) {
  std::vector<std::pair<std::string, float>> out;
  for (const ParamEntry& e : model.layout().entries()) {
    if (e.kind != ParamKind::NormAlpha) continue;
    float a = 0;
    model.backend().download(model.params().f32_param(e.name), &a);
    out.emplace_back(e.name, a);
  }
  return out;
}

// Where a run stands: what a checkpoint records besides the tensors.
struct RunProgress {
  int64_t step = 0;
  int64_t skipped_steps = 0;
  int64_t nonfinite_in_a_row = 0;
};

// Takes model and optimizer to where `ck` left them, after checking that it
// belongs to this run (or saying what differs, when differences are allowed).
RunProgress resume_from(const checkpoint::Checkpoint& ck, const config::RunConfig& cfg,
                        ModelInstance& model, AdamW& optimizer, std::FILE* out) {
  try {
    check_resumable(ck, cfg);
  } catch (const config::ConfigError& e) {
    if (!cfg.checkpoint().allow_config_change()) throw;
    std::fprintf(out, "dyt-train: checkpoint.allow_config_change: %s\n", e.what());
  }
  std::vector<float> params(static_cast<size_t>(model.layout().total()));
  restore_run_state(ck, model.layout(), params.data(), optimizer);
  model.params().set_master(params.data());
  std::fprintf(out, "dyt-train: resuming from %s after step %lld\n", ck.path.c_str(),
               static_cast<long long>(ck.progress.step));
  return {ck.progress.step, ck.progress.skipped_steps, ck.progress.nonfinite_in_a_row};
}

// Saves the replicated state (rank 0 only) and returns the checkpoint's path.
std::string save_run(const config::CheckpointConfig& ckc, const RunProgress& p,
                     const std::string& run_config_text, const ModelInstance& model,
                     const AdamW& optimizer) {
  const checkpoint::Progress progress{p.step, optimizer.steps_taken(), p.skipped_steps,
                                      p.nonfinite_in_a_row};
  const std::vector<float> params = model.params().master_to_host();
  const std::vector<float> m = optimizer.exp_avg_to_host(), v = optimizer.exp_avg_sq_to_host();
  return checkpoint::save_checkpoint(ckc.dir(), progress, run_config_text,
                                     run_state_tensors(model.layout(), params.data(), m.data(), v.data()),
                                     ckc.keep());
}

// The trained weights in Hugging Face names, beside their config.
void export_model(const std::filesystem::path& run_dir, const ModelInstance& model) {
  const std::vector<float> params = model.params().master_to_host();
  checkpoint::write_safetensors((run_dir / "model.safetensors").string(),
                                named_views(model.layout(), params.data()));
  write_text_file((run_dir / "config.json").string(), hf_config_json(model.dims()));
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
  // Everything that can be wrong with the device and the data is found before any work.
  const std::unique_ptr<kernels::Backend> backend = make_backend(cfg);
  const TrainData data(cfg, mesh);
  const data::BatchSampler& sampler = data.sampler();
  const int64_t T = t.seq_len(), B = t.micro_batch();

  ModelInstance model(cfg.model(), B, T, t.recompute(), *backend, compute_dtype(t));
  model.init(t.seed());
  AdamW optimizer(model.layout(), t, *backend);

  // A checkpoint in checkpoint.dir means this run goes on from it; whether it
  // belongs to this run is settled before anything is written.
  const config::CheckpointConfig& ckc = cfg.checkpoint();
  const std::string run_config_text = config::to_text(config::resolved(cfg));
  TrainSummary summary;
  RunProgress progress;
  if (!ckc.dir().empty()) {
    if (auto ck = checkpoint::load_latest_checkpoint(ckc.dir())) {
      progress = resume_from(*ck, cfg, model, optimizer, out);
      summary.checkpoint = ck->path;
    }
  }
  const int64_t first_step = progress.step;
  summary.start_step = summary.steps = first_step;
  summary.skipped_steps = progress.skipped_steps;

  const std::filesystem::path run_dir = t.run_dir();
  std::optional<MetricsLog> metrics;
  if (root) {
    std::filesystem::create_directories(run_dir);
    write_text_file((run_dir / "config.pbtxt").string(), run_config_text);
    metrics.emplace(t.metrics_file().empty() ? (run_dir / "metrics.jsonl").string() : t.metrics_file(),
                    first_step > 0 ? first_step : -1);
  }

  TrainStep step_runner(model, optimizer, sampler, comm, t);
  const int64_t tokens_per_step = step_runner.tokens_per_step();
  std::fprintf(out,
               "dyt-train: %lld parameters, norm %s, %lld steps of %lld tokens "
               "(%d data-parallel ranks x %lld micro-batches of %lld x %lld), %lld training samples, "
               "run dir %s\n",
               static_cast<long long>(model.layout().parameters()), norm_name(model.dims().norm),
               static_cast<long long>(t.steps()), static_cast<long long>(tokens_per_step), mesh.dp,
               static_cast<long long>(sampler.micro_batches_per_step()), static_cast<long long>(B),
               static_cast<long long>(T), static_cast<long long>(data.train_set().num_samples()),
               run_dir.string().c_str());

  const data::EvalBatches* val = data.val_batches();
  const auto validate = [&](int64_t steps_done) {
    const double loss = evaluate(model, *val, mesh.dp_rank, mesh.dp, comm);
    if (metrics) metrics->log_eval(steps_done, loss);
    std::fprintf(out, "step %lld | val loss %.4f\n", static_cast<long long>(steps_done), loss);
    return loss;
  };
  summary.initial_val_loss = summary.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  if (val && first_step == 0) summary.initial_val_loss = validate(0);

  int64_t saved_at = -1;
  const auto save = [&](int64_t steps_done) {
    saved_at = steps_done;
    if (!root) return;  // the state is replicated; one copy is saved
    progress.step = steps_done;
    progress.skipped_steps = summary.skipped_steps;
    summary.checkpoint = save_run(ckc, progress, run_config_text, model, optimizer);
    std::fprintf(out, "step %lld | checkpoint %s\n", static_cast<long long>(steps_done),
                 summary.checkpoint.c_str());
    std::fflush(out);
  };
  const int64_t stop_at =
      ckc.exit_at_step() > 0 ? std::min<int64_t>(ckc.exit_at_step(), t.steps()) : t.steps();
  const StopRequest stop;
  const auto start = Clock::now();
  for (int64_t step = first_step; step < stop_at; ++step) {
    const auto step_start = Clock::now();
    StepMetrics m;
    m.step = step + 1;
    m.lr = learning_rate(step, t);
    const StepResult r = step_runner.run(step, m.lr);
    m.loss = r.loss;
    m.grad_norm = r.grad_norm;
    m.skipped = r.skipped;
    if (r.skipped) {
      ++summary.skipped_steps;
      ++progress.nonfinite_in_a_row;
    } else {
      progress.nonfinite_in_a_row = 0;
    }
    m.skipped_steps = summary.skipped_steps;
    m.tokens_per_s = static_cast<double>(tokens_per_step) / seconds_since(step_start);
    if (metrics) {
      m.alphas = alphas(model);
      metrics->log_step(m);
    }
    summary.final_train_loss = m.loss;
    summary.steps = step + 1;

    const bool last = step + 1 == t.steps();
    if (m.skipped || last || step == first_step || (step + 1) % t.log_every() == 0) {
      const double elapsed = seconds_since(start);
      const double eta = elapsed / static_cast<double>(step + 1 - first_step) *
                         static_cast<double>(t.steps() - step - 1);
      std::fprintf(out, "%s\n", progress_line(m, t.steps(), eta).c_str());
      std::fflush(out);
    }
    if (progress.nonfinite_in_a_row >= t.max_nonfinite_steps())
      throw TrainingError("stopping at step " + std::to_string(step + 1) + ": " +
                          std::to_string(progress.nonfinite_in_a_row) +
                          " steps in a row had a non-finite loss or gradient "
                          "(train.max_nonfinite_steps = " + std::to_string(t.max_nonfinite_steps()) +
                          "); lower train.lr or check the data; metrics in " +
                          (run_dir / "metrics.jsonl").string());
    if (val && ((step + 1) % t.eval_every() == 0 || last)) summary.final_val_loss = validate(step + 1);
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
  if (!summary.finished || !root) return summary;  // the checkpoint holds the state; no export yet
  export_model(run_dir, model);
  return summary;
}

}  // namespace dyt::trainer
