// sgemm whose bits do not depend on the thread count.
//
// A multi-threaded OpenBLAS sgemm returns different bits on 1 and 2 threads
// (measured on Debian's OpenBLAS 0.3.21: every shape of the tiny model; the
// threads get different M/N ranges and the kernels handle tails and blocks
// differently). So the output C[M, N] is cut into a grid of tiles whose sizes
// depend only on (M, N), never on the thread count; OpenMP hands out whole
// tiles, and each tile is one single-threaded sgemm over the full K. Every
// element of C is then computed by the same call on the same data whatever
// the thread count.
//
// Single-threaded tiles: the OpenMP build of OpenBLAS runs one thread inside
// an active parallel region (omp_in_parallel()) and omp_get_max_threads() = 1
// threads outside one; the pthread build is told openblas_set_num_threads(1)
// on first use. tests/kernels/test_linear_determinism.cc checks the bits on
// 1, 2 and 3 threads.
#pragma once

#include <cblas.h>

#include <cstdint>

namespace dyt::cpu::detail {

struct TileGrid {
  int64_t tile_m, tile_n;  // tile edge along M and N (the last tile may be smaller)
  int64_t rows, cols;      // tiles along M and N
};

// The grid for an M×N output: edges of at most kMaxTile, halved (the longer
// first) until there are kMinTiles tiles or the edges reach kMinTile. A
// function of (M, N) only.
TileGrid tile_grid(int64_t m, int64_t n);

// C = alpha·op(A)·op(B) + beta·C, row-major, as cblas_sgemm(CblasRowMajor, ...),
// computed tile by tile as above. op(A) is M×K, op(B) is K×N.
void sgemm_tiled(CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int64_t m, int64_t n,
                 int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace dyt::cpu::detail
