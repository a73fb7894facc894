// The backend a run asks for (train.device, train.precision), checked before
// any work: a CUDA run in a build without CUDA, or on a machine without a
// usable GPU, is a config error that says what was found.
#pragma once

#include <memory>

#include "configs/config.h"
#include "kernels/backend.h"

namespace dyt::trainer {

// Throws config::ConfigError naming train.device or train.precision.
std::unique_ptr<kernels::Backend> make_backend(const config::TrainConfig& t);

// The dtype of activations and of the working copy of the weights.
kernels::DType compute_dtype(const config::TrainConfig& t);

}  // namespace dyt::trainer
