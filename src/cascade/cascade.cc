#include "cascade/cascade.h"

#include <condition_variable>

namespace saferoute {
namespace {

double MsSince(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

// Completion state shared by the waiting request thread and the scheduler
// callbacks; shared_ptr because callbacks may finish after the waiter gave up.
struct StageWait {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<ScheduledResult>> results;
  size_t remaining = 0;
};

}  // namespace

absl::string_view FailurePolicyName(FailurePolicy policy) {
  switch (policy) {
    case FailurePolicy::kFailClosed:
      return "fail_closed";
    case FailurePolicy::kFailOpen:
      return "fail_open";
    case FailurePolicy::kDegrade:
      return "degrade";
  }
  return "unknown";
}

absl::StatusOr<FailurePolicy> ParseFailurePolicy(absl::string_view name) {
  if (name == "fail_closed") return FailurePolicy::kFailClosed;
  if (name == "fail_open") return FailurePolicy::kFailOpen;
  if (name == "degrade") return FailurePolicy::kDegrade;
  return absl::InvalidArgumentError(
      absl::StrCat("failure policy '", name, "' is not one of fail_closed, fail_open, degrade"));
}

absl::string_view DecidedByName(DecidedBy who) {
  switch (who) {
    case DecidedBy::kSmall:
      return "small";
    case DecidedBy::kLarge:
      return "large";
    case DecidedBy::kPolicy:
      return "policy";
  }
  return "unknown";
}

absl::string_view CascadeStageName(CascadeStage stage) {
  return stage == CascadeStage::kSmall ? "small" : "large";
}

absl::string_view LargeFailureName(LargeFailure failure) {
  switch (failure) {
    case LargeFailure::kQueueFull:
      return "queue_full";
    case LargeFailure::kTimeout:
      return "timeout";
    case LargeFailure::kError:
      return "error";
  }
  return "unknown";
}

absl::string_view ShadowOutcomeName(ShadowOutcome outcome) {
  switch (outcome) {
    case ShadowOutcome::kAgree:
      return "agree";
    case ShadowOutcome::kDisagree:
      return "disagree";
    case ShadowOutcome::kError:
      return "error";
    case ShadowOutcome::kDropped:
      return "dropped";
  }
  return "unknown";
}

absl::StatusOr<std::shared_ptr<const Cascade::Routing>> Cascade::MakeRouting(
    RoutingSettings settings, const SmallGuardInfo& small) {
  if (!(settings.max_escalation_share > 0 && settings.max_escalation_share <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "escalation budget share ", settings.max_escalation_share, " is outside (0, 1]"));
  }
  auto routing = std::make_shared<Routing>();
  routing->base_threshold = settings.router_threshold;
  if (settings.router != nullptr) {
    const Router& router = *settings.router;
    absl::Status source = router.CheckFeatureSource(small.fingerprint, small.feature_dim);
    if (!source.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("router does not fit small guard ", small.name, ": ", source.message()));
    }
    if (routing->base_threshold < 0) routing->base_threshold = router.threshold();
    if (settings.max_escalation_share < 1) {
      absl::StatusOr<double> table_threshold =
          router.ThresholdForShare(settings.max_escalation_share);
      if (!table_threshold.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "escalation budget ", settings.max_escalation_share,
            " needs the router's calibration table: ", table_threshold.status().message()));
      }
      routing->budget = std::make_shared<EscalationBudget>(
          EscalationBudgetOptions{.max_share = settings.max_escalation_share,
                                  .table_threshold = *table_threshold,
                                  .window_seconds = settings.budget_window_seconds});
    }
  }
  routing->router = settings.router;
  routing->settings = std::move(settings);
  return std::shared_ptr<const Routing>(std::move(routing));
}

RoutingSettings RoutingSettingsOf(const CascadeOptions& options,
                                  std::shared_ptr<const Router> router) {
  return {.router = std::move(router),
          .router_threshold = options.router_threshold,
          .max_escalation_share = options.max_escalation_share,
          .budget_window_seconds = options.budget_window_seconds};
}

