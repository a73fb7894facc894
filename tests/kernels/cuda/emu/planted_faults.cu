// Kernels with planted faults for the emulator's checks (planted_faults.h).
// Written as CUDA and rewritten by to_host.py like the real kernels, so the
// checks are shown on the same machinery that runs them.
#include <cuda_bf16.h>
#include <mma.h>

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

__global__ void shift_warp_kernel(const float* in, float* out, int n, bool block_barrier) {
  __shared__ float s[1024];
  const int t = threadIdx.x;
  s[t] = in[t];
  if (block_barrier) __syncthreads();
  else __syncwarp();
  out[t] = s[(t + 32) % n];
}

struct WmmaTiles {
  alignas(32) __nv_bfloat16 a[256];
  alignas(32) __nv_bfloat16 b[256];
  alignas(32) float c[256];
};

__global__ void wmma_kernel(const float* a, const float* b, float* c, unsigned lda, bool sync) {
  using namespace nvcuda;
  __shared__ WmmaTiles sm;
  const int t = threadIdx.x;  // one warp
  for (int i = t; i < 256; i += 32) {
    sm.a[i] = __float2bfloat16_rn(a[i]);
    sm.b[i] = __float2bfloat16_rn(b[i]);
  }
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::fill_fragment(fc, 0.0f);
  wmma::load_matrix_sync(fa, sm.a, lda);
  wmma::load_matrix_sync(fb, sm.b, 16);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(sm.c, fc, 16, wmma::mem_row_major);
  if (sync) __syncwarp();
  for (int i = t; i < 256; i += 32) c[i] = sm.c[i];
}

}  // namespace

void shift_across_warps(const float* in, float* out, int n, bool block_barrier) {
  shift_warp_kernel<<<1, n>>>(in, out, n, block_barrier);
}
void wmma_product(const float* a, const float* b, float* c, unsigned lda, bool sync) {
  wmma_kernel<<<1, 32>>>(a, b, c, lda, sync);
}

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
