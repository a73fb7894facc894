// Checkpoints of a training run: the named global tensors (parameters,
// optimizer state) and where the run stood, saved so that a crash at any
// moment leaves the previous checkpoint whole, and loaded back to continue
// the same run.
//
// Layout under the checkpoint root:
//   step-00000100/manifest.pbtxt      tensor list + progress + config (manifest.proto)
//   step-00000100/tensors.safetensors the tensors
// A checkpoint is written into step-XXXXXXXX.tmp/ and committed by renaming
// the directory; the committed ones are exactly the step-XXXXXXXX
// directories, and the latest is the highest step. This layer knows names,
// shapes and bytes, never what a tensor means.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"

namespace dyt::checkpoint {

struct Progress {
  int64_t step = 0;                // optimizer steps completed
  int64_t optimizer_steps = 0;     // updates applied (skipped steps excluded)
  int64_t skipped_steps = 0;
  int64_t nonfinite_in_a_row = 0;
};

struct Checkpoint {
  std::string path;        // the step directory
  Progress progress;
  std::string run_config;  // as given to save_checkpoint
  std::map<std::string, LoadedTensor> tensors;
};

// Saves `tensors` (each name once) with `progress` and `run_config` as
// <root>/step-<progress.step, 8 digits>, then deletes all but the `keep`
// most recent checkpoints and any half-written ones left by a crash.
// Returns the checkpoint's directory. Throws CheckpointError naming the file
// on any failure, leaving the checkpoints already there untouched.
std::string save_checkpoint(const std::string& root, const Progress& progress,
                            const std::string& run_config, const std::vector<TensorRef>& tensors,
                            int keep);

// The highest-step checkpoint under `root`, or nullopt when there is none
// (or no root). Throws CheckpointError, naming the file and what is wrong,
// for a manifest that does not parse, a tensor file that is missing or
// damaged, or a tensor whose shape or type disagrees with the manifest.
std::optional<Checkpoint> load_latest_checkpoint(const std::string& root);

// The step directories under `root`, oldest first (empty when none).
std::vector<std::string> list_checkpoints(const std::string& root);

}  // namespace dyt::checkpoint
