#include "router/calibration.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "router/metrics.h"

namespace saferoute {
namespace {

absl::Status CheckBinary(std::span<const uint8_t> values, size_t expected, std::string_view name) {
  if (values.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("calibration: ", std::string(name), " has ",
                                                   values.size(), " rows, scores have ", expected));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] > 1) {
      return absl::InvalidArgumentError(absl::StrCat("calibration: ", std::string(name), " row ", i,
                                                     ": value ", int{values[i]}, " is not 0 or 1"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<CalibrationPoint>> BuildCalibrationTable(std::span<const float> scores,
                                                                    const SafetyOutcomes* outcomes,
                                                                    int max_points) {
  if (scores.empty()) return absl::InvalidArgumentError("calibration: no scores");
  if (max_points < 2) return absl::InvalidArgumentError("calibration: max_points must be >= 2");
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!(scores[i] >= 0.0f && scores[i] <= 1.0f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration: score ", i, " = ", scores[i], " is not in [0, 1]"));
    }
  }
  const size_t n = scores.size();
  if (outcomes) {
    SR_RETURN_IF_ERROR(CheckBinary(outcomes->small_unsafe, n, "small_unsafe"));
    SR_RETURN_IF_ERROR(CheckBinary(outcomes->large_unsafe, n, "large_unsafe"));
    SR_RETURN_IF_ERROR(CheckBinary(outcomes->gold_unsafe, n, "gold_unsafe"));
  }
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });

  // Cascade verdict counts, starting with nothing routed (all small verdicts).
  BinaryCounts counts;
  auto add = [&](size_t row, bool routed, int sign) {
    const bool predicted = routed ? outcomes->large_unsafe[row] : outcomes->small_unsafe[row];
    const bool gold = outcomes->gold_unsafe[row];
    int64_t& cell = predicted ? (gold ? counts.true_pos : counts.false_pos)
                              : (gold ? counts.false_neg : counts.true_neg);
    cell += sign;
  };
  if (outcomes) {
    for (size_t i = 0; i < n; ++i) add(i, false, +1);
  }
  auto f1 = [&]() { return outcomes ? counts.F1() : -1.0; };

  // Walk thresholds from high to low; `routed` rows have score > threshold.
  std::vector<CalibrationPoint> descending;  // by threshold, high to low
  descending.push_back({.threshold = 1.0, .large_share = 0.0, .f1 = f1()});
  size_t routed = 0;
  while (routed < n) {
    const float value = scores[order[routed]];
    if (value == 0.0f) {
      // Scores of exactly 0 are never routed (strict >): ε = 0 routes the
      // same rows as the previous cut.
      descending.push_back(
          {.threshold = 0.0, .large_share = static_cast<double>(routed) / n, .f1 = f1()});
      break;
    }
    // Everything tied at `value` crosses together.
    while (routed < n && scores[order[routed]] == value) {
      if (outcomes) {
        add(order[routed], false, -1);
        add(order[routed], true, +1);
      }
      ++routed;
    }
    // Midway to the next distinct score; after the lowest, ε = 0 routes all.
    const double threshold = routed < n ? 0.5 * (double(value) + scores[order[routed]]) : 0.0;
    descending.push_back(
        {.threshold = threshold, .large_share = static_cast<double>(routed) / n, .f1 = f1()});
  }

  // Downsample to max_points, keeping both ends and the points nearest to
  // evenly spaced shares.
  std::vector<CalibrationPoint> kept;
  if (static_cast<int>(descending.size()) <= max_points) {
    kept = descending;
  } else {
    size_t cursor = 0;
    for (int j = 0; j < max_points; ++j) {
      const double target =
          static_cast<double>(j) / (max_points - 1) * descending.back().large_share;
      while (cursor + 1 < descending.size() &&
             std::abs(descending[cursor + 1].large_share - target) <=
                 std::abs(descending[cursor].large_share - target)) {
        ++cursor;
      }
      if (kept.empty() || kept.back().threshold != descending[cursor].threshold) {
        kept.push_back(descending[cursor]);
      }
    }
    if (kept.back().threshold != descending.back().threshold) kept.push_back(descending.back());
  }
  std::reverse(kept.begin(), kept.end());  // ascending threshold, descending share
  return kept;
}

absl::StatusOr<double> InterpolateThreshold(const std::vector<CalibrationPoint>& table,
                                            double share) {
  if (table.empty()) {
    return absl::FailedPreconditionError(
        "router has no calibration table (run `saferoute calibrate`)");
  }
  if (!(share >= 0.0 && share <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("large-guard share ", share, " is not in [0, 1]"));
  }
  // table: ascending threshold, descending share.
  if (share >= table.front().large_share) return table.front().threshold;
  if (share <= table.back().large_share) return table.back().threshold;
  for (size_t i = 0; i + 1 < table.size(); ++i) {
    const CalibrationPoint& hi = table[i];      // larger share, lower threshold
    const CalibrationPoint& lo = table[i + 1];  // smaller share, higher threshold
    if (share <= hi.large_share && share >= lo.large_share) {
      if (hi.large_share == lo.large_share) return lo.threshold;
      const double frac = (hi.large_share - share) / (hi.large_share - lo.large_share);
      return hi.threshold + frac * (lo.threshold - hi.threshold);
    }
  }
  return absl::InternalError("calibration table is not sorted");  // ruled out by validation
}

absl::Status ValidateCalibrationTable(const std::vector<CalibrationPoint>& table,
                                      std::string_view where) {
  for (size_t i = 0; i < table.size(); ++i) {
    const CalibrationPoint& p = table[i];
    auto bad = [&](std::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(where), ": calibration point ", i, ": ", std::string(what)));
    };
    if (!std::isfinite(p.threshold) || p.threshold < 0 || p.threshold > 1)
      return bad("threshold is not in [0, 1]");
    if (!(p.large_share >= 0 && p.large_share <= 1)) return bad("large_share is not in [0, 1]");
    if (!(p.f1 == -1 || (p.f1 >= 0 && p.f1 <= 1))) return bad("f1 is neither -1 nor in [0, 1]");
    if (i > 0 && !(p.threshold > table[i - 1].threshold)) return bad("thresholds not ascending");
    if (i > 0 && p.large_share > table[i - 1].large_share)
      return bad("large_share increases with the threshold");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CalibrationPoint>> CalibrateOnValidation(const TrainedRouter& trained,
                                                                    const RouterLabels& labels) {
  std::vector<uint8_t> small, large, gold;
  if (labels.has_outcomes) {
    for (int64_t row : trained.val_rows) {
      small.push_back(labels.small_pred[row]);
      large.push_back(labels.large_pred[row]);
      gold.push_back(labels.gold[row]);
    }
  }
  const SafetyOutcomes outcomes{.small_unsafe = small, .large_unsafe = large, .gold_unsafe = gold};
  return BuildCalibrationTable(trained.val_scores, labels.has_outcomes ? &outcomes : nullptr);
}

}  // namespace saferoute
