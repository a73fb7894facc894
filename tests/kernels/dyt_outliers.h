// DyT's dα on inputs with large outliers (|αx| up to 1e4 at α = 0.05, as
// LLaMA's massive activations under a 70B-like α₀), against float64 within
// the float path's own error budget: one construction for the CPU op's test
// (tests/kernels/test_norms.cc) and the CUDA kernels' (tests/kernels/cuda).
//
// Budget per element, w = dy·γ·x: |w·s| times the relative error of the
// float slope s (kernels/elementwise.h, dyt_value_and_slope: the rounding of
// u = αx moves s by 2|u|·2⁻²⁴ relative, its evaluation adds 5·2⁻²³) and of
// three roundings of dy·γ·s; where the float slope is 0 (|u| ≥ 43) the error
// is the true slope; the double sum adds nothing comparable; the final cast
// to float 2⁻²⁴·|dα|. A slope floor of 2⁻²¹ on the elements where tanh rounds
// to ±1 (the old tanh_f32's 1 − t²) would add Σ w·2⁻²¹ (floor_bias), which
// the tests assert exceeds the budget, so they can fail.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace dyt::test_outliers {

// x: 4% outliers with |αx| log-uniform in [8, 1e4], the rest |x| < 60, either sign.
inline std::vector<float> outlier_inputs(int64_t n, float alpha, std::mt19937& gen) {
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<float> x(n);
  for (float& v : x) {
    const bool outlier = uni(gen) < 0.04;
    const double mag =
        outlier ? std::exp(std::log(8.0) + (std::log(1e4) - std::log(8.0)) * uni(gen)) / alpha
                : 60.0 * uni(gen);
    v = static_cast<float>(uni(gen) < 0.5 ? -mag : mag);
  }
  return x;
}

// The outliers' gradient pulls one way (dy·γ·x > 0), as a massive
// activation's does step after step, so a bias there adds up.
inline void align_outlier_gradients(const std::vector<float>& x, const std::vector<float>& g,
                                    float alpha, std::vector<float>& dy) {
  const size_t d = g.size();
  for (size_t i = 0; i < x.size(); ++i)
    if (std::fabs(alpha * x[i]) > 8.0f && dy[i] * g[i % d] * x[i] < 0.0f) dy[i] = -dy[i];
}

struct AlphaReference {
  double want = 0.0;        // Σ dy·γ·x·(1 − tanh²(αx)) in float64
  double budget = 0.0;      // the float path's error budget (above)
  double floor_bias = 0.0;  // what a 2⁻²¹ slope floor would add
  int64_t saturated = 0;    // elements where tanh(αx) rounds to ±1 in float
};

inline AlphaReference alpha_reference(const std::vector<float>& x, const std::vector<float>& dy,
                                      const std::vector<float>& g, float alpha) {
  const size_t d = g.size();
  AlphaReference r;
  for (size_t i = 0; i < x.size(); ++i) {
    const double u = static_cast<double>(alpha) * x[i], t = std::tanh(u), s = 1.0 - t * t;
    const double w = static_cast<double>(dy[i]) * g[i % d] * x[i];
    r.want += w * s;
    const double rel = 2 * std::fabs(u) * 0x1p-24 + 5 * 0x1p-23 + 3 * 0x1p-24;
    r.budget += std::fabs(w) * (std::fabs(u) >= 43 ? s : s * rel);
    if (std::fabs(u) >= 0x1.205968p+3) r.floor_bias += w * 0x1p-21, ++r.saturated;  // 9.0109
  }
  r.budget += 0x1p-24 * std::fabs(r.want);  // the final cast to float
  return r;
}

}  // namespace dyt::test_outliers
