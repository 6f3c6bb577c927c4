// `saferoute label`: hard labels (paper Eq. 1) from the small and the large
// guard's score files and the datasets' gold labels. Library: eval/eval_job.h.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/dataset_flags.h"
#include "eval/eval_job.h"

namespace saferoute::cli {
namespace {

absl::Status RunLabel(const eval::LabelJob& job) {
  SR_ASSIGN_OR_RETURN(std::vector<eval::HardLabel> labels, eval::RunLabelJob(job));
  int64_t hard = 0, small_right = 0, large_right = 0;
  for (const eval::HardLabel& h : labels) {
    hard += h.t;
    small_right += h.small_pred == h.gold;
    large_right += h.large_pred == h.gold;
  }
  const double n = static_cast<double>(labels.size());
  std::fprintf(
      stderr, "label: %zu examples, t=1 for %lld (%.2f%%); accuracy small %.4f, large %.4f -> %s\n",
      labels.size(), static_cast<long long>(hard), 100.0 * hard / n, small_right / n,
      large_right / n, job.out.c_str());
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupLabelCommand(CLI::App& cmd) {
  auto job = std::make_shared<eval::LabelJob>();
  cmd.add_option("--data", job->data, "dataset files (JSONL or CSV) with the gold labels")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--small", job->small_scores, "the small guard's scores.jsonl")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--large", job->large_scores, "the large guard's scores.jsonl")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--out", job->out,
                 "labels to write: JSONL {\"id\",\"t\",\"small_pred\",\"large_pred\",\"gold\"}")
      ->required();
  AddFieldMappingFlags(cmd, job->mapping);
  return [job] { return RunLabel(*job); };
}

}  // namespace saferoute::cli
