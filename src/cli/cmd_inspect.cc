// `saferoute inspect`: one forward pass over given token ids, printing the raw
// final hidden states (after the last norm, every position), the last-position
// logits, optionally the residual stream after every layer and a greedy
// continuation (`--generate N`), as JSON. The activation dump for bisecting a
// numerical mismatch against HF or llama.cpp; the model is an HF directory or
// a .gguf file.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "model/engine.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"

namespace saferoute::cli {
namespace {

struct InspectFlags {
  std::string model_dir;
  std::string token_ids;
  bool layers = false;
  int generate = 0;
  std::string precision = "fp32";
  int threads = 0;
};

absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text) {
  std::vector<int32_t> ids;
  int index = 0;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("--token-ids: item ", index, " ('",
                                                     std::string(part), "') is not an integer"));
    }
    ids.push_back(id);
    ++index;
  }
  if (ids.empty()) return absl::InvalidArgumentError("--token-ids: no ids");
  return ids;
}

nlohmann::json Rows(const std::vector<float>& flat, size_t width) {
  nlohmann::json rows = nlohmann::json::array();
  for (size_t r = 0; r + width <= flat.size(); r += width) {
    rows.push_back(std::vector<float>(flat.begin() + r, flat.begin() + r + width));
  }
  return rows;
}

absl::Status RunInspect(const InspectFlags& flags) {
  SR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseTokenIds(flags.token_ids));
  SR_ASSIGN_OR_RETURN(Precision precision, cpu::ParsePrecision(flags.precision));
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, LoadModel(flags.model_dir));
  EngineOptions options;
  options.precision = precision;
  options.num_threads = flags.threads;
  options.max_tokens = static_cast<int64_t>(ids.size()) + std::max(flags.generate, 0);
  SR_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model, options));
  std::fprintf(stderr, "inspect: %s\n", engine->path_description().c_str());
  SequenceRequest request;
  request.tokens = ids;
  request.logits = LogitsMode::kFull;
  request.all_hidden = true;
  request.layer_taps = flags.layers;
  SR_ASSIGN_OR_RETURN(std::vector<SequenceResult> results, engine->Prefill({&request, 1}));
  const SequenceResult& result = results[0];
  const auto h = static_cast<size_t>(model->config().hidden_size);
  nlohmann::json out;
  out["hidden"] = Rows(result.hidden, h);
  out["logits_last"] = result.logits;
  if (flags.layers) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& layer : result.layers) layers.push_back(Rows(layer, h));
    out["layers"] = std::move(layers);
  }
  if (flags.generate > 0) {
    // No stop ids: exactly `generate` tokens, for comparison with a reference's.
    SR_ASSIGN_OR_RETURN(out["generated"], engine->GreedyDecode(ids, nullptr, flags.generate, {}));
  }
  const std::string text = out.dump();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupInspectCommand(CLI::App& cmd) {
  auto flags = std::make_shared<InspectFlags>();
  cmd.add_option("--model", flags->model_dir, "Hugging Face model directory or .gguf file")
      ->required();
  cmd.add_option("--token-ids", flags->token_ids, "Comma-separated token ids, e.g. 1,2,3")
      ->required();
  cmd.add_flag("--layers", flags->layers, "Also print the residual stream after every layer");
  cmd.add_option("--generate", flags->generate,
                 "Also print this many greedy next tokens (KV-cache decode, no stop token)")
      ->check(CLI::Range(0, 4096));
  // fp32 by default: inspect is the parity tool (activations against HF fp32).
  cmd.add_option("--precision", flags->precision, "auto | fp32 (parity) | bf16 | int8")
      ->capture_default_str();
  cmd.add_option("--threads", flags->threads, "Threads (0: all cores)")->capture_default_str();
  return [flags] { return RunInspect(*flags); };
}

}  // namespace saferoute::cli
