// dyt-sweep --config FILE --sweep "field=v1,v2;field2=v3,v4" --out DIR
//           [--set path=value]... [--jobs K] [--train PATH]
//           [--launcher local|mpirun|slurm] [--np N]
//           [--mpirun PATH] [--mpirun-args "ARGS"]
//           [--sbatch PATH] [--sbatch-args "ARGS"] [--notice SECONDS] [--poll SECONDS] [--no-wait]
//           [--no-plot] [--python PATH]      (default /usr/bin/python3: Debian's, with python3-matplotlib)
// dyt-sweep --collect --out DIR [--no-plot] [--python PATH]
//
// Runs dyt-train once per combination of the swept values, each in
// DIR/<run>/ (run_dir, metrics, log, and checkpoints in DIR/<run>/checkpoints,
// so the same command again continues unfinished runs and skips through
// finished ones), K at a time, then writes DIR/sweep.md (a table, best loss
// first, diverged runs marked), DIR/sweep.jsonl and the plots of
// scripts/plot_sweep.py. Every combination's config is validated before the
// first run starts.
//
// Launchers: local processes (the default); `mpirun -np N [ARGS] dyt-train …`
// per run; or one Slurm array job (DIR/sweep.sbatch, one index per run, N
// tasks each, submitted with sbatch and waited for by polling squeue, or not
// with --no-wait). Whichever ran it, --collect builds the table again from
// the run directories (DIR/sweep.spec and each run's exit_code).
// Exit: 0 when every run finished or diverged (a divergence is a result),
// 1 when a run failed or is unfinished, or the plots failed; 2 for a bad
// config or sweep.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/atomic_file.h"
#include "configs/cli.h"
#include "configs/config.h"
#include "launch/launcher.h"
#include "launch/process.h"
#include "launch/sweep.h"
#include "trainer/program.h"

namespace {

namespace fs = std::filesystem;
namespace dl = dyt::launch;
using dyt::config::CliArgs;
using dyt::config::ConfigError;

// A program beside this build's dyt-sweep (build/launch → build/<folder>), else on PATH.
std::string sibling_program(const char* folder, const char* name) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path sibling = self.parent_path().parent_path() / folder / name;
    if (fs::exists(sibling)) return sibling.string();
  }
  return name;
}

std::string option(const CliArgs& args, const std::string& name, const std::string& fallback) {
  const auto it = args.options.find(name);
  return it == args.options.end() ? fallback : it->second;
}

