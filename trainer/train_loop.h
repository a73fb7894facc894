// The step loop, data-parallel over the ranks of a communicator (one process
// or many under mpirun): gradient accumulation over a global batch,
// non-finite guards, clipping, AdamW on the paper's schedule, periodic
// validation, progress lines, a JSON-lines metrics file, and checkpoints it
// saves and resumes from.
#pragma once

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "configs/config.h"
#include "parallel/communicator.h"

namespace dyt::trainer {

// The run cannot go on (e.g. too many non-finite steps in a row).
struct TrainingError : std::runtime_error {
  using runtime_error::runtime_error;
};

struct TrainSummary {
  int64_t start_step = 0;     // steps already done by the checkpoint resumed from (0 = fresh)
  int64_t steps = 0;          // optimizer steps completed, counting those before a resume
  bool finished = false;      // reached train.steps (false: stopped early, see the next two)
  int stop_signal = 0;        // the signal that stopped the run early (0 = none; see stop_request.h)
  std::string checkpoint;     // the last checkpoint saved ("" = none)
  int64_t skipped_steps = 0;  // of which non-finite, update skipped
  double initial_val_loss = 0;  // before the first step (NaN without validation data)
  double final_val_loss = 0;    // after the last step (NaN without validation data)
  double final_train_loss = 0;
  double seconds = 0;
};

// Runs cfg.train().steps() optimizer steps, printing progress to `out`;
// with checkpoint.dir set, continues from the latest checkpoint there, saves
// every checkpoint.every_steps and at the end, and stops early at
// checkpoint.exit_at_step or on SIGTERM/SIGINT/SIGUSR1 (after the step in
// progress, saving first). Throws ConfigError, data::DataError,
// checkpoint::CheckpointError or TrainingError.
// Every rank of `comm` calls it with the same config; parallel.dp must be
// comm.size() (parallel.tp 1); parallel.zero1 shards the optimizer over the
// dp group (docs/parallel.md). Rank 0 prints, logs and saves.
TrainSummary train(const config::RunConfig& cfg, std::FILE* out, parallel::Communicator& comm);

}  // namespace dyt::trainer
