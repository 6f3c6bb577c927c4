// The service's Prometheus metrics: the families (declared once, here), and
// the CascadeObserver that turns the cascade's events into them. The
// cascade reads nothing back from them; they are exposition only.
#ifndef SAFEROUTE_SERVER_SERVICE_METRICS_H_
#define SAFEROUTE_SERVER_SERVICE_METRICS_H_

#include "cascade/cascade.h"
#include "server/metrics.h"

namespace saferoute::server {

class ServiceMetrics final : public CascadeObserver {
 public:
  // Declares the cascade's and the HTTP layer's families on `registry`.
  explicit ServiceMetrics(MetricsRegistry* registry);

  void OnStage(CascadeStage stage, double queue_ms, std::optional<double> guard_ms) override;
  void OnRouting(std::optional<float> score, std::optional<double> router_ms,
                 absl::string_view reason) override;
  void OnEscalationShare(double since_start, std::optional<double> window) override;
  void OnFailurePolicy(FailurePolicy policy, LargeFailure failure) override;
  void OnShadow(ShadowOutcome outcome) override;
  void OnDecision(const CascadeDecision& decision) override;
  // Inputs per Guard::Classify call of the named guard ("small" | "large").
  void OnBatch(absl::string_view guard, int size);

 private:
  MetricsRegistry* const registry_;
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_SERVICE_METRICS_H_
