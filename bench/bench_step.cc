// dyt-bench-step: the time of one CPU training step of a config.
//
//   dyt-bench-step --config configs/tiny.pbtxt [--set a.b=v ...]
//                  [--warmup 2] [--iters 10] [--seed S] [--shape-out FILE] [--json]
//
// One step is what dyt-train does per optimizer step, minus data loading and
// logging: zero the gradients; for each of the global_batch_tokens /
// (micro_batch · seq_len) micro-batches, forward_backward on random tokens
// (fixed seed, uniform in [0, vocab), drawn once before timing); the global
// gradient norm and clipping; one AdamW step at the schedule's learning rate.
// The whole global batch runs in this one process (parallel.* is ignored).
//
// Each step is timed with std::chrono::steady_clock; the --warmup steps
// (default 2) are run and not counted; of the --iters timed steps (default 10)
// the median, min and max are printed with tokens/s at the median. --json adds
// one JSON line (last line of stdout) for scripts. --shape-out FILE writes the
// resolved model (Hugging Face config keys, as dyt-grad's config.json) and the
// step settings as JSON, so bench/bench_step_torch.py can build the same step.
//
// Threads: OpenMP's omp_get_max_threads() (set OMP_NUM_THREADS), printed with
// OpenBLAS's own thread count and build when the BLAS is OpenBLAS.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "configs/cli.h"
#include "configs/config.h"
#include "trainer/grad_norm.h"
#include "trainer/hf_model.h"
#include "trainer/model_instance.h"
#include "trainer/named_tensors.h"
#include "trainer/optimizer.h"
#include "trainer/program.h"
#include "trainer/schedule.h"

// OpenBLAS's introspection, weak so that another BLAS still links.
extern "C" {
__attribute__((weak)) int openblas_get_num_threads(void);
__attribute__((weak)) int openblas_get_parallel(void);
__attribute__((weak)) char* openblas_get_config(void);
}

