// The escalation budget: the cap binds only when the window's share would
// exceed it, then only the highest scores escalate.
#include "cascade/escalation_budget.h"

#include <random>

#include "gtest/gtest.h"

namespace saferoute {
namespace {

TEST(EscalationBudget, WithoutCapEscalatesAboveThreshold) {
  EscalationBudget budget({.max_share = 1});
  const auto now = std::chrono::steady_clock::now();
  EXPECT_TRUE(budget.Decide(0.6, 0.5, now).escalate);
  EXPECT_FALSE(budget.Decide(0.5, 0.5, now).escalate);  // strict
}

TEST(EscalationBudget, CapBindsAndOnlyHighestScoresEscalate) {
  // Every score is above ε = 0, so uncapped everything would escalate.
  EscalationBudget budget({.max_share = 0.2, .table_threshold = 0.8, .window_seconds = 3600});
  const auto now = std::chrono::steady_clock::now();
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(0.001, 1);
  int escalated = 0, bound = 0;
  double lowest_escalated_when_bound = 1;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    const double score = uniform(rng);
    EscalationBudget::Decision d = budget.Decide(score, 0.0, now);
    escalated += d.escalate;
    if (d.cap_bound) {
      ++bound;
      EXPECT_GE(d.threshold, 0.8);  // never below the calibration table's threshold
      if (d.escalate) lowest_escalated_when_bound = std::min(lowest_escalated_when_bound, score);
    }
  }
  EXPECT_GT(bound, n / 2);
  // Realised share near the cap (uniform scores above the 0.8 threshold are
  // 20% of traffic), and escalations under the cap come from the top scores.
  EXPECT_NEAR(static_cast<double>(escalated) / n, 0.2, 0.03);
  EXPECT_GT(lowest_escalated_when_bound, 0.75);
  EXPECT_NEAR(budget.WindowShare(now), static_cast<double>(escalated) / n, 1e-9);
}

TEST(EscalationBudget, WindowForgetsOldDecisions) {
  EscalationBudget budget({.max_share = 0.5, .table_threshold = 0.9, .window_seconds = 1});
  auto t = std::chrono::steady_clock::now();
  EXPECT_FALSE(budget.Decide(0.6, 0.5, t).escalate);  // 1/1 > 0.5: bound, 0.6 < 0.9
  EXPECT_TRUE(budget.Decide(0.95, 0.5, t).escalate);
  EXPECT_DOUBLE_EQ(budget.WindowShare(t), 0.5);
  t += std::chrono::seconds(5);
  EXPECT_DOUBLE_EQ(budget.WindowShare(t), 0.0);
}

}  // namespace
}  // namespace saferoute
