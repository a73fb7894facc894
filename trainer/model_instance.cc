#include "trainer/model_instance.h"

#include <vector>

#include "trainer/init.h"

namespace dyt::trainer {

ModelInstance::ModelInstance(const config::ModelConfig& config, int64_t batch, int64_t seq_len,
                             bool recompute, kernels::Backend& backend, kernels::DType compute_dtype)
    : config_(config),
      dims_(model_dims(config)),
      layout_(dims_),
      params_(layout_, backend, compute_dtype),
      acts_(dims_, batch, seq_len, recompute, backend, compute_dtype),
      model_(dims_, params_) {}

void ModelInstance::init(uint64_t seed) {
  std::vector<float> host(static_cast<size_t>(layout_.total()));
  init_parameters(layout_, config_, seed, host.data());
  params_.set_master(host.data());
}

double ModelInstance::forward(const int32_t* tokens, const int32_t* targets) {
  acts_.set_batch(tokens, targets);
  model_.forward(acts_, targets != nullptr);
  return acts_.take_loss_sum();
}

double ModelInstance::forward_backward(const int32_t* tokens, const int32_t* targets,
                                       float grad_scale) {
  accumulate(tokens, targets, grad_scale);
  return acts_.take_loss_sum();
}

void ModelInstance::accumulate(const int32_t* tokens, const int32_t* targets, float grad_scale) {
  acts_.set_batch(tokens, targets);
  model_.forward_backward(acts_, grad_scale);
}

}  // namespace dyt::trainer
