// `saferoute eval`: every method (small, large, random, entropy and its TS /
// CC / BC variants, SafeRoute, oracle) on labelled data from score files:
// safety F1/P/R, routing F1/AUPRC against t, large-guard share, latency and
// FLOPs relative to the small guard; F1-vs-share curves; a table, JSON and an
// SVG plot. Library: eval/eval_job.h, eval/report.h, eval/svg_plot.h.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/dataset_flags.h"
#include "eval/eval_job.h"
#include "eval/svg_plot.h"
#include "io/safetensors.h"
#include "router/router.h"

namespace saferoute::cli {
namespace {

struct EvalFlags {
  eval::EvalJob job;
  std::string router;
  double share = -1;  // -1: not given
  double small_params = 0, large_params = 0;
  bool json = false;
  std::string plot, title;
};

absl::Status RunEval(EvalFlags flags) {
  if (flags.share >= 0) flags.job.share = flags.share;
  if (flags.small_params > 0) flags.job.small_params = flags.small_params;
  if (flags.large_params > 0) flags.job.large_params = flags.large_params;
  std::unique_ptr<Router> router;
  if (!flags.router.empty()) {
    SR_ASSIGN_OR_RETURN(router, LoadRouter(flags.router));
  }
  SR_ASSIGN_OR_RETURN(eval::EvalReport report, eval::RunEvalJob(flags.job, router.get()));
  if (flags.json) {
    std::printf("%s\n", eval::ReportToJson(report).dump(2).c_str());
    // The table carries them; JSON readers may never look at the key.
    for (const std::string& warning : report.warnings)
      std::fprintf(stderr, "eval: warning: %s\n", warning.c_str());
  } else {
    std::printf("%s", eval::FormatReportTable(report).c_str());
  }
  if (!flags.plot.empty()) {
    std::string title = flags.title;
    if (title.empty()) {
      title = "F1 vs large-guard share";
      if (flags.job.data.size() == 1)
        title += ": " + flags.job.data[0].substr(flags.job.data[0].find_last_of('/') + 1);
    }
    SR_RETURN_IF_ERROR(WriteFileAtomically(flags.plot, eval::RenderTradeOffSvg(report, title)));
    std::fprintf(stderr, "eval: plot written to %s\n", flags.plot.c_str());
  }
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupEvalCommand(CLI::App& cmd) {
  auto flags = std::make_shared<EvalFlags>();
  eval::EvalJob& job = flags->job;
  cmd.add_option("--data", job.data, "labelled dataset files (JSONL or CSV)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--small-scores", job.small_scores,
                 "the small guard's scores.jsonl (meta.json beside it is read)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--large-scores", job.large_scores, "the large guard's scores.jsonl")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--router", flags->router, "router file: adds SafeRoute (needs --features)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--features", job.features, "the small guard's features.safetensors for --data")
      ->check(CLI::ExistingFile);
  cmd.add_option("--calib-small-scores", job.calib_small_scores,
                 "the small guard's scores on a training set: batch calibration (BC)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--calib-data", job.calib_data,
                 "that training set's dataset files: temperature scaling (TS) fitted by NLL")
      ->check(CLI::ExistingFile);
  cmd.add_option("--share", flags->share,
                 "a large-guard budget in (0, 1]: adds random and SafeRoute at that share");
  cmd.add_option("--seed", job.seed, "seed of the random baselines")->capture_default_str();
  cmd.add_option("--small-params", flags->small_params,
                 "small guard's parameter count (default: its meta.json)");
  cmd.add_option("--large-params", flags->large_params,
                 "large guard's parameter count (default: its meta.json)");
  cmd.add_flag("--json", flags->json, "print the report as JSON instead of a table");
  cmd.add_option("--plot", flags->plot, "write the F1-vs-share plot here (SVG)");
  cmd.add_option("--title", flags->title, "plot title");
  AddFieldMappingFlags(cmd, job.mapping);
  return [flags] { return RunEval(*flags); };
}

}  // namespace saferoute::cli
