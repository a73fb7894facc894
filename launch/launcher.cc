#include "launch/launcher.h"

#include <cctype>
#include <sstream>
#include <stdexcept>

#include "configs/config.h"

namespace dyt::launch {

LauncherKind parse_launcher(const std::string& name) {
  if (name == "local") return LauncherKind::kLocal;
  if (name == "mpirun") return LauncherKind::kMpirun;
  if (name == "slurm") return LauncherKind::kSlurm;
  throw config::ConfigError("--launcher must be local, mpirun or slurm, got '" + name + "'");
}

std::vector<std::string> run_command(const LaunchOptions& o, const std::vector<std::string>& train_argv) {
  if (o.kind != LauncherKind::kMpirun) return train_argv;
  std::vector<std::string> cmd{o.mpirun, "-np", std::to_string(o.np)};
  cmd.insert(cmd.end(), o.mpirun_args.begin(), o.mpirun_args.end());
  cmd.insert(cmd.end(), train_argv.begin(), train_argv.end());
  return cmd;
}

std::string shell_quote(const std::string& s) {
  bool plain = !s.empty();
  for (char c : s)
    plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || std::string_view("/._-+=:,@%").find(c) !=
                                                                          std::string_view::npos);
  if (plain) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string slurm_array_script(const LaunchOptions& o, const std::string& workdir, const std::string& log_dir,
                               const std::vector<LaunchRun>& runs) {
  std::ostringstream s;
  s << "#!/bin/bash\n"
       "# Written by dyt-sweep: one array index per run of the sweep (docs/cluster.md).\n"
       "#SBATCH --job-name=dyt-sweep\n"
       "#SBATCH --array=0-"
    << runs.size() - 1;
  if (o.concurrent > 0) s << "%" << o.concurrent;
  s << "\n#SBATCH --ntasks=" << o.np << "\n"
    << "#SBATCH --chdir=" << shell_quote(workdir) << "\n"
    << "#SBATCH --output=" << shell_quote(log_dir + "/%A_%a.out") << "\n"
    << "#SBATCH --open-mode=append\n"
       "#SBATCH --requeue\n"
       "#SBATCH --signal=B:USR1@"
    << o.notice_seconds << "\n"
    << "set -u\n"
       "case \"$SLURM_ARRAY_TASK_ID\" in\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    s << "  " << i << ") dir=" << shell_quote(runs[i].dir) << "\n     cmd=(";
    for (size_t j = 0; j < runs[i].argv.size(); ++j) s << (j ? " " : "") << shell_quote(runs[i].argv[j]);
    s << ") ;;\n";
  }
  s << "  *) echo \"dyt-sweep: no run for array index $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\n"
       "esac\n"
       "mkdir -p \"$dir\" && rm -f \"$dir/exit_code\"\n"
       "echo \"dyt-sweep: job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (id $SLURM_JOB_ID, restart "
       "${SLURM_RESTART_COUNT:-0}) on $(hostname)\" >>\"$dir/train.log\"\n"
       "# The time-limit notice reaches this shell only (B:); dyt-train saves on it.\n"
       "# SIGTERM is not forwarded: Slurm sends it to every step itself, and a\n"
       "# second one would end dyt-train before it saves.\n"
       "notice=\"\"\n"
       "trap 'notice=1; kill -USR1 \"$pid\" 2>/dev/null' USR1\n"
       "srun --kill-on-bad-exit=1 \"${cmd[@]}\" >>\"$dir/train.log\" 2>&1 &\n"
       "pid=$!\n"
       "# wait returns early when the trap runs; wait again until srun has ended.\n"
       "wait \"$pid\"; rc=$?\n"
       "while [ -n \"$notice\" ] && kill -0 \"$pid\" 2>/dev/null; do wait \"$pid\"; rc=$?; done\n"
       "if [ -n \"$notice\" ]; then\n"
       "  echo \"dyt-sweep: time-limit notice: requeued to continue from the checkpoint\" >>\"$dir/train.log\"\n"
       "  scontrol requeue \"$SLURM_JOB_ID\"\n"
       "  exit 0\n"
       "fi\n"
       "echo \"$rc\" >\"$dir/exit_code.tmp\" && mv \"$dir/exit_code.tmp\" \"$dir/exit_code\"\n"
       "exit \"$rc\"\n";
  return s.str();
}

std::string parse_sbatch_job_id(const std::string& output) {
  std::string text = output;
  const std::string prefix = "Submitted batch job ";
  if (const auto at = text.find(prefix); at != std::string::npos) text = text.substr(at + prefix.size());
  size_t n = 0;
  while (n < text.size() && std::isdigit(static_cast<unsigned char>(text[n]))) ++n;
  if (n == 0) throw std::runtime_error("sbatch printed no job id: '" + output + "'");
  return text.substr(0, n);
}

}  // namespace dyt::launch