namespace {

using namespace dyt;
using Clock = std::chrono::steady_clock;

std::string blas_description() {
  if (!openblas_get_num_threads) return "BLAS not OpenBLAS";
  const char* kind = "?";
  if (openblas_get_parallel) {
    switch (openblas_get_parallel()) {
      case 0: kind = "sequential build"; break;
      case 1: kind = "pthread build"; break;
      case 2: kind = "OpenMP build"; break;
    }
  }
  std::ostringstream o;
  o << "OpenBLAS " << openblas_get_num_threads() << " threads (" << kind;
  if (openblas_get_config) o << ", " << openblas_get_config();
  o << ")";
  return o.str();
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void write_shape(const std::string& path, const trainer::ModelInstance& model, const config::TrainConfig& t,
                 int64_t micro_batches, uint64_t seed) {
  std::ofstream f(path);
  f.precision(17);
  std::string hf = trainer::hf_config_json(model.dims());
  while (!hf.empty() && hf.back() == '\n') hf.pop_back();
  f << "{\n\"model\": " << hf << ",\n\"train\": {"
    << "\"seq_len\": " << t.seq_len() << ", \"micro_batch\": " << t.micro_batch()
    << ", \"global_batch_tokens\": " << t.global_batch_tokens()
    << ", \"micro_batches\": " << micro_batches << ", \"recompute\": " << (t.recompute() ? "true" : "false")
    << ", \"lr\": " << t.lr() << ", \"min_lr_ratio\": " << t.min_lr_ratio()
    << ", \"warmup_steps\": " << config::warmup_steps(t) << ", \"steps\": " << t.steps()
    << ", \"beta1\": " << t.beta1() << ", \"beta2\": " << t.beta2() << ", \"adam_eps\": " << t.adam_eps()
    << ", \"weight_decay\": " << t.weight_decay() << ", \"grad_clip\": " << t.grad_clip()
    << ", \"seed\": " << seed << "},\n\"params\": " << model.layout().parameters() << "\n}\n";
  if (!f) throw std::runtime_error("cannot write --shape-out file " + path);
}

int run(int argc, char** argv) {
  const config::CliArgs args =
      config::parse_cli(argc, argv, {"warmup", "iters", "seed", "shape-out"}, {"json"});
  if (args.config_path.empty()) throw config::ConfigError("missing required option --config");
  const config::RunConfig cfg = config::load_run_config(args.config_path, args.overrides);
  const config::TrainConfig& t = cfg.train();
  const int64_t warmup = config::int_option(args, "warmup", 2, 0);
  const int64_t iters = config::int_option(args, "iters", 10, 1);
  const uint64_t seed = static_cast<uint64_t>(config::int_option(args, "seed", static_cast<int64_t>(t.seed()), 0));
  const bool json = config::has_flag(args, "json");

  const int64_t T = t.seq_len(), B = t.micro_batch();
  const int64_t micro_batches = t.global_batch_tokens() / (B * T);  // validate() checked it divides
  const int64_t tokens_per_step = micro_batches * B * T;

  trainer::ModelInstance model(cfg.model(), B, T, t.recompute());
  model.init(seed);
  trainer::AdamW optimizer(model.layout(), t);
  const int64_t n_params = model.layout().total();
  if (args.options.count("shape-out"))
    write_shape(args.options.at("shape-out"), model, t, micro_batches, seed);

  // Random tokens and targets for every micro-batch, drawn before timing.
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(cfg.model().vocab_size() - 1));
  std::vector<int32_t> tokens(tokens_per_step), targets(tokens_per_step);
  for (auto& x : tokens) x = token(rng);
  for (auto& x : targets) x = token(rng);

  const int threads = omp_get_max_threads();
  const std::string blas = blas_description();
  std::printf("dyt-bench-step: %s, %lld parameters, norm %s, recompute %s\n", args.config_path.c_str(),
              static_cast<long long>(model.layout().parameters()), trainer::norm_name(model.dims().norm),
              t.recompute() ? "on" : "off");
  std::printf("step: %lld tokens = %lld micro-batches of %lld x %lld, grad clip %g, AdamW\n",
              static_cast<long long>(tokens_per_step), static_cast<long long>(micro_batches),
              static_cast<long long>(B), static_cast<long long>(T), t.grad_clip());
  std::printf("threads: OpenMP %d (omp_get_max_threads), %s\n", threads, blas.c_str());
  std::printf("warmup %lld, iters %lld\n", static_cast<long long>(warmup), static_cast<long long>(iters));
  std::fflush(stdout);

  const float grad_scale = 1.0f / static_cast<float>(tokens_per_step);
  std::vector<double> times;
  double last_loss = 0, last_norm = 0;
  for (int64_t step = 0; step < warmup + iters; ++step) {
    const auto t0 = Clock::now();
    model.params().zero_grads();
    double loss_sum = 0;
    for (int64_t m = 0; m < micro_batches; ++m)
      loss_sum += model.forward_backward(tokens.data() + m * B * T, targets.data() + m * B * T, grad_scale);
    last_norm = trainer::clip_grad_norm(model.params().host_grads(), n_params, t.grad_clip());
    optimizer.step(model.params(), trainer::learning_rate(step, t));
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    last_loss = loss_sum / static_cast<double>(tokens_per_step);
    if (step >= warmup) times.push_back(s);
  }

  const double med = median(times);
  const double lo = *std::min_element(times.begin(), times.end());
  const double hi = *std::max_element(times.begin(), times.end());
  const double tok_s = static_cast<double>(tokens_per_step) / med;
  std::printf("s/step: median %.4f  min %.4f  max %.4f   tokens/s %.0f   (last loss %.4f, grad norm %.4f)\n",
              med, lo, hi, tok_s, last_loss, last_norm);
  if (json) {
    std::ostringstream o;
    o.precision(9);
    o << "{\"impl\": \"dyt-train C++\", \"config\": \"" << json_escape(args.config_path)
      << "\", \"threads\": " << threads << ", \"blas\": \"" << json_escape(blas) << "\", \"params\": " << model.layout().parameters()
      << ", \"tokens_per_step\": " << tokens_per_step << ", \"micro_batches\": " << micro_batches
      << ", \"warmup\": " << warmup << ", \"iters\": " << iters << ", \"median_s\": " << med
      << ", \"min_s\": " << lo << ", \"max_s\": " << hi << ", \"tokens_per_s\": " << tok_s
      << ", \"last_loss\": " << last_loss << ", \"times_s\": [";
    for (size_t i = 0; i < times.size(); ++i) o << (i ? ", " : "") << times[i];
    o << "]}";
    std::printf("%s\n", o.str().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return dyt::trainer::run_program("dyt-bench-step", [&] { return run(argc, argv); });
}
