// Router training: learns a known rule, is deterministic, rejects bad input.
#include "router/train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "router/metrics.h"
#include "router/random.h"

namespace saferoute {
namespace {

// Synthetic features with a known separable rule: t = 1 iff x·u > cut, cut
// chosen so about 12% of rows are positive (imbalanced, like real t).
struct Synthetic {
  int dim = 0;
  std::vector<float> features;  // [n, dim]
  std::vector<uint8_t> targets;
};

Synthetic MakeSeparable(int n, int dim, uint64_t seed) {
  Synthetic s{
      .dim = dim, .features = std::vector<float>(static_cast<size_t>(n) * dim), .targets = {}};
  FillNormal(MixKey(seed, 1, 0), s.features.data(), s.features.size());
  std::vector<float> direction(dim);
  FillNormal(MixKey(7, 2, 0), direction.data(), dim);  // same rule for every seed
  double norm = 0;
  for (float v : direction) norm += double(v) * v;
  norm = std::sqrt(norm);
  uint64_t redraws = 0;
  for (int i = 0; i < n; ++i) {
    double projection = 0;
    for (int j = 0; j < dim; ++j) projection += s.features[i * dim + j] * direction[j] / norm;
    // A margin around the boundary keeps the rule cleanly learnable from a
    // few thousand rows: rows within 0.15 of it are redrawn.
    if (std::abs(projection - 1.175) < 0.15) {
      FillNormal(MixKey(seed, 3, redraws++), s.features.data() + static_cast<size_t>(i) * dim, dim);
      --i;
      continue;
    }
    s.targets.push_back(projection > 1.175 ? 1 : 0);  // P(N(0,1) > 1.175) ~ 0.12
  }
  return s;
}

TrainOptions SmallOptions(RouterType type) {
  TrainOptions o;
  o.type = type;
  o.hidden_dim = 32;
  o.epochs = 40;
  o.batch_size = 128;
  o.warmup_steps = 10;
  o.learning_rate = 3e-3;
  o.seed = 5;
  return o;
}

class LearnsRuleTest : public ::testing::TestWithParam<RouterType> {};

TEST_P(LearnsRuleTest, ValidationAuprcAtLeast095) {
  const Synthetic data = MakeSeparable(3000, 16, 1);
  int positives = 0;
  for (uint8_t t : data.targets) positives += t;
  ASSERT_GT(positives, 250);
  ASSERT_LT(positives, 500);
  int epochs_seen = 0;
  absl::StatusOr<TrainedRouter> trained =
      TrainRouter(data.features, data.dim, data.targets, SmallOptions(GetParam()),
                  [&](const EpochReport& r) { epochs_seen = r.epoch; });
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_EQ(epochs_seen, 40);
  const TrainSummary& s = trained->summary;
  EXPECT_GE(s.best.val.auprc, 0.95) << RouterTypeName(GetParam());
  EXPECT_EQ(s.kept_epoch, s.best_epoch);
  EXPECT_EQ(s.last.epoch, 40);
  EXPECT_EQ(s.examples, 3000);
  EXPECT_EQ(s.positives, positives);
  EXPECT_EQ(s.train_examples + s.val_examples, 3000);

  // The returned network and scores are the kept epoch's: recompute the AUPRC
  // independently from the returned network on the validation rows.
  ASSERT_EQ(trained->val_scores.size(), trained->val_rows.size());
  std::vector<float> val_features;
  std::vector<uint8_t> val_targets;
  for (int64_t r : trained->val_rows) {
    val_features.insert(val_features.end(), data.features.begin() + r * data.dim,
                        data.features.begin() + (r + 1) * data.dim);
    val_targets.push_back(data.targets[r]);
  }
  std::vector<float> logits(val_targets.size()), scores(val_targets.size());
  trained->network.Logits(val_features.data(), val_targets.size(), logits.data());
  for (size_t i = 0; i < logits.size(); ++i) {
    scores[i] = Sigmoid(logits[i]);
    EXPECT_FLOAT_EQ(scores[i], trained->val_scores[i]);
  }
  EXPECT_NEAR(AveragePrecision(scores, val_targets), s.best.val.auprc, 1e-12);

  // And it generalises to fresh data from the same rule.
  const Synthetic fresh = MakeSeparable(2000, 16, 2);
  std::vector<float> fresh_logits(2000), fresh_scores(2000);
  trained->network.Logits(fresh.features.data(), 2000, fresh_logits.data());
  for (int i = 0; i < 2000; ++i) fresh_scores[i] = Sigmoid(fresh_logits[i]);
  EXPECT_GE(AveragePrecision(fresh_scores, fresh.targets), 0.93) << RouterTypeName(GetParam());
}

INSTANTIATE_TEST_SUITE_P(AllRouters, LearnsRuleTest,
                         ::testing::Values(RouterType::kBayesianMlp, RouterType::kMlp,
                                           RouterType::kLogistic),
                         [](const auto& info) { return std::string(RouterTypeName(info.param)); });

TEST(TrainRouterTest, SameSeedIsBitIdenticalDifferentSeedIsNot) {
  const Synthetic data = MakeSeparable(700, 12, 3);
  TrainOptions o = SmallOptions(RouterType::kBayesianMlp);
  o.epochs = 3;
  auto a = TrainRouter(data.features, data.dim, data.targets, o);
  auto b = TrainRouter(data.features, data.dim, data.targets, o);
  o.seed = 6;
  auto c = TrainRouter(data.features, data.dim, data.targets, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  bool any_difference_to_c = false;
  for (size_t p = 0; p < a->network.params().size(); ++p) {
    const std::vector<float>& va = a->network.params()[p].values;
    const std::vector<float>& vb = b->network.params()[p].values;
    ASSERT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)))
        << a->network.params()[p].name;
    any_difference_to_c |= va != c->network.params()[p].values;
  }
  EXPECT_TRUE(any_difference_to_c);
  EXPECT_EQ(a->summary.best.val.auprc, b->summary.best.val.auprc);
}

