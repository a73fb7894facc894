// The α₀ sweep (or a sweep over any config fields): the cartesian product of
// a few values per field, each a dyt-train run of its own directory, and a
// table of how each ended, diverged runs marked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dyt::launch {

struct SweepAxis {
  std::string path;                 // a config field, e.g. model.alpha_init.attention
  std::vector<std::string> values;  // as --set would take them
};

// "path=v1,v2;path2=v3,v4" → axes. Throws config::ConfigError naming the
// part that is malformed (no '=', an empty value, a field given twice).
std::vector<SweepAxis> parse_sweep(const std::string& spec);

struct SweepPoint {
  std::string name;                    // "attention=0.8_ffn=0.2": last path parts and values
  std::vector<std::string> overrides;  // "path=value" per axis
};

// Every combination, the first axis slowest.
std::vector<SweepPoint> expand(const std::vector<SweepAxis>& axes);

// unfinished: no exit status recorded (still queued or running, cancelled,
// or killed with its job).
enum class RunStatus { kFinished, kDiverged, kFailed, kUnfinished };
const char* status_name(RunStatus s);

struct RunResult {
  SweepPoint point;
  RunStatus status = RunStatus::kFailed;
  int exit_code = -1;
  int64_t steps = 0;              // last step logged
  double train_loss = 0;          // last step's (NaN when non-finite or none)
  double val_loss = 0;            // last evaluation's after step 0 (NaN when none)
};

// How a run ended, from its exit code and metrics file: finished (exit 0),
// diverged (exit 1 after steps skipped as non-finite), unfinished (exit code
// < 0: none recorded), failed (otherwise).
RunResult read_result(const SweepPoint& point, int exit_code, const std::string& metrics_path);

// The files that make a sweep directory readable whichever launcher ran it:
// OUT/sweep.spec holds the --sweep text (the runs are its expansion), and
// each launcher writes OUT/<run>/exit_code when the run's dyt-train ends.
inline constexpr const char* kSpecFile = "sweep.spec";
inline constexpr const char* kExitCodeFile = "exit_code";

// The --sweep text saved in out_dir; ConfigError naming the file when it is
// missing (not a sweep directory) or empty.
std::string read_sweep_spec(const std::string& out_dir);

// The exit code in `path`, -1 when the file is absent; ConfigError naming the
// file when it holds no integer.
int read_exit_code(const std::string& path);

// Every run's result from its directory under out_dir.
std::vector<RunResult> collect_results(const std::string& out_dir, const std::vector<SweepPoint>& points);

// The results as a Markdown table, best validation (else training) loss
// first, diverged and failed runs last.
std::string results_markdown(const std::vector<SweepAxis>& axes, std::vector<RunResult> results);
// One JSON object per run.
std::string results_jsonl(const std::vector<SweepAxis>& axes, const std::vector<RunResult>& results);

}  // namespace dyt::launch
