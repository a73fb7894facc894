// The CUDA backend: kernels::Backend on one GPU, with activations and the
// working copy of the weights in BF16 (train.precision BF16) or F32 (the
// parity mode), cuBLASLt GEMMs, flash attention and the fused kernels of
// this folder. Everything is queued on one stream the backend owns; the host
// waits only in download() and synchronize().
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/backend.h"

struct CUstream_st;  // what cudaStream_t points to, without cuda_runtime_api.h here

namespace dyt::cuda {

// No usable GPU: the message says what was found (no driver, no device,
// the device asked for does not exist).
struct NoDeviceError : std::runtime_error {
  using runtime_error::runtime_error;
};

// The backend on device `device` (cudaSetDevice; -1 = the current one).
// Throws NoDeviceError when there is no usable GPU.
std::unique_ptr<kernels::Backend> make_cuda_backend(int device = -1);

// The stream (a cudaStream_t) that a backend made by make_cuda_backend queues
// all its work on, for tools that order or time work beside it (events,
// e.g. bench/cuda/timing_backend.h). Throws std::invalid_argument when
// `backend` is not one.
CUstream_st* stream_of(const kernels::Backend& backend);

// What the backend's GPU offers, for messages and the memory check.
struct DeviceInfo {
  std::string name;
  int sm = 0;  // compute capability, e.g. 90
  size_t free_bytes = 0, total_bytes = 0;
};
// Throws NoDeviceError without a usable GPU.
DeviceInfo device_info(int device = -1);

}  // namespace dyt::cuda
