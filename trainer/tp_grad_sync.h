// The gradients that tensor parallelism leaves partial: blocks that several
// ranks of the group hold alike, where each rank saw only part of the work.
//  - Under sequence parallelism the replicated parameters (norm γ, α, β and
//    the embedding scale) see rows/tp rows on each rank: their gradients are
//    summed over the tp group (Megatron's _allreduce_layernorm_grads;
//    forgetting it is the classic sequence-parallel bug).
//  - With fewer KV heads than ranks, the tp / n_kv_heads ranks sharing a KV
//    head each hold the k and v gradients of their own query heads only:
//    summed over those ranks.
// Without sequence parallelism the replicated parameters' gradients are
// already equal on every rank (their inputs and output gradients are), and
// nothing is summed for them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "trainer/dp_partition.h"
#include "trainer/param_layout.h"
#include "trainer/param_store.h"

namespace dyt::trainer {

class TpGradSync {
 public:
  // Collective over `tp` (it splits the KV-head groups when there are any).
  // device: the tp group's communicator of device buffers (NCCL), or null:
  // with it the gradients are packed and summed on the device, the KV-head
  // groups split from it; without it they are staged through the host.
  TpGradSync(const ParamLayout& layout, parallel::Communicator& tp, bool sequence_parallel,
             parallel::Communicator* device = nullptr);

  // Sums the partial gradients in `params` over their groups, each group's
  // tensors packed into one all-reduce.
  void sum(ParamStore& params);
  // The same for the tensors that start in `within` only (one backward
  // stage's, when the dp reduction overlaps the backward); summed element
  // by element in rank order, so the bits are those of sum().
  void sum(ParamStore& params, FlatRange within);

  // The tensors summed over the whole tp group, and over a KV-head group.
  const std::vector<std::string>& replicated() const { return replicated_; }
  const std::vector<std::string>& kv() const { return kv_; }
  parallel::Communicator* kv_group() const { return kv_group_.get(); }

 private:
  void sum_over(parallel::Communicator& group, const std::vector<std::string>& names,
                ParamStore& params);

  parallel::Communicator& tp_;  // where the tensors go: the device communicator when there is one
  std::vector<std::string> replicated_, kv_;
  std::vector<int64_t> replicated_at_, kv_at_;  // their offsets in the flat buffer (the per-stage sums)
  std::unique_ptr<parallel::Communicator> kv_group_;
  std::vector<float> stage_;
  kernels::Buffer device_stage_;  // the packed gradients on the device (grows to the largest group)
};

}  // namespace dyt::trainer
