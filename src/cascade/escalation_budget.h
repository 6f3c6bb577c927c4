// Run-time cap on the share of traffic escalated to the large guard, over a
// sliding time window.
//
// Without a cap, an input escalates iff router score > ε. With a cap B the
// cap is hard: an input escalates only if, counting it, the escalations in
// the window are at most B times the decisions in the window. The window is
// the decisions of the last `window_seconds` (at most `max_entries` of them),
// so at start-up it holds every decision since the first request: the first
// escalation can come no earlier than the ⌈1/B⌉-th input (the 5th for
// B = 0.2), and no prefix of the traffic ever escalates more than B of it.
//
// Which inputs get the budget: while the demand (the window's share of
// scores above ε) stays within B, every input above ε escalates as long as
// the count allows. When the demand exceeds B (the cap binds), only the
// highest scores escalate: the threshold rises to the largest of ε, the
// calibration table's threshold for share B (Router::ThresholdForShare, what
// the router was calibrated to send B of traffic with) and the window's own
// empirical (1-B)-quantile of router scores (which corrects for traffic that
// drifted from the calibration set); the count check still applies.
//
// What "never exceeds B" means: every escalation is granted only while the
// window's escalated share, counting it, is at most B. The share measured
// between escalations can sit above B only when old non-escalated decisions
// leave the window faster than new ones arrive (traffic falling off); no
// input escalates again until the share is back within B.
//
// Thread-safe (one mutex); O(window entries) per decision for the quantile,
// with the window bounded by `max_entries`.
#ifndef SAFEROUTE_CASCADE_ESCALATION_BUDGET_H_
#define SAFEROUTE_CASCADE_ESCALATION_BUDGET_H_

#include <chrono>
#include <deque>
#include <mutex>

namespace saferoute {

struct EscalationBudgetOptions {
  double max_share = 1;        // B in (0, 1]; 1 means no cap
  double table_threshold = 0;  // Router::ThresholdForShare(B)
  double window_seconds = 60;  // sliding window length
  int max_entries = 4096;      // most recent decisions kept (bounds memory and time)
};

class EscalationBudget {
 public:
  explicit EscalationBudget(EscalationBudgetOptions options);

  struct Decision {
    bool escalate = false;
    // The cap held this input back or raised its threshold: it was above ε
    // and did not escalate, or its threshold was raised above ε.
    bool cap_bound = false;
    double threshold = 0;  // the threshold the score was compared with
  };
  // Decides for one router score against base threshold ε at time `now`
  // (callers pass the clock, so tests can use a fake one) and records it.
  Decision Decide(double score, double base_threshold, std::chrono::steady_clock::time_point now);

  // Realised escalation share over the current window (0 when empty).
  double WindowShare(std::chrono::steady_clock::time_point now);

 private:
  struct Entry {
    std::chrono::steady_clock::time_point time;
    double score;
    bool above_base;  // score > ε: the demand for escalation
    bool escalated;
  };
  void PruneLocked(std::chrono::steady_clock::time_point now);
  void PopFrontLocked();
  double ScoreQuantileLocked(double q) const;

  const EscalationBudgetOptions options_;
  std::mutex mu_;
  std::deque<Entry> window_;
  int escalated_in_window_ = 0;
  int above_base_in_window_ = 0;
};

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_ESCALATION_BUDGET_H_
