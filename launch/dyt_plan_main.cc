// dyt-plan --config FILE [--set path=value]... [--json]
//          [--gpu h100|h200|a100] [--gpus-per-node N] [--ib-gbps G] [--nvlink-gbs G]
//          [--matmul-efficiency F] [--dp-overlap] [--gpus N [--top K]]
// Prints the parameter count, the per-rank memory and the per-rank
// communication volume per group and step of a configured run, and its
// predicted step time on the chosen cluster (docs/planner.md). With --gpus
// it instead searches the layouts of N GPUs and prints the fastest that fit.
//   --ib-gbps      InfiniBand per GPU in Gbit/s (default 400 on h100/h200)
//   --nvlink-gbs   NVLink per GPU per direction in GB/s, NCCL's bus bandwidth
//                  (default 450: the datasheet's 900 GB/s counts both directions)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "configs/cli.h"
#include "configs/config.h"
#include "launch/hardware.h"
#include "launch/layout_search.h"
#include "launch/plan.h"
#include "launch/step_time.h"
#include "trainer/program.h"

namespace {

using dyt::config::ConfigError;

// The value of --name as a number > 0 (and <= max), `fallback` when absent.
double positive_option(const dyt::config::CliArgs& args, const std::string& name, double fallback,
                       double max) {
  const auto it = args.options.find(name);
  if (it == args.options.end()) return fallback;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (it->second.empty() || *end != '\0' || !(v > 0) || v > max) {
    char range[64];
    std::snprintf(range, sizeof range, "(0, %g]", max);
    throw ConfigError("option --" + name + " needs a number in " + range + ", got '" + it->second + "'");
  }
  return v;
}

dyt::launch::HardwareProfile hardware(const dyt::config::CliArgs& args) {
  const auto it = args.options.find("gpu");
  dyt::launch::HardwareProfile hw;
  try {
    hw = dyt::launch::hardware_profile(it == args.options.end() ? "h100" : it->second);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("option --gpu: ") + e.what());
  }
  hw.gpus_per_node = dyt::config::int_option(args, "gpus-per-node", hw.gpus_per_node, 1);
  hw.ib_bytes_per_s = positive_option(args, "ib-gbps", hw.ib_bytes_per_s * 8 / 1e9, 1e6) * 1e9 / 8;
  hw.nvlink_bytes_per_s = positive_option(args, "nvlink-gbs", hw.nvlink_bytes_per_s / 1e9, 1e6) * 1e9;
  return hw;
}

}  // namespace

int main(int argc, char** argv) {
  return dyt::trainer::run_program("dyt-plan", [&] {
    const auto args = dyt::config::parse_cli(
        argc, argv, {"gpu", "gpus-per-node", "ib-gbps", "nvlink-gbs", "matmul-efficiency", "gpus", "top"},
        {"json", "dp-overlap"});
    if (args.config_path.empty()) throw ConfigError("missing required option --config");
    const auto cfg = dyt::config::load_run_config(args.config_path, args.overrides);
    const auto hw = hardware(args);
    dyt::launch::StepTimeOptions opt;
    opt.matmul_efficiency = positive_option(args, "matmul-efficiency", opt.matmul_efficiency, 1.0);
    // A run that overlaps its gradient reduction is modelled as overlapped.
    opt.dp_overlap = dyt::config::has_flag(args, "dp-overlap") || cfg.parallel().overlap_grad_reduce();
    const bool json = dyt::config::has_flag(args, "json");

    if (args.options.count("gpus")) {
      if (json) throw ConfigError("--json is not available with --gpus (the search prints a table)");
      const int64_t gpus = dyt::config::int_option(args, "gpus", 0, 1);
      const int64_t top = dyt::config::int_option(args, "top", 5, 1);
      const auto all = dyt::launch::enumerate_layouts(cfg, gpus, hw, opt);
      const auto ranked = dyt::launch::rank_fitting(all);
      std::fputs(dyt::launch::search_table(ranked, static_cast<size_t>(top), hw, gpus, all.size()).c_str(),
                 stdout);
      if (ranked.empty()) {
        std::fprintf(stderr, "dyt-plan: no layout of %lld GPUs fits %s's memory\n", static_cast<long long>(gpus),
                     hw.name.c_str());
        return 1;
      }
      return 0;
    }
    if (args.options.count("top")) throw ConfigError("option --top needs --gpus");
    const auto plan = dyt::launch::plan_memory(cfg);
    const auto comm = dyt::launch::plan_comm(cfg);
    const auto time = dyt::launch::predict_step(cfg, hw, opt);
    if (json)
      std::fputs(dyt::launch::plan_json(cfg, plan, comm, dyt::launch::step_time_json(time, hw)).c_str(), stdout);
    else
      std::fputs((dyt::launch::plan_table(cfg, plan, comm) + dyt::launch::step_time_table(time, hw)).c_str(),
                 stdout);
    return 0;
  });
}
