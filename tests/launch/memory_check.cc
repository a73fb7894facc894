// dyt-memory-check --config FILE [--set path=value]... [--tolerance F]
//
// The planner's per-rank memory (launch::plan_memory) against what one CPU
// rank actually holds: builds the rank's ModelInstance and AdamW as the
// trainer does (trainer/train_loop.cc: model, init, optimizer), runs one
// forward + backward and one optimizer step, and compares the growth of the
// peak resident set (VmHWM) over the resident set before the model was built
// with the plan's total at the config's recompute setting. Exit 0 within
// the tolerance (default 0.15), 1 outside it, 2 for a bad config or a layout
// this program cannot build.
//
// The layout comes from the config (--set parallel.*): any dp, tp, sequence
// parallelism and ZeRO-1, run under `mpirun -np dp·tp`; every rank measures
// itself and the program fails when any rank is outside the tolerance. The
// step is the trainer's own (TrainStep over a token shard written before the
// baseline), so its collectives' scratch is measured too; MPI's own buffers
// are set up before the baseline (the session and the groups).
//
// Measuring: the peak is reset first by writing "5" to /proc/self/clear_refs
// (Linux ≥ 4.0), so an earlier transient (config parsing, the loader) cannot
// stand in for the model's peak; where that is refused, the program says so
// and fails rather than report a figure it cannot vouch for. Pages are
// counted when touched: every buffer the plan counts is written by init,
// the step or the optimizer (AdamW writes both moments; zeroed buffers are
// written, not calloc'd), so untouched allocations do not hide.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "configs/cli.h"
#include "configs/config.h"
#include "kernels/cpu/cpu_backend.h"
#include "launch/plan.h"
#include "trainer/model_instance.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"
#include "trainer/dp_partition.h"
#include "trainer/data/loader.h"
#include "trainer/data/token_shard.h"
#include "parallel/groups.h"
#include "parallel/mpi_communicator.h"
#include "parallel/tensor_collectives.h"
#include "trainer/program.h"
#include "trainer/schedule.h"

namespace {

using dyt::config::ConfigError;

struct Status {
  int64_t rss = 0, hwm = 0;  // bytes
};

Status read_status() {
  std::ifstream in("/proc/self/status");
  if (!in) throw std::runtime_error("cannot read /proc/self/status (Linux only)");
  Status s;
  std::string key;
  int64_t kb = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    l >> key >> kb;
    if (key == "VmRSS:") s.rss = kb * 1024;
    if (key == "VmHWM:") s.hwm = kb * 1024;
  }
  if (s.rss == 0 || s.hwm == 0) throw std::runtime_error("/proc/self/status has no VmRSS/VmHWM");
  return s;
}

// Resets VmHWM to the current RSS; false where the kernel refuses.
bool reset_peak() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

void check_layout(const dyt::config::RunConfig& cfg) {
  if (cfg.train().device() != dyt::config::CPU)
    throw ConfigError("train.device: dyt-memory-check measures the CPU backend; set train.device=CPU");
}

// One rank's buffers and one step, as trainer/train_loop.cc makes them.
void build_rank(const dyt::config::RunConfig& cfg, const dyt::parallel::Mesh& mesh,
                const dyt::parallel::Groups& groups, const dyt::data::BatchSampler& sampler) {
  using namespace dyt::trainer;
  const auto& t = cfg.train();
  const bool zero1 = cfg.parallel().zero1();
  auto& backend = dyt::kernels::cpu_backend();
  dyt::parallel::TensorCollectives tp_group(*groups.tp, backend);
  ModelInstance model(cfg.model(), t.micro_batch(), t.seq_len(), t.recompute(), backend,
                      dyt::kernels::DType::F32,
                      TensorParallel{&tp_group, cfg.parallel().sequence_parallel()},
                      zero1 ? DpShard{mesh.dp, mesh.dp_rank} : DpShard{});
  model.init(t.seed());
  const int64_t total = model.layout().total();
  AdamW optimizer(model.layout(), t, backend,
                  zero1 ? dp_partition(total, mesh.dp, mesh.dp_rank) : FlatRange{0, total});
  TrainStep step(model, optimizer, sampler, groups, t, zero1);
  const StepResult r = step.run(0, learning_rate(0, t));
  if (mesh.rank == 0) std::printf("one step: loss %.4f per token\n", r.loss);
}

double gib(int64_t b) { return static_cast<double>(b) / (1ll << 30); }

}  // namespace

