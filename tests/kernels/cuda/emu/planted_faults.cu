// Kernels with planted faults for the emulator's checks (planted_faults.h).
// Written as CUDA and rewritten by to_host.py like the real kernels, so the
// checks are shown on the same machinery that runs them.
#include "tests/kernels/cuda/emu/planted_faults.h"

namespace emu_planted {
namespace {

__global__ void shift_kernel(const float* in, float* out, bool barrier) {
  __shared__ float s[1024];
  const int t = threadIdx.x;
  s[t] = in[t];
  if (barrier) __syncthreads();
  out[t] = t > 0 ? s[t - 1] : 0.0f;
}

__global__ void block_sum_kernel(const float* in, float* out, int n, bool read_all_slots) {
  __shared__ float partial[32];
  const int t = threadIdx.x;
  float v = in[blockIdx.x * n + t];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (t % 32 == 0) partial[t / 32] = v;
  __syncthreads();
  if (t == 0) {
    const int slots = read_all_slots ? 32 : n / 32;
    float s = 0.0f;
    for (int w = 0; w < slots; ++w) s += partial[w];
    out[blockIdx.x] = s;
  }
}

__global__ void scale_kernel(const float* in, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 2.0f * in[i];
}

}  // namespace

void shift_through_shared(const float* in, float* out, int n, bool barrier) {
  shift_kernel<<<1, n>>>(in, out, barrier);
}
void block_sums(const float* in, float* out, int n, int blocks, bool read_all_slots) {
  block_sum_kernel<<<blocks, n>>>(in, out, n, read_all_slots);
}
void scale_by_two(const float* in, float* out, int n) {
  scale_kernel<<<(n + 255) / 256, 256>>>(in, out, n);
}

}  // namespace emu_planted
