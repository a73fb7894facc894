#include "trainer/train_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "parallel/groups.h"
#include "parallel/mesh.h"
#include "parallel/tensor_collectives.h"
#include "trainer/device_backend.h"
#include "trainer/device_comms.h"
#include "trainer/dp_partition.h"
#include "trainer/gather_blocks.h"
#include "trainer/hf_model.h"
#include "trainer/init_from.h"
#include "trainer/metrics.h"
#include "trainer/tensorboard_log.h"
#include "trainer/throughput.h"
#include "trainer/model_instance.h"
#include "trainer/named_tensors.h"
#include "trainer/optimizer.h"
#include "trainer/rank_errors.h"
#include "trainer/program.h"
#include "trainer/resume.h"
#include "trainer/schedule.h"
#include "trainer/state_pieces.h"
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
// cannot hold it, or if the model cannot be split over parallel.tp).
parallel::Mesh make_mesh(const config::RunConfig& cfg, const parallel::Communicator& comm) {
  const config::ParallelConfig& p = cfg.parallel();
  try {
    ParamLayout(model_dims(cfg.model()), TpRank{0, static_cast<int>(p.tp())});
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

// Opens the latest checkpoint under `dir` on every rank, or none; if any
// rank cannot, every rank throws its error.
std::optional<checkpoint::Checkpoint> open_latest(const std::string& dir, parallel::Communicator& comm) {
  std::optional<checkpoint::Checkpoint> ck;
  const std::string error = error_of([&] { ck = checkpoint::load_latest_checkpoint(dir); });
  if (const std::string first = first_error(comm, error); !first.empty()) throw checkpoint::CheckpointError(first);
  return ck;
}

// Takes model and optimizer to where `ck` left them, after checking that it
// belongs to this run (or saying what differs, when differences are allowed):
// each rank reads its own blocks, whatever layout saved them.
RunProgress resume_from(const checkpoint::Checkpoint& ck, const config::RunConfig& cfg, const parallel::Mesh& mesh,
                        parallel::Communicator& comm, ModelInstance& model, AdamW& optimizer, std::FILE* out) {
  try {
    check_resumable(ck, cfg);
  } catch (const config::ConfigError& e) {
    if (!cfg.checkpoint().allow_config_change()) throw;
    std::fprintf(out, "dyt-train: checkpoint.allow_config_change: %s\n", e.what());
  }
  const ParamLayout& layout = model.layout();
  const FlatRange moments = moment_range(layout, mesh.dp, mesh.dp_rank, cfg.parallel().zero1());
  if (optimizer.range().begin != moments.begin || optimizer.range().end != moments.end)
    throw std::logic_error("resume_from: the optimizer holds another range than moment_range");
  std::vector<float> params(static_cast<size_t>(layout.total())), m(static_cast<size_t>(moments.size())),
      v(m.size());
  const std::string error = error_of([&] { restore_run_state(ck, layout, {params.data(), m.data(), v.data(), moments}); });
  if (const std::string first = first_error(comm, error); !first.empty()) throw checkpoint::CheckpointError(first);
  model.params().set_master(params.data());
  optimizer.set_range_moments(m.data(), v.data());
  optimizer.set_steps_taken(ck.progress.optimizer_steps);
  std::fprintf(out, "dyt-train: resuming from %s after step %lld\n", ck.path.c_str(),
               static_cast<long long>(ck.progress.step));
  return {ck.progress.step, ck.progress.skipped_steps, ck.progress.nonfinite_in_a_row};
}

// checkpoint.init_from: every rank reads its blocks; if any rank cannot,
// every rank throws its error.
void init_from(const std::string& dir, parallel::Communicator& comm, ModelInstance& model, std::FILE* out) {
  std::vector<float> params(static_cast<size_t>(model.layout().total()));
  std::string what;
  const std::string error =
      error_of([&] { what = load_init_weights(dir, model.dims(), model.layout(), params.data()); });
  if (const std::string first = first_error(comm, error); !first.empty()) throw checkpoint::CheckpointError(first);
  model.params().set_master(params.data());
  std::fprintf(out, "dyt-train: weights from %s (checkpoint.init_from); step 0, fresh optimizer\n", what.c_str());
}

// Every rank saves its pieces of the state (its dp_partition range of the
// tensors its tp rank owns); rank 0 commits. Returns the checkpoint's path.
std::string save_run(const config::CheckpointConfig& ckc, const RunProgress& p, const std::string& run_config_text,
                     const parallel::Mesh& mesh, bool zero1, parallel::Communicator& comm,
                     const ModelInstance& model, const AdamW& optimizer) {
  const checkpoint::Progress progress{p.step, optimizer.steps_taken(), p.skipped_steps, p.nonfinite_in_a_row};
  const ParamLayout& layout = model.layout();
  // Under a sharded master exactly the range it holds, indexed like the moments.
  const HostRankState state =
      rank_state_to_host(model.params(), optimizer, moment_range(layout, mesh.dp, mesh.dp_rank, zero1));
  const std::vector<checkpoint::PieceRef> pieces =
      run_state_pieces(layout, dp_partition(layout.total(), mesh.dp, mesh.dp_rank), state.view());
  return checkpoint::save_checkpoint(ckc.dir(), progress, run_config_text, run_state_shapes(layout), pieces,
                                     mesh.rank, mesh.world, ckc.keep(),
                                     [&](const std::string& error) { return first_error(comm, error); });
}

// The trained weights as a Hugging Face directory (hf_model.h): whole
// tensors, gathered from a sharded master's dp ranges (collective over dp)
// and from the tensor-parallel blocks (collective over tp; the root writes).
void export_model(const std::filesystem::path& run_dir, const ModelInstance& model,
                  parallel::Communicator& dp, parallel::Communicator& tp, bool root) {
  std::vector<float> params = gather_master(model.params(), dp);
  if (tp.size() > 1) params = gather_blocks(model.dims(), model.layout(), params.data(), tp);
  if (!root) return;
  const ParamLayout whole(model.dims());
  write_hf_model(run_dir.string(), model.dims(), [&](const std::string& name, std::vector<float>& out) {
    const ParamEntry& e = *whole.find(name);
    out.assign(params.begin() + e.offset, params.begin() + e.offset + e.numel);
  });
}

}  // namespace

TrainSummary train(const config::RunConfig& cfg, std::FILE* out, parallel::Communicator& comm) {
  const config::TrainConfig& t = cfg.train();
  const parallel::Mesh mesh = make_mesh(cfg, comm);
  const parallel::Groups groups = parallel::make_groups(comm, mesh);
  const bool zero1 = cfg.parallel().zero1();
  // Rank 0 speaks and writes (progress, metrics, the final weights); every
  // rank writes its pieces of each checkpoint, which rank 0 commits.
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

  // A CUDA run's tensors between GPUs over NCCL where the build has it
  // (device_comms.h); after the backend, so destroyed before its stream.
  const GradOverlap overlap{cfg.parallel().overlap_grad_reduce(), cfg.parallel().grad_bucket_elements()};
  const DeviceComms device_comms = make_device_comms(groups, *backend, overlap.on);
  parallel::TensorCollectives tp_group(*groups.tp, *backend, device_comms.tp.get());
  // Under ZeRO-1 the buffers are padded for the dp collectives, the
  // optimizer (and under BF16 the master) holds this rank's dp_partition only.
  ModelInstance model(cfg.model(), B, T, t.recompute(), *backend, compute_dtype(t),
                      TensorParallel{&tp_group, cfg.parallel().sequence_parallel()},
                      zero1 ? DpShard{mesh.dp, mesh.dp_rank} : DpShard{});
  model.init(t.seed());
  const int64_t total = model.layout().total();
  AdamW optimizer(model.layout(), t, *backend,
                  zero1 ? dp_partition(total, mesh.dp, mesh.dp_rank) : FlatRange{0, total});

  // A checkpoint in checkpoint.dir means this run goes on from it; whether it
  // belongs to this run is settled before anything is written.
  const config::CheckpointConfig& ckc = cfg.checkpoint();
  const std::string run_config_text = config::to_text(config::resolved(cfg));
  TrainSummary summary;
  RunProgress progress;
  bool resumed = false;
  if (!ckc.dir().empty()) {
    if (auto ck = open_latest(ckc.dir(), comm)) {
      progress = resume_from(*ck, cfg, mesh, comm, model, optimizer, out);
      summary.checkpoint = ck->path;
      resumed = true;
    }
  }
  // A fresh run may start from weights it did not train (a requeued run
  // resumes from its own checkpoint instead).
  if (!resumed && !ckc.init_from().empty()) init_from(ckc.init_from(), comm, model, out);
  const int64_t first_step = progress.step;
  summary.start_step = summary.steps = first_step;
  summary.skipped_steps = progress.skipped_steps;

  const std::filesystem::path run_dir = t.run_dir();
  std::optional<MetricsLog> metrics;
  std::optional<TensorBoardLog> tensorboard;
  if (root) {
    std::filesystem::create_directories(run_dir);
    write_text_file((run_dir / "config.pbtxt").string(), run_config_text);
    metrics.emplace(t.metrics_file().empty() ? (run_dir / "metrics.jsonl").string() : t.metrics_file(),
                    first_step > 0 ? first_step : -1);
    tensorboard.emplace(run_dir.string(), first_step > 0 ? first_step : -1);
  }

  TrainStep step_runner(model, optimizer, sampler, groups, t, zero1, device_comms.groups(), overlap);
  const int64_t tokens_per_step = step_runner.tokens_per_step();
  std::fprintf(out,
               "dyt-train: %lld parameters, norm %s, %lld steps of %lld tokens "
               "(%d data-parallel ranks x %lld micro-batches of %lld x %lld; tensor-parallel %d%s), "
               "%lld training samples, run dir %s\n",
               static_cast<long long>(ParamLayout(model.dims()).parameters()),
               norm_name(model.dims().norm), static_cast<long long>(t.steps()),
               static_cast<long long>(tokens_per_step), mesh.dp,
               static_cast<long long>(sampler.micro_batches_per_step()), static_cast<long long>(B),
               static_cast<long long>(T), mesh.tp,
               cfg.parallel().sequence_parallel() && mesh.tp > 1 ? " with sequence parallelism" : "",
               static_cast<long long>(data.train_set().num_samples()),
               run_dir.string().c_str());
  if (const std::string comms = describe_comms(groups, device_comms, *backend); !comms.empty())
    std::fprintf(out, "dyt-train: collectives: %s\n", comms.c_str());
  if (!step_runner.grad_buckets().empty())
    std::fprintf(out, "dyt-train: dp gradients reduced in %zu buckets during the backward%s\n",
                 step_runner.grad_buckets().size(), device_comms.dp_stream ? ", on a second stream" : "");

  const data::EvalBatches* val = data.val_batches();
  const auto validate = [&](int64_t steps_done) {
    const double loss = evaluate(model, *val, mesh.dp_rank, mesh.dp, *groups.dp);
    if (metrics) metrics->log_eval(steps_done, loss);
    if (tensorboard) tensorboard->log_eval(steps_done, loss);
    std::fprintf(out, "step %lld | val loss %.4f\n", static_cast<long long>(steps_done), loss);
    return loss;
  };
  summary.initial_val_loss = summary.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  if (val && first_step == 0) summary.initial_val_loss = validate(0);

  int64_t saved_at = -1;
  const auto save = [&](int64_t steps_done) {
    saved_at = steps_done;
    progress.step = steps_done;
    progress.skipped_steps = summary.skipped_steps;
    summary.checkpoint = save_run(ckc, progress, run_config_text, mesh, zero1, comm, model, optimizer);
    std::fprintf(out, "step %lld | checkpoint %s\n", static_cast<long long>(steps_done),
                 summary.checkpoint.c_str());
    std::fflush(out);
  };
  const int64_t stop_at =
      ckc.exit_at_step() > 0 ? std::min<int64_t>(ckc.exit_at_step(), t.steps()) : t.steps();
  const StopRequest stop;
  // MFU on a GPU the throughput table knows: every rank runs one GPU.
  const double peak_flops =
      model.backend().device() == kernels::Device::CUDA
          ? gpu_peak_flops(model.backend().describe(), compute_dtype(t)) * comm.size()
          : 0.0;
  const double flops_per_token = step_flops(model.dims(), T).per_token();
  const auto start = Clock::now();
  for (int64_t step = first_step; step < stop_at; ++step) {
    const auto step_start = Clock::now();
    StepMetrics m;
    m.step = step + 1;
    m.lr = learning_rate(step, t);
    const bool last = step + 1 == t.steps();
    const bool report = last || step == first_step || (step + 1) % t.log_every() == 0;
    const StepResult r = step_runner.run(step, m.lr, /*probe_norms=*/report);
    if (report) m.norm_health = step_runner.norm_health();
    m.loss = r.loss;
    m.grad_norm = r.grad_norm;
    m.skipped = r.skipped;
    m.comm_bytes = r.comm_bytes;
    if (r.skipped) {
      ++summary.skipped_steps;
      ++progress.nonfinite_in_a_row;
    } else {
      progress.nonfinite_in_a_row = 0;
    }
    m.skipped_steps = summary.skipped_steps;
    m.tokens_per_s = static_cast<double>(tokens_per_step) / seconds_since(step_start);
    if (peak_flops > 0) m.mfu = mfu(m.tokens_per_s, flops_per_token, peak_flops);
    m.peak_memory_bytes = model.backend().peak_memory_bytes();
    if (metrics) {
      m.alphas = alphas(model);
      metrics->log_step(m);
      tensorboard->log_step(m);
    }
    summary.final_train_loss = m.loss;
    summary.steps = step + 1;

    if (m.skipped || report) {
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
  if (!summary.finished) return summary;  // the checkpoint holds the state; no export yet
  export_model(run_dir, model, *groups.dp, *groups.tp, root);
  return summary;
}

}  // namespace dyt::trainer
