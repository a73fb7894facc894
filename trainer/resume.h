// A training run's state in a checkpoint: which tensors make it up, which
// pieces of them a rank writes, putting a rank's blocks back under any
// layout, and whether a checkpoint belongs to the run being started.
//
// The state is stored in model space (docs/checkpoints.md): parameters
// under their Hugging Face names with their global shapes, AdamW's moments
// under "optimizer.exp_avg.<name>" and "optimizer.exp_avg_sq.<name>". Each
// rank writes, of every tensor its tensor-parallel rank owns
// (ParamEntry::shard.owner()), the part that lies in its dp_partition range
// of the flat buffer, so every element of the job's state is written once;
// a rank of any other layout reads its own blocks back.
#pragma once

#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "configs/config.h"
#include "trainer/dp_partition.h"
#include "trainer/optimizer.h"
#include "trainer/param_layout.h"
#include "trainer/param_store.h"

namespace dyt::trainer {

inline constexpr const char* kExpAvgPrefix = "optimizer.exp_avg.";
inline constexpr const char* kExpAvgSqPrefix = "optimizer.exp_avg_sq.";

// Every tensor of a run's checkpoint with its global shape: the parameters,
// then both moments, in the layout's order.
std::vector<checkpoint::TensorShape> run_state_shapes(const ParamLayout& layout);

// One rank's state on the host. params: layout.total() floats (the fp32
// master weights), or with params_in_range (a ZeRO-1 sharded master, saving
// only) moments.size() floats of the range `moments`; exp_avg, exp_avg_sq:
// moments.size() floats, AdamW's moments of the flat range `moments`
// (moment_range()).
template <class T>
struct RankStateT {
  T* params = nullptr;
  T* exp_avg = nullptr;
  T* exp_avg_sq = nullptr;
  FlatRange moments;
  bool params_in_range = false;
};
using RankState = RankStateT<float>;
using ConstRankState = RankStateT<const float>;

// What a checkpoint saves of this rank, copied to the host: the fp32 master
// as the store holds it — whole, or a sharded master's range (BF16 ZeRO-1),
// which must then be `moments` — and the optimizer's moments, which must be
// those of `moments` (moment_range()). std::logic_error when either holds
// another range.
struct HostRankState {
  std::vector<float> params, exp_avg, exp_avg_sq;
  FlatRange moments;
  bool params_in_range = false;
  ConstRankState view() const {
    return {params.data(), exp_avg.data(), exp_avg_sq.data(), moments, params_in_range};
  }
};
HostRankState rank_state_to_host(const ParamStore& params, const AdamW& optimizer, FlatRange moments);

// The pieces this rank saves: of each owned entry, the part in `save` (its
// dp_partition range of layout.total()) of the parameters and both moments.
// `save` must lie inside s.moments (std::logic_error otherwise).
std::vector<checkpoint::PieceRef> run_state_pieces(const ParamLayout& layout, FlatRange save,
                                                   const ConstRankState& s);

// Reads this rank's blocks back from `ck`: every entry's whole local block
// of the parameters (replicas too), and the moments of s.moments; the gaps
// between tensors are left as they are (zero); s.params_in_range must be
// false (std::logic_error). Throws
// checkpoint::CheckpointError naming the checkpoint and the tensor that is
// missing, not part of this model, or of another global shape than the
// model being resumed.
void restore_run_state(const checkpoint::Checkpoint& ck, const ParamLayout& layout, const RankState& s);

// Throws config::ConfigError when `ck` was saved by a run that `cfg` would
// not continue unchanged: a different model, data, seed, batch, schedule or
// optimizer setting. The message names the first such field with both
// values. Settings that leave the trajectory alone may differ: logging,
// evaluation, run_dir, metrics_file, recompute, micro_batch (only the
// summation order of micro-batches changes), max_nonfinite_steps,
// data.val_shards, data.tokenizer, checkpoint.*, parallel.* (a run may go
// on under another layout: the checkpoint is in model space).
void check_resumable(const checkpoint::Checkpoint& ck, const config::RunConfig& cfg);

}  // namespace dyt::trainer
