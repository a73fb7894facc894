// The DyT health signal's host side (trainer/norm_health.h): slot names,
// the rank partials (a tp rank that is not counted adds nothing), the
// fractions and RMS from summed partials, the metrics line and the progress
// line's warning.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "trainer/metrics.h"
#include "trainer/norm_health.h"

namespace dyt::trainer {
namespace {

TEST(NormHealth, SlotNamesFollowTheModelsOrder) {
  EXPECT_EQ(norm_slot_names(2),
            (std::vector<std::string>{"model.layers.0.input_layernorm",
                                      "model.layers.0.post_attention_layernorm",
                                      "model.layers.1.input_layernorm",
                                      "model.layers.1.post_attention_layernorm", "model.norm"}));
}

TEST(NormHealth, PartialsOfTwoRanksGiveTheWholeBatchsFractionAndRms) {
  // Two ranks, one slot each of 100 elements: (Σx², saturated) = (400, 10) and (100, 30).
  const std::vector<double> a = norm_health_partials({400, 10}, 100, true);
  const std::vector<double> b = norm_health_partials({100, 30}, 100, true);
  EXPECT_EQ(a, (std::vector<double>{400, 10, 100}));
  EXPECT_EQ(norm_health_partials({100, 30}, 100, false), (std::vector<double>{0, 0, 0}));
  const std::vector<NormHealth> h = norm_health({"x"}, {a[0] + b[0], a[1] + b[1], a[2] + b[2]});
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].name, "x");
  EXPECT_DOUBLE_EQ(h[0].saturated, 0.2);
  EXPECT_DOUBLE_EQ(h[0].input_rms, std::sqrt(2.5));
  EXPECT_THROW(norm_health({"x", "y"}, {1, 2, 3}), std::invalid_argument);
  EXPECT_THROW(norm_health_partials({1, 2, 3}, 10, true), std::invalid_argument);
}

TEST(NormHealth, TheProgressLineWarnsWhenMostInputsOfALayerSaturate) {
  StepMetrics m;
  m.step = 10;
  m.loss = 5;
  EXPECT_EQ(progress_line(m, 600, 60).find("WARNING"), std::string::npos);
  m.norm_health = {{"model.layers.0.input_layernorm", 0.5, 1.0},
                   {"model.layers.0.post_attention_layernorm", 0.88, 7.0},
                   {"model.norm", 0.51, 9.0}};
  const std::string line = progress_line(m, 600, 60);
  EXPECT_NE(line.find(" | WARNING 2/3 norm inputs mostly saturated, |αx| > 3 "
                      "(worst model.layers.0.post_attention_layernorm 88%)"),
            std::string::npos)
      << line;
  m.norm_health[1].saturated = 0.5, m.norm_health[2].saturated = 0.1;  // 50% is not "mostly"
  EXPECT_EQ(progress_line(m, 600, 60).find("WARNING"), std::string::npos);
}

}  // namespace
}  // namespace dyt::trainer
