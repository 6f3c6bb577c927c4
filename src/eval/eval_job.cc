#include "eval/eval_job.h"

#include <cmath>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "eval/metrics.h"
#include "eval/score_file.h"
#include "eval/scoring.h"
#include "router/feature_set.h"

namespace saferoute::eval {
namespace {

absl::StatusOr<std::vector<ScoreRecord>> LoadAligned(const std::vector<Example>& examples,
                                                     const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("a score file path is empty");
  SR_ASSIGN_OR_RETURN(std::vector<ScoreRecord> scores, ReadScoreFile(path));
  return AlignScores(examples, std::move(scores), path);
}

// meta.json next to a score file, if there is one.
absl::StatusOr<std::optional<ScoreMeta>> OptionalMeta(const std::string& scores_path) {
  const std::string meta_path = MetaPathForScores(scores_path);
  if (!std::filesystem::exists(meta_path)) return std::optional<ScoreMeta>();
  SR_ASSIGN_OR_RETURN(ScoreMeta meta, ReadScoreMeta(meta_path));
  return std::optional<ScoreMeta>(std::move(meta));
}

// Router probabilities in dataset order.
absl::StatusOr<std::vector<double>> RouterScores(const Router& router,
                                                 const std::string& features_path,
                                                 const std::vector<Example>& examples,
                                                 const std::optional<ScoreMeta>& small_meta) {
  // Checks shape, unique ids, a fingerprint and finite values.
  SR_ASSIGN_OR_RETURN(FeatureSet table, ReadFeatureFile(features_path));
  if (small_meta.has_value() && !small_meta->fingerprint.empty() &&
      small_meta->fingerprint != table.fingerprint) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: features come from '%s' but the small guard's scores from '%s'",
                        features_path, table.fingerprint, small_meta->fingerprint));
  }
  absl::Status source = router.CheckFeatureSource(table.fingerprint, table.dim);
  if (!source.ok())
    return absl::InvalidArgumentError(absl::StrCat(features_path, ": ", source.message()));
  std::unordered_map<std::string, size_t> row_of;
  for (size_t r = 0; r < table.ids.size(); ++r) row_of.emplace(table.ids[r], r);
  const size_t dim = static_cast<size_t>(table.dim);
  std::vector<float> ordered(examples.size() * dim);  // [N, H] in dataset order
  for (size_t i = 0; i < examples.size(); ++i) {
    auto it = row_of.find(examples[i].id);
    if (it == row_of.end()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: no feature row for id '%s' (%s:%d)",
                                                        features_path, examples[i].id,
                                                        examples[i].file, examples[i].line));
    }
    const float* row = table.features.data() + it->second * dim;
    std::copy(row, row + dim, ordered.begin() + i * dim);
  }
  // Every example has a row and ids are unique, so the only other mismatch
  // is rows for examples that are not in the dataset.
  if (table.ids.size() != examples.size()) {
    std::unordered_set<std::string> wanted;
    for (const Example& ex : examples) wanted.insert(ex.id);
    for (size_t r = 0; r < table.ids.size(); ++r) {
      if (!wanted.contains(table.ids[r])) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: row %d id '%s' is not in the dataset files", features_path, r, table.ids[r]));
      }
    }
  }
  std::vector<float> probs(examples.size());
  router.ScoreBatch(ordered, probs);
  return std::vector<double>(probs.begin(), probs.end());
}

}  // namespace

absl::StatusOr<std::vector<HardLabel>> RunLabelJob(const LabelJob& job) {
  SR_ASSIGN_OR_RETURN(std::vector<Example> examples, LoadDatasets(job.data, job.mapping));
  SR_ASSIGN_OR_RETURN(std::vector<ScoreRecord> small, LoadAligned(examples, job.small_scores));
  SR_ASSIGN_OR_RETURN(std::vector<ScoreRecord> large, LoadAligned(examples, job.large_scores));
  std::vector<HardLabel> labels = ComputeHardLabels(examples, small, large);
  SR_RETURN_IF_ERROR(WriteHardLabels(job.out, labels));
  return labels;
}

