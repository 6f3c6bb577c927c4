// The cascade decision for a set of inputs: small guard (batched) -> router
// score on its feature -> escalate iff score > ε (subject to the escalation
// budget) -> large guard (batched) -> failure policy if the large guard fails
// or misses the deadline. Also shadow sampling: a fraction of the inputs that
// were *not* escalated go to the large guard in the background, and
// agreement with the small verdict is counted.
//
// Deadline semantics (documented in README.md):
//  - small stage (queue + guard) past the deadline -> DeadlineExceeded (504):
//    without the small verdict there is nothing to decide on.
//  - large stage past the deadline or failing -> the failure policy decides,
//    and the decision says which policy applied.
#ifndef SAFEROUTE_SERVER_CASCADE_H_
#define SAFEROUTE_SERVER_CASCADE_H_

#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "guard/guard.h"
#include "router/router.h"
#include "server/escalation_budget.h"
#include "server/metrics.h"
#include "server/scheduler.h"

namespace saferoute::server {

enum class FailurePolicy { kFailClosed, kFailOpen, kDegrade };
enum class DecidedBy { kSmall, kLarge, kPolicy };

absl::string_view FailurePolicyName(FailurePolicy policy);  // fail_closed | fail_open | degrade
absl::StatusOr<FailurePolicy> ParseFailurePolicy(absl::string_view name);
absl::string_view DecidedByName(DecidedBy who);  // small | large | policy

struct CascadeOptions {
  double router_threshold = -1;     // ε; < 0 means the router's own threshold()
  double max_escalation_share = 1;  // run-time cap B on the escalated share; 1 = no cap
  double budget_window_seconds = 60;
  FailurePolicy failure_policy = FailurePolicy::kFailClosed;
  // `degrade`: the small guard's verdict with this threshold on p_unsafe
  // (stricter than 0.5 if you want to err on blocking while degraded).
  double degrade_threshold = 0.5;
  double shadow_fraction = 0;        // of non-escalated inputs, also sent to the large guard
  double shadow_timeout_ms = 30000;  // shadow calls give up after this long
  uint64_t shadow_seed = 0;          // 0: seeded from std::random_device
  bool want_categories = true;       // ask guards for S-codes (a short greedy decode)
};

struct StageLatencies {
  double small_queue_ms = 0, small_ms = 0, router_ms = 0, large_queue_ms = 0, large_ms = 0,
         total_ms = 0;
};

struct CascadeDecision {
  bool flagged = false;
  float p_unsafe = 0;                // of the verdict that decided (small's under a policy)
  std::vector<std::string> s_codes;  // Llama Guard categories of the deciding verdict
  DecidedBy decided_by = DecidedBy::kSmall;
  float p_unsafe_small = 0;
  std::optional<float> p_unsafe_large;
  std::optional<float> router_score;
  double router_threshold = 0;  // threshold the score was compared with
  bool escalated = false;       // sent to the large guard
  // router | below_threshold | budget_capped | no_router | no_large_guard
  std::string routing_reason;
  bool degraded = false;
  std::optional<FailurePolicy> policy_applied;
  std::string large_error;  // why the large stage failed, if it did
  std::optional<std::string> unparsed_output;
  int n_tokens = 0;
  StageLatencies latency;
};

// Declares the cascade's metric families on `metrics` (once per registry).
void RegisterCascadeMetrics(MetricsRegistry& metrics);

class Cascade {
 public:
  struct Parts {
    BatchScheduler* small = nullptr;     // required
    const Router* router = nullptr;      // optional: without it nothing escalates
    BatchScheduler* large = nullptr;     // optional: without it nothing escalates
    MetricsRegistry* metrics = nullptr;  // required, with RegisterCascadeMetrics done
  };
  // Errors if the router cannot score this small guard's features, or the
  // budget cap needs a calibration table the router lacks.
  static absl::StatusOr<std::unique_ptr<Cascade>> Create(Parts parts, const Guard& small_guard,
                                                         CascadeOptions options);

  // One decision per input. Errors: an input the small guard rejects
  // (InvalidArgument/OutOfRange, param "input[i]"), the small stage missing
  // the deadline (DeadlineExceeded), queue full (ResourceExhausted).
  absl::StatusOr<std::vector<CascadeDecision>> Decide(const std::vector<GuardRequest>& inputs,
                                                      Clock::time_point deadline);

  const CascadeOptions& options() const { return options_; }
  double base_threshold() const { return base_threshold_; }

 private:
  Cascade(Parts parts, CascadeOptions options, double base_threshold,
          std::optional<EscalationBudgetOptions> budget);
  // Runs `inputs` through `scheduler`; results[i] empty if not done by the deadline.
  absl::StatusOr<std::vector<std::optional<ScheduledResult>>> RunStage(
      BatchScheduler& scheduler, const std::vector<GuardRequest>& inputs,
      Clock::time_point deadline);
  void ApplyFailurePolicy(CascadeDecision& decision, std::string error) const;
  void MaybeShadow(const GuardRequest& input, bool small_unsafe);

  Parts parts_;
  CascadeOptions options_;
  double base_threshold_;
  std::unique_ptr<EscalationBudget> budget_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_CASCADE_H_
