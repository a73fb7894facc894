#include "trainer/device_backend.h"

#include "kernels/cpu/cpu_backend.h"

namespace dyt::trainer {

std::unique_ptr<kernels::Backend> make_backend(const config::TrainConfig& t) {
  switch (t.device()) {
    case config::CPU:
      if (t.precision() != config::FP32)
        throw config::ConfigError("train.precision: the CPU backend computes in FP32; set "
                                  "train.precision=FP32 (BF16 needs train.device=CUDA)");
      return kernels::make_cpu_backend();
    case config::CUDA:
      throw config::ConfigError("train.device: CUDA: this build of dyt-train has no CUDA backend "
                                "yet; set train.device=CPU");
    default:
      throw config::ConfigError("train.device: must be CPU or CUDA");
  }
}

kernels::DType compute_dtype(const config::TrainConfig& t) {
  return t.precision() == config::BF16 ? kernels::DType::BF16 : kernels::DType::F32;
}

}  // namespace dyt::trainer
