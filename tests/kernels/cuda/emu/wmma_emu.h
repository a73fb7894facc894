// A host model of the nvcuda::wmma subset the attention kernels use
// (kernels/cuda/flash_attention.cu): bf16 m16n16k16 with float accumulators.
// Included by emu.h; <mma.h> itself is empty when compiled as host C++
// (crt/mma.h is guarded by __CUDACC__), so the names do not clash.
//
// Model. CUDA leaves the element→lane mapping of a fragment unspecified, so
// a kernel may only use fragments uniformly (fill, load, store, mma, and x[i]
// loops applied identically to every element). Here every emulated thread
// holds the whole tile in its fragment (num_elements = rows·cols, row-major
// order of the logical matrix), so the warp-collective operations are
// computed by each thread on its own and all 32 lanes agree:
//  * load_matrix_sync: each thread reads the whole tile, honouring ldm and
//    the row/col-major layout (a superset of what one lane reads on a GPU,
//    so unwritten — NaN-poisoned — shared memory anywhere in it shows);
//  * mma_sync: d = a·b + c in fp32, products exact (bf16·bf16 fits in fp32),
//    sums in k order; the tensor cores' internal order and rounding of the
//    sum are unspecified, the tests' bounds cover any order;
//  * store_matrix_sync: each thread writes only the elements its lane owns
//    under the mma.m16n8k16 accumulator layout (row r, column c → lane
//    (r%8)·4 + (c%8)/2), so a read of the stored tile by another lane
//    before a __syncwarp sees the old (poisoned) memory when the reader
//    runs first.
// Checks (abort with a message): ldm a multiple of 16 bytes and the
// pointer 32-byte aligned, as the CUDA documentation requires.
// Not modelled: divergent calls (lanes of a warp passing different
// pointers), which the kernels avoid by construction; register pressure.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

namespace nvcuda::wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

namespace emu_detail {
template <class Use, int M, int N, int K>
struct Dims;
template <int M, int N, int K>
struct Dims<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct Dims<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct Dims<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

inline void check(const void* p, unsigned ldm, size_t esize, const char* what) {
  if ((reinterpret_cast<uintptr_t>(p) & 31u) != 0 || (ldm * esize) % 16 != 0) {
    std::fprintf(stderr,
                 "emu: wmma::%s: pointer %p must be 32-byte aligned and ldm %u (elements of %zu "
                 "bytes) a multiple of 16 bytes\n",
                 what, p, ldm, esize);
    std::abort();
  }
}
inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
}  // namespace emu_detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the wmma model covers m16n16k16 only");

 public:
  using element_type = T;
  static constexpr int rows = emu_detail::Dims<Use, M, N, K>::rows;
  static constexpr int cols = emu_detail::Dims<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[num_elements];
};

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, T v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

// matrix_a / matrix_b: the layout is part of the type.
template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm) {
  static_assert(std::is_same_v<L, row_major> || std::is_same_v<L, col_major>,
                "matrix_a/matrix_b fragments carry their layout");
  emu_detail::check(p, ldm, sizeof(T), "load_matrix_sync");
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = std::is_same_v<L, row_major> ? p[size_t(r) * ldm + c]
                                                          : p[size_t(c) * ldm + r];
}

// Accumulators: the layout is an argument.
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p,
                             unsigned ldm, layout_t layout) {
  emu_detail::check(p, ldm, sizeof(float), "load_matrix_sync");
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
}

// The lane (of the calling thread's warp) that stores element (r, c).
int wmma_lane();
template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f,
                              unsigned ldm, layout_t layout) {
  emu_detail::check(p, ldm, sizeof(float), "store_matrix_sync");
  const int lane = wmma_lane();
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) {
      if ((r % 8) * 4 + (c % 8) / 2 != lane) continue;
      (layout == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[r * N + c];
    }
}

template <int M, int N, int K, class TA, class LA, class TB, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c) {
  float fa[M * K], fb[K * N], out[M * N];
  for (int i = 0; i < M * K; ++i) fa[i] = emu_detail::to_float(a.x[i]);
  for (int i = 0; i < K * N; ++i) fb[i] = emu_detail::to_float(b.x[i]);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s += fa[i * K + k] * fb[k * N + j];
      out[i * N + j] = s;
    }
  for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
}

}  // namespace nvcuda::wmma

// The lane of the running emulated thread (linear index in the block mod 32).
inline int nvcuda::wmma::wmma_lane() {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return t % 32;
}