absl::StatusOr<EvalInputs> PrepareEvalInputs(const EvalJob& job, const Router* router) {
  EvalInputs in;
  SR_ASSIGN_OR_RETURN(in.examples, LoadDatasets(job.data, job.mapping));
  SR_ASSIGN_OR_RETURN(in.small, LoadAligned(in.examples, job.small_scores));
  SR_ASSIGN_OR_RETURN(in.large, LoadAligned(in.examples, job.large_scores));
  SR_ASSIGN_OR_RETURN(std::optional<ScoreMeta> small_meta, OptionalMeta(job.small_scores));
  SR_ASSIGN_OR_RETURN(std::optional<ScoreMeta> large_meta, OptionalMeta(job.large_scores));
  if (small_meta.has_value()) {
    in.content_free = small_meta->content_free;
    in.small_params = small_meta->n_params;
  }
  if (large_meta.has_value()) in.large_params = large_meta->n_params;
  if (job.small_params.has_value()) in.small_params = job.small_params;
  if (job.large_params.has_value()) in.large_params = job.large_params;

  if (job.share.has_value() && !(*job.share > 0.0 && *job.share <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--share ", *job.share, " is not in (0, 1]"));
  }
  in.share = job.share;
  in.seed = job.seed;

  if ((router == nullptr) != job.features.empty()) {
    return absl::InvalidArgumentError(
        "SafeRoute needs both a router (--router) and the small guard's features (--features)");
  }
  if (router != nullptr) {
    SR_ASSIGN_OR_RETURN(in.router_scores,
                        RouterScores(*router, job.features, in.examples, small_meta));
    in.router_threshold = router->threshold();
    if (job.share.has_value()) {
      absl::StatusOr<double> eps = router->ThresholdForShare(*job.share);
      if (!eps.ok())
        return absl::Status(eps.status().code(),
                            absl::StrCat("router: --share: ", eps.status().message()));
      in.router_share_threshold = *eps;
    }
  }

  if (!job.calib_small_scores.empty()) {
    SR_ASSIGN_OR_RETURN(std::vector<ScoreRecord> calib, ReadScoreFile(job.calib_small_scores));
    if (!job.calib_data.empty()) {
      // Labelled calibration set: align (ids must match) and fit T by NLL.
      SR_ASSIGN_OR_RETURN(std::vector<Example> calib_examples,
                          LoadDatasets(job.calib_data, job.mapping));
      SR_ASSIGN_OR_RETURN(calib,
                          AlignScores(calib_examples, std::move(calib), job.calib_small_scores));
      std::vector<double> margins;
      std::vector<uint8_t> gold;
      for (size_t i = 0; i < calib.size(); ++i) {
        margins.push_back(calib[i].logit_unsafe - calib[i].logit_safe);
        gold.push_back(calib_examples[i].unsafe);
      }
      in.temperature = FitTemperature(margins, gold);
    }
    double sum = 0;
    for (const ScoreRecord& r : calib) sum += r.p_unsafe;
    const double mean = sum / static_cast<double>(calib.size());
    if (!(mean > 0.0 && mean < 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(job.calib_small_scores, ": mean p_unsafe is ", mean,
                       "; batch calibration needs it strictly between 0 and 1"));
    }
    in.batch_mean_p_unsafe = mean;
  } else if (!job.calib_data.empty()) {
    return absl::InvalidArgumentError(
        "--calib-data needs --calib-small-scores (the small guard's scores on it)");
  }
  return in;
}

absl::StatusOr<EvalReport> RunEvalJob(const EvalJob& job, const Router* router) {
  SR_ASSIGN_OR_RETURN(EvalInputs inputs, PrepareEvalInputs(job, router));
  return RunEvaluation(inputs);
}

}  // namespace saferoute::eval
