// Budget calibration: tables by hand, shares hit on held-out data.
#include "router/calibration.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "router/network.h"
#include "router/random.h"

namespace saferoute {
namespace {

TEST(CalibrationTest, SmallTableByHand) {
  const std::vector<float> scores = {0.7f, 0.2f, 0.9f, 0.7f};
  auto table = BuildCalibrationTable(scores);
  ASSERT_TRUE(table.ok()) << table.status();
  // Ascending threshold: 0 routes all; midway 0.2|0.7 routes 3; 0.7|0.9 routes 1; 1 routes none.
  ASSERT_EQ(table->size(), 4u);
  const double expected[4][2] = {{0.0, 1.0}, {0.45, 0.75}, {0.8, 0.25}, {1.0, 0.0}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR((*table)[i].threshold, expected[i][0], 1e-6) << i;
    EXPECT_DOUBLE_EQ((*table)[i].large_share, expected[i][1]) << i;
    EXPECT_EQ((*table)[i].f1, -1) << i;
  }
  EXPECT_TRUE(ValidateCalibrationTable(*table, "t").ok());
}

TEST(CalibrationTest, ScoresOfExactlyZeroAreNeverRouted) {
  const std::vector<float> scores = {0.0f, 0.5f, 0.0f, 0.0f};
  auto table = BuildCalibrationTable(scores);
  ASSERT_TRUE(table.ok());
  ASSERT_EQ(table->size(), 3u);
  EXPECT_EQ(table->front().threshold, 0.0);
  EXPECT_DOUBLE_EQ(table->front().large_share, 0.25);  // only the 0.5 is > 0
  EXPECT_NEAR((*table)[1].threshold, 0.25, 1e-7);
  EXPECT_DOUBLE_EQ((*table)[1].large_share, 0.25);
}

TEST(CalibrationTest, SafetyF1ColumnByHand) {
  // Rows by descending score: A(0.9) B(0.6) C(0.3).
  //   small verdicts 0 1 0, large 1 1 0, gold 1 0 0.
  const std::vector<float> scores = {0.6f, 0.9f, 0.3f};
  const std::vector<uint8_t> small = {1, 0, 0}, large = {1, 1, 0}, gold = {0, 1, 0};
  const SafetyOutcomes outcomes{.small_unsafe = small, .large_unsafe = large, .gold_unsafe = gold};
  auto table = BuildCalibrationTable(scores, &outcomes);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->size(), 4u);
  // None routed: verdicts small = B:1 A:0 C:0 vs gold B:0 A:1 -> TP0 FP1 FN1 -> F1 0.
  EXPECT_DOUBLE_EQ((*table)[3].f1, 0.0);
  // A routed (large 1): TP1 FP1(B) FN0 -> F1 2/3.
  EXPECT_NEAR((*table)[2].f1, 2.0 / 3.0, 1e-12);
  // A, B routed: large says B unsafe (gold 0): TP1 FP1 -> 2/3.
  EXPECT_NEAR((*table)[1].f1, 2.0 / 3.0, 1e-12);
  // All routed: C large 0 gold 0: same counts.
  EXPECT_NEAR((*table)[0].f1, 2.0 / 3.0, 1e-12);
}

TEST(CalibrationTest, RequestedShareIsHitOnHeldOutData) {
  // Router-like scores: sigmoid of a skewed logit distribution, most inputs easy.
  auto draw = [](uint64_t seed, int n) {
    std::vector<float> z(n), s(n);
    FillNormal(MixKey(seed, 3, 3), z.data(), n);
    for (int i = 0; i < n; ++i)
      s[i] = Sigmoid(-2.0f + 1.5f * z[i] + 0.5f * z[i] * z[i] * (z[i] > 0));
    return s;
  };
  const std::vector<float> calibration = draw(1, 20000), held_out = draw(2, 20000);
  auto table = BuildCalibrationTable(calibration);
  ASSERT_TRUE(table.ok());
  EXPECT_LE(table->size(), static_cast<size_t>(kDefaultCalibrationPoints));
  for (double share : {0.01, 0.05, 0.1, 0.2, 0.333, 0.5, 0.9}) {
    absl::StatusOr<double> threshold = InterpolateThreshold(*table, share);
    ASSERT_TRUE(threshold.ok());
    auto share_on = [&](const std::vector<float>& s) {
      int routed = 0;
      for (float v : s) routed += v > *threshold;
      return static_cast<double>(routed) / s.size();
    };
    EXPECT_NEAR(share_on(calibration), share, 0.002) << "share " << share;
    EXPECT_NEAR(share_on(held_out), share, 0.01) << "share " << share;
  }
}

TEST(CalibrationTest, InterpolationClampsAndRejectsBadShares) {
  const std::vector<CalibrationPoint> table = {{.threshold = 0.2, .large_share = 0.8, .f1 = -1},
                                               {.threshold = 0.6, .large_share = 0.2, .f1 = -1}};
  EXPECT_NEAR(*InterpolateThreshold(table, 0.5), 0.4, 1e-12);
  EXPECT_EQ(*InterpolateThreshold(table, 0.95), 0.2);
  EXPECT_EQ(*InterpolateThreshold(table, 0.05), 0.6);
  EXPECT_FALSE(InterpolateThreshold(table, 1.5).ok());
  EXPECT_FALSE(InterpolateThreshold(table, std::nan("")).ok());
  EXPECT_FALSE(InterpolateThreshold({}, 0.1).ok());
}

TEST(CalibrationTest, RejectsBadInput) {
  EXPECT_FALSE(BuildCalibrationTable({}).ok());
  const std::vector<float> nan_score = {0.5f, std::nanf("")};
  auto bad = BuildCalibrationTable(nan_score);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("score 1"), std::string::npos);
  const std::vector<float> scores = {0.5f, 0.2f};
  const std::vector<uint8_t> two = {0, 1}, one = {0}, not_binary = {0, 3};
  SafetyOutcomes short_small{.small_unsafe = one, .large_unsafe = two, .gold_unsafe = two};
  EXPECT_FALSE(BuildCalibrationTable(scores, &short_small).ok());
  SafetyOutcomes bad_gold{.small_unsafe = two, .large_unsafe = two, .gold_unsafe = not_binary};
  EXPECT_FALSE(BuildCalibrationTable(scores, &bad_gold).ok());
  EXPECT_FALSE(ValidateCalibrationTable({{.threshold = 0.3, .large_share = 0.2, .f1 = -1},
                                         {.threshold = 0.5, .large_share = 0.4, .f1 = -1}},
                                        "t")
                   .ok());
}

