// The shared elementwise math (kernels/elementwise.h) against double
// precision, and the division the CUDA kernels use against IEEE division.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/elementwise.h"

namespace dyt::kernels {
namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
// A fixed scramble of i (splitmix64's finalizer): inputs that look random but
// are the same on every run.
uint64_t mix(uint64_t i) {
  i += 0x9e3779b97f4a7c15ull;
  i = (i ^ (i >> 30)) * 0xbf58476d1ce4e5b9ull;
  i = (i ^ (i >> 27)) * 0x94d049bb133111ebull;
  return i ^ (i >> 31);
}
// A float with a random significand and the given binary exponent.
float with_exponent(uint64_t h, int e) {
  return std::ldexp(from_bits(0x3f800000u | static_cast<uint32_t>(h & 0x7fffffu)), e);
}

// The GPU's div_f32 seeds div_from_reciprocal with the hardware reciprocal,
// which is within 1 ulp of 1/b: the float just below, at or just above the
// correctly rounded one. For every significand of b (the result scales
// exactly with b's exponent while everything stays normal), with each of the
// three seeds, the quotient must be the IEEE one, bit for bit, for a = 1
// (DyISRU's slope) and for numerators with random significands — with one
// known exception: b = 2 − 2⁻²³ (all significand bits set), where 1/b lies
// just above a midpoint and the Newton step from the low seed rounds the tie
// down; there the quotient may be 1 ulp off.
TEST(Division, FromReciprocalIsIeeeForEverySignificand) {
  int64_t checked = 0, wrong = 0;
  float first_b = 0, first_a = 0;
  for (uint32_t m = 0; m < (1u << 23); ++m) {
    const float b = from_bits(0x3f800000u | m);
    const float rn = 1.0f / b;
    const float seeds[3] = {std::nextafter(rn, 0.0f), rn, std::nextafter(rn, 2.0f)};
    const uint64_t h = mix(m);
    const float numerators[3] = {1.0f, with_exponent(h, 0), with_exponent(h >> 23, -7)};
    for (float r0 : seeds) {
      for (float a : numerators) {
        ++checked;
        const float got = div_from_reciprocal(a, b, r0), want = a / b;
        if (m == 0x7fffffu) {
          EXPECT_LE(std::fabs(got - want), std::fabs(std::nextafter(want, 0.0f) - want))
              << "a = " << a << ", b = " << b << ", seed " << r0;
        } else if (to_bits(got) != to_bits(want)) {
          if (wrong++ == 0) first_b = b, first_a = a;
        }
      }
    }
  }
  EXPECT_EQ(wrong, 0) << "of " << checked << " quotients; first at a = " << first_a
                      << ", b = " << first_b;
}

// The divisors and numerators the activations give it, across their binades:
// tanh's denominator q ∈ [4.9e-3, 0.91] with numerators c·p of either sign,
// and DyISRU's sqrt(1+u²) ∈ [1, 2^20] with |u| ≤ 2^20.
TEST(Division, FromReciprocalIsIeeeOverTheActivationsRanges) {
  int64_t wrong = 0;
  for (uint64_t i = 0; i < 4'000'000; ++i) {
    const uint64_t h = mix(i);
    const bool tanh_case = (h >> 63) != 0;
    const float b = tanh_case ? with_exponent(h, -8 + static_cast<int>((h >> 23) % 8))
                              : with_exponent(h, static_cast<int>((h >> 23) % 21));
    const float a_mag = tanh_case ? with_exponent(h >> 28, -19 + static_cast<int>((h >> 51) % 20))
                                  : with_exponent(h >> 28, -20 + static_cast<int>((h >> 51) % 41));
    const float a = ((h >> 62) & 1) ? -a_mag : a_mag;
    const float rn = 1.0f / b;
    const int pick = static_cast<int>((h >> 56) % 3);
    const float r0 = pick == 0 ? std::nextafter(rn, 0.0f) : pick == 1 ? rn : std::nextafter(rn, 2e9f);
    if (to_bits(div_from_reciprocal(a, b, r0)) != to_bits(a / b)) ++wrong;
  }
  EXPECT_EQ(wrong, 0);
}

// tanh_f32 within 7 ulp of tanh (and 4e-7 absolute), odd, never above 1 in
// magnitude, NaN in → NaN out.
TEST(Tanh, WithinSevenUlpOfDouble) {
  double worst_ulp = 0, worst_abs = 0, worst_x = 0;
  for (uint64_t i = 0; i < 2'000'000; ++i) {
    const uint64_t h = mix(i);
    // |x| from 1e-6 to 20, log-uniform, either sign
    const double mag = std::exp(std::log(1e-6) + (std::log(20.0) - std::log(1e-6)) *
                                                     static_cast<double>(h >> 11) * 0x1p-53);
    const float x = static_cast<float>((h & 1) ? -mag : mag);
    const double want = std::tanh(static_cast<double>(x));
    const double got = tanh_f32(x);
    const double ulp = std::fabs(std::nextafter(static_cast<float>(want), 2.0f) -
                                 static_cast<float>(want));
    const double err = std::fabs(got - want);
    if (err / ulp > worst_ulp) worst_ulp = err / ulp, worst_x = x;
    worst_abs = std::max(worst_abs, err);
    ASSERT_EQ(tanh_f32(-x), -tanh_f32(x)) << "x = " << x;
    ASSERT_LE(std::fabs(got), 1.0) << "x = " << x;
  }
  EXPECT_LE(worst_ulp, 7.0) << "at x = " << worst_x;
  EXPECT_LE(worst_abs, 4e-7);
  EXPECT_TRUE(std::isnan(tanh_f32(NAN)));
}

// Beyond the rational function's range (|x| > 7.905) tanh_f32 stays within
// 4 ulp of tanh, and from 9.0109 on (where tanh rounds to 1 in float) it is
// exactly ±1 (the old clamp held 1 − 2⁻²² for ever).
TEST(Tanh, ExactlyOneWhereTanhRoundsToOne) {
  int64_t off = 0, checked = 0;
  const float poly_end = 0x1.f9f09ep+2f;  // 7.90531: the rational function's last point
  for (float x = std::nextafter(poly_end, 10.0f); x < 9.5f; x = std::nextafter(x, 10.0f), ++checked) {
    const double want = std::tanh(static_cast<double>(x));
    off += std::fabs(tanh_f32(x) - want) > 4 * 0x1p-24;
    off += tanh_f32(-x) != -tanh_f32(x);
  }
  EXPECT_EQ(off, 0) << "of " << checked << " floats in (7.90531, 9.5)";
  const float one_from = 0x1.205968p+3f;  // 9.0109: the smallest float with tanh rounding to 1
  EXPECT_LT(static_cast<float>(std::tanh(static_cast<double>(std::nextafter(one_from, 0.0f)))),
            1.0f);
  EXPECT_EQ(static_cast<float>(std::tanh(static_cast<double>(one_from))), 1.0f);
  EXPECT_LT(tanh_f32(std::nextafter(one_from, 0.0f)), 1.0f);
  for (float x : {one_from, 9.5f, 20.0f, 158.0f, 1e4f, 1e30f, INFINITY}) {
    EXPECT_EQ(tanh_f32(x), 1.0f) << "x = " << x;
    EXPECT_EQ(tanh_f32(-x), -1.0f) << "x = " << x;
  }
}

// The backward's slope 1 − tanh²(u) within 5 ulp relative for every u
// (e^(−2|u|): 1 ulp; r = 1/(1 + e): 1.5; 4e·r·r: 2.5 more), including deep
// in saturation, where 1 − t² from a float t would be off by up to 4e-7
// absolute; the backward's t within 1.5e-7 absolute of tanh; s = 0 and
// t = ±1 exactly from |u| = 43 on (true slope < 2e-37); NaN stays NaN.
TEST(DytSlope, RelativelyAccurateEverywhereAndZeroFarOut) {
  double worst = 0, worst_u = 0, worst_t = 0;
  for (uint64_t i = 0; i < 1'000'000; ++i) {
    const uint64_t h = mix(i ^ 0x5eed);
    const double mag = std::exp(std::log(1e-6) + (std::log(43.0) - std::log(1e-6)) *
                                                     static_cast<double>(h >> 11) * 0x1p-53);
    const float x = static_cast<float>((h & 1) ? -mag : mag), alpha = 0.8f;
    const double u = static_cast<double>(alpha * x);  // the op's own float u
    const double want = 4.0 * std::exp(-2 * std::fabs(u)) / std::pow(1 + std::exp(-2 * std::fabs(u)), 2);
    float t, s;
    dyt_value_and_slope(x, alpha, t, s);
    const double rel = std::fabs(s - want) / want;
    if (rel > worst) worst = rel, worst_u = u;
    worst_t = std::max(worst_t, std::fabs(t - std::tanh(u)));
  }
  EXPECT_LE(worst, 5 * 0x1p-23) << "at u = " << worst_u;
  EXPECT_LE(worst_t, 1.5e-7);
  {
    float t, s;
    dyt_value_and_slope(0.0f, 1.0f, t, s);
    EXPECT_EQ(s, 1.0f);
    EXPECT_EQ(t, 0.0f);
  }
  for (float u : {43.0f, 158.0f, 1e4f, 1e30f, INFINITY}) {
    float t, s;
    dyt_value_and_slope(u, 1.0f, t, s);
    EXPECT_EQ(s, 0.0f) << "u = " << u;
    EXPECT_EQ(t, 1.0f) << "u = " << u;
    dyt_value_and_slope(-u, 1.0f, t, s);
    EXPECT_EQ(s, 0.0f) << "u = " << u;
    EXPECT_EQ(t, -1.0f) << "u = " << u;
  }
  float t, s;
  dyt_value_and_slope(NAN, 1.0f, t, s);
  EXPECT_TRUE(std::isnan(t) && std::isnan(s));
}

// DyISRU: u/sqrt(1+u²) and its slope against double, and ±1 / tiny slope
// rather than 0 or NaN for huge α·x. Error budget: r = 1/sqrt(1+u²) carries
// three roundings (fma, sqrt, division: ≤ 1.5 ulp = 1.8e-7 relative), so
// the value is within 2e-7 and r³ (two more roundings) within 3·1.8e-7 +
// 2·6e-8 = 6.6e-7.
TEST(Dyisru, MatchesDoubleAndSaturates) {
  for (uint64_t i = 0; i < 200'000; ++i) {
    const uint64_t h = mix(i);
    const float x = static_cast<float>((static_cast<double>(h >> 11) * 0x1p-53 - 0.5) * 40.0);
    const float alpha = 0.7f;
    const double u = static_cast<double>(alpha * x);
    const double v = u / std::sqrt(1.0 + u * u), s = std::pow(1.0 + u * u, -1.5);
    ASSERT_NEAR(dyisru_value(x, alpha), v, 2e-7 * std::max(1.0, std::fabs(v))) << "x = " << x;
    ASSERT_NEAR(dyisru_slope(x, alpha), s, 6.6e-7 * s) << "x = " << x;
  }
  EXPECT_EQ(dyisru_value(1e30f, 1.0f), 1.0f);
  EXPECT_EQ(dyisru_value(-INFINITY, 1.0f), -1.0f);
  const float s = dyisru_slope(1e30f, 1.0f);
  EXPECT_GT(s, 0.0f);
  EXPECT_LT(s, 1e-17f);
  EXPECT_TRUE(std::isnan(dyisru_value(NAN, 1.0f)));
}

}  // namespace
}  // namespace dyt::kernels
