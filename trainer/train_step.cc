#include "trainer/train_step.h"

#include <cmath>

#include "trainer/grad_norm.h"

namespace dyt::trainer {

TrainStep::TrainStep(ModelInstance& model, AdamW& optimizer, const data::BatchSampler& sampler,
                     parallel::Communicator& comm, const config::TrainConfig& t)
    : model_(model),
      optimizer_(optimizer),
      sampler_(sampler),
      comm_(comm),
      grad_clip_(t.grad_clip()),
      tokens_per_step_(sampler.global_batch_samples() * t.seq_len()),
      tokens_(static_cast<size_t>(model.batch() * model.seq_len())),
      targets_(tokens_.size()),
      norm_sum_(model.backend().allocate(kernels::DType::F64, 1)) {
  if (model.backend().device() != kernels::Device::CPU && comm.size() > 1)
    host_grads_.resize(static_cast<size_t>(model.layout().total()));
}

void TrainStep::allreduce_grads() {
  if (comm_.size() == 1) return;
  ParamStore& p = model_.params();
  if (host_grads_.empty()) {
    comm_.allreduce_sum(p.grads().f32(), static_cast<size_t>(p.total()));
    return;
  }
  p.backend().download(p.grads(), host_grads_.data());
  comm_.allreduce_sum(host_grads_.data(), host_grads_.size());
  p.backend().upload(host_grads_.data(), p.grads());
}

double TrainStep::grad_norm() {
  kernels::Backend& be = model_.backend();
  be.sum_squares(model_.params().grads(), norm_sum_.flat());
  double sum = 0;
  be.download(norm_sum_.flat(), &sum);
  return std::sqrt(sum);
}

StepResult TrainStep::run(int64_t step, double lr) {
  ParamStore& params = model_.params();
  params.zero_grads();
  const float grad_scale = 1.0f / static_cast<float>(tokens_per_step_);
  for (int64_t micro = 0; micro < sampler_.micro_batches_per_step(); ++micro) {
    sampler_.fill_micro_batch(step, micro, tokens_.data(), targets_.data());
    model_.accumulate(tokens_.data(), targets_.data(), grad_scale);
  }
  // Each rank holds its slice's share of the mean gradient; the sum over
  // ranks (fixed rank order) is the global batch's, the same bits on all.
  allreduce_grads();
  double loss_sum = model_.acts().take_loss_sum();
  comm_.allreduce_sum(&loss_sum, 1);

  StepResult r;
  r.loss = loss_sum / static_cast<double>(tokens_per_step_);
  r.grad_norm = grad_norm();
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
    // The update is skipped; the data position still advances so a bad
    // batch is not retried forever.
    r.skipped = true;
    return r;
  }
  const double coef = clip_coefficient(r.grad_norm, grad_clip_);
  if (coef < 1.0) model_.backend().scale_inplace(params.grads(), static_cast<float>(coef));
  optimizer_.step(params, lr);
  return r;
}

double evaluate(ModelInstance& model, const data::EvalBatches& batches, int dp_rank, int dp,
                parallel::Communicator& comm) {
  std::vector<int32_t> tokens(static_cast<size_t>(model.batch() * model.seq_len())), targets(tokens.size());
  double sum = 0;
  for (int64_t j = dp_rank; j < batches.num_batches(); j += dp) {
    batches.fill_batch(j, tokens.data(), targets.data());
    sum += model.forward(tokens.data(), targets.data());
  }
  comm.allreduce_sum(&sum, 1);
  return sum / static_cast<double>(batches.num_batches() * model.batch() * model.seq_len());
}

}  // namespace dyt::trainer
