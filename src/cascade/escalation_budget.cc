#include "cascade/escalation_budget.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "util/status.h"

namespace saferoute {

EscalationBudget::EscalationBudget(EscalationBudgetOptions options) : options_(options) {
  SR_CHECK(options_.max_share > 0 && options_.max_share <= 1);
  SR_CHECK(options_.window_seconds > 0 && options_.max_entries >= 1);
}

void EscalationBudget::PruneLocked(std::chrono::steady_clock::time_point now) {
  const auto horizon = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(options_.window_seconds));
  while (!window_.empty() && window_.front().time + horizon < now) {
    if (window_.front().escalated) --escalated_in_window_;
    window_.pop_front();
  }
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
  Decision decision{.threshold = base_threshold};
  if (score > base_threshold) {
    const double n = static_cast<double>(window_.size());
    const bool within_cap =
        options_.max_share >= 1 || escalated_in_window_ + 1 <= options_.max_share * (n + 1);
    if (within_cap) {
      decision.escalate = true;
    } else {
      decision.cap_bound = true;
      double threshold = std::max(base_threshold, options_.table_threshold);
      if (!window_.empty()) {
        threshold = std::max(threshold, ScoreQuantileLocked(1 - options_.max_share));
      }
      decision.threshold = threshold;
      decision.escalate = score > threshold;
    }
  }
  if (static_cast<int>(window_.size()) >= options_.max_entries) {
    if (window_.front().escalated) --escalated_in_window_;
    window_.pop_front();
  }
  window_.push_back({now, score, decision.escalate});
  if (decision.escalate) ++escalated_in_window_;
  return decision;
}

double EscalationBudget::WindowShare(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  PruneLocked(now);
  return window_.empty() ? 0 : static_cast<double>(escalated_in_window_) / window_.size();
}

}  // namespace saferoute
