#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/status.h"

namespace saferoute::eval {

void Confusion::Add(bool predicted, bool gold) {
  if (predicted) {
    gold ? ++tp : ++fp;
  } else {
    gold ? ++fn : ++tn;
  }
}
double Confusion::precision() const {
  return tp + fp == 0 ? 0.0 : static_cast<double>(tp) / (tp + fp);
}
double Confusion::recall() const {
  return tp + fn == 0 ? 0.0 : static_cast<double>(tp) / (tp + fn);
}
double Confusion::f1() const {
  // 2TP / (2TP + FP + FN): the same value as 2PR/(P+R), without 0/0 at P=R=0.
  const int64_t denom = 2 * tp + fp + fn;
  return denom == 0 ? 0.0 : 2.0 * static_cast<double>(tp) / denom;
}

Confusion Count(std::span<const uint8_t> predicted, std::span<const uint8_t> gold) {
  SR_CHECK(predicted.size() == gold.size());
  Confusion c;
  for (size_t i = 0; i < gold.size(); ++i) c.Add(predicted[i] != 0, gold[i] != 0);
  return c;
}

double BinaryEntropyBits(double p) {
  if (p <= 0.0 || p >= 1.0) return 0.0;
  return -(p * std::log2(p) + (1.0 - p) * std::log2(1.0 - p));
}

double Sigmoid(double x) {
  // Stable for large |x|.
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

namespace {
// log(1 + exp(x)) without overflow.
double Softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// d NLL / d w at inverse temperature w: sum_i m_i (sigmoid(w m_i) - y_i).
// Increasing in w (the NLL is convex in w).
double NllSlope(std::span<const double> margins, std::span<const uint8_t> gold, double w) {
  double slope = 0;
  for (size_t i = 0; i < margins.size(); ++i)
    slope += margins[i] * (Sigmoid(w * margins[i]) - (gold[i] ? 1.0 : 0.0));
  return slope;
}
}  // namespace

double TemperatureNll(std::span<const double> margins, std::span<const uint8_t> gold,
                      double temperature) {
  SR_CHECK(margins.size() == gold.size() && temperature > 0);
  double nll = 0;
  for (size_t i = 0; i < margins.size(); ++i) {
    const double z = margins[i] / temperature;
    // -log sigmoid(z) for unsafe, -log(1 - sigmoid(z)) = -log sigmoid(-z) for safe.
    nll += gold[i] ? Softplus(-z) : Softplus(z);
  }
  return nll;
}

double FitTemperature(std::span<const double> margins, std::span<const uint8_t> gold) {
  SR_CHECK(margins.size() == gold.size());
  constexpr double kMinT = 1e-3, kMaxT = 1e3;
  double lo = 1.0 / kMaxT, hi = 1.0 / kMinT;           // bracket on w = 1/T
  if (NllSlope(margins, gold, lo) >= 0) return kMaxT;  // optimum at w <= lo
  if (NllSlope(margins, gold, hi) <= 0) return kMinT;  // separable: optimum at w >= hi
  // Bisection in log w: 200 halvings reach double precision on any bracket.
  for (int iter = 0; iter < 200; ++iter) {
    const double mid = std::sqrt(lo * hi);
    if (NllSlope(margins, gold, mid) < 0) {
      lo = mid;
    } else {
      hi = mid;
    }
    if (hi / lo < 1 + 1e-14) break;
  }
  return 1.0 / std::sqrt(lo * hi);
}

double DiagonalCalibrate(double p_unsafe, double reference_p_unsafe) {
  SR_CHECK(reference_p_unsafe > 0 && reference_p_unsafe < 1);
  const double unsafe = p_unsafe / reference_p_unsafe;
  const double safe = (1.0 - p_unsafe) / (1.0 - reference_p_unsafe);
  return unsafe / (unsafe + safe);
}

std::vector<uint8_t> RandomRouting(size_t n, double share, uint64_t seed) {
  std::vector<uint8_t> route(n);
  uint64_t state = seed;
  for (size_t i = 0; i < n; ++i) {
    // splitmix64 (Steele et al. 2014): same stream on every platform,
    // unlike std::uniform_real_distribution.
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    const double u = static_cast<double>(z >> 11) * 0x1.0p-53;
    route[i] = u < share;
  }
  return route;
}

}  // namespace saferoute::eval
