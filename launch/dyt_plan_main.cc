// dyt-plan --config FILE [--set path=value]... [--json]
// Prints the parameter count, the per-rank memory and the per-rank
// communication volume per group and step of a configured run.
#include <algorithm>
#include <cstdio>

#include "configs/cli.h"
#include "configs/config.h"
#include "launch/plan.h"
#include "trainer/program.h"

int main(int argc, char** argv) {
  return dyt::trainer::run_program("dyt-plan", [&] {
    const auto args = dyt::config::parse_cli(argc, argv, {}, {"json"});
    if (args.config_path.empty()) throw dyt::config::ConfigError("missing required option --config");
    const auto cfg = dyt::config::load_run_config(args.config_path, args.overrides);
    const auto plan = dyt::launch::plan_memory(cfg);
    const auto comm = dyt::launch::plan_comm(cfg);
    const bool json = std::find(args.flags.begin(), args.flags.end(), "json") != args.flags.end();
    std::fputs((json ? dyt::launch::plan_json(cfg, plan, comm) : dyt::launch::plan_table(cfg, plan, comm)).c_str(),
               stdout);
    return 0;
  });
}
