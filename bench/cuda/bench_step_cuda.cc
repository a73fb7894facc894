// dyt-bench-step-cuda: one whole CUDA training step of a LLaMA-7B-shaped
// DyT model, its throughput, its MFU and where its GPU time goes.
//
//   dyt-bench-step-cuda [--layers N] [--seq 4096] [--warmup 3] [--iters 10]
//                       [--breakdown-iters 3] [--headroom 0.10] [--peak-tflops 989.4]
//                       [--seed S] [--tiny] [--json]
//
// The model (bench/step_plan.h): d 4096, 32 heads (= KV heads), SwiGLU 11008,
// vocab 32000, DyT, BF16 activations and working weights with fp32 master
// weights, gradients and AdamW state, one 4096-token sequence per step, no
// recompute, cut to as many layers as fit in the GPU's free memory less
// --headroom (trainer/device_backend.h memory_need(), binary search over
// 1..32 layers); --layers N overrides.
//
// One step = what dyt-train's TrainStep does with one micro-batch: zero the
// gradients, forward + backward on random tokens (drawn once, fixed seed),
// the global gradient norm (sum of squares, read back), clipping at 1.0,
// AdamW at the schedule's learning rate. Each step is bracketed by CUDA
// events on the backend's own stream (cuda::stream_of); after --warmup steps,
// --iters are timed and the median reported, with tokens/s at the median and
// MFU by PaLM's count against --peak-tflops (the H100/H200 SXM dense BF16
// peak). Then --breakdown-iters more steps run with every backend call
// bracketed by events (bench/cuda/timing_backend.h): the per-family times
// (their median over those steps) and their share of the step, among them the
// issue's "DyT ≤ 3% of the step" figure.
//
// --tiny: a small model of the same structure (for the emulator or a smoke
// run). --json: one JSON object as the last line of stdout.
// Exit status: 0 on success, 2 on bad options, 1 on any other failure.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/cuda/timing_backend.h"
#include "bench/step_plan.h"
#include "configs/cli.h"
#include "configs/config.h"
#include "kernels/cuda/cuda_backend.h"
#include "trainer/device_backend.h"
#include "trainer/grad_norm.h"
#include "trainer/model_instance.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"

