// How dyt-sweep starts each run: as a local process, under `mpirun -np N`, or
// as one index of a Slurm array job. Only the command lines and the batch
// script live here (pure functions, tested without a scheduler); starting
// processes is launch/process.h's job.
#pragma once

#include <string>
#include <vector>

namespace dyt::launch {

enum class LauncherKind { kLocal, kMpirun, kSlurm };

// "local" | "mpirun" | "slurm"; ConfigError naming --launcher otherwise.
LauncherKind parse_launcher(const std::string& name);

struct LaunchOptions {
  LauncherKind kind = LauncherKind::kLocal;
  int np = 1;                              // ranks per run (mpirun -np, Slurm --ntasks)
  std::string mpirun = "mpirun";           // the MPI launcher
  std::vector<std::string> mpirun_args;    // e.g. --hostfile hosts
  std::vector<std::string> sbatch_args;    // e.g. --partition=gpu --gres=gpu:4 --time=04:00:00
  int concurrent = 1;                      // runs at a time (Slurm: the array's %K; 0: no limit)
  int notice_seconds = 120;                // Slurm: USR1 this long before the time limit
};

// One run of the sweep as a launcher sees it.
struct LaunchRun {
  std::string name;               // the sweep point's name
  std::string dir;                // its run directory (train.log, exit_code)
  std::vector<std::string> argv;  // dyt-train and its arguments
};

// The command that starts one run where it is: dyt-train's argv for local
// runs, prefixed by `mpirun -np N [mpirun_args]` for mpirun.
std::vector<std::string> run_command(const LaunchOptions& o, const std::vector<std::string>& train_argv);

// A POSIX shell word that stands for `s` exactly (single-quoted when needed).
std::string shell_quote(const std::string& s);

// Whitespace-separated words ("--partition=gpu --time=1:00:00"); no quoting.
std::vector<std::string> split_words(const std::string& s);

// The bash script of a Slurm array job with one index per run: each index
// runs its dyt-train under srun (np tasks) with output appended to the run's
// train.log, writes the exit status to <dir>/exit_code when the run ends by
// itself, and on the time-limit notice (SIGUSR1 to the batch shell,
// --signal=B:USR1@notice) forwards it so that dyt-train saves, then requeues
// itself so that the index continues from that checkpoint. SIGTERM (scancel,
// scontrol requeue, the time limit itself) is left to Slurm, which signals
// every step; no exit_code is written then, so collect reports the run
// unfinished unless it comes back. The job runs in `workdir` (relative paths
// in argv are relative to it); Slurm's own output goes to log_dir/%A_%a.out.
std::string slurm_array_script(const LaunchOptions& o, const std::string& workdir, const std::string& log_dir,
                               const std::vector<LaunchRun>& runs);

// The job id in sbatch's "Submitted batch job 123" (or --parsable's "123" /
// "123;cluster"); ConfigError quoting the output when there is none.
std::string parse_sbatch_job_id(const std::string& output);

}  // namespace dyt::launch
