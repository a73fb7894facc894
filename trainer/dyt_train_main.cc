// dyt-train --config FILE [--set path=value]...
// The pretraining job: everything about the run lives in the config.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "configs/cli.h"
#include "configs/config.h"
#include "parallel/mpi_communicator.h"
#include "trainer/program.h"
#include "trainer/stop_request.h"
#include "trainer/train_loop.h"

namespace {

// The ranks this process trains with: the MPI world when an MPI launcher
// started it, else this process alone (no MPI at all).
struct Ranks {
  std::unique_ptr<dyt::parallel::MpiSession> session;
  std::unique_ptr<dyt::parallel::Communicator> comm;
};

Ranks start_ranks(int* argc, char*** argv) {
  Ranks r;
  if (dyt::parallel::launched_by_mpi()) {
    r.session = std::make_unique<dyt::parallel::MpiSession>(argc, argv);
    r.comm = std::make_unique<dyt::parallel::MpiCommunicator>();
  } else {
    r.comm = std::make_unique<dyt::parallel::LocalCommunicator>();
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Ranks ranks;
  if (const int rc = dyt::trainer::run_program("dyt-train", [&] {
        ranks = start_ranks(&argc, &argv);
        return 0;
      }))
    return rc;
  dyt::parallel::Communicator& comm = *ranks.comm;
  const bool root = comm.rank() == 0;
  const std::string name =
      comm.size() > 1 ? "dyt-train[rank " + std::to_string(comm.rank()) + "]" : "dyt-train";
  const int rc = dyt::trainer::run_program(name.c_str(), [&] {
    const auto args = dyt::config::parse_cli(argc, argv, {}, {});
    if (args.config_path.empty()) throw dyt::config::ConfigError("missing required option --config");
    const auto cfg = dyt::config::load_run_config(args.config_path, args.overrides);
    const auto s = dyt::trainer::train(cfg, stdout, comm);
    if (!root) return 0;  // rank 0 reports for all
    if (!s.finished) {
      const std::string why = s.stop_signal ? dyt::trainer::StopRequest::name(s.stop_signal)
                                            : "checkpoint.exit_at_step";
      if (s.checkpoint.empty()) {
        std::fprintf(stderr, "dyt-train: stopped by %s after step %lld of %lld; nothing was saved "
                     "(checkpoint.dir is empty)\n", why.c_str(), static_cast<long long>(s.steps),
                     static_cast<long long>(cfg.train().steps()));
        return 1;
      }
      std::printf("stopped after step %lld of %lld (%s); %s holds the run: the same command "
                  "continues it\n",
                  static_cast<long long>(s.steps), static_cast<long long>(cfg.train().steps()),
                  why.c_str(), s.checkpoint.c_str());
      return 0;
    }
    std::printf("done: %lld steps", static_cast<long long>(s.steps));
    if (s.start_step > 0) std::printf(" (resumed after %lld)", static_cast<long long>(s.start_step));
    std::printf(" in %.1f s, %lld skipped; train loss %.4f", s.seconds,
                static_cast<long long>(s.skipped_steps), s.final_train_loss);
    if (!std::isnan(s.final_val_loss)) {
      std::printf("; val loss %.4f", s.final_val_loss);
      if (!std::isnan(s.initial_val_loss)) std::printf(" (from %.4f)", s.initial_val_loss);
    }
    std::printf("\n");
    return 0;
  });
  // An error on one rank would leave the others waiting in a collective.
  if (rc != 0 && comm.size() > 1) comm.abort(rc);
  return rc;
}
