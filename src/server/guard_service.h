// The guard service behind the HTTP layer: owns the batch schedulers of the
// small and large guard, the cascade, the metrics and the readiness state.
// The HTTP layer (http_server.h) only maps JSON to calls on this.
//
// Lifetime: the guards and the router are borrowed and must outlive the
// service. Shutdown order: BeginDrain() (readyz -> 503, new work refused),
// let in-flight HTTP requests finish, then Shutdown() (joins the schedulers
// after answering what they hold, including shadow samples).
#ifndef SAFEROUTE_SERVER_GUARD_SERVICE_H_
#define SAFEROUTE_SERVER_GUARD_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>

#include "cascade/cascade.h"
#include "cascade/scheduler.h"
#include "guard/guard.h"
#include "router/router.h"
#include "server/metrics.h"
#include "server/service_metrics.h"

namespace saferoute::server {

struct GuardServiceParts {
  Guard* small = nullptr;          // required
  const Router* router = nullptr;  // optional
  Guard* large = nullptr;          // optional (local or remote); its Ping() is readiness
  // Optional: the metrics, when a part made before the service reports to
  // them (a remote large guard made with them as its observer). Null: the
  // service makes its own.
  std::shared_ptr<ServiceMetrics> metrics = nullptr;
};

inline SchedulerOptions LargeSchedulerDefaults() {
  SchedulerOptions options;
  options.name = "large";
  options.queue_capacity = 64;
  options.max_batch = 8;
  return options;
}

struct GuardServiceOptions {
  SchedulerOptions small_scheduler = SchedulerOptions();  // name "small"
  SchedulerOptions large_scheduler = LargeSchedulerDefaults();
  CascadeOptions cascade;
  std::string model_name = "saferoute-lg3";
  double default_deadline_ms = 5000;
  double max_deadline_ms = 60000;
  int max_inputs_per_request = 32;
  int max_turns = 64;
  bool log_prompts = false;
};

class GuardService {
 public:
  static absl::StatusOr<std::unique_ptr<GuardService>> Create(GuardServiceParts parts,
                                                              GuardServiceOptions options);
  ~GuardService();  // Shutdown()

  // Decides `inputs` within `deadline_ms` (clamped to max_deadline_ms; <= 0
  // means the default). Unavailable while draining.
  absl::StatusOr<std::vector<CascadeDecision>> Decide(const std::vector<GuardRequest>& inputs,
                                                      double deadline_ms);

  // Readiness: not draining, and, with a large guard, what the
  // failure policy needs: under fail_closed every escalation would be
  // blocked without it, so its Ping() failing makes the service not ready;
  // under fail_open and degrade the service still answers (the policy
  // decides escalations), so it stays ready: a replica whose remote is down
  // is not taken out of a load balancer for something every replica shares.
  // Either way saferoute_large_guard_up says whether the last probe reached
  // the large guard (Ping(): a remote one asks its server), and each
  // change is logged once.
  absl::Status Ready();
  // Replaces the router and escalation settings (SIGHUP); see
  // Cascade::Reconfigure. On error the current ones stay.
  absl::Status ReloadRouting(RoutingSettings settings) {
    return cascade_->Reconfigure(std::move(settings));
  }
  double router_threshold() const { return cascade_->base_threshold(); }
  void BeginDrain() { draining_ = true; }
  bool draining() const { return draining_; }
  void Shutdown();

  // Unique response id with a prefix ("modr-", "guard-").
  std::string NextId(absl::string_view prefix);

  MetricsRegistry& metrics() { return metrics_->registry(); }
  const GuardServiceOptions& options() const { return options_; }
  std::string small_name() const { return parts_.small->name(); }
  std::string large_name() const { return parts_.large ? parts_.large->name() : ""; }
  // The guards' format names (Guard::format_name): how their category codes
  // read as OpenAI moderation keys.
  std::string small_format() const { return parts_.small->format_name(); }
  std::string large_format() const { return parts_.large ? parts_.large->format_name() : ""; }

 private:
  GuardService(GuardServiceParts parts, GuardServiceOptions options);
  void RegisterMetrics();

  const GuardServiceParts parts_;
  const GuardServiceOptions options_;
  const std::shared_ptr<ServiceMetrics> metrics_;  // before the schedulers: they report to it
  std::unique_ptr<BatchScheduler> small_scheduler_;
  std::unique_ptr<BatchScheduler> large_scheduler_;
  std::unique_ptr<Cascade> cascade_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> large_up_{true};  // the last readiness probe reached the remote
  std::atomic<uint64_t> next_id_{0};
  uint64_t id_salt_ = 0;
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_GUARD_SERVICE_H_
