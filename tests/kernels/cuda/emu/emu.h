// A host emulator of the CUDA subset the norm kernels use, so that machines
// without a GPU (developers' and CI's, here nearly all of them) still run the
// kernels' own source against the CPU reference. Force-included (-include)
// when the .cu files, rewritten by to_host.py, compile as plain C++.
//
// Model: one block at a time, in grid order; its threads are coroutines
// (ucontext), each run until it exits or reaches __syncthreads, which waits
// for the whole block. Within each barrier interval the threads run in index
// order, reversed, or shuffled (emu_options.h: a missing barrier shows only
// when a reader runs before its writer). Warp shuffles are block-wide
// exchanges, which is exact when every thread of the block calls them in the
// same order, as these kernels do. __syncwarp is a barrier of one warp:
// within a block barrier interval the warps run one after another (in the
// order their first thread has in the chosen thread order), each through all
// of its __syncwarp intervals, so a read of another warp's shared-memory
// writes guarded only by __syncwarp sees stale data in one of the orders.
// Device memory is host memory with a
// PROT_NONE page after each allocation (emu_runtime.cc), so reading or
// writing past its end faults.
//
// Checks beyond the results: every __shared__ array is filled with NaN bytes
// at each block's start (to_host.py registers each declaration; a
// __shared__ that it did not rewrite is a compile error here), and every
// pointer argument of a launch must lie in a live device allocation (a host
// pointer aborts with the launch site, kernel and argument).
//
// What it checks: indexing, coverage of every output element, tails, grid
// strides, the reduction layout and its order, barriers within a block,
// reads of shared memory nobody wrote, the host-side geometry and argument
// handling. What it cannot: races between blocks, the memory model, timing,
// and device intrinsics other than the one the shared math uses:
// kernels/elementwise.h's GPU branch (the hardware reciprocal) is compiled
// here too (DYT_EMULATE_DEVICE_MATH), through a model of its error.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#include "tests/kernels/cuda/emu/emu_options.h"

// to_host.py rewrites each `__shared__ T name[...];` into a static (one block
// runs at a time, so a static is that block's shared memory) followed by
// ::emu::shared_decl(name), which poisons it once per block. Any __shared__
// left over was not registered, so it may not compile.
#undef __shared__
#define __shared__ _Pragma("GCC error \"__shared__ outside a file rewritten by to_host.py: its memory would not be poisoned\"")
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __forceinline__
#define __forceinline__ inline

namespace emu {

extern uint3 g_thread, g_block;
extern dim3 g_block_dim, g_grid_dim;
void syncthreads();
// __syncwarp: a barrier of the calling thread's warp only (see run()).
void syncwarp();
// Every thread deposits v; returns the value deposited by thread `src`
// (linear index in the block).
double exchange(double v, int src);

struct Cfg {
  dim3 grid, block;
  Cfg(dim3 g, dim3 b, size_t = 0, cudaStream_t = nullptr) : grid(g), block(b) {}
};
void run(const Cfg& cfg, const std::function<void()>& body);

// Called by every thread that reaches a __shared__ declaration: the first in
// each block fills the array with all-ones bytes (when poisoning is on).
void shared_decl(void* p, size_t bytes);
template <class V>
inline void shared_decl(V& v) {
  shared_decl(static_cast<void*>(&v), sizeof v);
}

// Aborts with the launch site, the kernel and the argument's position unless
// p is null or lies in a live allocation (when the check is on).
void check_device_pointer(const char* site, const char* kernel, int index, const void* p);
template <class T>
inline void check_argument(const char* site, const char* kernel, int index, const T& a) {
  if constexpr (std::is_pointer_v<T>) check_device_pointer(site, kernel, index, a);
}

// to_host.py's rewrite of `kernel<<<grid, block, smem, stream>>>(args)`.
template <class F, class... A>
void launch(const char* site, const char* kernel_name, F* kernel, Cfg cfg, A... args) {
  int index = 0;
  (check_argument(site, kernel_name, index++, args), ...);
  run(cfg, [=]() { kernel(args...); });
}

}  // namespace emu

#define threadIdx (::emu::g_thread)
#define blockIdx (::emu::g_block)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::syncwarp(); }
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return static_cast<T>(emu::exchange(static_cast<double>(v), t ^ lane_mask));
}

// nvcuda::wmma (bf16 m16n16k16, float accumulators) for the attention kernels.
#include "tests/kernels/cuda/emu/wmma_emu.h"
