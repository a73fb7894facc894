// What a run tells its user: a JSON-lines metrics file (one object per
// optimizer step, plus one per evaluation) and a human progress line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "trainer/norm_health.h"

namespace dyt::trainer {

struct StepMetrics {
  int64_t step = 0;          // 1-based optimizer step just finished
  double loss = 0;           // mean training loss of the global batch
  double lr = 0;
  double grad_norm = 0;      // before clipping
  double tokens_per_s = 0;
  int64_t skipped_steps = 0; // total non-finite steps skipped so far
  bool skipped = false;      // this step's update was skipped
  std::vector<std::pair<std::string, float>> alphas;  // every DyT/DyISRU α by name
  // Bytes this rank sent in the step, per group of more than one rank ("dp",
  // "tp", "tp-kv"), by the communicator's counting convention: what dyt-plan
  // predicts for rank 0 (docs/parallel.md).
  std::vector<std::pair<std::string, uint64_t>> comm_bytes;
  // Per DyT/DyISRU norm, on probed (logging) steps only: the fraction of its
  // input with |α·x| > 3 and the input's RMS (trainer/norm_health.h).
  std::vector<NormHealth> norm_health;
  // Model FLOPs utilization per GPU (trainer/throughput.h; PaLM's count over
  // the GPU's dense peak), or < 0 where there is no known peak (the CPU).
  double mfu = -1;
  // The most memory this rank's process has held (Backend::peak_memory_bytes).
  int64_t peak_memory_bytes = 0;
};

class MetricsLog {
 public:
  // Truncates `path` (creating its directory); or, for a run resumed after
  // step `resume_after_step` (>= 0), keeps its lines up to that step and
  // appends. Throws std::runtime_error if it cannot.
  explicit MetricsLog(const std::string& path, int64_t resume_after_step = -1);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void log_step(const StepMetrics& m);
  void log_eval(int64_t step, double val_loss);

 private:
  void write_line(const std::string& line);
  std::FILE* file_ = nullptr;
  std::string path_;
};

// "step 120/600 | loss 4.1234 | lr 3.00e-03 | gnorm 0.812 | 41.2k tok/s | eta 3m12s"
std::string progress_line(const StepMetrics& m, int64_t total_steps, double eta_seconds);

// JSON number: finite values with full precision, non-finite as null.
std::string json_number(double v);

}  // namespace dyt::trainer
