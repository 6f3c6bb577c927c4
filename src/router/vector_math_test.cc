#include "router/vector_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>

namespace saferoute {
namespace {

TEST(VectorMathTest, PolynomialLogMatchesLibm) {
  double worst = 0;
  // Every value FillNormal can feed it ((k + 1) / 2^24), sampled densely,
  // plus the ends.
  for (uint32_t k = 0; k < (1u << 24); k += 97) {
    const float u = static_cast<float>(k + 1) * 0x1.0p-24f;
    const double exact = std::log(static_cast<double>(u));
    const double got = LogPositive(u);
    if (exact != 0) worst = std::max(worst, std::abs(got - exact) / std::abs(exact));
  }
  EXPECT_EQ(LogPositive(1.0f), 0.0f);
  EXPECT_NEAR(LogPositive(0x1.0p-24f), -24 * std::log(2.0), 1e-5);
  EXPECT_NEAR(LogPositive(1000.0f), std::log(1000.0), 1e-5);
  EXPECT_LT(worst, 3e-7);
}

TEST(VectorMathTest, PolynomialSinCosMatchesLibm) {
  double worst = 0;
  for (uint32_t k = 0; k < (1u << 24); k += 31) {
    const float u = static_cast<float>(k) * 0x1.0p-24f;
    const SinCos sc = SinCosTwoPi(u);
    const float s = sc.sin, c = sc.cos;
    const double angle = 2 * std::numbers::pi * static_cast<double>(u);
    worst = std::max({worst, std::abs(s - std::sin(angle)), std::abs(c - std::cos(angle))});
  }
  EXPECT_LT(worst, 3e-7);
}

}  // namespace
}  // namespace saferoute
