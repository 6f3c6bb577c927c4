// The service's Prometheus metrics: the registry, the families (declared
// once, here), and the observers that turn the cascade's and the remote
// guard's events into them. Nothing reads them back as state; they are
// exposition only. One ServiceMetrics serves one GuardService.
#ifndef SAFEROUTE_SERVER_SERVICE_METRICS_H_
#define SAFEROUTE_SERVER_SERVICE_METRICS_H_

#include <mutex>

#include "cascade/cascade.h"
#include "cascade/remote_guard.h"
#include "server/metrics.h"

namespace saferoute::server {

class ServiceMetrics final : public CascadeObserver, public RemoteGuardObserver {
 public:
  // Declares the cascade's, the remote guard's and the HTTP layer's families.
  ServiceMetrics();
  MetricsRegistry& registry() { return registry_; }

  void OnStage(CascadeStage stage, double queue_ms, std::optional<double> guard_ms) override;
  void OnGuardPhases(CascadeStage stage, const GuardTimings& timings) override;
  void OnRouting(std::optional<float> score, std::optional<double> router_ms,
                 absl::string_view reason) override;
  void OnEscalationShare(double since_start, std::optional<double> window) override;
  void OnFailurePolicy(FailurePolicy policy, LargeFailure failure) override;
  void OnShadow(ShadowOutcome outcome) override;
  void OnDecision(const CascadeDecision& decision) override;
  // Inputs per Guard::Classify call of the named guard ("small" | "large").
  void OnBatch(absl::string_view guard, int size);
  // The remote large guard's calls and circuit state; the first report makes
  // every event series (at 0).
  void OnRemoteEvent(RemoteEvent event) override;
  void OnCircuitState(CircuitState state) override;

 private:
  void DeclareRemoteSeriesOnce();

  MetricsRegistry registry_;
  std::once_flag remote_series_;
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_SERVICE_METRICS_H_
