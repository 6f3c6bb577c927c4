// `saferoute augment`: k paraphrases per example from an OpenAI-compatible
// chat endpoint (paper §3.3). Library: eval/augment.h.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/dataset_flags.h"
#include "eval/augment.h"
#include "eval/dataset.h"

namespace saferoute::cli {
namespace {

struct AugmentFlags {
  std::string data, out;
  eval::FieldMapping mapping;
  eval::AugmentOptions options;
};

absl::Status RunAugment(const AugmentFlags& flags) {
  SR_ASSIGN_OR_RETURN(std::vector<eval::Example> examples,
                      eval::LoadDatasets({flags.data}, flags.mapping));
  SR_ASSIGN_OR_RETURN(eval::AugmentSummary s,
                      eval::AugmentDataset(examples, flags.out, flags.options));
  std::fprintf(
      stderr,
      "augment: %zu examples x %d: %lld written, %lld already there, %lld replies did not parse "
      "(dropped), %lld retries -> %s\n",
      examples.size(), flags.options.k, static_cast<long long>(s.written),
      static_cast<long long>(s.skipped_existing), static_cast<long long>(s.parse_failures),
      static_cast<long long>(s.retries), flags.out.c_str());
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupAugmentCommand(CLI::App& cmd) {
  auto flags = std::make_shared<AugmentFlags>();
  eval::AugmentOptions& o = flags->options;
  cmd.add_option("--data", flags->data, "dataset file to paraphrase (JSONL or CSV)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--url", o.url, "OpenAI-compatible API base URL, e.g. http://127.0.0.1:8000/v1")
      ->required();
  cmd.add_option("--model", o.model, "model name sent with each request")->required();
  cmd.add_option("--out", flags->out, "output JSONL (appended; rerun to resume)")->required();
  cmd.add_option("--k", o.k, "paraphrases per example")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd.add_option("--temperature", o.temperature, "sampling temperature")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 5.0));
  cmd.add_option("--max-tokens", o.max_tokens, "max tokens per reply")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd.add_option("--timeout", o.timeout_s, "per-request timeout, seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd.add_option("--retries", o.max_retries, "retries per request (transport errors, 429, 5xx)")
      ->capture_default_str()
      ->check(CLI::Range(0, 20));
  AddFieldMappingFlags(cmd, flags->mapping);
  return [flags] { return RunAugment(*flags); };
}

}  // namespace saferoute::cli
