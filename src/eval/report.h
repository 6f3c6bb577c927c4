// The evaluation report: every method (the paper's baselines, SafeRoute,
// the oracle) on one labelled set, with safety metrics, routing metrics
// against the hard labels t, the share sent to the large guard, cost relative
// to the small guard alone (measured latency and FLOPs), and F1-vs-share
// trade-off curves for SafeRoute and entropy routing.
#ifndef SAFEROUTE_EVAL_REPORT_H_
#define SAFEROUTE_EVAL_REPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "eval/dataset.h"
#include "eval/metrics.h"
#include "eval/score_file.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {

// All vectors are aligned with `examples` (see AlignScores).
struct EvalInputs {
  std::vector<Example> examples;
  std::vector<ScoreRecord> small;
  std::vector<ScoreRecord> large;
  // SafeRoute: sigmoid(router(feature)) per example, and its default ε.
  std::optional<std::vector<double>> router_scores;
  double router_threshold = 0.5;
  // ε from the router's calibration table for `share` (SafeRoute at a budget).
  std::optional<double> router_share_threshold;
  // Contextual calibration: the small guard's score on a content-free input.
  std::optional<ContentFreeScore> content_free;
  // Batch calibration: mean small-guard p(unsafe) over a training set.
  std::optional<double> batch_mean_p_unsafe;
  // Temperature scaling: T fitted on a training set (FitTemperature).
  std::optional<double> temperature;
  // Parameter counts for FLOPs = 2 * params * tokens.
  std::optional<double> small_params;
  std::optional<double> large_params;
  // Random routing at this share (besides the paper's 50%), and the seed.
  std::optional<double> share;
  uint64_t seed = 0;
};

struct MethodResult {
  std::string key;    // stable JSON key: "small", "entropy_ts", ...
  std::string label;  // for tables and plots
  Confusion safety;   // final verdicts vs gold (positive = unsafe)
  Confusion routing;  // routing decisions vs t (positive = routed / t = 1)
  double large_share = 0;
  std::optional<double> routing_auprc;  // methods with a continuous routing score
  std::optional<double> latency_rel;    // total latency / small-only latency
  std::optional<double> flops_rel;      // total FLOPs / small-only FLOPs
  nlohmann::ordered_json settings = nlohmann::ordered_json::object();  // ε, T, r1, seed...
  // Methods run at a requested share (--share): that share, and whether the
  // realised large_share missed it by more than kShareTolerance.
  std::optional<double> target_share;
  bool missed_target_share = false;
};

// A method run at a requested share that realises a share further than this
// from it (absolute, as a fraction: 0.05 = 5 percentage points) is reported
// with a warning and marked in the table and the plot.
inline constexpr double kShareTolerance = 0.05;

// Route iff score > epsilon.
struct CurvePoint {
  double epsilon = 0;
  double large_share = 0;
  double f1 = 0;
};

struct EvalReport {
  int64_t n = 0;
  int64_t n_unsafe = 0;
  int64_t n_hard = 0;  // t = 1
  std::vector<MethodResult> methods;
  std::map<std::string, std::vector<CurvePoint>> curves;  // "saferoute", "entropy"
  std::vector<std::string> notes;                         // methods skipped and why
  // Results a reader could take for what they are not (a requested share
  // that was missed); the CLI also prints them on stderr.
  std::vector<std::string> warnings;
  const MethodResult* Find(const std::string& key) const;
};

EvalReport RunEvaluation(const EvalInputs& inputs);

// F1 against share for "route iff score > ε" over every distinct ε (at most
// `max_points`, thinned evenly in share, always keeping both ends).
std::vector<CurvePoint> TradeOffCurve(const std::vector<double>& routing_scores,
                                      const std::vector<uint8_t>& small_pred,
                                      const std::vector<uint8_t>& large_pred,
                                      const std::vector<uint8_t>& gold, size_t max_points = 201);

// {"n":..,"n_unsafe":..,"n_hard":..,"methods":{"small":{"f1",...},...},"curves":{...},
//  "notes":[...],"warnings":[...]}
nlohmann::ordered_json ReportToJson(const EvalReport& report);
// The table, with a footnote on the oracle's cost and the warnings; rows
// that missed their target share are marked with '!'.
std::string FormatReportTable(const EvalReport& report);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_REPORT_H_
