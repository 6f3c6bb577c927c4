#include "router/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "util/status.h"

namespace saferoute {

namespace {

template <typename Score>
double AveragePrecisionOf(std::span<const Score> scores, std::span<const uint8_t> targets) {
  SR_CHECK(scores.size() == targets.size());
  const int64_t positives =
      std::count_if(targets.begin(), targets.end(), [](uint8_t t) { return t != 0; });
  if (positives == 0) return std::numeric_limits<double>::quiet_NaN();
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  // Stable: equal scores keep input order; they are grouped below anyway.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  double ap = 0, previous_recall = 0;
  int64_t true_pos = 0, seen = 0;
  for (size_t k = 0; k < order.size();) {
    // One step per distinct score: everything tied is above the threshold together.
    size_t end = k;
    while (end < order.size() && scores[order[end]] == scores[order[k]]) {
      true_pos += targets[order[end]] != 0;
      ++end;
    }
    seen += static_cast<int64_t>(end - k);
    const double recall = static_cast<double>(true_pos) / positives;
    const double precision = static_cast<double>(true_pos) / seen;
    ap += (recall - previous_recall) * precision;
    previous_recall = recall;
    k = end;
  }
  return ap;
}

}  // namespace

double AveragePrecision(std::span<const float> scores, std::span<const uint8_t> targets) {
  return AveragePrecisionOf(scores, targets);
}
double AveragePrecision(std::span<const double> scores, std::span<const uint8_t> targets) {
  return AveragePrecisionOf(scores, targets);
}

double BinaryCounts::F1() const {
  const int64_t denom = 2 * true_pos + false_pos + false_neg;
  return denom == 0 ? 0.0 : 2.0 * true_pos / denom;
}

double BinaryCounts::Accuracy() const {
  const int64_t total = true_pos + false_pos + false_neg + true_neg;
  return total == 0 ? std::numeric_limits<double>::quiet_NaN()
                    : static_cast<double>(true_pos + true_neg) / total;
}

BinaryCounts CountAtThreshold(std::span<const float> scores, std::span<const uint8_t> targets,
                              double threshold) {
  SR_CHECK(scores.size() == targets.size());
  BinaryCounts c;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool predicted = scores[i] > threshold;
    const bool actual = targets[i] != 0;
    if (predicted && actual)
      ++c.true_pos;
    else if (predicted)
      ++c.false_pos;
    else if (actual)
      ++c.false_neg;
    else
      ++c.true_neg;
  }
  return c;
}

}  // namespace saferoute
