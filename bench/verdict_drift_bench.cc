// verdict_drift_bench: how far a reduced-precision GEMM path moves a guard
// verdict's probability on REAL weights, beside the tiny random guard fixture
// of guard_precision_test (issue 11's 0.02 bound is stated on that fixture,
// whose p(unsafe) swings by 0.02-0.06 under weight changes of one part in
// 10^4: a bound checked there says little about a real model).
//
// No real guard checkpoint can be downloaded here, so a real instruction
// model stands in: SmolLM2-135M-Instruct (a llama GGUF) is asked, zero-shot,
// whether each prompt of a safety dataset is safe or unsafe, and the
// verdict's probability is read exactly as LocalGuard reads Llama Guard's:
// the two verdict tokens' logits at the last position, p(unsafe) =
// sigmoid(l_unsafe - l_safe). Per path, against the fp32 path on the same
// prompts: mean / p99 / max |dp|, how many prompts move by more than 0.02,
// and how many verdicts flip at 0.5. Prints a table and JSON.
//
//   verdict_drift_bench --model SmolLM2-135M-Instruct.F32.gguf
//       [--data ../shared/bench/eval/toxicchat_test.jsonl] [--limit 200]
//       [--paths bf16-native,int8] [--threads 2] [--max-prompt-tokens 384]
//       [--json out.json]
//
// Timing plays no part in what is measured, so, as precision_quality_bench
// does, the bench re-runs itself with OMP_WAIT_POLICY=passive unless the
// variable is set (busy-waiting workers slow a shared machine ~20x).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cpu/dispatch.h"
#include "eval/dataset.h"
#include "model/engine.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"
#include "passive_omp.h"
#include "tokenizer/load_tokenizer.h"

namespace saferoute {
namespace {

// The zero-shot classification turn, in SmolLM2-Instruct's chat template
// (ChatML); the prompt is cut to `max_tokens` tokens first.
constexpr char kQuestion[] =
    "Is the following user request safe or unsafe? Answer with one word: safe or unsafe.\n\n"
    "Request: ";

struct Verdicts {
  std::vector<double> p_unsafe;  // per prompt
};

absl::StatusOr<std::vector<std::vector<int32_t>>> RenderPrompts(
    const BpeTokenizer& tokenizer, const std::vector<eval::Example>& examples, int max_tokens) {
  std::vector<std::vector<int32_t>> rendered;
  for (const eval::Example& ex : examples) {
    SR_ASSIGN_OR_RETURN(std::vector<int32_t> body, tokenizer.Encode(ex.prompt));
    if (static_cast<int>(body.size()) > max_tokens) body.resize(static_cast<size_t>(max_tokens));
    SR_ASSIGN_OR_RETURN(std::string text, tokenizer.Decode(body));
    SR_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                        tokenizer.EncodeParsingSpecials(absl::StrCat(
                            "<|im_start|>system\nYou are a content safety classifier.<|im_end|>\n"
                            "<|im_start|>user\n",
                            kQuestion, text, "<|im_end|>\n<|im_start|>assistant\n")));
    rendered.push_back(std::move(ids));
  }
  return rendered;
}

absl::StatusOr<Verdicts> Run(const std::shared_ptr<const Model>& model, cpu::GemmPath path,
                             int threads, const std::vector<std::vector<int32_t>>& prompts,
                             const std::vector<int32_t>& verdict_ids) {
  EngineOptions options;
  options.precision = cpu::PathPrecision(path);
  options.force_path = path;
  options.num_threads = threads;
  options.max_tokens = 1024;
  SR_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model, options));
  Verdicts out;
  for (const std::vector<int32_t>& ids : prompts) {
    SequenceRequest request;
    request.tokens = ids;
    request.logits = LogitsMode::kSelected;
    request.logit_ids = verdict_ids;
    SR_ASSIGN_OR_RETURN(std::vector<SequenceResult> result,
                        engine->Prefill(std::span<const SequenceRequest>(&request, 1)));
    const std::vector<float>& logits = result[0].logits;  // [safe, unsafe]
    const double margin = static_cast<double>(logits[1]) - logits[0];
    out.p_unsafe.push_back(1.0 / (1.0 + std::exp(-margin)));
  }
  return out;
}

nlohmann::json Compare(const Verdicts& reference, const Verdicts& path) {
  std::vector<double> drift;
  int over = 0, flips = 0;
  for (size_t i = 0; i < reference.p_unsafe.size(); ++i) {
    const double d = std::fabs(path.p_unsafe[i] - reference.p_unsafe[i]);
    drift.push_back(d);
    over += d > 0.02;
    flips += (path.p_unsafe[i] >= 0.5) != (reference.p_unsafe[i] >= 0.5);
  }
  std::vector<double> sorted = drift;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double d : drift) sum += d;
  const auto n = static_cast<double>(drift.size());
  return {{"prompts", drift.size()},
          {"mean_abs_dp", sum / n},
          {"p99_abs_dp", sorted[static_cast<size_t>(0.99 * (sorted.size() - 1))]},
          {"max_abs_dp", sorted.back()},
          {"over_0.02", over},
          {"verdict_flips", flips}};
}

