#include "server/service_metrics.h"

#include "cascade/circuit_breaker.h"

namespace saferoute::server {
namespace {

const std::vector<double> kLatencyBucketsSeconds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,    1,     2.5,  5,     10};

}  // namespace

ServiceMetrics::ServiceMetrics() {
  MetricsRegistry& m = registry_;
  m.AddHistogram("saferoute_stage_latency_seconds",
                 "Per-input latency of each cascade stage (queue waits separate).",
                 kLatencyBucketsSeconds, {"stage"});
  m.AddHistogram("saferoute_guard_phase_seconds",
                 "Per-input time of a guard's answer by phase: tokenize, forward (the "
                 "prefill of the batch the input ran in) and decode (the batch's category "
                 "decode; 0 for inputs without one). Guards that do not measure report 0.",
                 kLatencyBucketsSeconds, {"stage", "phase"});
  m.AddHistogram("saferoute_batch_size", "Inputs per Guard::Classify call.",
                 {1, 2, 4, 8, 16, 32, 64}, {"guard"});
  m.AddHistogram("saferoute_router_score", "Router scores (probability the input is hard).",
                 {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95});
  m.AddCounter("saferoute_routing_decisions_total",
               "Routing outcome per input: router (escalated), below_threshold, "
               "budget_capped, no_router, no_large_guard.",
               {"decision"});
  m.AddGauge("saferoute_escalation_share",
             "Share of inputs escalated to the large guard since start.");
  m.AddGauge("saferoute_escalation_window_share",
             "Share of inputs escalated over the budget's sliding window.");
  m.AddCounter("saferoute_failure_policy_total",
               "Inputs decided by the failure policy, by policy and large-guard failure.",
               {"policy", "reason"});
  m.AddCounter("saferoute_shadow_samples_total",
               "Shadow samples of non-escalated inputs sent to the large guard, by "
               "outcome: agree, disagree (large verdict differs from small), error, dropped.",
               {"outcome"});
  m.AddCounter("saferoute_http_requests_total",
               "HTTP requests by route, status code and verdict (flagged: any input "
               "flagged; allowed: none; none: no verdict, e.g. an error).",
               {"route", "status", "verdict"});
  m.AddHistogram("saferoute_http_request_duration_seconds", "Wall time of HTTP requests by route.",
                 kLatencyBucketsSeconds, {"route"});
  m.AddCounter("saferoute_inputs_total", "Inputs decided, by deciding stage.", {"decided_by"});
  m.AddGauge("saferoute_remote_circuit_state",
             "Circuit breaker of the remote large guard: 1 for the current state.", {"state"});
  m.AddCounter("saferoute_remote_events_total",
               "Remote large-guard calls by event: requests, errors, retries, timeouts, "
               "bad_responses, short_circuited.",
               {"event"});
}

void ServiceMetrics::DeclareRemoteSeriesOnce() {
  std::call_once(remote_series_, [this] {
    for (RemoteEvent event :
         {RemoteEvent::kRequest, RemoteEvent::kError, RemoteEvent::kRetry, RemoteEvent::kTimeout,
          RemoteEvent::kBadResponse, RemoteEvent::kShortCircuited}) {
      registry_.Increment("saferoute_remote_events_total", {std::string(RemoteEventName(event))},
                          0);
    }
  });
}

void ServiceMetrics::OnRemoteEvent(RemoteEvent event) {
  DeclareRemoteSeriesOnce();
  registry_.Increment("saferoute_remote_events_total", {std::string(RemoteEventName(event))});
}

void ServiceMetrics::OnCircuitState(CircuitState state) {
  DeclareRemoteSeriesOnce();
  for (CircuitState s : {CircuitState::kClosed, CircuitState::kOpen, CircuitState::kHalfOpen}) {
    registry_.Set("saferoute_remote_circuit_state", {CircuitStateName(s)}, s == state ? 1 : 0);
  }
}

void ServiceMetrics::OnStage(CascadeStage stage, double queue_ms, std::optional<double> guard_ms) {
  const std::string name(CascadeStageName(stage));
  registry_.Observe("saferoute_stage_latency_seconds", {name + "_queue"}, queue_ms / 1e3);
  if (guard_ms) registry_.Observe("saferoute_stage_latency_seconds", {name}, *guard_ms / 1e3);
}

void ServiceMetrics::OnGuardPhases(CascadeStage stage, const GuardTimings& timings) {
  const std::string name(CascadeStageName(stage));
  registry_.Observe("saferoute_guard_phase_seconds", {name, "tokenize"}, timings.tokenize_ms / 1e3);
  registry_.Observe("saferoute_guard_phase_seconds", {name, "forward"}, timings.forward_ms / 1e3);
  registry_.Observe("saferoute_guard_phase_seconds", {name, "decode"}, timings.decode_ms / 1e3);
}

void ServiceMetrics::OnRouting(std::optional<float> score, std::optional<double> router_ms,
                               absl::string_view reason) {
  if (score) registry_.Observe("saferoute_router_score", {}, *score);
  if (router_ms) registry_.Observe("saferoute_stage_latency_seconds", {"router"}, *router_ms / 1e3);
  registry_.Increment("saferoute_routing_decisions_total", {std::string(reason)});
}

void ServiceMetrics::OnEscalationShare(double since_start, std::optional<double> window) {
  registry_.Set("saferoute_escalation_share", {}, since_start);
  if (window) registry_.Set("saferoute_escalation_window_share", {}, *window);
}

void ServiceMetrics::OnFailurePolicy(FailurePolicy policy, LargeFailure failure) {
  registry_.Increment("saferoute_failure_policy_total", {std::string(FailurePolicyName(policy)),
                                                         std::string(LargeFailureName(failure))});
}

void ServiceMetrics::OnShadow(ShadowOutcome outcome) {
  registry_.Increment("saferoute_shadow_samples_total", {std::string(ShadowOutcomeName(outcome))});
}

void ServiceMetrics::OnDecision(const CascadeDecision& decision) {
  registry_.Increment("saferoute_inputs_total", {std::string(DecidedByName(decision.decided_by))});
}

void ServiceMetrics::OnBatch(absl::string_view guard, int size) {
  registry_.Observe("saferoute_batch_size", {std::string(guard)}, size);
}

}  // namespace saferoute::server