absl::StatusOr<std::unique_ptr<Cascade>> Cascade::Create(Parts parts, const Guard& small_guard,
                                                         CascadeOptions options) {
  SR_CHECK(parts.small != nullptr);
  if (options.shadow_fraction < 0 || options.shadow_fraction > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("shadow fraction ", options.shadow_fraction, " is outside [0, 1]"));
  }
  SmallGuardInfo small{.fingerprint = small_guard.fingerprint(),
                       .name = small_guard.name(),
                       .feature_dim = small_guard.feature_dim()};
  // The router given here is borrowed: a shared_ptr that owns nothing.
  std::shared_ptr<const Router> router(std::shared_ptr<const Router>(), parts.router);
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const Routing> routing,
                      MakeRouting(RoutingSettingsOf(options, std::move(router)), small));
  return std::unique_ptr<Cascade>(
      new Cascade(parts, std::move(options), std::move(small), std::move(routing)));
}

Cascade::Cascade(Parts parts, CascadeOptions options, SmallGuardInfo small,
                 std::shared_ptr<const Routing> routing)
    : parts_(parts), options_(options), small_(std::move(small)), routing_(std::move(routing)) {
  if (parts_.observer == nullptr) parts_.observer = &null_observer_;
  rng_.seed(options_.shadow_seed != 0 ? options_.shadow_seed : std::random_device{}());
}

std::shared_ptr<const Cascade::Routing> Cascade::routing() const {
  std::lock_guard lock(routing_mu_);
  return routing_;
}

double Cascade::base_threshold() const { return routing()->base_threshold; }

absl::Status Cascade::Reconfigure(RoutingSettings settings) {
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const Routing> next,
                      MakeRouting(std::move(settings), small_));
  std::lock_guard lock(routing_mu_);
  const RoutingSettings& before = routing_->settings;
  if (next->router == routing_->router &&
      next->settings.max_escalation_share == before.max_escalation_share &&
      next->settings.budget_window_seconds == before.budget_window_seconds &&
      routing_->budget != nullptr) {
    // Same router and cap: the budget keeps its window.
    auto same = std::make_shared<Routing>(*next);
    same->budget = routing_->budget;
    next = std::move(same);
  }
  routing_ = std::move(next);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::optional<ScheduledResult>>> Cascade::RunStage(
    BatchScheduler& scheduler, const std::vector<GuardRequest>& inputs,
    Clock::time_point deadline) {
  auto wait = std::make_shared<StageWait>();
  wait->results.resize(inputs.size());
  wait->remaining = inputs.size();
  std::vector<BatchScheduler::Item> items;
  items.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    items.push_back(
        {.request = inputs[i], .deadline = deadline, .done = [wait, i](ScheduledResult r) {
           std::lock_guard lock(wait->mu);
           wait->results[i] = std::move(r);
           if (--wait->remaining == 0) wait->cv.notify_all();
         }});
  }
  SR_RETURN_IF_ERROR(scheduler.Submit(std::move(items)));
  std::unique_lock lock(wait->mu);
  wait->cv.wait_until(lock, deadline, [&] { return wait->remaining == 0; });
  return wait->results;  // copies: late callbacks keep writing to the shared state
}

void Cascade::ApplyFailurePolicy(CascadeDecision& decision, std::string error) const {
  decision.large_error = std::move(error);
  decision.policy_applied = options_.failure_policy;
  decision.decided_by = DecidedBy::kPolicy;
  // p_unsafe is the deciding verdict's, so a client thresholding it at 0.5
  // gets the policy's decision: certain for fail_closed / fail_open, the
  // small guard's own score under degrade.
  switch (options_.failure_policy) {
    case FailurePolicy::kFailClosed:
      decision.flagged = true;
      decision.p_unsafe = 1.0f;
      break;
    case FailurePolicy::kFailOpen:
      decision.flagged = false;
      decision.p_unsafe = 0.0f;
      break;
    case FailurePolicy::kDegrade:
      decision.degraded = true;
      decision.flagged = decision.p_unsafe_small > options_.degrade_threshold;
      decision.p_unsafe = decision.p_unsafe_small;
      break;
  }
  // An allowed input names no category.
  if (!decision.flagged) decision.s_codes.clear();
}

