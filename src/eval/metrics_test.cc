#include "eval/metrics.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace saferoute::eval {
namespace {

TEST(ConfusionTest, HandComputedF1PrecisionRecall) {
  const std::vector<uint8_t> pred = {1, 1, 0, 0, 1};
  const std::vector<uint8_t> gold = {1, 0, 1, 0, 1};
  const Confusion c = Count(pred, gold);
  EXPECT_EQ(c.tp, 2);
  EXPECT_EQ(c.fp, 1);
  EXPECT_EQ(c.fn, 1);
  EXPECT_EQ(c.tn, 1);
  EXPECT_DOUBLE_EQ(c.precision(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(c.recall(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(c.f1(), 2.0 / 3);
}

TEST(ConfusionTest, ZeroDivisionIsZero) {
  const std::vector<uint8_t> pred = {0, 0};
  const std::vector<uint8_t> gold = {0, 0};
  const Confusion c = Count(pred, gold);
  EXPECT_EQ(c.precision(), 0.0);
  EXPECT_EQ(c.recall(), 0.0);
  EXPECT_EQ(c.f1(), 0.0);
}

TEST(EntropyTest, BinaryEntropyBits) {
  EXPECT_DOUBLE_EQ(BinaryEntropyBits(0.5), 1.0);
  EXPECT_EQ(BinaryEntropyBits(0.0), 0.0);
  EXPECT_EQ(BinaryEntropyBits(1.0), 0.0);
  // -(.25 log2 .25 + .75 log2 .75) = .5 + .311278 = .811278
  EXPECT_NEAR(BinaryEntropyBits(0.25), 0.8112781244591328, 1e-12);
  // The paper's 0.5-bit rule routes p in about (0.110, 0.890).
  EXPECT_LT(BinaryEntropyBits(0.10), 0.5);
  EXPECT_GT(BinaryEntropyBits(0.12), 0.5);
  EXPECT_GT(BinaryEntropyBits(0.88), 0.5);
  EXPECT_LT(BinaryEntropyBits(0.90), 0.5);
}

TEST(CalibrationTest, DiagonalByHand) {
  // r1 = .2: q̂ = (.5/.2) / (.5/.8 + .5/.2) = 2.5 / 3.125 = .8
  EXPECT_NEAR(DiagonalCalibrate(0.5, 0.2), 0.8, 1e-12);
  // r1 = .8: q̂ = (.9/.8) / (.1/.2 + .9/.8) = 1.125 / 1.625
  EXPECT_NEAR(DiagonalCalibrate(0.9, 0.8), 1.125 / 1.625, 1e-12);
  EXPECT_NEAR(DiagonalCalibrate(0.37, 0.5), 0.37,
              1e-12);  // an uninformative reference changes nothing
}

// Independent NLL: -log sigmoid(m/T) for unsafe, -log(1 - sigmoid(m/T)) for safe.
double ReferenceNll(const std::vector<double>& m, const std::vector<uint8_t>& y, double t) {
  double nll = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    const double p = 1.0 / (1.0 + std::exp(-m[i] / t));
    nll -= y[i] ? std::log(p) : std::log(1.0 - p);
  }
  return nll;
}

TEST(TemperatureTest, FitMatchesGridSearchMinimum) {
  const std::vector<double> margins = {2.0, -1.0, 1.0, 3.0, -2.5, 0.5};
  const std::vector<uint8_t> gold = {1, 0, 0, 1, 1, 0};
  const double fitted = FitTemperature(margins, gold);
  double best_t = 0, best_nll = 1e300;
  for (double t = 0.05; t < 50; t *= 1.0005) {
    const double nll = ReferenceNll(margins, gold, t);
    if (nll < best_nll) {
      best_nll = nll;
      best_t = t;
    }
  }
  EXPECT_NEAR(fitted, best_t, best_t * 1e-3);
  EXPECT_NEAR(TemperatureNll(margins, gold, fitted), ReferenceNll(margins, gold, fitted), 1e-9);
  EXPECT_LE(ReferenceNll(margins, gold, fitted), best_nll + 1e-9);
}

TEST(TemperatureTest, OverconfidentLogitsGetTemperatureAboveOne) {
  // Large margins, half of them wrong: the fit must soften (T > 1).
  const std::vector<double> margins = {8, 8, -8, -8};
  const std::vector<uint8_t> gold = {1, 0, 0, 1};
  EXPECT_GT(FitTemperature(margins, gold), 100.0);
  // Perfectly separable: the optimum runs to T -> 0 and is clamped.
  EXPECT_DOUBLE_EQ(FitTemperature(std::vector<double>{1, -1}, std::vector<uint8_t>{1, 0}), 1e-3);
}

TEST(RandomRoutingTest, SeededShareAndDeterminism) {
  const auto a = RandomRouting(20000, 0.5, 7);
  const auto b = RandomRouting(20000, 0.5, 7);
  const auto c = RandomRouting(20000, 0.5, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  double share = 0;
  for (uint8_t r : a) share += r;
  share /= a.size();
  EXPECT_NEAR(share, 0.5, 0.015);  // 4+ standard deviations
  const auto tenth = RandomRouting(20000, 0.1, 7);
  double s10 = 0;
  for (uint8_t r : tenth) s10 += r;
  EXPECT_NEAR(s10 / tenth.size(), 0.1, 0.01);
  for (uint8_t r : RandomRouting(100, 0.0, 1)) EXPECT_EQ(r, 0);
  for (uint8_t r : RandomRouting(100, 1.0, 1)) EXPECT_EQ(r, 1);
}

}  // namespace
}  // namespace saferoute::eval
