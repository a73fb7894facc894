#include "trainer/norm_health.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "trainer/param_layout.h"

namespace dyt::trainer {

std::vector<std::string> norm_slot_names(int64_t layers) {
  std::vector<std::string> names;
  for (int64_t l = 0; l < layers; ++l) {
    names.push_back(layer_name(l, "input_layernorm"));
    names.push_back(layer_name(l, "post_attention_layernorm"));
  }
  names.push_back("model.norm");
  return names;
}

std::vector<double> norm_health_partials(const std::vector<double>& probe, int64_t elements_per_slot,
                                         bool counted) {
  if (probe.size() % 2 != 0) throw std::invalid_argument("norm_health_partials: probe size is odd");
  const size_t slots = probe.size() / 2;
  std::vector<double> out(3 * slots, 0.0);
  if (!counted) return out;
  for (size_t s = 0; s < slots; ++s) {
    out[3 * s] = probe[2 * s];
    out[3 * s + 1] = probe[2 * s + 1];
    out[3 * s + 2] = static_cast<double>(elements_per_slot);
  }
  return out;
}

std::vector<NormHealth> norm_health(const std::vector<std::string>& names,
                                    const std::vector<double>& sums) {
  if (sums.size() != 3 * names.size())
    throw std::invalid_argument("norm_health: " + std::to_string(sums.size()) + " sums for " +
                                std::to_string(names.size()) + " norms");
  std::vector<NormHealth> out;
  for (size_t s = 0; s < names.size(); ++s) {
    const double n = sums[3 * s + 2];
    NormHealth h;
    h.name = names[s];
    h.saturated = n > 0 ? sums[3 * s + 1] / n : 0.0;
    h.input_rms = n > 0 ? std::sqrt(sums[3 * s] / n) : 0.0;
    out.push_back(h);
  }
  return out;
}

std::string saturation_warning(const std::vector<NormHealth>& health) {
  int mostly = 0;
  const NormHealth* worst = nullptr;
  for (const NormHealth& h : health) {
    if (h.saturated > kSaturationWarning) ++mostly;
    if (!worst || h.saturated > worst->saturated) worst = &h;
  }
  if (mostly == 0) return "";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%d/%zu norm inputs mostly saturated, |αx| > 3 (worst %s %.0f%%)", mostly,
                health.size(), worst->name.c_str(), 100.0 * worst->saturated);
  return buf;
}

}  // namespace dyt::trainer
