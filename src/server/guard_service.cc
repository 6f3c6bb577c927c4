#include "server/guard_service.h"

#include <cmath>
#include <cstdio>
#include <random>

namespace saferoute::server {

GuardService::GuardService(GuardServiceParts parts, GuardServiceOptions options)
    : parts_(parts),
      options_(std::move(options)),
      metrics_(parts_.metrics ? parts_.metrics : std::make_shared<ServiceMetrics>()) {
  id_salt_ = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

absl::StatusOr<std::unique_ptr<GuardService>> GuardService::Create(GuardServiceParts parts,
                                                                   GuardServiceOptions options) {
  if (parts.small == nullptr) return absl::InvalidArgumentError("guard service: no small guard");
  std::unique_ptr<GuardService> service(new GuardService(parts, std::move(options)));
  service->RegisterMetrics();
  ServiceMetrics* observer = service->metrics_.get();
  service->small_scheduler_ =
      std::make_unique<BatchScheduler>(parts.small, service->options_.small_scheduler,
                                       [observer](int n) { observer->OnBatch("small", n); });
  if (parts.large != nullptr) {
    service->large_scheduler_ =
        std::make_unique<BatchScheduler>(parts.large, service->options_.large_scheduler,
                                         [observer](int n) { observer->OnBatch("large", n); });
  }
  SR_ASSIGN_OR_RETURN(service->cascade_, Cascade::Create({.small = service->small_scheduler_.get(),
                                                          .router = parts.router,
                                                          .large = service->large_scheduler_.get(),
                                                          .observer = observer},
                                                         *parts.small, service->options_.cascade));
  return service;
}

GuardService::~GuardService() { Shutdown(); }

void GuardService::RegisterMetrics() {
  // The counters and histograms are declared by ServiceMetrics; these are
  // read at scrape time.
  MetricsRegistry& metrics = metrics_->registry();
  metrics.AddCallbackFamily("saferoute_queue_depth", "Inputs waiting in each guard's batch queue.",
                            false, {"guard"}, [this] {
                              MetricsRegistry::SeriesList out;
                              if (small_scheduler_)
                                out.push_back({{"small"}, double(small_scheduler_->depth())});
                              if (large_scheduler_)
                                out.push_back({{"large"}, double(large_scheduler_->depth())});
                              return out;
                            });
  metrics.AddCallbackFamily(
      "saferoute_guard_time_estimate_seconds",
      "The running estimate of each guard's call time that admission and batch sizing use: "
      "seconds per call, per input and per kilobyte of input text.",
      false, {"guard", "term"}, [this] {
        MetricsRegistry::SeriesList out;
        for (const auto& [name, scheduler] : {std::pair{"small", small_scheduler_.get()},
                                              std::pair{"large", large_scheduler_.get()}}) {
          if (scheduler == nullptr) continue;
          const GuardTimeModel::Coefficients c = scheduler->time_estimate();
          out.push_back({{name, "per_call"}, c.per_batch_s});
          out.push_back({{name, "per_input"}, c.per_input_s});
          out.push_back({{name, "per_kilobyte"}, c.per_kilobyte_s});
        }
        return out;
      });
  metrics.AddCallbackGauge("saferoute_draining", "1 while the server drains for shutdown.",
                           [this] { return draining_ ? 1.0 : 0.0; });
  metrics.AddCallbackFamily(
      "saferoute_guard_compute_info",
      "Where each in-process guard runs: engine GEMM path, oneDNN implementation, CPU ISA (1).",
      false, {"guard", "path", "impl", "isa"}, [this] {
        MetricsRegistry::SeriesList out;
        for (const auto& [name, guard] :
             {std::pair{"small", parts_.small}, std::pair{"large", parts_.large}}) {
          if (guard == nullptr) continue;
          const Guard::Compute c = guard->compute();
          if (!c.path.empty()) out.push_back({{name, c.path, c.impl, c.isa}, 1.0});
        }
        return out;
      });
  if (parts_.large != nullptr) {
    metrics.AddCallbackGauge(
        "saferoute_large_guard_up",
        "1 if the last readiness probe (/readyz) reached the large guard, else 0.",
        [this] { return large_up_ ? 1.0 : 0.0; });
  }
}

absl::StatusOr<std::vector<CascadeDecision>> GuardService::Decide(
    const std::vector<GuardRequest>& inputs, double deadline_ms) {
  if (draining_) return absl::UnavailableError("server is shutting down");
  if (!(deadline_ms > 0) || !std::isfinite(deadline_ms)) deadline_ms = options_.default_deadline_ms;
  deadline_ms = std::min(deadline_ms, options_.max_deadline_ms);
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double, std::milli>(deadline_ms));
  return cascade_->Decide(inputs, deadline);
}

absl::Status GuardService::Ready() {
  if (draining_) return absl::UnavailableError("draining for shutdown");
  if (parts_.large == nullptr) return absl::OkStatus();
  const absl::Status ping = parts_.large->Ping();
  const FailurePolicy policy = options_.cascade.failure_policy;
  const bool needed = policy == FailurePolicy::kFailClosed;
  if (large_up_.exchange(ping.ok()) != ping.ok()) {
    if (ping.ok()) {
      std::fprintf(stderr, "saferoute: large guard reachable again\n");
    } else {
      std::fprintf(stderr, "saferoute: large guard unreachable (%s); %s\n",
                   std::string(ping.message()).c_str(),
                   needed ? "not ready: policy fail_closed blocks every escalation"
                          : absl::StrCat("still ready: policy ", FailurePolicyName(policy),
                                         " decides escalations")
                                .c_str());
    }
  }
  if (ping.ok() || !needed) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("large guard: ", ping.message(), " (policy fail_closed)"));
}

void GuardService::Shutdown() {
  draining_ = true;
  // Small first: its in-flight work may still escalate into the large queue.
  if (small_scheduler_) small_scheduler_->Shutdown();
  if (large_scheduler_) large_scheduler_->Shutdown();
}

std::string GuardService::NextId(absl::string_view prefix) {
  const uint64_t n = next_id_.fetch_add(1);
  return absl::StrFormat("%s%016x%08x", prefix, id_salt_, n);
}

}  // namespace saferoute::server