TEST(CalibrationTest, CalibrateOnValidationUsesOnlyTheValidationRowsOutcomes) {
  // Five training rows; rows 1 and 3 were held out. Their outcomes (and only
  // theirs) must reach the safety-F1 column.
  TrainedRouter trained{.network = RouterNetwork(RouterType::kLogistic, 2, 1),
                        .summary = {},
                        .val_rows = {},
                        .val_scores = {}};
  trained.val_rows = {1, 3};
  trained.val_scores = {0.9f, 0.2f};
  RouterLabels labels;
  labels.t = {0, 1, 0, 0, 1};
  labels.has_outcomes = true;
  labels.small_pred = {1, 0, 1, 1, 1};
  labels.large_pred = {1, 1, 1, 0, 1};
  labels.gold = {0, 1, 0, 0, 1};
  absl::StatusOr<std::vector<CalibrationPoint>> got = CalibrateOnValidation(trained, labels);
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<uint8_t> small = {0, 1}, large = {1, 0}, gold = {1, 0};
  const SafetyOutcomes outcomes{.small_unsafe = small, .large_unsafe = large, .gold_unsafe = gold};
  absl::StatusOr<std::vector<CalibrationPoint>> want =
      BuildCalibrationTable(trained.val_scores, &outcomes);
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(got->size(), want->size());
  for (size_t i = 0; i < got->size(); ++i) {
    EXPECT_EQ((*got)[i].threshold, (*want)[i].threshold);
    EXPECT_EQ((*got)[i].large_share, (*want)[i].large_share);
    EXPECT_EQ((*got)[i].f1, (*want)[i].f1);
  }
  // By hand, a threshold between the two scores routes only row 1 (small
  // wrong, large right: TP) and keeps row 3's small verdict (unsafe, gold
  // safe: FP): F1 = 2*1 / (2*1 + 1 + 0) = 2/3.
  bool saw_middle = false;
  for (const CalibrationPoint& p : *got) {
    if (p.threshold > 0.2 && p.threshold < 0.9) {
      saw_middle = true;
      EXPECT_NEAR(p.f1, 2.0 / 3.0, 1e-12);
    }
  }
  EXPECT_TRUE(saw_middle);
  labels.has_outcomes = false;  // without outcomes: shares only
  got = CalibrateOnValidation(trained, labels);
  ASSERT_TRUE(got.ok());
  for (const CalibrationPoint& p : *got) EXPECT_EQ(p.f1, -1);
}

}  // namespace
}  // namespace saferoute
