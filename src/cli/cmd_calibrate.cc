// `saferoute calibrate`: measures the router's large-guard share at every
// threshold on held-out features, stores the table in a new router file and
// sets the operating threshold for a budget (--share). The service can pick
// another budget at run time from the same table (Router::ThresholdForShare).
#include <cstdio>
#include <string>

#include "cli/command.h"
#include "router/calibration.h"
#include "router/feature_set.h"
#include "router/metrics.h"
#include "router/router_file.h"

namespace saferoute::cli {
namespace {

struct CalibrateFlags {
  std::string router, features, labels, out;
  double share = 0.1;
  int points = kDefaultCalibrationPoints;
};

absl::Status RunCalibrate(const CalibrateFlags& flags) {
  SR_ASSIGN_OR_RETURN(RouterFileContents contents, ReadRouterFile(flags.router));
  SR_ASSIGN_OR_RETURN(FeatureSet features, ReadFeatureFile(flags.features));
  absl::Status source = CheckFeatureSource(contents.info, contents.network->feature_dim(),
                                           features.fingerprint, features.dim);
  if (!source.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(flags.features, ": ", source.message()));
  }
  std::vector<float> scores(features.rows());
  contents.network->Logits(features.features.data(), features.rows(), scores.data());
  for (float& s : scores) s = Sigmoid(s);

  RouterLabels labels;
  if (!flags.labels.empty()) {
    SR_ASSIGN_OR_RETURN(labels, ReadLabelsFor(flags.labels, features.ids));
  }
  const SafetyOutcomes outcomes{.small_unsafe = labels.small_pred,
                                .large_unsafe = labels.large_pred,
                                .gold_unsafe = labels.gold};
  SR_ASSIGN_OR_RETURN(
      contents.info.calibration,
      BuildCalibrationTable(scores, labels.has_outcomes ? &outcomes : nullptr, flags.points));
  SR_ASSIGN_OR_RETURN(contents.info.threshold,
                      InterpolateThreshold(contents.info.calibration, flags.share));
  contents.info.calibration_source = {{"features_file", flags.features},
                                      {"examples", features.rows()},
                                      {"target_share", flags.share},
                                      {"safety_f1", labels.has_outcomes}};
  SR_RETURN_IF_ERROR(WriteRouterFile(flags.out, *contents.network, contents.info));

  int64_t routed = 0;
  for (float s : scores) routed += s > contents.info.threshold;
  std::printf(
      "wrote %s: threshold %.6f sends %.2f%% of %lld calibration inputs to the large guard "
      "(target %.2f%%)\n",
      flags.out.c_str(), contents.info.threshold, 100.0 * routed / features.rows(),
      static_cast<long long>(features.rows()), 100.0 * flags.share);
  if (!flags.labels.empty()) {
    const BinaryCounts c = CountAtThreshold(scores, labels.t, contents.info.threshold);
    std::printf("  routing F1 against t: %.4f (paper threshold 0.5: %.4f)\n", c.F1(),
                CountAtThreshold(scores, labels.t, 0.5).F1());
  }
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupCalibrateCommand(CLI::App& cmd) {
  auto flags = std::make_shared<CalibrateFlags>();
  cmd.add_option("--router", flags->router, "router file to calibrate")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--features", flags->features, "held-out feature file (same guard and layer)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option(
         "--labels", flags->labels,
         "optional hard labels JSONL; with small_pred/large_pred/gold the table gets safety F1")
      ->check(CLI::ExistingFile);
  cmd.add_option("--share", flags->share, "target share of inputs sent to the large guard")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--points", flags->points, "maximum rows of the calibration table")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  cmd.add_option("--out", flags->out, "router file to write")->required();
  return [flags] { return RunCalibrate(*flags); };
}

}  // namespace saferoute::cli
