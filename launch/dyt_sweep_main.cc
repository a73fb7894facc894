// dyt-sweep --config FILE --sweep "field=v1,v2;field2=v3,v4" --out DIR
//           [--set path=value]... [--jobs K] [--train PATH]
//
// Runs dyt-train once per combination of the swept values, each in
// DIR/<run>/ (run_dir, metrics, log, and checkpoints in DIR/<run>/checkpoints,
// so the same command again continues unfinished runs and skips through
// finished ones), K at a time, then writes DIR/sweep.md (a table, best loss
// first, diverged runs marked) and DIR/sweep.jsonl. Every combination's
// config is validated before the first run starts.
// Exit: 0 when every run finished or diverged (a divergence is a result),
// 1 when a run failed otherwise, 2 for a bad config or sweep.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/atomic_file.h"
#include "configs/cli.h"
#include "configs/config.h"
#include "launch/sweep.h"
#include "trainer/program.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using dyt::config::ConfigError;

// dyt-train beside this build's dyt-sweep (build/launch → build/trainer), else on PATH.
std::string default_train_binary() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path sibling = self.parent_path().parent_path() / "trainer" / "dyt-train";
    if (fs::exists(sibling)) return sibling.string();
  }
  return "dyt-train";
}

// Starts `argv` with stdout and stderr into `log`; returns the pid.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

void write_file(const std::string& path, const std::string& text) {
  dyt::checkpoint::AtomicFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace

int main(int argc, char** argv) {
  return dyt::trainer::run_program("dyt-sweep", [&] {
    const auto args = dyt::config::parse_cli(argc, argv, {"sweep", "out", "jobs", "train"}, {});
    if (args.config_path.empty()) throw ConfigError("missing required option --config");
    if (!args.options.count("sweep")) throw ConfigError("missing required option --sweep");
    if (!args.options.count("out")) throw ConfigError("missing required option --out");
    const fs::path out_dir = args.options.at("out");
    const int jobs = args.options.count("jobs") ? std::atoi(args.options.at("jobs").c_str()) : 1;
    if (jobs < 1) throw ConfigError("--jobs must be a positive number of concurrent runs");
    const std::string train_bin =
        args.options.count("train") ? args.options.at("train") : default_train_binary();

    const auto axes = dyt::launch::parse_sweep(args.options.at("sweep"));
    const auto points = dyt::launch::expand(axes);
    // Each run's full override list, checked against the schema now so that a
    // bad value stops the sweep before hours of the other runs.
    std::vector<std::vector<std::string>> run_overrides;
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
      run_overrides.push_back(std::move(o));
    }

    fs::create_directories(out_dir);
    std::printf("dyt-sweep: %zu runs in %s, %d at a time (%s)\n", points.size(), out_dir.c_str(), jobs,
                train_bin.c_str());
    std::fflush(stdout);
    std::map<pid_t, size_t> running;
    std::vector<int> exit_codes(points.size(), -1);
    size_t next = 0, done = 0;
    while (done < points.size()) {
      while (next < points.size() && running.size() < static_cast<size_t>(jobs)) {
        const fs::path dir = out_dir / points[next].name;
        fs::create_directories(dir);
        std::vector<std::string> cmd{train_bin, "--config", args.config_path};
        for (const std::string& o : run_overrides[next]) cmd.insert(cmd.end(), {"--set", o});
        running[spawn(cmd, (dir / "train.log").string())] = next;
        std::printf("started  %s\n", points[next].name.c_str());
        std::fflush(stdout);
        ++next;
      }
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, 0);
      if (pid < 0) throw std::runtime_error("waitpid failed");
      auto it = running.find(pid);
      if (it == running.end()) continue;
      const size_t i = it->second;
      running.erase(it);
      exit_codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      ++done;
      std::printf("finished %s (exit %d)\n", points[i].name.c_str(), exit_codes[i]);
      std::fflush(stdout);
    }

    std::vector<dyt::launch::RunResult> results;
    bool failed = false;
    for (size_t i = 0; i < points.size(); ++i) {
      results.push_back(dyt::launch::read_result(
          points[i], exit_codes[i], (out_dir / points[i].name / "metrics.jsonl").string()));
      failed = failed || results.back().status == dyt::launch::RunStatus::kFailed;
    }
    const std::string table = dyt::launch::results_markdown(axes, results);
    write_file((out_dir / "sweep.md").string(), table);
    write_file((out_dir / "sweep.jsonl").string(), dyt::launch::results_jsonl(axes, results));
    std::printf("\n%s\n(%s, %s; each run's log is train.log in its directory)\n", table.c_str(),
                (out_dir / "sweep.md").c_str(), (out_dir / "sweep.jsonl").c_str());
    return failed ? 1 : 0;
  });
}