void Cascade::MaybeShadow(const GuardRequest& input, bool small_unsafe) {
  if (parts_.large == nullptr || options_.shadow_fraction <= 0) return;
  {
    std::lock_guard lock(rng_mu_);
    if (std::uniform_real_distribution<double>(0, 1)(rng_) >= options_.shadow_fraction) return;
  }
  CascadeObserver* observer = parts_.observer;
  // Best effort: shadow work never takes the last half of the large queue
  // from real escalations.
  if (parts_.large->free_slots() <= parts_.large->options().queue_capacity / 2) {
    observer->OnShadow(ShadowOutcome::kDropped);
    return;
  }
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double, std::milli>(options_.shadow_timeout_ms));
  std::vector<BatchScheduler::Item> items;
  items.push_back(
      {.request = input, .deadline = deadline, .done = [observer, small_unsafe](ScheduledResult r) {
         if (!r.verdict.ok()) {
           observer->OnShadow(ShadowOutcome::kError);
         } else {
           observer->OnShadow(r.verdict->unsafe == small_unsafe ? ShadowOutcome::kAgree
                                                                : ShadowOutcome::kDisagree);
         }
       }});
  if (!parts_.large->Submit(std::move(items)).ok()) observer->OnShadow(ShadowOutcome::kDropped);
}

