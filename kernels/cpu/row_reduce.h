// Deterministic reduction over rows: rows are cut into chunks of a fixed size
// (independent of the thread count), each chunk sums its rows serially into
// its own partial, and the partials are then added in chunk order. The bits of
// the result therefore depend only on the data, never on OMP_NUM_THREADS.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dyt::cpu::detail {

inline constexpr int64_t kRowChunk = 32;

struct RowSums {
  std::vector<float> f;   // per-column vectors (dγ, dβ, ...)
  std::vector<double> d;  // scalars (dα, ds, loss), kept in double
};

// body(row_begin, row_end, float* partial_f /*nf, zeroed*/, double* partial_d /*nd, zeroed*/)
template <class Body>
RowSums reduce_row_chunks(int64_t rows, int64_t nf, int64_t nd, Body&& body) {
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<float> pf(chunks * nf, 0.0f);
  std::vector<double> pd(chunks * nd, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c)
    body(c * kRowChunk, std::min(rows, (c + 1) * kRowChunk), pf.data() + c * nf,
         pd.data() + c * nd);

  RowSums out{std::vector<float>(nf, 0.0f), std::vector<double>(nd, 0.0)};
  // Each column is summed over chunks in chunk order; columns are independent.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < nf; ++i)
    for (int64_t c = 0; c < chunks; ++c) out.f[i] += pf[c * nf + i];
  for (int64_t j = 0; j < nd; ++j)
    for (int64_t c = 0; c < chunks; ++c) out.d[j] += pd[c * nd + j];
  return out;
}

}  // namespace dyt::cpu::detail
