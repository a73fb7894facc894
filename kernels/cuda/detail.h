// Host-side internals of the CUDA ops: argument checks, launch geometry (the
// one place that decides the reduction layout), device facts and the cached
// workspace. Plain C++, shared by runtime.cc and the .cu files.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_ops.h"

// ---- tuning knobs (compile-time; set with -DDYT_CUDA_TUNING="A=1;B=2" in CMake,
// bench/cuda/sweep.sh times several builds in one go). They change speed and
// the reduction layout, never the function computed.
#ifndef DYT_CUDA_FWD_ROWS  // rows in flight per thread, DyT/DyISRU forward
#define DYT_CUDA_FWD_ROWS 4
#endif
#ifndef DYT_CUDA_BWD_ROWS  // rows in flight per thread, DyT/DyISRU backward
#define DYT_CUDA_BWD_ROWS 4
#endif
#ifndef DYT_CUDA_ROW_THREADS  // most threads across one row in a DyT/DyISRU block (multiple of 32, <= 512)
#define DYT_CUDA_ROW_THREADS 512
#endif
#ifndef DYT_CUDA_BWD_THREADS_PER_SM  // threads per SM the persistent backward grids aim for
#define DYT_CUDA_BWD_THREADS_PER_SM 512
#endif
#ifndef DYT_CUDA_FWD_MIN_BLOCKS  // __launch_bounds__ min resident blocks, DyT/DyISRU forward
#define DYT_CUDA_FWD_MIN_BLOCKS 1   // (2 caps registers at 64: no spills with FWD_ROWS=2)
#endif
#ifndef DYT_CUDA_BWD_MIN_BLOCKS  // the same for the backward (2 spills in bf16 even with BWD_ROWS=2)
#define DYT_CUDA_BWD_MIN_BLOCKS 1
#endif

namespace dyt::cuda::detail {

// ---- argument checks (std::invalid_argument "<op>: <what>") -----------------
[[noreturn]] void fail(const char* op, const std::string& what);
inline void require(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(op, what);
}
inline int64_t last_dim(const Tensor& t) { return t.rank == 0 ? 1 : t.shape[t.rank - 1]; }
inline int64_t row_count(const Tensor& t) {
  const int64_t w = last_dim(t);
  return w == 0 ? 0 : t.numel() / w;
}
// An activation: a CUDA tensor of dtype F32 or BF16 (returned).
DType act_dtype(const char* op, const char* name, const Tensor& t);
// An activation of the given dtype viewed as [rows, d].
void require_act(const char* op, const char* name, const Tensor& t, DType dt, int64_t rows,
                 int64_t d);
// An F32 CUDA tensor of n elements; rank 1 when `vector` (γ, β, their grads).
void require_f32(const char* op, const char* name, const Tensor& t, int64_t n, bool vector);

// ---- device facts -------------------------------------------------------------
int current_device();
int sm_count(int device);  // cached per device

// ---- launch geometry ------------------------------------------------------------
// Elements per 16-byte vector for an activation of this size.
inline int vec_width(DType dt) { return dt == DType::BF16 ? 8 : 4; }
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// DyT / DyISRU: a block is tx threads across the row (each owns one vector
// column) × ty rows; the grid is col_tiles × row_blocks. Narrow rows stack
// ty > 1 rows in a block.
struct ColPlan {
  int tx = 32, ty = 1, col_tiles = 1;
};
ColPlan col_plan(int64_t d, int vec);
// Row blocks of the backward (persistent over rows): fixed by the device's
// multiprocessor count and the shape only.
int64_t col_backward_row_blocks(const ColPlan& p, int64_t rows, int sms);
// Row blocks of the forward (one pass of kFwdRowsPerThread rows per thread).
int64_t col_forward_row_blocks(const ColPlan& p, int64_t rows);

// RMSNorm: a row is owned by tx threads (a "row team") which hold nv vectors
// each in registers (nv = 0: the row is streamed twice instead); ty teams per block.
struct RowPlan {
  int tx = 32, ty = 1, nv = 2;
};
RowPlan row_plan(int64_t d, int vec);
int64_t row_backward_blocks(const RowPlan& p, int64_t rows, int sms);

inline constexpr int kFwdRowsPerThread = DYT_CUDA_FWD_ROWS;
inline constexpr int kBwdRowsPerThread = DYT_CUDA_BWD_ROWS;
inline constexpr int kRowThreads = DYT_CUDA_ROW_THREADS;
inline constexpr int kBwdThreadsPerSm = DYT_CUDA_BWD_THREADS_PER_SM;
static_assert(kRowThreads % 32 == 0 && kRowThreads >= 32 && kRowThreads <= 512);

// Workspace layout of a backward: double alpha partials first (n_alpha), then
// float partials [n_partial_rows, nf], 16-byte aligned.
struct WsLayout {
  int64_t n_alpha = 0, n_partial_rows = 0, nf = 0;
  size_t alpha_bytes() const { return (static_cast<size_t>(n_alpha) * 8 + 15) / 16 * 16; }
  size_t bytes() const { return alpha_bytes() + static_cast<size_t>(n_partial_rows * nf) * 4; }
};

// The caller's workspace if given (checked against need), else the cache for
// (current device, stream), grown in stream order.
void* workspace(const char* op, size_t need, cudaStream_t stream, const Workspace* ws);

// Second stage of the backward reductions (dyt_kernels.cu): part is
// [n_rows, nf] fp32 partials with columns [dγ | dβ] (nf = d or 2d); each
// column is summed over the rows in a fixed order, in double, and added to its
// gradient; the n_alpha double partials of dα likewise when dalpha is non-null.
void launch_finalize(const float* part, int64_t n_rows, int64_t nf, int64_t d, float* dgamma,
                     float* dbeta, const double* apart, int64_t n_alpha, float* dalpha,
                     cudaStream_t stream);

}  // namespace dyt::cuda::detail
