// Where each DyT/DyISRU layer's input sits on its S-curve: the fraction of
// elements with |α·x| > kSaturationThreshold and the input's RMS. Past 3,
// tanh′ < 0.01 (DyISRU's slope is 0.03 there): the layer passes little more
// than a sign, and its gradient to the residual stream vanishes. A run whose
// residual stream outgrows α saturates most inputs (issue 12); this makes it
// visible in the metrics and the progress line.
//
// The statistics cover every micro-batch of a logging step, at the cost of
// one extra read of each norm input every log_every steps. Each rank
// measures the rows it holds; the sums run over the dp group and, under
// sequence parallelism, the tp group (without it the tp ranks hold the same
// rows and only tp rank 0's count), so every layout reports the global
// batch's, as one process would.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dyt::trainer {

inline constexpr float kSaturationThreshold = 3.0f;
// A layer counts as mostly saturated past this fraction (the progress warning).
inline constexpr double kSaturationWarning = 0.5;

struct NormHealth {
  std::string name;        // the norm's Hugging Face prefix, e.g. model.layers.0.input_layernorm
  double saturated = 0;    // fraction of input elements with |α·x| > kSaturationThreshold
  double input_rms = 0;    // sqrt(mean x²) of the input
};

// The norm slots in the order Model::probe_norm_inputs writes them: layer l's
// attention norm at 2l, its FFN norm at 2l + 1, the final norm last.
std::vector<std::string> norm_slot_names(int64_t layers);

// From the probe's (Σ x², saturated count) per slot on this rank, the
// per-slot sums (Σ x², count, elements) to add over ranks; `counted`
// false (a tp rank other than 0 without sequence parallelism) gives zeros.
std::vector<double> norm_health_partials(const std::vector<double>& probe, int64_t elements_per_slot,
                                         bool counted);
// The summed partials as NormHealth per slot (names: norm_slot_names).
std::vector<NormHealth> norm_health(const std::vector<std::string>& names,
                                    const std::vector<double>& sums);

// "" when no layer is mostly saturated; else e.g.
// "7/9 norm inputs mostly saturated, |αx| > 3 (worst
// model.layers.2.input_layernorm 88%)".
std::string saturation_warning(const std::vector<NormHealth>& health);

}  // namespace dyt::trainer
