// Checkpoints of a training run: the named global tensors (parameters,
// optimizer state) and where the run stood, saved so that a crash at any
// moment leaves the previous checkpoint whole, and loaded back to continue
// the same run.
//
// Layout under the checkpoint root:
//   step-00000100/manifest.pbtxt      tensor list + progress + config (manifest.proto)
//   step-00000100/tensors.safetensors the tensors
// A checkpoint is written into step-XXXXXXXX.tmp/ and committed by renaming
// the directory; the committed ones are the step-XXXXXXXX directories, and
// the latest is the highest step. A committed directory is never deleted or
// replaced in place, since a crash half way would leave a torn step-N:
//   - saving a step that exists moves the old one aside first
//     (step-N.aside-<id>), renames the new one in, syncs the root, and only
//     then deletes the aside;
//   - deleting (older than `keep`, or an aside no longer needed) first
//     renames to step-N.trash-<id>, then removes.
// So after a crash, an aside with no step-N beside it is that step's only
// whole copy (the crash came between the two renames): loading takes it, and
// the next save renames it back. Everything else left over (.tmp, .trash-,
// an aside whose step-N exists) is removed by the next save.
// This layer knows names, shapes and bytes, never what a tensor means.
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
// <root>/step-<progress.step, 8 digits> (replacing one of that step), then
// deletes all but the `keep` most recent checkpoints. First it settles what
// a crashed save left (see above). Returns the checkpoint's directory.
// Throws CheckpointError naming the file on any failure, leaving the
// checkpoints already there whole. One saver per root at a time.
std::string save_checkpoint(const std::string& root, const Progress& progress,
                            const std::string& run_config, const std::vector<TensorRef>& tensors,
                            int keep);

// The highest-step checkpoint under `root`, or nullopt when there is none
// (or no root). Changes nothing on disk, so every rank may call it. Throws
// CheckpointError, naming the file and what is wrong, for a manifest that
// does not parse, a tensor file that is missing or damaged, or a tensor
// whose shape or type disagrees with the manifest; the message also names
// the newest intact checkpoint before the damaged one (or says there is
// none). It never falls back on its own: which state a run continues from
// is the user's decision.
std::optional<Checkpoint> load_latest_checkpoint(const std::string& root);

// Loads the checkpoint in directory `dir` (a step directory, or an aside
// that is its step's only copy), checking it whole. Throws CheckpointError
// as above, naming only `dir`'s files.
Checkpoint load_checkpoint(const std::string& dir);

// The checkpoints under `root`, oldest first (empty when none): each step's
// directory, or for a step caught between the two renames of a re-save, its
// aside.
std::vector<std::string> list_checkpoints(const std::string& root);

}  // namespace dyt::checkpoint
