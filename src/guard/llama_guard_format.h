// Llama Guard 3 prompt rendering, byte-exact with the Hugging Face chat
// templates of Llama-Guard-3-1B and -8B (docs: guard-models.md §1.3):
//   8B: a leading " " before <|begin_of_text|>, categories S1-S14 by default,
//       "...violated categories.<|eot_id|>";
//   1B: categories S1-S13 by default, "...violated categories. <|eot_id|>".
// Both end at "<|start_header_id|>assistant<|end_header_id|>" (no "\n\n");
// appending token 271 for the verdict position is the scorer's job.
//
// Ids are built, never parsed from text: template specials are inserted by id
// and each text segment between them is encoded as plain text, so user text
// containing "<|eot_id|>" stays text (the one deliberate divergence from HF's
// apply_chat_template, which parses specials inside user content).
#ifndef SAFEROUTE_GUARD_LLAMA_GUARD_FORMAT_H_
#define SAFEROUTE_GUARD_LLAMA_GUARD_FORMAT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "guard/guard.h"
#include "tokenizer/bpe_tokenizer.h"
#include "util/status.h"

namespace saferoute {

enum class GuardFormat { kLlamaGuard3_1B, kLlamaGuard3_8B };

// "llama-guard-3-1b" | "llama-guard-3-8b"; other names are an error listing these.
absl::StatusOr<GuardFormat> ParseGuardFormat(std::string_view name);
std::string_view GuardFormatName(GuardFormat format);

// The format's default category list ({"S1", "Violent Crimes."}, ...).
std::vector<std::pair<std::string, std::string>> DefaultCategories(GuardFormat format);

struct RenderedPrompt {
  std::string text;          // the prompt as HF renders it (specials as their strings)
  std::vector<int32_t> ids;  // its token ids (template specials only)
  // ids[0, prefix_tokens) depend only on (format, policy, judged role): the
  // text up to and including "<BEGIN CONVERSATION>\n\n". 0 if that text does
  // not end on a token boundary (then nothing may be cached).
  size_t prefix_tokens = 0;
  std::string prefix_text;  // the text of that prefix: a complete cache key
};

// The turns a request asks to judge: `conversation`, or prompt [+ response].
// Checks alternation (user first), that not both forms are given, and UTF-8
// (errors name the turn).
absl::StatusOr<std::vector<Turn>> RequestTurns(const GuardRequest& request);

// Renders and tokenizes. `policy` may be null (format defaults). Custom
// categories replace the list (as the 1B template's `categories` kwarg; the
// 8B renders the same structure with the given list); `excluded` keys are left
// out, unknown excluded keys are ignored (one policy may go to both guards).
absl::StatusOr<RenderedPrompt> RenderLlamaGuard3(GuardFormat format, const std::vector<Turn>& turns,
                                                 const Policy* policy,
                                                 const BpeTokenizer& tokenizer);

// Python str.strip() (= Jinja `trim`): removes leading and trailing
// characters for which str.isspace() is true. Input must be valid UTF-8.
std::string_view PythonStrip(std::string_view text);
bool IsPythonSpace(char32_t code_point);

// Parses a model's verdict text ("safe", "unsafe\nS1,S10", surrounding
// whitespace allowed, as in "\n\nunsafe\nS1<|eot_id|>" once the eot is cut).
// Returns false when the text is not of that form.
struct ParsedVerdict {
  bool unsafe = false;
  std::vector<std::string> categories;
};
bool ParseVerdictText(std::string_view text, ParsedVerdict& out);

}  // namespace saferoute

#endif  // SAFEROUTE_GUARD_LLAMA_GUARD_FORMAT_H_