void write_file(const std::string& path, const std::string& text) {
  dyt::checkpoint::AtomicFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

// Local processes or mpirun: `jobs` runs at a time, each one's exit code
// written to its directory as it ends.
void run_here(const dl::LaunchOptions& lo, const std::vector<dl::LaunchRun>& runs) {
  std::map<pid_t, size_t> running;
  size_t next = 0, done = 0;
  while (done < runs.size()) {
    while (next < runs.size() && running.size() < static_cast<size_t>(lo.concurrent)) {
      running[dl::spawn_logged(dl::run_command(lo, runs[next].argv), runs[next].dir + "/train.log")] = next;
      std::printf("started  %s\n", runs[next].name.c_str());
      std::fflush(stdout);
      ++next;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) throw std::runtime_error("waitpid failed");
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const dl::LaunchRun& r = runs[it->second];
    running.erase(it);
    const int code = dl::exit_status(status);
    write_file(r.dir + "/" + dl::kExitCodeFile, std::to_string(code) + "\n");
    ++done;
    std::printf("finished %s (exit %d)\n", r.name.c_str(), code);
    std::fflush(stdout);
  }
}

// squeue beside the sbatch that was named, else on PATH.
std::string squeue_for(const std::string& sbatch) {
  const auto slash = sbatch.find_last_of('/');
  return slash == std::string::npos ? "squeue" : sbatch.substr(0, slash + 1) + "squeue";
}

// Until Slurm lists none of the job's array tasks as pending, running or
// requeued. A few failed squeue calls in a row are tolerated (a busy
// controller times out); a job Slurm no longer knows has ended.
void wait_for_job(const std::string& squeue, const std::string& job, int poll_seconds) {
  int failures = 0;
  long last = -1;
  for (;;) {
    const dl::Captured q = dl::run_captured({squeue, "-h", "-r", "-j", job, "-o", "%i %T"});
    if (q.status != 0) {
      if (q.out.find("Invalid job id") != std::string::npos) return;
      if (++failures >= 10)
        throw std::runtime_error(squeue + " failed 10 times in a row (job " + job + "): " + q.out);
    } else {
      failures = 0;
      long left = 0;
      for (char c : q.out) left += c == '\n';
      if (left == 0) return;
      if (left != last) {
        std::printf("slurm: job %s: %ld array task(s) pending or running\n", job.c_str(), left);
        std::fflush(stdout);
        last = left;
      }
    }
    std::this_thread::sleep_for(std::chrono::seconds(poll_seconds));
  }
}

void run_on_slurm(const dl::LaunchOptions& lo, const CliArgs& args, const fs::path& out_dir,
                  const std::vector<dl::LaunchRun>& runs, bool wait, int poll_seconds) {
  const fs::path log_dir = fs::absolute(out_dir / "slurm");
  fs::create_directories(log_dir);
  const fs::path script = out_dir / "sweep.sbatch";
  write_file(script.string(), dl::slurm_array_script(lo, fs::current_path().string(), log_dir.string(), runs));
  const std::string sbatch = option(args, "sbatch", "sbatch");
  std::vector<std::string> cmd{sbatch};
  cmd.insert(cmd.end(), lo.sbatch_args.begin(), lo.sbatch_args.end());
  cmd.push_back(script.string());
  const dl::Captured s = dl::run_captured(cmd);
  if (s.status != 0) throw std::runtime_error(sbatch + " " + script.string() + " failed (exit " +
                                              std::to_string(s.status) + "): " + s.out);
  const std::string job = dl::parse_sbatch_job_id(s.out);
  std::printf("slurm: submitted %s as array job %s (%zu tasks; Slurm's output in %s)\n", script.c_str(),
              job.c_str(), runs.size(), log_dir.c_str());
  std::fflush(stdout);
  if (wait) wait_for_job(squeue_for(sbatch), job, poll_seconds);
}

// The table, the JSON lines and the plots of a sweep directory; the exit status.
int report(const CliArgs& args, const fs::path& out_dir) {
  const auto axes = dl::parse_sweep(dl::read_sweep_spec(out_dir.string()));
  const auto results = dl::collect_results(out_dir.string(), dl::expand(axes));
  bool failed = false;
  for (const auto& r : results)
    failed = failed || r.status == dl::RunStatus::kFailed || r.status == dl::RunStatus::kUnfinished;
  const std::string table = dl::results_markdown(axes, results);
  write_file((out_dir / "sweep.md").string(), table);
  write_file((out_dir / "sweep.jsonl").string(), dl::results_jsonl(axes, results));
  std::printf("\n%s\n(%s, %s; each run's log is train.log in its directory)\n", table.c_str(),
              (out_dir / "sweep.md").c_str(), (out_dir / "sweep.jsonl").c_str());
  std::fflush(stdout);
  if (dyt::config::has_flag(args, "no-plot")) return failed ? 1 : 0;
  const dl::Captured p = dl::run_captured({option(args, "python", "/usr/bin/python3"), DYT_PLOT_SWEEP_SCRIPT, out_dir.string()});
  std::fputs(p.out.c_str(), p.status == 0 ? stdout : stderr);
  if (p.status != 0) {
    std::fprintf(stderr, "dyt-sweep: the plots failed (%s exit %d); the table is written, --no-plot skips them\n",
                 DYT_PLOT_SWEEP_SCRIPT, p.status);
    return 1;
  }
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return dyt::trainer::run_program("dyt-sweep", [&] {
    const auto args = dyt::config::parse_cli(
        argc, argv,
        {"sweep", "out", "jobs", "train", "launcher", "np", "mpirun", "mpirun-args", "sbatch", "sbatch-args",
         "notice", "poll", "python"},
        {"collect", "no-wait", "no-plot"});
    if (!args.options.count("out")) throw ConfigError("missing required option --out");
    const fs::path out_dir = args.options.at("out");
    if (dyt::config::has_flag(args, "collect")) {
      if (!args.config_path.empty() || args.options.count("sweep"))
        throw ConfigError("--collect reads the sweep from --out; --config and --sweep do not go with it");
      return report(args, out_dir);
    }
    if (args.config_path.empty()) throw ConfigError("missing required option --config");
    if (!args.options.count("sweep")) throw ConfigError("missing required option --sweep");

    dl::LaunchOptions lo;
    lo.kind = dl::parse_launcher(option(args, "launcher", "local"));
    lo.np = static_cast<int>(dyt::config::int_option(args, "np", 1, 1));
    if (lo.kind == dl::LauncherKind::kLocal && lo.np != 1)
      throw ConfigError("--np " + std::to_string(lo.np) + " needs --launcher mpirun or slurm");
    // Local runs default to one at a time; a Slurm array to as many as the scheduler gives.
    lo.concurrent = static_cast<int>(
        dyt::config::int_option(args, "jobs", lo.kind == dl::LauncherKind::kSlurm ? 0 : 1, 1));
    lo.mpirun = option(args, "mpirun", "mpirun");
    lo.mpirun_args = dl::split_words(option(args, "mpirun-args", ""));
    lo.sbatch_args = dl::split_words(option(args, "sbatch-args", ""));
    lo.notice_seconds = static_cast<int>(dyt::config::int_option(args, "notice", 120, 1));
    const int poll_seconds = static_cast<int>(dyt::config::int_option(args, "poll", 30, 1));
    std::string train_bin = option(args, "train", sibling_program("trainer", "dyt-train"));
    // A Slurm job may start elsewhere: name the binary absolutely when it is a path.
    if (train_bin.find('/') != std::string::npos) train_bin = fs::absolute(train_bin).string();

    const std::string spec = args.options.at("sweep");
    const auto axes = dl::parse_sweep(spec);
    const auto points = dl::expand(axes);
    // Each run's full override list, checked against the schema now so that a
    // bad value stops the sweep before hours of the other runs.
    std::vector<dl::LaunchRun> runs;
    for (const auto& p : points) {
      std::vector<std::string> o = args.overrides;
      o.insert(o.end(), p.overrides.begin(), p.overrides.end());
      const fs::path dir = out_dir / p.name;
      o.push_back("train.run_dir=" + dir.string());
      o.push_back("train.metrics_file=");
      o.push_back("checkpoint.dir=" + (dir / "checkpoints").string());
      try {
        dyt::config::load_run_config(args.config_path, o);
      } catch (const ConfigError& e) {
        throw ConfigError("run " + p.name + ": " + e.what());
      }
      dl::LaunchRun r{p.name, dir.string(), {train_bin, "--config", args.config_path}};
      for (const std::string& v : o) r.argv.insert(r.argv.end(), {"--set", v});
      runs.push_back(std::move(r));
    }

    fs::create_directories(out_dir);
    write_file((out_dir / dl::kSpecFile).string(), spec + "\n");
    for (const auto& r : runs) {
      fs::create_directories(r.dir);
      fs::remove(fs::path(r.dir) / dl::kExitCodeFile);  // a previous launch's, not this one's
    }
    static const char* kNames[] = {"local", "mpirun", "slurm"};
    std::printf("dyt-sweep: %zu runs in %s through %s (%s)\n", runs.size(), out_dir.c_str(),
                kNames[static_cast<int>(lo.kind)], train_bin.c_str());
    std::fflush(stdout);
    if (lo.kind == dl::LauncherKind::kSlurm) {
      const bool wait = !dyt::config::has_flag(args, "no-wait");
      run_on_slurm(lo, args, out_dir, runs, wait, poll_seconds);
      if (!wait) {
        std::printf("slurm: not waiting; when the job has ended: dyt-sweep --collect --out %s\n", out_dir.c_str());
        return 0;
      }
    } else {
      run_here(lo, runs);
    }
    return report(args, out_dir);
  });
}
