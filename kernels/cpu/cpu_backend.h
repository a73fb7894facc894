// The CPU backend: fp32 on host memory through the ops of kernels/cpu_ops.h.
// It is the reference the CUDA backend is tested against, and what the
// parity tests hold to PyTorch.
#pragma once

#include <memory>

#include "kernels/backend.h"

namespace dyt::kernels {

std::unique_ptr<Backend> make_cpu_backend();

// One process-wide CPU backend, for host-only code and tests (it holds no
// state besides what it allocates for callers).
Backend& cpu_backend();

}  // namespace dyt::kernels
