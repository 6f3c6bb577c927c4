// `saferoute score`: runs a guard over datasets and writes per-example scores
// (scores.jsonl), router features (features.safetensors) and meta.json into
// --out; resumable after a kill (eval/scoring.h).
#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/dataset_flags.h"
#include "cli/guard_flags.h"
#include "eval/dataset.h"
#include "eval/scoring.h"
#include "model/config.h"
#include "model/weights.h"

namespace saferoute::cli {
namespace {

struct ScoreFlags {
  GuardFlags guard;
  std::vector<std::string> data;
  eval::FieldMapping mapping;
  std::string out;
  bool no_progress = false;
};

absl::Status RunScore(const ScoreFlags& flags) {
  SR_ASSIGN_OR_RETURN(std::vector<eval::Example> examples,
                      eval::LoadDatasets(flags.data, flags.mapping));
  SR_ASSIGN_OR_RETURN(LocalGuardOptions options, ToLocalGuardOptions(flags.guard));
  SR_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfigAt(flags.guard.model_dir));
  SR_ASSIGN_OR_RETURN(std::unique_ptr<Guard> guard, OpenLocalGuard(options));
  eval::ScoreOptions score_options;
  score_options.batch_size = flags.guard.batch;
  score_options.dataset_files = flags.data;
  score_options.n_params = static_cast<double>(ComputeParamsPerToken(config));
  score_options.progress = !flags.no_progress;
  std::fprintf(stderr, "score: %zu examples with %s on %s -> %s\n", examples.size(),
               guard->name().c_str(), DescribeCompute(*guard).c_str(), flags.out.c_str());
  SR_ASSIGN_OR_RETURN(eval::ScoreSummary summary,
                      eval::ScoreDataset(*guard, examples, flags.out, score_options));
  std::printf("scored %lld examples (%lld resumed from an earlier run) into %s\n",
              static_cast<long long>(summary.total), static_cast<long long>(summary.resumed),
              flags.out.c_str());
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupScoreCommand(CLI::App& cmd) {
  auto flags = std::make_shared<ScoreFlags>();
  AddGuardFlags(cmd, flags->guard, "", "guard", /*model_required=*/true);
  cmd.add_option("--data", flags->data, "dataset files (bench JSONL, other JSONL or CSV)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--out", flags->out, "output directory (resumed if it holds an earlier run)")
      ->required();
  AddFieldMappingFlags(cmd, flags->mapping);
  cmd.add_flag("--no-progress", flags->no_progress, "no progress output");
  return [flags] { return RunScore(*flags); };
}

}  // namespace saferoute::cli
