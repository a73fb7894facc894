// Deterministic parameter initialisation. Every element's value is a pure
// function of (seed, tensor name, element index), so a tensor-parallel shard
// or a resharded run initialises exactly the slice the single-process run has.
#pragma once

#include <cstdint>

#include "configs/config.h"
#include "trainer/param_layout.h"

namespace dyt::trainer {

// Matrices and embeddings ~ N(0, init_std²); γ = 1; α = α₀ of its block kind
// (config or the width-aware rule); β = 0; the embedding scale = sqrt(d).
void init_parameters(const ParamLayout& layout, const config::ModelConfig& model, uint64_t seed,
                     float* params);

// A standard normal draw that depends only on (key, index): counter-based.
double counter_normal(uint64_t key, uint64_t index);

}  // namespace dyt::trainer
