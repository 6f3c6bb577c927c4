// Router-quality metrics on the validation split.
#ifndef SAFEROUTE_ROUTER_METRICS_H_
#define SAFEROUTE_ROUTER_METRICS_H_

#include <cstdint>
#include <span>

namespace saferoute {

// Average precision (area under the precision-recall curve, step-wise, as
// sklearn.metrics.average_precision_score): sum over distinct score
// thresholds, highest first, of (R_k - R_{k-1}) * P_k. Tied scores form one
// step. NaN when there is no positive target.
// Used by training (float scores) and by eval's routing AUPRC (double).
double AveragePrecision(std::span<const float> scores, std::span<const uint8_t> targets);
double AveragePrecision(std::span<const double> scores, std::span<const uint8_t> targets);

struct BinaryCounts {
  int64_t true_pos = 0, false_pos = 0, false_neg = 0, true_neg = 0;
  double F1() const;        // 0 when there are no positives predicted or present
  double Accuracy() const;  // NaN when empty
};

// Counts of (score > threshold) against targets.
BinaryCounts CountAtThreshold(std::span<const float> scores, std::span<const uint8_t> targets,
                              double threshold);

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_METRICS_H_
