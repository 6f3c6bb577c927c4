#include "cascade/escalation_budget.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "util/status.h"

namespace saferoute {
namespace {

// "count <= share * total" for counts of decisions, exact at the boundary
// (0.2 * 5 must allow 1 escalation although 0.2 is not exact in binary).
bool WithinShare(int count, double share, int total) {
  return static_cast<double>(count) <= share * static_cast<double>(total) + 1e-9;
}

}  // namespace

EscalationBudget::EscalationBudget(EscalationBudgetOptions options) : options_(options) {
  SR_CHECK(options_.max_share > 0 && options_.max_share <= 1);
  SR_CHECK(options_.window_seconds > 0 && options_.max_entries >= 1);
}

void EscalationBudget::PopFrontLocked() {
  if (window_.front().escalated) --escalated_in_window_;
  if (window_.front().above_base) --above_base_in_window_;
  window_.pop_front();
}

void EscalationBudget::PruneLocked(std::chrono::steady_clock::time_point now) {
  const auto horizon = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(options_.window_seconds));
  while (!window_.empty() && window_.front().time + horizon < now) PopFrontLocked();
}

double EscalationBudget::ScoreQuantileLocked(double q) const {
  std::vector<double> scores;
  scores.reserve(window_.size());
  for (const Entry& e : window_) scores.push_back(e.score);
  // Nearest-rank quantile: the smallest score with at least q of the window at or below it.
  size_t rank = static_cast<size_t>(std::ceil(q * scores.size()));
  rank = std::clamp<size_t>(rank, 1, scores.size()) - 1;
  std::nth_element(scores.begin(), scores.begin() + rank, scores.end());
  return scores[rank];
}

EscalationBudget::Decision EscalationBudget::Decide(double score, double base_threshold,
                                                    std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  PruneLocked(now);
  // Make room first, so the count check below sees the window this decision
  // will be part of.
  while (static_cast<int>(window_.size()) >= options_.max_entries) PopFrontLocked();
  const int decisions = static_cast<int>(window_.size()) + 1;  // with this one
  const double cap = options_.max_share;
  const bool above_base = score > base_threshold;
  Decision decision{.threshold = base_threshold};
  if (above_base) {
    double threshold = base_threshold;
    if (cap < 1 && !WithinShare(above_base_in_window_ + 1, cap, decisions)) {
      // More demand than budget: keep the budget for the highest scores.
      threshold = std::max(threshold, options_.table_threshold);
      if (!window_.empty()) threshold = std::max(threshold, ScoreQuantileLocked(1 - cap));
    }
    decision.threshold = threshold;
    const bool room = WithinShare(escalated_in_window_ + 1, cap, decisions);
    decision.escalate = score > threshold && room;
    decision.cap_bound = threshold > base_threshold || !decision.escalate;
  }
  window_.push_back({now, score, above_base, decision.escalate});
  if (decision.escalate) ++escalated_in_window_;
  if (above_base) ++above_base_in_window_;
  return decision;
}

double EscalationBudget::WindowShare(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  PruneLocked(now);
  return window_.empty() ? 0 : static_cast<double>(escalated_in_window_) / window_.size();
}

}  // namespace saferoute
