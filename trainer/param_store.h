// Where a model's parameters live on a backend: the fp32 master weights the
// optimizer updates, the working copy the forward and backward read (BF16
// under train.precision BF16; the master itself under FP32) and the fp32
// gradients. All are flat with ParamLayout's offsets, so data-parallel
// reduction, clipping, checkpoints and export walk one table.
//
// ZeRO-1 (DpShard with dp > 1): the gradients (and the working copy) are
// allocated padded to dp·dp_chunk elements, the padding zero, for the
// reduce-scatter and the all-gather over dp equal chunks
// (trainer/dp_partition.h). Under a BF16 working copy the fp32 master is
// sharded too, as Megatron's distributed optimizer: the store keeps only
// master_range() = dp_partition(total, dp, rank) of it, and the tensors the
// model reads in fp32 (norm γ/β, DyT α, the embedding scale: "side"
// tensors, few and small) whole in a separate fp32 side buffer, which the
// step refreshes after every update (TrainStep). Under FP32 the master is
// the working copy and stays whole (padded).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "kernels/backend.h"
#include "trainer/dp_partition.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

// This rank's place among the dp ranks that share a ZeRO-1 shard ({1, 0}: none).
struct DpShard {
  int dp = 1;
  int rank = 0;
};

// A side tensor: `numel` elements at `offset` of the flat buffer, held at
// `side` of the side buffer.
struct SidePiece {
  int64_t offset = 0, side = 0, numel = 0;
};

// The side buffer's elements for a layout: its side tensors (read in fp32:
// norm γ/β, α, the embedding scale), each starting at a multiple of
// kParamAlign as in the flat buffer (the gaps zero).
int64_t side_elements(const ParamLayout& layout);

class ParamStore {
 public:
  // compute_dtype: F32, or BF16 for a BF16 working copy beside the master.
  // shard: ZeRO-1's dp group (see above). Throws std::invalid_argument on a
  // bad dtype or shard.
  ParamStore(const ParamLayout& layout, kernels::Backend& backend, kernels::DType compute_dtype,
             DpShard shard = {});

  const ParamLayout& layout() const { return layout_; }
  kernels::Backend& backend() const { return backend_; }
  kernels::DType compute_dtype() const { return compute_dtype_; }
  int64_t total() const { return layout_.total(); }

  // The part of the flat buffer the master holds: [0, total()), or this
  // rank's dp_partition when sharded. master() is that part (element i is
  // the layout's element master_range().begin + i).
  FlatRange master_range() const { return master_range_; }
  bool master_sharded() const { return master_range_.size() != total(); }
  kernels::Tensor master() const { return kernels::slice(master_.flat(), 0, master_range_.size()); }
  kernels::Tensor grads() const { return kernels::slice(grads_.flat(), 0, total()); }
  // The whole allocations, padding included (padded_total() elements; the
  // master's only when it is not sharded).
  kernels::Tensor master_padded() const;
  kernels::Tensor grads_padded() const { return grads_.flat(); }
  int64_t padded_total() const { return grads_.numel(); }
  // What the GEMMs and the embedding read: the BF16 copy, or the master
  // (total() elements); work_padded() the whole allocation.
  kernels::Tensor work() const { return has_work_copy() ? kernels::slice(work_.flat(), 0, total()) : master(); }
  kernels::Tensor work_padded() const { return has_work_copy() ? work_.flat() : master_padded(); }
  bool has_work_copy() const { return !work_.empty(); }

  // Views of the tensor named `name`: a weight or table from work(); norm
  // parameters, α and the embedding scale (F32 always) from the master, or
  // from the side buffer when the master is sharded; and its gradient.
  // Throws std::out_of_range naming the tensor when absent.
  kernels::Tensor weight(const std::string& name) const;
  kernels::Tensor f32_param(const std::string& name) const;
  kernels::Tensor grad(const std::string& name) const;

  // The side buffer (F32 [side elements]; empty unless sharded) and where
  // each side tensor sits in it, in layout order.
  kernels::Tensor side() const { return side_.flat(); }
  const std::vector<SidePiece>& side_pieces() const { return side_pieces_; }
  // The side buffer's elements in master_range() ← the master's (after an update).
  void side_from_master();

  // From the whole host vector (layout.total() floats): the master's range,
  // the side buffer, and the whole working copy rounded.
  void set_master(const float* host);
  // The whole master on the host; std::logic_error when sharded (each rank
  // holds its range: master_range_to_host, or gather_master in
  // trainer/train_step.h).
  std::vector<float> master_to_host() const;
  // master_range().size() floats: what this rank holds.
  std::vector<float> master_range_to_host() const;
  std::vector<float> grads_to_host() const;
  // The working copy's bits (BF16) on the host, total() words.
  std::vector<uint16_t> work_to_host() const;
  // The working copy ← master, rounded (after an update made elsewhere);
  // std::logic_error when sharded (the copy is gathered instead).
  void refresh_work();
  void zero_grads();

  // Host pointers into master and gradients when the backend is the CPU
  // (tools and tests); throws std::logic_error on any other device, or for
  // a sharded master.
  float* host_master() const;
  float* host_grads() const;

 private:
  kernels::Tensor view(const kernels::Buffer& b, const std::string& name, int64_t offset) const;

  const ParamLayout& layout_;
  kernels::Backend& backend_;
  kernels::DType compute_dtype_;
  FlatRange master_range_;
  std::vector<SidePiece> side_pieces_;
  kernels::Buffer master_, work_, grads_, side_;
};

}  // namespace dyt::trainer
