#include "trainer/tp_grad_sync.h"

#include <stdexcept>

namespace dyt::trainer {

TpGradSync::TpGradSync(const ParamLayout& layout, parallel::Communicator& tp, bool sequence_parallel,
                       parallel::Communicator* device)
    : tp_(device ? *device : tp) {
  if (device && (!device->device_buffers() || device->size() != tp.size() || device->rank() != tp.rank()))
    throw std::invalid_argument("TpGradSync: the device communicator must take device buffers and hold "
                                "the tp group's ranks in its order");
  if (tp.size() == 1) return;
  int kv_replicas = 1;
  for (const ParamEntry& e : layout.entries()) {
    if (e.split == Split::Replicated) {
      if (sequence_parallel) {
        replicated_.push_back(e.name);
        replicated_at_.push_back(e.offset);
      }
    } else if (e.shard.replicas > 1) {
      kv_.push_back(e.name);
      kv_at_.push_back(e.offset);
      kv_replicas = e.shard.replicas;
    }
  }
  // Every rank of the group agrees on whether KV heads are replicated (the
  // layout is common), so every rank takes part in the split or none does.
  if (!kv_.empty()) kv_group_ = tp_.split(tp.rank() / kv_replicas, tp.rank());
}

void TpGradSync::sum_over(parallel::Communicator& group, const std::vector<std::string>& names,
                          ParamStore& params) {
  if (names.empty() || group.size() == 1) return;
  kernels::Backend& be = params.backend();
  size_t total = 0;
  for (const std::string& n : names) total += static_cast<size_t>(params.grad(n).numel());
  if (group.device_buffers()) {
    // Packed on the device (copies there), summed in place, unpacked.
    if (device_stage_.numel() < static_cast<int64_t>(total))
      device_stage_ = be.allocate(kernels::DType::F32, static_cast<int64_t>(total));
    const kernels::Tensor packed = device_stage_.flat();
    int64_t off = 0;
    for (const std::string& n : names) {
      const kernels::Tensor g = params.grad(n);
      be.convert(g, kernels::slice(packed, off, g.numel()));
      off += g.numel();
    }
    group.allreduce_sum(packed.f32(), total);
    off = 0;
    for (const std::string& n : names) {
      const kernels::Tensor g = params.grad(n);
      be.convert(kernels::slice(packed, off, g.numel()), g);
      off += g.numel();
    }
    return;
  }
  stage_.resize(total);
  size_t at = 0;
  for (const std::string& n : names) {
    const kernels::Tensor g = params.grad(n);
    be.download(g, stage_.data() + at);
    at += static_cast<size_t>(g.numel());
  }
  group.allreduce_sum(stage_.data(), total);
  at = 0;
  for (const std::string& n : names) {
    const kernels::Tensor g = params.grad(n);
    be.upload(stage_.data() + at, g);
    at += static_cast<size_t>(g.numel());
  }
}

void TpGradSync::sum(ParamStore& params) {
  sum_over(tp_, replicated_, params);
  if (kv_group_) sum_over(*kv_group_, kv_, params);
}

void TpGradSync::sum(ParamStore& params, FlatRange within) {
  const auto in = [&](const std::vector<std::string>& names, const std::vector<int64_t>& at) {
    std::vector<std::string> out;
    for (size_t i = 0; i < names.size(); ++i)
      if (at[i] >= within.begin && at[i] < within.end) out.push_back(names[i]);
    return out;
  };
  sum_over(tp_, in(replicated_, replicated_at_), params);
  if (kv_group_) sum_over(*kv_group_, in(kv_, kv_at_), params);
}

}  // namespace dyt::trainer