int main(int argc, char** argv) {
  dyt::parallel::MpiSession session(&argc, &argv);
  dyt::parallel::MpiCommunicator world;
  const int rc = dyt::trainer::run_program("dyt-memory-check", [&] {
    const auto args = dyt::config::parse_cli(argc, argv, {"tolerance", "work"}, {});
    if (args.config_path.empty()) throw ConfigError("missing required option --config");
    const auto cfg = dyt::config::load_run_config(args.config_path, args.overrides);
    check_layout(cfg);
    double tolerance = 0.15;
    if (const auto it = args.options.find("tolerance"); it != args.options.end()) {
      char* end = nullptr;
      tolerance = std::strtod(it->second.c_str(), &end);
      if (it->second.empty() || *end != '\0' || !(tolerance > 0 && tolerance < 1))
        throw ConfigError("option --tolerance needs a number in (0, 1), got '" + it->second + "'");
    }
    const auto it = args.options.find("work");
    if (it == args.options.end()) throw ConfigError("missing required option --work DIR (for a token shard)");
    const auto& t = cfg.train();
    const auto& par = cfg.parallel();
    dyt::parallel::Mesh mesh;
    try {
      mesh = dyt::parallel::Mesh::make(world.size(), world.rank(), static_cast<int>(par.dp()),
                                       static_cast<int>(par.tp()));
    } catch (const dyt::parallel::LayoutError& e) {
      throw ConfigError(e.what());
    }
    const dyt::parallel::Groups groups = dyt::parallel::make_groups(world, mesh);
    const dyt::launch::MemoryPlan plan = dyt::launch::plan_memory(cfg);
    const int64_t planned = plan.total_bytes(t.recompute());

    // The data are made before the baseline: they are the loader's, not the model's.
    const std::string shard = it->second + "/memory_check_rank" + std::to_string(world.rank()) + ".bin";
    std::filesystem::create_directories(it->second);
    {
      const size_t n = static_cast<size_t>(t.global_batch_tokens() + t.seq_len() + 1);
      std::vector<uint32_t> tokens(n);
      std::mt19937 rng(static_cast<uint32_t>(t.seed()));
      std::uniform_int_distribution<uint32_t> id(0, static_cast<uint32_t>(cfg.model().vocab_size() - 1));
      for (auto& x : tokens) x = id(rng);
      dyt::data::write_token_shard(shard, tokens);
    }
    const auto dataset = dyt::data::TokenDataset::open(shard, t.seq_len(), "data.train_shards");
    const dyt::data::BatchSampler sampler(dataset, t.seed(), t.global_batch_tokens(), t.micro_batch(),
                                          mesh.dp_rank, mesh.dp);

    if (!reset_peak())
      throw std::runtime_error("cannot reset the peak RSS (/proc/self/clear_refs refused '5'); "
                               "the measured peak could be an earlier transient");
    const Status before = read_status();
    if (before.hwm != before.rss)
      throw std::runtime_error("VmHWM " + std::to_string(before.hwm) + " != VmRSS " + std::to_string(before.rss) +
                               " right after the reset");
    build_rank(cfg, mesh, groups, sampler);
    const Status after = read_status();
    const int64_t measured = after.hwm - before.rss;
    const double err = static_cast<double>(measured - planned) / static_cast<double>(planned);
    // The workspace line is CUDA's (cuBLASLt and kernel scratch): a CPU rank
    // has none, so the figure without it is printed too.
    const int64_t no_ws = planned - plan.workspace_bytes;
    for (int r = 0; r < world.size(); ++r) {
      world.barrier();
      if (r != world.rank()) continue;
      std::printf("rank %d (dp %d, tp %d): planned %.4f GiB (state %.4f, activations %.4f, workspaces %.4f), "
                  "measured %.4f GiB peak RSS growth; measured / (planned - workspaces) - 1 = %+.2f %%, "
                  "measured / planned - 1 = %+.2f %% (tolerance %.0f %%)\n",
                  r, mesh.dp_rank, mesh.tp_rank, gib(planned), gib(plan.state_bytes()),
                  gib(t.recompute() ? plan.activation_recompute_bytes : plan.activation_bytes),
                  gib(plan.workspace_bytes), gib(measured),
                  100.0 * static_cast<double>(measured - no_ws) / static_cast<double>(no_ws), 100 * err,
                  100 * tolerance);
      std::fflush(stdout);
    }
    const int64_t outside = world.allreduce_max(std::abs(err) <= tolerance ? 0 : 1);
    return outside ? 1 : 0;
  });
  return rc;
}
