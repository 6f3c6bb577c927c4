// Budget calibration: which router threshold ε sends a given share of inputs
// to the large guard. The paper fixes ε = 0.5; a calibration table measured
// on held-out (validation) scores lets the service pick ε for a budget at run
// time (Router::ThresholdForShare) instead.
#ifndef SAFEROUTE_ROUTER_CALIBRATION_H_
#define SAFEROUTE_ROUTER_CALIBRATION_H_

#include <cstdint>
#include <span>
#include <vector>

#include "router/feature_set.h"
#include "router/router.h"
#include "router/train.h"
#include "util/status.h"

namespace saferoute {

// Per calibration row, 0/1 each: the small guard's verdict (unsafe = 1), the
// large guard's verdict and the gold label. With these the table also holds
// the safety F1 of the cascade (large verdict iff score > ε) at each ε.
struct SafetyOutcomes {
  std::span<const uint8_t> small_unsafe;
  std::span<const uint8_t> large_unsafe;
  std::span<const uint8_t> gold_unsafe;
};

// Default table size: share resolution 0.1 percentage point.
inline constexpr int kDefaultCalibrationPoints = 1001;

// Table over router scores (sigmoid outputs in [0, 1]) of calibration inputs.
// Cut points lie midway between consecutive distinct scores, plus ε = 1
// (share 0) and ε = 0; if there are more than max_points cuts, the ones
// nearest to evenly spaced shares are kept. Sorted by ascending threshold
// (descending share). Errors: empty or non-finite/out-of-range scores,
// outcome arrays of the wrong size or not 0/1, max_points < 2.
absl::StatusOr<std::vector<CalibrationPoint>> BuildCalibrationTable(
    std::span<const float> scores, const SafetyOutcomes* outcomes = nullptr,
    int max_points = kDefaultCalibrationPoints);

// ε for `share` (in [0, 1]) by linear interpolation between the table's
// neighbouring points; shares beyond the table's range clamp to its ends.
absl::StatusOr<double> InterpolateThreshold(const std::vector<CalibrationPoint>& table,
                                            double share);

// The table of a freshly trained router, measured on its held-out validation
// rows (TrainedRouter::val_rows/val_scores); with the label file's guard
// verdicts and gold labels (labels.has_outcomes) it also holds the cascade's
// safety F1. `labels` is aligned to the rows the router was trained on.
absl::StatusOr<std::vector<CalibrationPoint>> CalibrateOnValidation(const TrainedRouter& trained,
                                                                    const RouterLabels& labels);

// Checks a table read from a file: finite thresholds strictly ascending,
// shares in [0, 1] not increasing, f1 in [0, 1] or -1. `where` prefixes errors.
absl::Status ValidateCalibrationTable(const std::vector<CalibrationPoint>& table,
                                      std::string_view where);

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_CALIBRATION_H_
