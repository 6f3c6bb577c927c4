// The cascade decision for a set of inputs: small guard (batched) -> router
// score on its feature -> escalate iff score > ε (subject to the escalation
// budget) -> large guard (batched) -> failure policy if the large guard fails
// or misses the deadline. Also shadow sampling: a fraction of the inputs that
// were *not* escalated go to the large guard in the background, and
// agreement with the small verdict is counted.
//
// The cascade keeps its own state (budget window, escalation counts) and
// reports what happens through a CascadeObserver (the server turns the events
// into metrics); it reads nothing back from its observer.
//
// Deadline semantics (documented in server/README.md):
//  - small stage (queue + guard) past the deadline -> DeadlineExceeded (504):
//    without the small verdict there is nothing to decide on.
//  - large stage past the deadline or failing -> the failure policy decides,
//    and the decision says which policy applied.
#ifndef SAFEROUTE_CASCADE_CASCADE_H_
#define SAFEROUTE_CASCADE_CASCADE_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cascade/escalation_budget.h"
#include "cascade/scheduler.h"
#include "guard/guard.h"
#include "router/router.h"

namespace saferoute {

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
  // Of the verdict that decided; under a failure policy the policy's: 1 for
  // fail_closed, 0 for fail_open, the small guard's for degrade.
  float p_unsafe = 0;
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

enum class CascadeStage { kSmall, kLarge };
// Why the large stage did not decide an escalated input.
enum class LargeFailure { kQueueFull, kTimeout, kError };
enum class ShadowOutcome { kAgree, kDisagree, kError, kDropped };

absl::string_view CascadeStageName(CascadeStage stage);      // small | large
absl::string_view LargeFailureName(LargeFailure failure);    // queue_full | timeout | error
absl::string_view ShadowOutcomeName(ShadowOutcome outcome);  // agree | disagree | error | dropped

// What the cascade reports as it decides. Every method has an empty default;
// calls come from request threads and scheduler workers at once, so an
// implementation must be thread-safe and quick (it runs on the request path).
class CascadeObserver {
 public:
  virtual ~CascadeObserver() = default;
  // An input came back from a guard stage: time queued, and the guard call's
  // duration when the guard answered it (not when it failed).
  virtual void OnStage(CascadeStage stage, double queue_ms, std::optional<double> guard_ms) {}
  // Where a guard's answer to one input spent its time (GuardVerdict::timings:
  // tokenize, the forward pass and the category decode, the last two of the
  // whole batch the input ran in); guards that do not measure report zeros.
  virtual void OnGuardPhases(CascadeStage stage, const GuardTimings& timings) {}
  // The routing of one input: its router score and the router's time (both
  // empty without a router) and the reason (CascadeDecision::routing_reason).
  virtual void OnRouting(std::optional<float> score, std::optional<double> router_ms,
                         absl::string_view reason) {}
  // After each Decide: the escalated share since start, and over the
  // budget's window when there is a budget.
  virtual void OnEscalationShare(double since_start, std::optional<double> window) {}
  // The failure policy decided an escalated input.
  virtual void OnFailurePolicy(FailurePolicy policy, LargeFailure failure) {}
  virtual void OnShadow(ShadowOutcome outcome) {}
  // One input decided (after every stage).
  virtual void OnDecision(const CascadeDecision& decision) {}
};

// The routing that SIGHUP may replace while the cascade runs: the router and
// the escalation settings (CascadeOptions' fields of the same names).
struct RoutingSettings {
  std::shared_ptr<const Router> router;  // null: nothing escalates
  double router_threshold = -1;          // ε; < 0: the router's own
  double max_escalation_share = 1;
  double budget_window_seconds = 60;
};

// The routing part of `options`, with `router`.
RoutingSettings RoutingSettingsOf(const CascadeOptions& options,
                                  std::shared_ptr<const Router> router);

class Cascade {
 public:
  struct Parts {
    BatchScheduler* small = nullptr;      // required
    const Router* router = nullptr;       // optional: without it nothing escalates
    BatchScheduler* large = nullptr;      // optional: without it nothing escalates
    CascadeObserver* observer = nullptr;  // optional; must outlive the cascade
  };
  // Errors if the router cannot score this small guard's features, or the
  // budget cap needs a calibration table the router lacks.
  static absl::StatusOr<std::unique_ptr<Cascade>> Create(Parts parts, const Guard& small_guard,
                                                         CascadeOptions options);

  // One decision per input. Errors: an input the small guard rejects
  // (InvalidArgument/OutOfRange), the small stage missing the deadline
  // (DeadlineExceeded): both name the input only in their field payload
  // (util/status.h FieldOf: "input[i]"), not in the message, so that a front
  // end names it its own way; queue full (ResourceExhausted).
  absl::StatusOr<std::vector<CascadeDecision>> Decide(const std::vector<GuardRequest>& inputs,
                                                      Clock::time_point deadline);

  // Replaces the router and the escalation settings for every Decide() that
  // starts afterwards; the ones running finish with the settings they began
  // with (each reads one snapshot), so nothing is dropped or mixed. Checked
  // as Create() checks them (the router must read this small guard's
  // features; a cap needs its calibration table); on error nothing changes.
  // A changed cap, window or router starts a fresh budget window.
  absl::Status Reconfigure(RoutingSettings settings);

  const CascadeOptions& options() const { return options_; }
  double base_threshold() const;

 private:
  // One routing snapshot (immutable once published; the budget inside keeps
  // its own thread-safe window).
  struct Routing {
    std::shared_ptr<const Router> router;
    double base_threshold = 0;
    std::shared_ptr<EscalationBudget> budget;  // null: no cap
    RoutingSettings settings;                  // as given
  };
  struct SmallGuardInfo {
    std::string fingerprint, name;
    int feature_dim = 0;
  };
  static absl::StatusOr<std::shared_ptr<const Routing>> MakeRouting(RoutingSettings settings,
                                                                    const SmallGuardInfo& small);
  std::shared_ptr<const Routing> routing() const;

  Cascade(Parts parts, CascadeOptions options, SmallGuardInfo small,
          std::shared_ptr<const Routing> routing);
  // Runs `inputs` through `scheduler`; results[i] empty if not done by the deadline.
  absl::StatusOr<std::vector<std::optional<ScheduledResult>>> RunStage(
      BatchScheduler& scheduler, const std::vector<GuardRequest>& inputs,
      Clock::time_point deadline);
  void ApplyFailurePolicy(CascadeDecision& decision, std::string error) const;
  void MaybeShadow(const GuardRequest& input, bool small_unsafe);

  Parts parts_;                    // parts_.router: the router at Create(), borrowed; see routing_
  CascadeObserver null_observer_;  // parts_.observer when none is given
  CascadeOptions options_;
  const SmallGuardInfo small_;
  mutable std::mutex routing_mu_;
  std::shared_ptr<const Routing> routing_;  // guarded by routing_mu_
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
  // Inputs routed and escalated since start (the observer's share).
  std::atomic<uint64_t> routed_{0}, escalated_{0};
};

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_CASCADE_H_
