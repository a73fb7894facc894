// Starting programs from dyt-sweep: a run with its output in a log, and a
// short command whose output is wanted (sbatch, squeue, the plot script).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace dyt::launch {

// Starts argv (searched on PATH) with stdout and stderr appended to `log`;
// returns the pid. Throws when it cannot start.
pid_t spawn_logged(const std::vector<std::string>& argv, const std::string& log);

// An exit status as a shell reports it: the code, or 128 + the signal.
int exit_status(int wait_status);

struct Captured {
  int status = -1;  // exit_status(); 127 when the program could not be started
  std::string out;  // stdout and stderr together
};

// Runs argv to its end and returns its status and output.
Captured run_captured(const std::vector<std::string>& argv);

}  // namespace dyt::launch
