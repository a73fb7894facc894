// The learning-rate schedule of the DyT paper's LLaMA recipe: a quadratic
// warmup to the peak, then a cosine decay to a floor.
//
// For optimizer step index s = 0, 1, …, steps − 1 (the step about to be
// taken; pass the number of steps already taken), with
//   W      = config::warmup_steps(t)   (train.warmup_steps, or min(2000, steps/20) when -1)
//   lr     = t.lr()                    (peak)
//   lr_min = t.lr() · t.min_lr_ratio()
//
//   s <  W :  lr · ((s + 1) / W)²                                   quadratic ramp;
//                                                                   step W−1 takes the peak
//   s >= W :  p = clamp((s − W) / max(1, steps − W), 0, 1)
//             lr_min + (lr − lr_min) · ½ · (1 + cos(π · p))          cosine, lr at s = W,
//                                                                   lr_min at s = steps
//
// Steps past `steps` stay at lr_min. With W = 0 there is no warmup and step 0
// takes the peak. The value depends only on (s, config): resuming from a
// checkpoint at step k gives the same rates as an uninterrupted run.
#pragma once

#include <cstdint>

#include "configs/config.h"

namespace dyt::trainer {

// Learning rate for optimizer step `step` (0-based). Throws
// std::invalid_argument when step < 0.
double learning_rate(int64_t step, const config::TrainConfig& t);

}  // namespace dyt::trainer
