// Checkpoints of a training run: named global tensors (parameters, optimizer
// state) and where the run stood, saved by every rank of a job in parallel
// so that a crash at any moment leaves the previous checkpoint whole, and
// loaded back under any other layout (docs/checkpoints.md).
//
// Layout under the checkpoint root:
//   step-00000100/manifest.pbtxt          tensors, their pieces, progress, config (manifest.proto)
//   step-00000100/rank-00000.safetensors  rank 0's pieces: boxes of global tensors
//   step-00000100/rank-00001.safetensors  ...
// Each rank writes its pieces into step-XXXXXXXX.tmp/; when every rank's
// file is durable, rank 0 writes the manifest (from the files' headers,
// checked to tile every tensor exactly once) and commits by renaming the
// directory. The committed ones are the step-XXXXXXXX directories, and the
// latest is the highest step. A committed directory is never deleted or
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
// All ranks see the root on one (shared) file system.
// This layer knows names, boxes and bytes, never what a tensor means, nor
// how ranks talk: a collective save gets its agreement as a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/boxes.h"
#include "checkpoint/safetensors.h"

namespace dyt::checkpoint {

struct Progress {
  int64_t step = 0;                // optimizer steps completed
  int64_t optimizer_steps = 0;     // updates applied (skipped steps excluded)
  int64_t skipped_steps = 0;
  int64_t nonfinite_in_a_row = 0;
};

// A global tensor: its name and global shape.
struct TensorShape {
  std::string name;
  std::vector<int64_t> shape;
};

// One rank's piece of a global tensor for a save: the box it covers and its
// prod(box.extent) floats, row-major over the box, alive during the save.
struct PieceRef {
  std::string tensor;
  Box box;
  const float* data = nullptr;
};

// A committed checkpoint, opened: the manifest checked (every tensor tiled
// by its pieces exactly once, each piece's file present and holding it at
// the manifest's extent), the files mapped read-only. Copies share the
// mapping.
class Checkpoint {
 public:
  std::string path;        // the step directory
  Progress progress;
  std::string run_config;  // as given to save_checkpoint
  int format_version = 0;

  // Every tensor's global shape, by name.
  const std::map<std::string, std::vector<int64_t>>& shapes() const;
  bool has(const std::string& name) const { return shapes().count(name) > 0; }
  // Throws CheckpointError naming the manifest when `name` is not in it.
  const std::vector<int64_t>& shape(const std::string& name) const;
  // Copies the box `box` of tensor `name` into `out` (prod(box.extent)
  // floats, row-major over the box), reading only the pieces that intersect
  // it. Throws CheckpointError for an unknown tensor or a box outside it.
  void read(const std::string& name, const Box& box, float* out) const;
  // The whole tensor.
  std::vector<float> read_all(const std::string& name) const;
  // The files a read may touch (the manifest's pieces' files).
  size_t files() const;

  struct Stored;  // pieces and mapped files (checkpoint.cc)

 private:
  std::shared_ptr<const Stored> stored_;
  friend Checkpoint load_checkpoint(const std::string& dir);
};

// ---- A collective save: every rank calls save_checkpoint with its own
// pieces; `agree` is the ranks' agreement, called by every rank at the same
// three points (after rank 0 prepared the .tmp directory, after every rank
// wrote its file, after rank 0 committed) with this rank's error ("" when it
// succeeded). It must return "" when every rank succeeded, else the error of
// a rank that failed (the same on every rank), which every rank then throws
// as CheckpointError: no rank goes on, none waits forever, and the previous
// checkpoints stay whole. `tensors` (the same on every rank) lists every
// global tensor; the pieces of all ranks together must tile each exactly
// once, which rank 0 checks before it commits. Returns the step directory.
using Agree = std::function<std::string(const std::string& error)>;
std::string save_checkpoint(const std::string& root, const Progress& progress,
                            const std::string& run_config, const std::vector<TensorShape>& tensors,
                            const std::vector<PieceRef>& pieces, int rank, int ranks, int keep,
                            const Agree& agree);

// The same in one process holding every tensor whole (`tensors`, each name
// once): rank 0 of 1. Throws CheckpointError naming the file on any failure.
std::string save_checkpoint(const std::string& root, const Progress& progress,
                            const std::string& run_config, const std::vector<TensorRef>& tensors,
                            int keep);

// The three steps of a collective save, for callers that sequence the ranks
// themselves (tests emulating ranks in one process):
// rank 0: settles what a crashed save left, creates step-N.tmp (after
// checking keep >= 1); returns its path.
std::string begin_save(const std::string& root, int64_t step, int keep);
// every rank: writes its pieces to step-N.tmp/rank-<rank, 5 digits>.safetensors,
// fsynced (each piece under the key "<tensor>@<offsets>").
void write_rank_file(const std::string& root, int64_t step, int rank, const std::vector<PieceRef>& pieces);
// rank 0, once every rank's write succeeded: the manifest from the ranks'
// files, checked, written and fsynced; the directory renamed; all but the
// `keep` newest removed. On failure, removes step-N.tmp and throws.
std::string commit_save(const std::string& root, const Progress& progress, const std::string& run_config,
                        const std::vector<TensorShape>& tensors, int ranks, int keep);
// rank 0, after a failure on any rank: removes step-N.tmp (best effort).
void abandon_save(const std::string& root, int64_t step);

// The highest-step checkpoint under `root`, or nullopt when there is none
// (or no root). Changes nothing on disk, so every rank may call it. Throws
// CheckpointError, naming the file and what is wrong, for a manifest that
// does not parse, a shard file that is missing or damaged, a piece whose
// extent disagrees with its file, or pieces that overlap or leave a gap; the
// message also names the newest intact checkpoint before the damaged one (or
// says there is none). It never falls back on its own: which state a run
// continues from is the user's decision.
std::optional<Checkpoint> load_latest_checkpoint(const std::string& root);

// Opens the checkpoint in directory `dir` (a step directory, or an aside
// that is its step's only copy), checking it whole. Throws CheckpointError
// as above, naming only `dir`'s files. Reads format_version 2 and 1 (one
// tensors.safetensors holding each tensor whole, as one piece).
Checkpoint load_checkpoint(const std::string& dir);

// The checkpoints under `root`, oldest first (empty when none): each step's
// directory, or for a step caught between the two renames of a re-save, its
// aside.
std::vector<std::string> list_checkpoints(const std::string& root);

}  // namespace dyt::checkpoint
