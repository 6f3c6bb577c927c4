// Run-time cap on the share of traffic escalated to the large guard, over a
// sliding time window.
//
// Without a cap, an input escalates iff router score > ε. With a cap B:
// while the window's realised share of escalations stays within B, the same
// rule applies; once the next escalation would push the share above B (the
// cap binds), only the highest scores escalate: the threshold rises to the
// largest of ε, the calibration table's threshold for share B
// (Router::ThresholdForShare, what the router was calibrated to send B of
// traffic with) and the window's own empirical (1-B)-quantile of router
// scores (which corrects for traffic that drifted from the calibration set).
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
    bool cap_bound = false;  // the cap raised the threshold for this input
    double threshold = 0;    // the threshold the score was compared with
  };
  // Decides for one router score against base threshold ε and records it.
  Decision Decide(double score, double base_threshold, std::chrono::steady_clock::time_point now);

  // Realised escalation share over the current window (0 when empty).
  double WindowShare(std::chrono::steady_clock::time_point now);

 private:
  struct Entry {
    std::chrono::steady_clock::time_point time;
    double score;
    bool escalated;
  };
  void PruneLocked(std::chrono::steady_clock::time_point now);
  double ScoreQuantileLocked(double q) const;

  const EscalationBudgetOptions options_;
  std::mutex mu_;
  std::deque<Entry> window_;
  int escalated_in_window_ = 0;
};

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_ESCALATION_BUDGET_H_
