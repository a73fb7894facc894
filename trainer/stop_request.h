// A polite stop: SIGTERM (what Slurm and most schedulers send before they
// kill a job), SIGINT (Ctrl-C) or SIGUSR1 (`sbatch --signal=USR1@120`) asks
// the training loop to finish the step it is in, save a checkpoint and exit.
// The handler only records the signal and restores the default action, so a
// second signal ends the process at once.
#pragma once

namespace dyt::trainer {

class StopRequest {
 public:
  // Installs the handlers; the destructor puts the previous ones back.
  StopRequest();
  ~StopRequest();
  StopRequest(const StopRequest&) = delete;
  StopRequest& operator=(const StopRequest&) = delete;

  // The signal that asked for a stop, or 0.
  int signal() const;
  // "SIGTERM", "SIGINT", "SIGUSR1" or "signal N".
  static const char* name(int sig);
};

}  // namespace dyt::trainer
