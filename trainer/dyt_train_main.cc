// dyt-train --config FILE [--set path=value]...
// The pretraining job: everything about the run lives in the config.
#include <cmath>
#include <cstdio>

#include "configs/cli.h"
#include "configs/config.h"
#include "trainer/program.h"
#include "trainer/train_loop.h"

int main(int argc, char** argv) {
  return dyt::trainer::run_program("dyt-train", [&] {
    const auto args = dyt::config::parse_cli(argc, argv, {}, {});
    if (args.config_path.empty()) throw dyt::config::ConfigError("missing required option --config");
    const auto cfg = dyt::config::load_run_config(args.config_path, args.overrides);
    const auto s = dyt::trainer::train(cfg, stdout);
    std::printf("done: %lld steps in %.1f s, %lld skipped; train loss %.4f",
                static_cast<long long>(s.steps), s.seconds, static_cast<long long>(s.skipped_steps),
                s.final_train_loss);
    if (!std::isnan(s.final_val_loss))
      std::printf("; val loss %.4f (from %.4f)", s.final_val_loss, s.initial_val_loss);
    std::printf("\n");
    return 0;
  });
}
