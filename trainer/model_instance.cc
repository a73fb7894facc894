#include "trainer/model_instance.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/init.h"

namespace dyt::trainer {

ModelInstance::ModelInstance(const config::ModelConfig& config, int64_t batch, int64_t seq_len,
                             bool recompute, kernels::Backend& backend, kernels::DType compute_dtype,
                             TensorParallel tp, DpShard shard)
    : config_(config),
      dims_(model_dims(config)),
      tp_(tp),
      layout_(dims_, TpRank{tp.rank(), tp.size()}),
      params_(layout_, backend, compute_dtype, shard),
      acts_(shard_dims(dims_, tp.size()), batch, seq_len, recompute, backend, compute_dtype,
            ArenaSplit{tp.size(), tp.sequence_parallel}),
      model_(dims_, params_, tp) {
  if (dims_.has_alpha()) {
    norm_probe_ = backend.allocate(kernels::DType::F64, 2 * (2 * dims_.layers + 1));
    norm_probe_view_ = norm_probe_.flat();
  }
}

void ModelInstance::probe_norms(bool on) {
  if (norm_probe_.empty()) return;
  if (on) backend().zero(norm_probe_view_);
  model_.set_norm_probe(on ? &norm_probe_view_ : nullptr);
}

std::vector<double> ModelInstance::norm_probe() const {
  std::vector<double> out(static_cast<size_t>(norm_probe_.numel()));
  if (!out.empty()) backend().download(norm_probe_view_, out.data());
  return out;
}

void ModelInstance::set_batch(const int32_t* tokens, const int32_t* targets) {
  if (tp_.size() == 1) {
    acts_.set_batch(tokens, targets);
    return;
  }
  // The vocab-parallel embedding and loss see ids of this rank's slice.
  const int64_t n = acts_.rows(), slice = dims_.vocab / tp_.size(), start = slice * tp_.rank();
  const auto local = [&](const int32_t* ids, std::vector<int32_t>& out) {
    out.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      out[static_cast<size_t>(i)] = ids[i] >= start && ids[i] < start + slice
                                        ? static_cast<int32_t>(ids[i] - start)
                                        : kernels::kAbsentToken;
    return out.data();
  };
  acts_.set_batch(local(tokens, local_tokens_), targets ? local(targets, local_targets_) : nullptr);
}

void ModelInstance::init(uint64_t seed) {
  std::vector<float> host(static_cast<size_t>(layout_.total()));
  init_parameters(layout_, config_, seed, host.data());
  params_.set_master(host.data());
}

double ModelInstance::forward(const int32_t* tokens, const int32_t* targets) {
  set_batch(tokens, targets);
  model_.forward(acts_, targets != nullptr);
  return acts_.take_loss_sum();
}

double ModelInstance::forward_backward(const int32_t* tokens, const int32_t* targets,
                                       float grad_scale) {
  accumulate(tokens, targets, grad_scale);
  return acts_.take_loss_sum();
}

void ModelInstance::accumulate(const int32_t* tokens, const int32_t* targets, float grad_scale,
                               const GradsReady* ready) {
  set_batch(tokens, targets);
  model_.forward_backward(acts_, grad_scale, ready);
}

}  // namespace dyt::trainer
