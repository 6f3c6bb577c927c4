// `saferoute render`: a guard format's prompt for a prompt [+ response], as
// {"text": ..., "ids": [...]} (the HF chat template, byte for byte; user text
// never becomes special tokens). The format's verdict lead is NOT appended:
// that is the scorer's job.
//
//   saferoute render --format NAME (guard/guard_format.h registry) --tokenizer PATH
//                    --prompt T [--response T] [--categories FILE] [--exclude S2,S14]
// --categories FILE: a JSON object {"S1": "Phishing.", ...} (file order kept)
// or lines "S1: Phishing." (see guard/policy_file.h).
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "guard/guard_format.h"
#include "guard/policy_file.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"

namespace saferoute::cli {
namespace {

struct RenderFlags {
  std::string format;
  std::string tokenizer;
  std::string prompt;
  std::optional<std::string> response;
  std::string categories;
  std::vector<std::string> exclude;
};

absl::Status RunRender(const RenderFlags& flags) {
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const BpeTokenizer> tok, LoadTokenizer(flags.tokenizer));
  SR_ASSIGN_OR_RETURN(std::unique_ptr<GuardFormat> format,
                      OpenGuardFormat(flags.format, std::move(tok)));
  Policy policy;
  if (!flags.categories.empty()) {
    SR_ASSIGN_OR_RETURN(policy, LoadPolicyCategories(flags.categories));
  }
  policy.excluded = flags.exclude;
  GuardRequest request;
  request.prompt = flags.prompt;
  request.response = flags.response;
  SR_ASSIGN_OR_RETURN(std::vector<Turn> turns, RequestTurns(request));
  SR_ASSIGN_OR_RETURN(RenderedPrompt rendered, format->Render(turns, &policy));
  nlohmann::json out = {{"text", rendered.text}, {"ids", rendered.ids}};
  std::printf("%s\n", out.dump().c_str());
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupRenderCommand(CLI::App& cmd) {
  auto flags = std::make_shared<RenderFlags>();
  cmd.add_option("--format", flags->format, GuardFormatNameList())->required();
  cmd.add_option("--tokenizer", flags->tokenizer, "tokenizer.json or .gguf model file")->required();
  cmd.add_option("--prompt", flags->prompt, "the user turn")->required();
  cmd.add_option("--response", flags->response, "the assistant turn (response classification)");
  cmd.add_option("--categories", flags->categories,
                 "custom category list: JSON object {\"S1\": \"Name.\"} or lines \"S1: Name.\"");
  cmd.add_option("--exclude", flags->exclude, "category keys to leave out (e.g. S2,S14)")
      ->delimiter(',');
  return [flags] { return RunRender(*flags); };
}

}  // namespace saferoute::cli