absl::StatusOr<std::vector<CascadeDecision>> Cascade::Decide(
    const std::vector<GuardRequest>& inputs, Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  CascadeObserver& observer = *parts_.observer;
  // One routing snapshot for the whole call (a reload may publish another).
  const std::shared_ptr<const Routing> routing = this->routing();
  const Router* router = routing->router.get();
  EscalationBudget* budget = routing->budget.get();
  const double base_threshold = routing->base_threshold;
  std::vector<GuardRequest> small_inputs = inputs;
  for (GuardRequest& r : small_inputs) {
    r.want_feature = router != nullptr;
    r.want_categories = options_.want_categories;
  }
  SR_ASSIGN_OR_RETURN(std::vector<std::optional<ScheduledResult>> small_results,
                      RunStage(*parts_.small, small_inputs, deadline));

  std::vector<CascadeDecision> decisions(inputs.size());
  std::vector<size_t> to_escalate;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string param = absl::StrCat("input[", i, "]");
    if (!small_results[i].has_value()) {
      return WithField(absl::DeadlineExceededError(absl::StrFormat(
                           "no verdict within the deadline (%.0f ms)", MsSince(start, deadline))),
                       param);
    }
    ScheduledResult& small = *small_results[i];
    // The guard's own message (e.g. over the token limit), with the field.
    if (!small.verdict.ok()) return WithField(small.verdict.status(), param);
    const GuardVerdict& verdict = *small.verdict;
    CascadeDecision& d = decisions[i];
    d.p_unsafe_small = verdict.p_unsafe;
    d.p_unsafe = verdict.p_unsafe;
    d.flagged = verdict.unsafe;
    d.s_codes = verdict.categories;
    d.unparsed_output = verdict.unparsed_output;
    d.n_tokens = verdict.n_tokens;
    d.decided_by = DecidedBy::kSmall;
    d.latency.small_queue_ms = small.queue_ms;
    d.latency.small_ms = small.guard_ms;
    observer.OnStage(CascadeStage::kSmall, small.queue_ms, small.guard_ms);
    observer.OnGuardPhases(CascadeStage::kSmall, verdict.timings);

    d.router_threshold = base_threshold;
    if (router == nullptr) {
      d.routing_reason = "no_router";
    } else {
      const Clock::time_point router_start = Clock::now();
      if (static_cast<int>(verdict.feature.size()) != router->feature_dim()) {
        return absl::InternalError(absl::StrFormat(
            "input %d: small guard returned a feature of %d floats, the router reads %d", i,
            verdict.feature.size(), router->feature_dim()));
      }
      const float score = router->Score(verdict.feature);
      d.router_score = score;
      bool escalate = score > base_threshold;
      d.routing_reason = escalate ? "router" : "below_threshold";
      if (budget != nullptr) {
        EscalationBudget::Decision b = budget->Decide(score, base_threshold, Clock::now());
        d.router_threshold = b.threshold;
        if (escalate && !b.escalate) d.routing_reason = "budget_capped";
        escalate = b.escalate;
      }
      if (escalate && parts_.large == nullptr) {
        escalate = false;
        d.routing_reason = "no_large_guard";
      }
      d.escalated = escalate;
      d.latency.router_ms = MsSince(router_start, Clock::now());
      if (escalate) to_escalate.push_back(i);
    }
    observer.OnRouting(
        d.router_score,
        router != nullptr ? std::optional<double>(d.latency.router_ms) : std::nullopt,
        d.routing_reason);
  }
  {
    const uint64_t routed = routed_ += inputs.size();
    if (routed > 0) {
      const uint64_t escalated = escalated_ += to_escalate.size();
      std::optional<double> window;
      if (budget != nullptr) window = budget->WindowShare(Clock::now());
      observer.OnEscalationShare(static_cast<double>(escalated) / routed, window);
    }
  }

  if (!to_escalate.empty()) {
    std::vector<GuardRequest> large_inputs;
    for (size_t i : to_escalate) {
      large_inputs.push_back(inputs[i]);
      large_inputs.back().want_feature = false;
      large_inputs.back().want_categories = options_.want_categories;
    }
    absl::StatusOr<std::vector<std::optional<ScheduledResult>>> large_results =
        RunStage(*parts_.large, large_inputs, deadline);
    for (size_t k = 0; k < to_escalate.size(); ++k) {
      CascadeDecision& d = decisions[to_escalate[k]];
      LargeFailure failure;
      std::string error;
      if (!large_results.ok()) {
        failure = absl::IsResourceExhausted(large_results.status()) ? LargeFailure::kQueueFull
                                                                    : LargeFailure::kError;
        error = std::string(large_results.status().message());
      } else if (!(*large_results)[k].has_value()) {
        failure = LargeFailure::kTimeout;
        error = "large guard did not answer within the deadline";
      } else {
        ScheduledResult& large = *(*large_results)[k];
        d.latency.large_queue_ms = large.queue_ms;
        d.latency.large_ms = large.guard_ms;
        if (!large.verdict.ok()) {
          observer.OnStage(CascadeStage::kLarge, large.queue_ms, std::nullopt);
          failure = absl::IsDeadlineExceeded(large.verdict.status()) ? LargeFailure::kTimeout
                                                                     : LargeFailure::kError;
          error = std::string(large.verdict.status().message());
        } else {
          observer.OnStage(CascadeStage::kLarge, large.queue_ms, large.guard_ms);
          observer.OnGuardPhases(CascadeStage::kLarge, large.verdict->timings);
          d.decided_by = DecidedBy::kLarge;
          d.p_unsafe_large = large.verdict->p_unsafe;
          d.p_unsafe = large.verdict->p_unsafe;
          d.flagged = large.verdict->unsafe;
          d.s_codes = large.verdict->categories;
          d.unparsed_output = large.verdict->unparsed_output;
          continue;
        }
      }
      ApplyFailurePolicy(d, std::move(error));
      observer.OnFailurePolicy(options_.failure_policy, failure);
    }
  }

  const Clock::time_point end = Clock::now();
  for (size_t i = 0; i < inputs.size(); ++i) {
    decisions[i].latency.total_ms = MsSince(start, end);
    observer.OnDecision(decisions[i]);
    if (!decisions[i].escalated) MaybeShadow(inputs[i], decisions[i].flagged);
  }
  return decisions;
}

}  // namespace saferoute