int Main(int argc, char** argv) {
  CLI::App app{"Verdict drift of reduced-precision paths on a real model (zero-shot stand-in)"};
  std::string model_path,
      data = std::string(SAFEROUTE_SHARED_DIR) + "/bench/eval/toxicchat_test.jsonl",
      paths_text = "bf16-native,int8", json_path;
  int limit = 200, threads = 2, max_prompt_tokens = 384;
  app.add_option("--model", model_path, "GGUF or HF directory of a chat model (SmolLM2)")
      ->required();
  app.add_option("--data", data, "bench JSONL (prompts)");
  app.add_option("--limit", limit, "first N prompts")->check(CLI::Range(1, 100000));
  app.add_option("--paths", paths_text, "comma-separated GEMM paths to compare with fp32");
  app.add_option("--threads", threads)->check(CLI::Range(1, 256));
  app.add_option("--max-prompt-tokens", max_prompt_tokens)->check(CLI::Range(1, 900));
  app.add_option("--json", json_path, "also write the JSON here");
  CLI11_PARSE(app, argc, argv);
  bench::RerunWithPassiveOmpWait(argv, "verdict_drift_bench");

  auto fail = [](const absl::Status& status) {
    std::fprintf(stderr, "verdict_drift_bench: %s\n", std::string(status.message()).c_str());
    return 1;
  };
  auto model = LoadModel(model_path);
  if (!model.ok()) return fail(model.status());
  auto tokenizer = LoadTokenizer(ModelTokenizerPath(model_path));
  if (!tokenizer.ok()) return fail(tokenizer.status());
  auto examples = eval::LoadDatasetFile(data);
  if (!examples.ok()) return fail(examples.status());
  if (static_cast<int>(examples->size()) > limit) examples->resize(static_cast<size_t>(limit));
  std::vector<int32_t> verdict_ids;
  for (const char* word : {"safe", "unsafe"}) {
    auto ids = (*tokenizer)->Encode(word);
    if (!ids.ok()) return fail(ids.status());
    verdict_ids.push_back(ids->front());  // the verdict's first token, as LocalGuard reads it
  }
  if (verdict_ids[0] == verdict_ids[1]) {
    return fail(absl::InvalidArgumentError("'safe' and 'unsafe' start with the same token"));
  }
  auto prompts = RenderPrompts(**tokenizer, *examples, max_prompt_tokens);
  if (!prompts.ok()) return fail(prompts.status());

  auto reference = Run(*model, cpu::GemmPath::kFp32, threads, *prompts, verdict_ids);
  if (!reference.ok()) return fail(reference.status());
  // Drift matters most where the verdict is uncertain: how many fp32
  // probabilities lie in [0.1, 0.9].
  double unsafe_share = 0;
  int uncertain = 0;
  for (double p : reference->p_unsafe) {
    unsafe_share += p >= 0.5;
    uncertain += p >= 0.1 && p <= 0.9;
  }
  nlohmann::json report = {{"model", model_path},
                           {"data", data},
                           {"verdict_ids", verdict_ids},
                           {"fp32_unsafe_share", unsafe_share / reference->p_unsafe.size()},
                           {"fp32_p_in_0.1_0.9", uncertain},
                           {"paths", nlohmann::json::object()}};
  std::printf("%-14s %8s %12s %12s %12s %10s %8s\n", "path", "prompts", "mean |dp|", "p99 |dp|",
              "max |dp|", "> 0.02", "flips");
  for (absl::string_view name : absl::StrSplit(paths_text, ',', absl::SkipEmpty())) {
    const std::optional<cpu::GemmPath> path = cpu::ParseGemmPath(std::string(name));
    if (!path) return fail(absl::InvalidArgumentError(absl::StrCat("unknown path '", name, "'")));
    if (!cpu::ChoosePath(cpu::PathPrecision(*path), cpu::DetectCpuSupport(), *path).ok()) {
      std::printf("%-14s skipped: not available on this CPU (%s)\n", std::string(name).c_str(),
                  cpu::DescribePath(*path, cpu::DetectCpuSupport()).c_str());
      continue;
    }
    auto verdicts = Run(*model, *path, threads, *prompts, verdict_ids);
    if (!verdicts.ok()) return fail(verdicts.status());
    const nlohmann::json row = Compare(*reference, *verdicts);
    report["paths"][std::string(name)] = row;
    std::printf("%-14s %8d %12.5f %12.5f %12.5f %10d %8d\n", std::string(name).c_str(),
                row["prompts"].get<int>(), row["mean_abs_dp"].get<double>(),
                row["p99_abs_dp"].get<double>(), row["max_abs_dp"].get<double>(),
                row["over_0.02"].get<int>(), row["verdict_flips"].get<int>());
  }
  std::printf("%s\n", report.dump().c_str());
  if (!json_path.empty()) std::ofstream(json_path) << report.dump(2) << "\n";
  return 0;
}

}  // namespace
}  // namespace saferoute

int main(int argc, char** argv) { return saferoute::Main(argc, argv); }
