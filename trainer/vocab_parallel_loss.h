// The cross-entropy of logits split over the tensor-parallel group by
// vocabulary (Megatron's vocab-parallel cross-entropy): the full logits are
// never gathered, only three numbers per row and rank.
#pragma once

#include <cstdint>

#include "parallel/communicator.h"

namespace dyt::trainer {

// stats: this rank's rows × (max m, Σ exp(l − m), target logit or 0), as
// kernels::Backend::cross_entropy_stats writes them. All-gathers them over
// `tp` and combines each row over the ranks in rank order: M = max m,
// S = Σ s·exp(m − M) (double), loss = log S + M − Σ target logits (one rank
// holds the target; the others add an exact 0). Writes (M, S) per row into
// rows [n, 2] for Backend::cross_entropy_grad and returns the rows' loss sum
// (in row order, double). The same on every rank of the group.
double combine_vocab_parallel(parallel::Communicator& tp, const double* stats, int64_t n,
                              double* rows);

}  // namespace dyt::trainer
