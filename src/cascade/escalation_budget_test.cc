// The escalation budget: a hard cap on the escalated share over the window,
// from the first request on, with the budget going to the highest scores
// when demand exceeds it. Decisions take the time as an argument: a fake clock.
#include "cascade/escalation_budget.h"

#include <random>

#include "gtest/gtest.h"

namespace saferoute {
namespace {

using Clock = std::chrono::steady_clock;
// A fake clock's start.
const Clock::time_point kBudgetT0 = Clock::time_point(std::chrono::hours(1));

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

// The cap is hard from the first request (the case: budget 0.2 let 8
// of the first 20 requests escalate). Scores that keep rising defeat a cap
// that only raises the threshold (each new score is the window's highest).
TEST(EscalationBudget, HardCapFromTheFirstRequest) {
  EscalationBudget budget({.max_share = 0.2, .table_threshold = 0.8, .window_seconds = 60});
  auto t = kBudgetT0;
  int escalated = 0;
  for (int k = 1; k <= 20; ++k) {
    t += std::chrono::milliseconds(100);
    escalated += budget.Decide(0.80 + 0.01 * k, 0.5, t).escalate;
    EXPECT_LE(escalated, 0.2 * k + 1e-9) << "after " << k << " requests";
  }
  EXPECT_EQ(escalated, 4);  // at requests 5, 10, 15 and 20
}

TEST(EscalationBudget, HardCapOnRandomScores) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> uniform(0, 1);
  for (int trial = 0; trial < 50; ++trial) {
    EscalationBudget budget({.max_share = 0.2, .table_threshold = 0.6, .window_seconds = 60});
    auto t = kBudgetT0;
    int escalated = 0;
    for (int k = 1; k <= 20; ++k) {
      t += std::chrono::milliseconds(50);
      escalated += budget.Decide(uniform(rng), 0.5, t).escalate;
      ASSERT_LE(escalated, 0.2 * k + 1e-9) << "trial " << trial << ", request " << k;
    }
  }
}

// Bursts and lulls over many windows, on a fake clock: whenever an input
// escalates, the escalated share of the window (counting it) is within B.
// The budget is still used (not starved) and goes to the highest scores.
TEST(EscalationBudget, EveryEscalationKeepsTheWindowWithinTheCap) {
  const double cap = 0.2;
  EscalationBudget budget({.max_share = cap, .table_threshold = 0.7, .window_seconds = 10});
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::exponential_distribution<double> fast(50), slow(2);
  auto t = kBudgetT0;
  int escalated = 0, n = 0;
  double escalated_score_sum = 0;
  for (int k = 0; k < 5000; ++k) {
    const bool burst = (k / 500) % 2 == 0;  // 500 fast arrivals, then 500 slow ones
    t += std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(burst ? fast(rng) : slow(rng)));
    const double score = uniform(rng);
    const EscalationBudget::Decision d = budget.Decide(score, 0.0, t);
    ++n;
    if (d.escalate) {
      ++escalated;
      escalated_score_sum += score;
      ASSERT_LE(budget.WindowShare(t), cap + 1e-12) << "decision " << k;
    }
  }
  EXPECT_GT(static_cast<double>(escalated) / n, 0.15);
  EXPECT_LE(static_cast<double>(escalated) / n, cap);
  EXPECT_GT(escalated_score_sum / escalated, 0.8);  // uniform scores: the top fifth
}

// With the window held to its last 10 decisions, any 10 consecutive
// decisions escalate at most 3 of them (B = 0.3).
TEST(EscalationBudget, EntryBoundWindowCapsEveryRunOfDecisions) {
  EscalationBudget budget(
      {.max_share = 0.3, .table_threshold = 0.0, .window_seconds = 3600, .max_entries = 10});
  std::vector<int> escalated;
  auto t = kBudgetT0;
  for (int k = 0; k < 300; ++k) {
    t += std::chrono::milliseconds(10);
    escalated.push_back(budget.Decide(0.5 + k * 1e-3, 0.0, t).escalate);
  }
  for (size_t end = 10; end <= escalated.size(); ++end) {
    int in_run = 0;
    for (size_t i = end - 10; i < end; ++i) in_run += escalated[i];
    EXPECT_LE(in_run, 3) << "decisions " << end - 10 << ".." << end - 1;
  }
  int total = 0;
  for (int e : escalated) total += e;
  EXPECT_GE(total, 80);  // the budget is used: 3 in 10 after the start
}

// Demand within the cap is served in full: a tenth of inputs above ε with B
// = 0.2 all escalate.
TEST(EscalationBudget, DemandWithinTheCapIsNotCapped) {
  EscalationBudget budget({.max_share = 0.2, .table_threshold = 0.95, .window_seconds = 60});
  auto t = kBudgetT0;
  for (int k = 1; k <= 200; ++k) {
    t += std::chrono::milliseconds(100);
    const bool hard = k % 10 == 0;
    const EscalationBudget::Decision d = budget.Decide(hard ? 0.9 : 0.1, 0.5, t);
    EXPECT_EQ(d.escalate, hard) << k;
    EXPECT_FALSE(d.cap_bound) << k;
  }
}

}  // namespace
}  // namespace saferoute
