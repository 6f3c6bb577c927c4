#include "cascade/guard_time_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_format.h"
#include "util/status.h"

namespace saferoute {
namespace {

constexpr int kTerms = 3;  // per_batch, per_input, per_kilobyte

// Least squares restricted to the terms in `use` (a bit mask), by the normal
// equations (at most 3 x 3, Gaussian elimination with partial pivoting).
// Returns false if those terms are not identifiable from the calls (e.g.
// per_batch and per_input when every batch had the same size) or a
// coefficient comes out negative.
template <typename Calls>
bool FitTerms(const Calls& calls, unsigned use, std::array<double, kTerms>& coef, double& sse) {
  std::array<int, kTerms> terms{};
  int k = 0;
  for (int t = 0; t < kTerms; ++t) {
    if (use & (1u << t)) terms[k++] = t;
  }
  auto feature = [](const auto& call, int term) {
    return term == 0 ? 1.0 : term == 1 ? call.inputs : call.kilobytes;
  };
  double a[kTerms][kTerms + 1] = {};
  for (const auto& call : calls) {
    for (int r = 0; r < k; ++r) {
      for (int c = 0; c < k; ++c) a[r][c] += feature(call, terms[r]) * feature(call, terms[c]);
      a[r][k] += feature(call, terms[r]) * call.seconds;
    }
  }
  double scale = 0;
  for (int r = 0; r < k; ++r) scale = std::max(scale, std::abs(a[r][r]));
  for (int col = 0; col < k; ++col) {
    int pivot = col;
    for (int r = col + 1; r < k; ++r) {
      if (std::abs(a[r][col]) > std::abs(a[pivot][col])) pivot = r;
    }
    if (!(std::abs(a[pivot][col]) > 1e-9 * scale)) return false;  // singular
    for (int c = 0; c <= k; ++c) std::swap(a[col][c], a[pivot][c]);
    for (int r = 0; r < k; ++r) {
      if (r == col) continue;
      const double f = a[r][col] / a[col][col];
      for (int c = col; c <= k; ++c) a[r][c] -= f * a[col][c];
    }
  }
  coef = {0, 0, 0};
  for (int r = 0; r < k; ++r) {
    const double value = a[r][k] / a[r][r];
    if (value < 0) return false;
    coef[terms[r]] = value;
  }
  sse = 0;
  for (const auto& call : calls) {
    double predicted = 0;
    for (int t = 0; t < kTerms; ++t) predicted += coef[t] * feature(call, t);
    sse += (call.seconds - predicted) * (call.seconds - predicted);
  }
  return true;
}

}  // namespace

GuardTimeModel::GuardTimeModel(int window) : window_(static_cast<size_t>(window)) {
  SR_CHECK(window >= 1);
}

void GuardTimeModel::Observe(int inputs, double text_bytes, double seconds) {
  if (inputs < 1 || !(seconds >= 0) || !std::isfinite(seconds) || !(text_bytes >= 0)) return;
  // Scatter from calls predicted by a fit of at least two calls (the first
  // fit is one call's guess, its misses say nothing about the guard).
  if (calls_.size() >= 2) {
    const double predicted = Predict(inputs, text_bytes);
    if (predicted > 0) {
      ratios_.push_back(seconds / predicted);
      if (ratios_.size() > window_) ratios_.pop_front();
      // 90th percentile (nearest rank): one hiccup does not halve the batches.
      std::vector<double> sorted(ratios_.begin(), ratios_.end());
      std::sort(sorted.begin(), sorted.end());
      const size_t rank = static_cast<size_t>(std::ceil(0.9 * sorted.size())) - 1;
      scatter_ = std::clamp(sorted[rank], 1.0, 2.0);
    }
  }
  calls_.push_back({static_cast<double>(inputs), text_bytes / 1000, seconds});
  if (calls_.size() > window_) calls_.pop_front();
  Refit();
}

void GuardTimeModel::Refit() {
  // Simplest first: a richer set of terms must lower the error by 2% to win.
  constexpr unsigned kPerBatch = 1, kPerInput = 2, kPerKilobyte = 4;
  constexpr unsigned kOrder[] = {kPerInput,
                                 kPerInput | kPerKilobyte,
                                 kPerBatch | kPerInput,
                                 kPerBatch | kPerInput | kPerKilobyte,
                                 kPerBatch,
                                 kPerKilobyte,
                                 kPerBatch | kPerKilobyte};
  double best_sse = std::numeric_limits<double>::infinity();
  std::array<double, kTerms> best{};
  for (unsigned use : kOrder) {
    std::array<double, kTerms> coef{};
    double sse = 0;
    if (!FitTerms(calls_, use, coef, sse)) continue;
    if (sse < 0.98 * best_sse) {
      best_sse = sse;
      best = coef;
    }
  }
  fit_ = {.per_batch_s = best[0], .per_input_s = best[1], .per_kilobyte_s = best[2]};
}

double GuardTimeModel::Predict(int inputs, double text_bytes) const {
  return fit_.per_batch_s + fit_.per_input_s * inputs + fit_.per_kilobyte_s * text_bytes / 1000;
}

double GuardTimeModel::PredictUpper(int inputs, double text_bytes) const {
  return scatter_ * Predict(inputs, text_bytes);
}

std::string GuardTimeModel::DebugString() const {
  return absl::StrFormat(
      "%.3f s per call + %.3f s per input + %.3f s per KB, x%.2f for scatter (%d calls)",
      fit_.per_batch_s, fit_.per_input_s, fit_.per_kilobyte_s, scatter_, calls_.size());
}

}  // namespace saferoute
