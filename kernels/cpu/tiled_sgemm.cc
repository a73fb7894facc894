#include "kernels/cpu/tiled_sgemm.h"

#include <algorithm>

// OpenBLAS's threading controls, weak so that another CBLAS still links.
extern "C" {
__attribute__((weak)) int openblas_get_parallel(void);
__attribute__((weak)) void openblas_set_num_threads(int);
}

namespace dyt::cpu::detail {
namespace {

// Each tile packs its own operands, a cost of about 1/edge of its arithmetic,
// so edges stay large (≤ 256, ≥ 32); 8 tiles keep 2-8 threads busy even on
// the tiny model's 128×128 weight gradients. Not tuned beyond checking that a
// training step costs the same CPU time as before (docs/benchmarks.md).
// Changing these changes the bits of every result.
constexpr int64_t kMaxTile = 256, kMinTile = 32, kMinTiles = 8;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The pthread build of OpenBLAS would start its own threads inside each
// tile (as many as OPENBLAS_NUM_THREADS or OMP_NUM_THREADS say); the OpenMP
// build needs nothing (see the header). openblas_get_parallel(): 0 sequential,
// 1 pthreads, 2 OpenMP.
void make_blas_single_threaded() {
  static const bool done = [] {
    if (openblas_get_parallel && openblas_set_num_threads && openblas_get_parallel() == 1)
      openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

}  // namespace

TileGrid tile_grid(int64_t m, int64_t n) {
  TileGrid g{std::max<int64_t>(1, std::min(m, kMaxTile)),
             std::max<int64_t>(1, std::min(n, kMaxTile)), 0, 0};
  for (;;) {
    g.rows = ceil_div(m, g.tile_m);
    g.cols = ceil_div(n, g.tile_n);
    if (g.rows * g.cols >= kMinTiles) break;
    int64_t* edge = g.tile_m >= g.tile_n ? &g.tile_m : &g.tile_n;
    if (*edge / 2 < kMinTile) edge = edge == &g.tile_m ? &g.tile_n : &g.tile_m;
    if (*edge / 2 < kMinTile) break;
    *edge = ceil_div(*edge, 2);
  }
  return g;
}

void sgemm_tiled(CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int64_t m, int64_t n,
                 int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  make_blas_single_threaded();
  const TileGrid g = tile_grid(m, n);
  const bool ta = trans_a != CblasNoTrans, tb = trans_b != CblasNoTrans;
  // No if() clause: in a region made inactive by one, OpenBLAS's OpenMP build
  // would thread each call by omp_get_max_threads() again.
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < g.rows * g.cols; ++t) {
    const int64_t m0 = (t / g.cols) * g.tile_m, n0 = (t % g.cols) * g.tile_n;
    const int64_t tm = std::min(g.tile_m, m - m0), tn = std::min(g.tile_n, n - n0);
    // Row m0 of op(A) and column n0 of op(B), in their stored layouts.
    const float* at = a + (ta ? m0 : m0 * lda);
    const float* bt = b + (tb ? n0 * ldb : n0);
    cblas_sgemm(CblasRowMajor, trans_a, trans_b, static_cast<int>(tm), static_cast<int>(tn),
                static_cast<int>(k), alpha, at, static_cast<int>(lda), bt, static_cast<int>(ldb),
                beta, c + m0 * ldc + n0, static_cast<int>(ldc));
  }
}

}  // namespace dyt::cpu::detail
