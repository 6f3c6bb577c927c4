// The `saferoute label` and `saferoute eval` jobs as library calls: the CLI
// files only declare flags and call these (and tests call them directly).
#ifndef SAFEROUTE_EVAL_EVAL_JOB_H_
#define SAFEROUTE_EVAL_EVAL_JOB_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/dataset.h"
#include "eval/labels.h"
#include "eval/report.h"
#include "router/router.h"
#include "util/status.h"

namespace saferoute::eval {

struct LabelJob {
  std::vector<std::string> data;  // dataset files (gold labels)
  FieldMapping mapping;
  std::string small_scores;  // S/scores.jsonl
  std::string large_scores;  // L/scores.jsonl
  std::string out;           // labels.jsonl
};

// Loads, aligns (ids must match exactly), applies Eq. 1, writes `out`.
absl::StatusOr<std::vector<HardLabel>> RunLabelJob(const LabelJob& job);

struct EvalJob {
  std::vector<std::string> data;
  FieldMapping mapping;
  std::string small_scores, large_scores;
  // SafeRoute: the small guard's features.safetensors (needs a router).
  std::string features;
  // Calibration set (the training split): small-guard scores for batch
  // calibration; with its dataset files (gold labels) also temperature scaling.
  std::string calib_small_scores;
  std::vector<std::string> calib_data;
  std::optional<double> share;  // a large-guard budget in (0, 1]
  uint64_t seed = 0;
  // Parameter counts (FLOPs); default: "n_params" of each meta.json.
  std::optional<double> small_params, large_params;
};

// Builds the report inputs: every file validated, aligned by id, router run
// on the features (fingerprint and dimension checked). `router` may be null.
absl::StatusOr<EvalInputs> PrepareEvalInputs(const EvalJob& job, const Router* router);

absl::StatusOr<EvalReport> RunEvalJob(const EvalJob& job, const Router* router);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_EVAL_JOB_H_