TEST(TrainRouterTest, KeepLastEpochReturnsTheFinalWeights) {
  const Synthetic data = MakeSeparable(600, 8, 4);
  TrainOptions o = SmallOptions(RouterType::kMlp);
  o.epochs = 4;
  o.keep_last_epoch = true;
  auto trained = TrainRouter(data.features, data.dim, data.targets, o);
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_EQ(trained->summary.kept_epoch, 4);
  EXPECT_GE(trained->summary.best_epoch, 1);
}

TEST(TrainRouterTest, StratifiedSplitKeepsClassShares) {
  std::vector<uint8_t> targets(1000, 0);
  for (int i = 0; i < 1000; i += 10) targets[i] = 1;  // 100 positives
  auto [train, val] = StratifiedSplit(targets, 0.1, 9);
  EXPECT_EQ(val.size(), 100u);
  EXPECT_EQ(train.size(), 900u);
  int val_pos = 0;
  for (int64_t r : val) val_pos += targets[r];
  EXPECT_EQ(val_pos, 10);
  std::vector<int64_t> all = train;
  all.insert(all.end(), val.begin(), val.end());
  std::sort(all.begin(), all.end());
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(all[i], i);  // a partition
}

TEST(TrainRouterTest, LearningRateScheduleIsWarmupThenLinearDecay) {
  EXPECT_DOUBLE_EQ(LearningRateScale(0, 100, 1100), 0.0);
  EXPECT_DOUBLE_EQ(LearningRateScale(50, 100, 1100), 0.5);
  EXPECT_DOUBLE_EQ(LearningRateScale(100, 100, 1100), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateScale(600, 100, 1100), 0.5);
  EXPECT_DOUBLE_EQ(LearningRateScale(1100, 100, 1100), 0.0);
  EXPECT_DOUBLE_EQ(LearningRateScale(5000, 100, 1100), 0.0);
}

TEST(TrainRouterTest, RejectsBadInput) {
  Synthetic data = MakeSeparable(200, 4, 5);
  TrainOptions o = SmallOptions(RouterType::kLogistic);
  o.epochs = 1;
  data.features[13] = std::nanf("");
  auto bad = TrainRouter(data.features, data.dim, data.targets, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("row 3, column 1"), std::string_view::npos) << bad.status();
  data.features[13] = 0;
  data.targets[7] = 2;
  bad = TrainRouter(data.features, data.dim, data.targets, o);
  EXPECT_NE(bad.status().message().find("row 7"), std::string_view::npos) << bad.status();
  std::vector<uint8_t> one_class(200, 0);
  bad = TrainRouter(data.features, data.dim, one_class, o);
  EXPECT_NE(bad.status().message().find("both classes"), std::string_view::npos) << bad.status();
  bad = TrainRouter(std::span(data.features).first(10), data.dim, data.targets, o);
  EXPECT_FALSE(bad.ok());
  o.val_share = 1.0;
  bad = TrainRouter(data.features, data.dim, one_class, o);
  EXPECT_NE(bad.status().message().find("val_share"), std::string_view::npos) << bad.status();
}

TEST(MetricsTest, AveragePrecisionByHand) {
  // Scores desc: 0.9(1) 0.8(0) 0.7(1) 0.1(0): AP = 0.5*1 + 0.5*(2/3).
  const std::vector<float> scores = {0.1f, 0.9f, 0.7f, 0.8f};
  const std::vector<uint8_t> targets = {0, 1, 1, 0};
  EXPECT_NEAR(AveragePrecision(scores, targets), 0.5 + 1.0 / 3.0, 1e-12);
  // Ties form one step: all four tied -> precision 0.5 at recall 1.
  EXPECT_NEAR(AveragePrecision(std::vector<float>(4, 0.3f), targets), 0.5, 1e-12);
  EXPECT_TRUE(std::isnan(AveragePrecision(scores, std::vector<uint8_t>(4, 0))));
}

// The double overload (eval's routing AUPRC); the float one is checked by hand
// above.
TEST(MetricsTest, AveragePrecisionDoubleOverloadAndNoPositives) {
  // Steps: (R .5, P 1), (R .5, P .5), (R 1, P 2/3), (R 1, P .5)
  // -> .5 * 1 + .5 * 2/3 = 5/6 (sklearn gives 0.8333).
  EXPECT_NEAR(
      AveragePrecision(std::vector<double>{0.9, 0.8, 0.7, 0.6}, std::vector<uint8_t>{1, 0, 1, 0}),
      5.0 / 6, 1e-12);
  // A tie is one step: (R .5, P .5), (R 1, P 2/3) -> .25 + 1/3.
  EXPECT_NEAR(AveragePrecision(std::vector<double>{0.5, 0.5, 0.2}, std::vector<uint8_t>{1, 0, 1}),
              0.25 + 1.0 / 3, 1e-12);
  // Undefined without a positive.
  EXPECT_TRUE(
      std::isnan(AveragePrecision(std::vector<double>{0.5, 0.2}, std::vector<uint8_t>{0, 0})));
  EXPECT_TRUE(
      std::isnan(AveragePrecision(std::vector<float>{0.5f, 0.2f}, std::vector<uint8_t>{0, 0})));
}

}  // namespace
}  // namespace saferoute
