#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace dyt::trainer {

double learning_rate(int64_t step, const config::TrainConfig& t) {
  if (step < 0)
    throw std::invalid_argument("learning_rate: step must be >= 0, got " + std::to_string(step));
  const int64_t warmup = config::warmup_steps(t);
  const double peak = t.lr();
  if (step < warmup) {
    const double r = static_cast<double>(step + 1) / static_cast<double>(warmup);
    return peak * r * r;
  }
  const double floor = peak * t.min_lr_ratio();
  const double span = static_cast<double>(std::max<int64_t>(1, t.steps() - warmup));
  const double progress = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace dyt::trainer