namespace {

using namespace dyt;

double real_option(const config::CliArgs& a, const std::string& name, double fallback, double lo, double hi) {
  auto it = a.options.find(name);
  if (it == a.options.end()) return fallback;
  try {
    size_t used = 0;
    const double v = std::stod(it->second, &used);
    if (used == it->second.size() && v >= lo && v <= hi) return v;
  } catch (const std::exception&) {
  }
  throw config::ConfigError("option --" + name + " needs a number in [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "], got '" + it->second + "'");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

double gib(int64_t b) { return static_cast<double>(b) / static_cast<double>(int64_t{1} << 30); }

int run(int argc, char** argv) {
  const config::CliArgs args =
      config::parse_cli(argc, argv, {"layers", "seq", "warmup", "iters", "breakdown-iters", "headroom",
                                     "peak-tflops", "seed"},
                        {"tiny", "json"});
  if (!args.config_path.empty() || !args.overrides.empty())
    throw config::ConfigError("dyt-bench-step-cuda builds its model itself: --config and --set are not taken");
  const bool tiny = config::has_flag(args, "tiny"), json = config::has_flag(args, "json");
  const int64_t max_layers = 32;  // LLaMA-7B's count
  const int64_t forced_layers = config::int_option(args, "layers", 0, 1);
  const int64_t T = config::int_option(args, "seq", tiny ? 64 : 4096, 1);
  const int64_t warmup = config::int_option(args, "warmup", 3, 0);
  const int64_t iters = config::int_option(args, "iters", 10, 1);
  const int64_t bd_iters = config::int_option(args, "breakdown-iters", 3, 0);
  const double headroom = real_option(args, "headroom", 0.10, 0.0, 0.9);
  const double peak = real_option(args, "peak-tflops", bench::kHopperBf16PeakFlops / 1e12, 1e-6, 1e6) * 1e12;
  const uint64_t seed = static_cast<uint64_t>(config::int_option(args, "seed", 1234, 0));

  const cuda::DeviceInfo info = cuda::device_info();
  const int64_t budget = static_cast<int64_t>(static_cast<double>(info.free_bytes) * (1.0 - headroom));
  auto need = [&](int64_t L) { return trainer::memory_need(bench::llama7b_shaped(L, T, tiny)).total(); };
  int64_t layers = forced_layers;
  if (layers == 0) {
    layers = bench::fit_layers(need, budget, max_layers);
    if (layers == 0)
      throw std::runtime_error("not even one layer fits: it needs " + std::to_string(gib(need(1))) +
                               " GiB, the budget is " + std::to_string(gib(budget)) + " GiB (" +
                               std::to_string(gib(static_cast<int64_t>(info.free_bytes))) + " GiB free less " +
                               std::to_string(headroom * 100) + "%)");
  }
  const config::RunConfig cfg = bench::llama7b_shaped(layers, T, tiny);
  const config::TrainConfig& t = cfg.train();
  const trainer::MemoryNeed mem = trainer::memory_need(cfg);

  std::unique_ptr<kernels::Backend> real = cuda::make_cuda_backend();
  const cudaStream_t stream = cuda::stream_of(*real);
  bench::TimingBackend be(*real, stream);
  trainer::ModelInstance model(cfg.model(), 1, T, t.recompute(), be, kernels::DType::BF16);
  model.init(seed);
  trainer::AdamW optimizer(model.layout(), t, be);
  const bench::StepFlops flops = bench::step_flops(model.dims(), T);
  const int64_t n_params = model.layout().parameters();  // without the alignment gaps

  std::printf("dyt-bench-step-cuda: %s, %s\n", info.name.c_str(), real->describe().c_str());
  std::printf("model: %s, %lld layers%s, d %lld, heads %lld (kv %lld), ffn %lld, vocab %lld, seq %lld, "
              "micro-batch 1, BF16, DyT\n",
              tiny ? "tiny LLaMA-shaped" : "LLaMA-7B-shaped", static_cast<long long>(layers),
              forced_layers ? " (--layers)" : " (as many as fit)", static_cast<long long>(model.dims().d),
              static_cast<long long>(model.dims().heads), static_cast<long long>(model.dims().kv_heads),
              static_cast<long long>(model.dims().ffn), static_cast<long long>(model.dims().vocab),
              static_cast<long long>(T));
  std::printf("memory: %s; GPU %.2f GiB free of %.2f, budget %.2f GiB (%.0f%% headroom)\n",
              mem.describe().c_str(), gib(static_cast<int64_t>(info.free_bytes)),
              gib(static_cast<int64_t>(info.total_bytes)), gib(budget), headroom * 100);
  std::printf("params: %lld in all; N = %lld matmul weights (block GEMMs + LM head, no embedding)\n",
              static_cast<long long>(n_params), static_cast<long long>(flops.matmul_params));
  std::printf("FLOPs/token (PaLM): 6N = %.4g + 12*L*H*Q*T = %.4g -> %.4g (causal-halved attention: %.4g)\n",
              flops.per_token_matmul, flops.per_token_attention, flops.per_token(), flops.per_token_causal());
  std::fflush(stdout);

  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model.dims().vocab - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(T)), targets(tokens.size());
  for (auto& x : tokens) x = token(rng);
  for (auto& x : targets) x = token(rng);

  kernels::Buffer norm_sum = be.allocate(kernels::DType::F64, 1);
  const float grad_scale = 1.0f / static_cast<float>(T);
  double last_loss = 0, last_norm = 0;
  int64_t skipped = 0;
  // TrainStep::run with one micro-batch, the data drawn up front.
  auto step = [&](int64_t s) {
    trainer::ParamStore& p = model.params();
    p.zero_grads();
    model.accumulate(tokens.data(), targets.data(), grad_scale);
    last_loss = model.acts().take_loss_sum() / static_cast<double>(T);
    be.sum_squares(p.grads(), norm_sum.flat());
    double sum = 0;
    be.download(norm_sum.flat(), &sum);
    last_norm = std::sqrt(sum);
    if (!std::isfinite(last_loss) || !std::isfinite(last_norm)) {
      ++skipped;
      return;
    }
    const double coef = trainer::clip_coefficient(last_norm, t.grad_clip());
    if (coef < 1.0) be.scale_inplace(p.grads(), static_cast<float>(coef));
    optimizer.step(p, trainer::learning_rate(s, t));
  };

  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "cudaEventCreate");
  check(cudaEventCreate(&e1), "cudaEventCreate");
  std::vector<double> times;
  int64_t s = 0;
  for (; s < warmup + iters; ++s) {
    check(cudaEventRecord(e0, stream), "cudaEventRecord");
    step(s);
    check(cudaEventRecord(e1, stream), "cudaEventRecord");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // waits for e1
    float ms = 0;
    check(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    if (s >= warmup) times.push_back(ms / 1e3);
  }
  const double med = median(times);
  const double lo = *std::min_element(times.begin(), times.end());
  const double hi = *std::max_element(times.begin(), times.end());
  const double tok_s = static_cast<double>(T) / med;
  const double mfu = bench::mfu(tok_s, flops.per_token(), peak);
  const double mfu_causal = bench::mfu(tok_s, flops.per_token_causal(), peak);
  std::printf("step: median %.4f s (min %.4f, max %.4f over %lld), tokens/s %.0f, MFU %.1f%% "
              "(causal count %.1f%%) of %.1f TFLOP/s; last loss %.4f, grad norm %.4f, %lld skipped\n",
              med, lo, hi, static_cast<long long>(iters), tok_s, mfu * 100, mfu_causal * 100, peak / 1e12,
              last_loss, last_norm, static_cast<long long>(skipped));
  std::fflush(stdout);

  // The breakdown: every backend call bracketed by events.
  std::array<std::vector<double>, bench::kFamilies> fam_ms;
  std::array<int64_t, bench::kFamilies> fam_calls{};
  std::vector<double> bd_steps;
  be.set_enabled(true);
  for (int64_t i = 0; i < bd_iters; ++i, ++s) {
    std::array<double, bench::kFamilies> ms{};
    std::array<int64_t, bench::kFamilies> calls{};
    check(cudaEventRecord(e0, stream), "cudaEventRecord");
    step(s);
    check(cudaEventRecord(e1, stream), "cudaEventRecord");
    be.collect(ms, calls);
    float step_ms = 0;
    check(cudaEventElapsedTime(&step_ms, e0, e1), "cudaEventElapsedTime");
    bd_steps.push_back(step_ms);
    for (int f = 0; f < bench::kFamilies; ++f) fam_ms[f].push_back(ms[f]), fam_calls[f] = calls[f];
  }
  be.set_enabled(false);
  std::array<double, bench::kFamilies> fam_med{};
  double bd_step = 0, attributed = 0, norm_share = -1;
  if (bd_iters > 0) {
    bd_step = median(bd_steps);
    std::printf("breakdown (median of %lld steps with every op timed; step %.2f ms there vs %.2f ms untimed):\n",
                static_cast<long long>(bd_iters), bd_step, med * 1e3);
    for (int f = 0; f < bench::kFamilies; ++f) {
      fam_med[f] = median(fam_ms[f]);
      attributed += fam_med[f];
      std::printf("  %-22s %9.3f ms  %5.1f%%  (%lld calls)\n", bench::family_name(static_cast<bench::OpFamily>(f)),
                  fam_med[f], 100 * fam_med[f] / bd_step, static_cast<long long>(fam_calls[f]));
    }
    std::printf("  %-22s %9.3f ms  %5.1f%%  (gaps between ops: launches, host work)\n", "unattributed",
                bd_step - attributed, 100 * (bd_step - attributed) / bd_step);
    norm_share = fam_med[static_cast<int>(bench::OpFamily::Norm)] / bd_step;
    std::printf("DyT (norm family) share of the step: %.2f%% (goal <= 3%%)\n", norm_share * 100);
  }

  if (json) {
    std::ostringstream o;
    o.precision(9);
    o << "{\"impl\": \"dyt-train CUDA\", \"device\": \"" << json_escape(info.name) << "\", \"tiny\": "
      << (tiny ? "true" : "false") << ", \"layers\": " << layers << ", \"layers_forced\": "
      << (forced_layers ? "true" : "false") << ", \"d_model\": " << model.dims().d << ", \"heads\": "
      << model.dims().heads << ", \"ffn\": " << model.dims().ffn << ", \"vocab\": " << model.dims().vocab
      << ", \"seq\": " << T << ", \"params\": " << n_params << ", \"matmul_params\": " << flops.matmul_params
      << ", \"flops_per_token\": " << flops.per_token() << ", \"flops_per_token_causal\": "
      << flops.per_token_causal() << ", \"peak_flops\": " << peak << ", \"memory_need_bytes\": " << mem.total()
      << ", \"free_bytes\": " << info.free_bytes << ", \"warmup\": " << warmup << ", \"iters\": " << iters
      << ", \"median_s\": " << med << ", \"min_s\": " << lo << ", \"max_s\": " << hi
      << ", \"tokens_per_s\": " << tok_s << ", \"mfu\": " << mfu << ", \"mfu_causal\": " << mfu_causal
      << ", \"last_loss\": " << last_loss << ", \"skipped\": " << skipped << ", \"times_s\": [";
    for (size_t i = 0; i < times.size(); ++i) o << (i ? ", " : "") << times[i];
    o << "], \"breakdown_step_ms\": " << bd_step << ", \"breakdown_ms\": {";
    for (int f = 0; f < bench::kFamilies; ++f)
      o << (f ? ", " : "") << "\"" << bench::family_name(static_cast<bench::OpFamily>(f)) << "\": " << fam_med[f];
    o << "}, \"breakdown_calls\": {";
    for (int f = 0; f < bench::kFamilies; ++f)
      o << (f ? ", " : "") << "\"" << bench::family_name(static_cast<bench::OpFamily>(f)) << "\": " << fam_calls[f];
    o << "}, \"norm_share\": " << norm_share << "}";
    std::printf("%s\n", o.str().c_str());
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return skipped == iters + warmup + bd_iters ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const dyt::config::ConfigError& e) {
    std::fprintf(stderr, "dyt-bench-step-cuda: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dyt-bench-step-cuda: %s\n", e.what());
    return 1;
  }
}
