// The single-process step loop: gradient accumulation over a global batch,
// non-finite guards, clipping, AdamW on the paper's schedule, periodic
// validation, progress lines and a JSON-lines metrics file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <stdexcept>

#include "configs/config.h"

namespace dyt::trainer {

// The run cannot go on (e.g. too many non-finite steps in a row).
struct TrainingError : std::runtime_error {
  using runtime_error::runtime_error;
};

struct TrainSummary {
  int64_t steps = 0;          // optimizer steps run
  int64_t skipped_steps = 0;  // of which non-finite, update skipped
  double initial_val_loss = 0;  // before the first step (NaN without validation data)
  double final_val_loss = 0;    // after the last step (NaN without validation data)
  double final_train_loss = 0;
  double seconds = 0;
};

// Runs cfg.train().steps() optimizer steps, printing progress to `out`.
// Throws ConfigError, data::DataError or TrainingError.
TrainSummary train(const config::RunConfig& cfg, std::FILE* out);

}  // namespace dyt::trainer
