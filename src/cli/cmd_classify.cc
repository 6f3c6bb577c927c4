// `saferoute classify`: one guard call on a local model directory, printing
// the verdict as JSON.
//   saferoute classify --model DIR [--format F] [--response T] [--categories FILE]
//                      [--exclude S2,S14] [--precision auto|fp32|bf16|int8|int8-a16] TEXT
// Output: {"verdict": "safe"|"unsafe", "p_unsafe" (two-way, the verdict's
// score), "p_unsafe_full", "p_safe_full", "health" (= p_safe_full +
// p_unsafe_full; near 1 for a real guard), "logit_safe", "logit_unsafe",
// "categories", "unparsed_output" (only when the decode is not a verdict),
// "generated_ids", "n_tokens" (incl. the verdict position), "timings" (ms)}.
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/guard_flags.h"
#include "guard/guard_format.h"
#include "guard/local_guard.h"
#include "guard/policy_file.h"
#include "nlohmann/json.hpp"

namespace saferoute::cli {
namespace {

struct ClassifyFlags {
  std::string model_dir;
  std::string format;
  std::string tokenizer;
  std::string text;
  std::optional<std::string> response;
  std::string categories;
  std::vector<std::string> exclude;
  std::string precision = "auto";
  int threads = 0;
  double threshold = 0.5;
  bool no_decode = false;
};

absl::Status RunClassify(const ClassifyFlags& flags) {
  LocalGuardOptions options;
  options.model_dir = flags.model_dir;
  options.format = flags.format;
  options.tokenizer_path = flags.tokenizer;
  options.threshold = flags.threshold;
  options.engine.num_threads = flags.threads;
  SR_ASSIGN_OR_RETURN(options.engine.precision, cpu::ParsePrecision(flags.precision));
  GuardRequest request;
  request.prompt = flags.text;
  request.response = flags.response;
  request.want_categories = !flags.no_decode;
  if (!flags.categories.empty() || !flags.exclude.empty()) {
    Policy policy;
    if (!flags.categories.empty()) {
      SR_ASSIGN_OR_RETURN(policy, LoadPolicyCategories(flags.categories));
    }
    policy.excluded = flags.exclude;
    request.policy = policy;
  }
  const auto load_start = std::chrono::steady_clock::now();
  SR_ASSIGN_OR_RETURN(std::unique_ptr<Guard> guard, OpenLocalGuard(options));
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start)
          .count();
  SR_ASSIGN_OR_RETURN(std::vector<GuardVerdict> verdicts, guard->Classify({request}));
  const GuardVerdict& v = verdicts[0];
  nlohmann::json out = {
      {"guard", guard->name()},
      {"compute",
       {{"path", guard->compute().path},
        {"impl", guard->compute().impl},
        {"isa", guard->compute().isa}}},
      {"verdict", v.unsafe ? "unsafe" : "safe"},
      {"p_unsafe", v.p_unsafe},
      {"p_unsafe_full", v.p_unsafe_full},
      {"p_safe_full", v.p_safe_full},
      {"health", v.p_safe_full + v.p_unsafe_full},
      {"logit_safe", v.logit_safe},
      {"logit_unsafe", v.logit_unsafe},
      {"categories", v.categories},
      {"generated_ids", v.generated_ids},
      {"n_tokens", v.n_tokens},
      {"timings",
       {{"load_ms", load_ms},
        {"tokenize_ms", v.timings.tokenize_ms},
        {"forward_ms", v.timings.forward_ms},
        {"decode_ms", v.timings.decode_ms}}},
  };
  if (v.unparsed_output.has_value()) {
    out["unparsed_output"] = *v.unparsed_output;  // invalid UTF-8 is replaced when printed
  }
  std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupClassifyCommand(CLI::App& cmd) {
  auto flags = std::make_shared<ClassifyFlags>();
  cmd.add_option("--model", flags->model_dir,
                 "HF model directory (config.json, safetensors, tokenizer.json) or .gguf file")
      ->required();
  cmd.add_option("--format", flags->format,
                 GuardFormatNameList() + " (default: guessed from the model's shape)");
  cmd.add_option("--tokenizer", flags->tokenizer,
                 "tokenizer.json or .gguf (default: the model's: <model>/tokenizer.json, or the "
                 ".gguf itself)");
  cmd.add_option("--response", flags->response,
                 "assistant response to judge (response classification)");
  cmd.add_option("--categories", flags->categories,
                 "custom category list: JSON object {\"S1\": \"Name.\"} or lines \"S1: Name.\"");
  cmd.add_option("--exclude", flags->exclude, "category keys to leave out (e.g. S2,S14)")
      ->delimiter(',');
  cmd.add_option("--precision", flags->precision,
                 "auto (fastest guard-safe path) | fp32 (parity) | bf16 | int8")
      ->capture_default_str();
  cmd.add_option("--threads", flags->threads, "CPU threads (0: all cores)")->capture_default_str();
  cmd.add_option("--threshold", flags->threshold, "unsafe iff p_unsafe > threshold")
      ->capture_default_str();
  cmd.add_flag("--no-decode", flags->no_decode, "skip the greedy decode for categories");
  cmd.add_option("text", flags->text, "the user prompt")->required();
  return [flags] { return RunClassify(*flags); };
}

}  // namespace saferoute::cli
