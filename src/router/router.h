// A trained router: reads a small guard's feature, predicts whether the
// large guard is needed (t = 1: large right, small wrong).
//
// Contract between router/ (training, files) and its users (eval/, server/).
// Immutable after load; Score* are thread-safe.
#ifndef SAFEROUTE_ROUTER_ROUTER_H_
#define SAFEROUTE_ROUTER_ROUTER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "util/status.h"

namespace saferoute {

enum class RouterType { kBayesianMlp, kMlp, kLogistic };

// One row of the calibration table: routing with `threshold` sent
// `large_share` of the calibration inputs to the large guard (and, if known,
// reached safety F1 `f1`). Sorted by threshold, descending share.
struct CalibrationPoint {
  double threshold = 0.5;
  double large_share = 0;
  double f1 = -1;  // -1: not measured
};

class Router {
 public:
  virtual ~Router() = default;
  virtual RouterType type() const = 0;
  virtual int feature_dim() const = 0;
  // Fingerprint of the guard model + layer whose features it was trained on.
  virtual const std::string& feature_fingerprint() const = 0;
  // sigmoid(router(feature)): probability that the input is hard.
  virtual float Score(std::span<const float> feature) const = 0;
  // features: [n, feature_dim] row-major; out: [n].
  virtual void ScoreBatch(std::span<const float> features, std::span<float> out) const = 0;
  // Default operating threshold ε (0.5 unless calibration chose another).
  virtual double threshold() const = 0;
  virtual const std::vector<CalibrationPoint>& calibration() const = 0;
  // ε that sends about `share` (0..1) of inputs to the large guard,
  // interpolated from the calibration table; error without a table.
  virtual absl::StatusOr<double> ThresholdForShare(double share) const = 0;
  // Error unless `fingerprint` equals feature_fingerprint() and `dim` matches.
  virtual absl::Status CheckFeatureSource(std::string_view fingerprint, int dim) const = 0;
};

// Loads a router file (safetensors + JSON metadata, versioned).
absl::StatusOr<std::unique_ptr<Router>> LoadRouter(const std::string& path);

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_ROUTER_H_
