// Metrics and the building blocks of the paper's baselines: confusion
// counts, F1, average precision, binary entropy, temperature scaling,
// diagonal (contextual / batch) calibration, seeded random routing.
#ifndef SAFEROUTE_EVAL_METRICS_H_
#define SAFEROUTE_EVAL_METRICS_H_

#include <cstdint>
#include <span>
#include <vector>

namespace saferoute::eval {

// Positive class = unsafe (safety metrics) or t = 1 (routing metrics).
// Undefined ratios (0/0) are 0, as sklearn's zero_division default.
struct Confusion {
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;
  void Add(bool predicted, bool gold);
  double precision() const;
  double recall() const;
  double f1() const;
};

Confusion Count(std::span<const uint8_t> predicted, std::span<const uint8_t> gold);

// Average precision: saferoute::AveragePrecision (router/metrics.h).

// H(p) = -p log2 p - (1-p) log2 (1-p), in bits; H(0) = H(1) = 0.
double BinaryEntropyBits(double p);
// The paper's entropy rule: route to the large guard iff H > 0.5 bit.
inline constexpr double kEntropyThresholdBits = 0.5;

double Sigmoid(double x);

// Temperature scaling on the two verdict logits: p̂ = sigmoid(margin / T)
// with margin = logit_unsafe - logit_safe. Returns the T that minimises the
// negative log-likelihood of `gold` (exact 1-D convex minimisation in w = 1/T
// by bisection on the derivative; the paper's code runs Adam from T = 1.5,
// which approaches the same optimum). T is clamped to [1e-3, 1e3] (a
// perfectly separable set has its optimum at T -> 0).
double FitTemperature(std::span<const double> margins, std::span<const uint8_t> gold);
double TemperatureNll(std::span<const double> margins, std::span<const uint8_t> gold,
                      double temperature);

// Diagonal calibration (Zhao et al. 2021; Zhou et al. 2024):
// q̂1 = (q1/r1) / ((1-q1)/(1-r1) + q1/r1), where r1 is the content-free
// input's p(unsafe) (CC) or the mean p(unsafe) over a training set (BC).
double DiagonalCalibrate(double p_unsafe, double reference_p_unsafe);

// Seeded, platform-independent uniform draws in [0, 1) (splitmix64), one per
// index: RandomRouting(n, share, seed)[i] = u_i < share.
std::vector<uint8_t> RandomRouting(size_t n, double share, uint64_t seed);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_METRICS_H_
