#include "trainer/vocab_parallel_loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dyt::trainer {

double combine_vocab_parallel(parallel::Communicator& tp, const double* stats, int64_t n,
                              double* rows) {
  const int p = tp.size();
  const size_t per_rank = static_cast<size_t>(3 * n);
  std::vector<double> all(per_rank * static_cast<size_t>(p));
  tp.allgather(stats, all.data(), per_rank);
  double loss = 0;
  for (int64_t r = 0; r < n; ++r) {
    const auto at = [&](int rank, int k) { return all[static_cast<size_t>(rank) * per_rank + 3 * r + k]; };
    double m = at(0, 0);
    for (int k = 1; k < p; ++k) m = std::max(m, at(k, 0));
    double s = 0, target = 0;
    for (int k = 0; k < p; ++k) {
      s += at(k, 1) * std::exp(at(k, 0) - m);
      target += at(k, 2);
    }
    rows[2 * r] = m;
    rows[2 * r + 1] = s;
    loss += std::log(s) + m - target;
  }
  return loss;
}

}  // namespace dyt::trainer
