// Guard formats: everything that is particular to one guard family, behind
// one interface. A GuardFormat, bound to the model's tokenizer, knows
//   - its chat template: a conversation and a policy -> prompt ids (template
//     specials inserted by id; user text is encoded as plain text and never
//     parsed for specials, so it cannot forge a turn);
//   - its verdict position: the ids the model writes before its verdict
//     (verdict_lead_ids, appended to the prompt so that one forward pass
//     scores) and the first token of each answer it can give there
//     (verdict_tokens), whose logits give p(unsafe);
//   - its output grammar: the decoded tail -> verdict + categories;
//   - its category table (the default policy) and its stop ids.
//
// One file per family (guard/llama_guard3.cc) and one line in the registry
// (guard/format_registry.cc). Nothing else in the tree writes a family's token
// ids or template text: LocalGuard, the remote guard, cli/ and the service
// get them from here, and token ids are looked up in the tokenizer when the
// format is opened, never hard-coded.
//
// Thread safety: a GuardFormat is immutable once opened; every method is
// const and may run on many threads at once.
#ifndef SAFEROUTE_GUARD_GUARD_FORMAT_H_
#define SAFEROUTE_GUARD_GUARD_FORMAT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "guard/guard.h"
#include "model/config.h"
#include "tokenizer/bpe_tokenizer.h"
#include "util/status.h"

namespace saferoute {

struct RenderedPrompt {
  std::string text;          // the prompt as the HF chat template renders it (specials as text)
  std::vector<int32_t> ids;  // its token ids
  // ids[0, prefix_tokens) depend only on (format, policy, judged role), not on
  // the conversation: a prefix the engine may cache. 0 if that text does not
  // end on a token boundary (then nothing may be cached).
  size_t prefix_tokens = 0;
  std::string prefix_text;  // the text of that prefix: a complete cache key
};

// One answer a model can give at its verdict position.
struct VerdictToken {
  std::string label;    // what SafeRoute calls it: "safe", "unsafe", "controversial"
  int32_t id = -1;      // the answer's first token id (from the tokenizer)
  std::string text;     // that token's text, as a server lists it in a top-k ("unsafe")
  bool unsafe = false;  // the answer counts toward p_unsafe
};

// The decoded output of a guard, parsed.
struct ParsedOutput {
  std::string verdict;                  // a VerdictToken label
  std::vector<std::string> categories;  // category codes the output names, in its order
};

class GuardFormat {
 public:
  virtual ~GuardFormat() = default;

  // The registry name ("llama-guard-3-1b").
  virtual std::string_view name() const = 0;
  // The tokenizer every id of this format belongs to.
  virtual const BpeTokenizer& tokenizer() const = 0;

  // Category table shown when a request brings no policy ({"S1", "Violent Crimes."}, ...).
  virtual const std::vector<std::pair<std::string, std::string>>& default_categories() const = 0;

  // The family's chat template for `turns` (alternating, user first; the last
  // turn is judged) under `policy` (null: the defaults), ending where the
  // model starts to answer (HF apply_chat_template with the generation
  // prompt). Errors name the turn or the policy entry.
  virtual absl::StatusOr<RenderedPrompt> Render(const std::vector<Turn>& turns,
                                                const Policy* policy) const = 0;

  // What the model writes between the rendered prompt and its verdict token.
  // The scoring prompt is Render() + these ids; its last position is the
  // verdict position. May be empty.
  virtual std::span<const int32_t> verdict_lead_ids() const = 0;
  // The answers at the verdict position; at least one safe and one unsafe.
  virtual std::span<const VerdictToken> verdict_tokens() const = 0;
  // Ids that end the model's answer (the template's end of turn).
  virtual std::span<const int32_t> stop_ids() const = 0;

  // Parses what the model generated after verdict_lead_ids (stop token cut).
  // nullopt unless the text has the family's output form and names only
  // categories `policy` (null: the defaults) shows: nothing is guessed.
  virtual std::optional<ParsedOutput> ParseOutput(std::string_view text,
                                                  const Policy* policy) const = 0;
};

// ------------------------------------------------------------- the registry

// One registered format: its name, whether a model of a given shape is one
// (for GuessFormat), how to open it on a tokenizer, and the OpenAI
// omni-moderation category keys (`POST /v1/moderations`) each of its category
// codes stands for (empty for a code with no counterpart).
struct GuardFormatEntry {
  std::string_view name;
  bool (*matches_shape)(const ModelConfig& config);
  absl::StatusOr<std::unique_ptr<GuardFormat>> (*open)(
      std::shared_ptr<const BpeTokenizer> tokenizer);
  std::vector<std::string> (*moderation_keys)(std::string_view code);
};

// Every registered format, in registry order.
std::span<const GuardFormatEntry> GuardFormatEntries();
// "llama-guard-3-1b | llama-guard-3-8b": for help texts and error messages.
std::string GuardFormatNameList();

// The OpenAI moderation keys of category `code` of format `format_name`;
// empty for an unknown format or a code without a counterpart.
std::vector<std::string> ModerationKeys(std::string_view format_name, std::string_view code);

// Opens format `name` on `tokenizer`. Unknown names are an error listing the
// known ones; a tokenizer without the format's tokens is an error naming them.
absl::StatusOr<std::unique_ptr<GuardFormat>> OpenGuardFormat(
    std::string_view name, std::shared_ptr<const BpeTokenizer> tokenizer);

// The registry name of the format a model of this shape uses, when exactly
// one format matches. `where` names the model in the error ("DIR/config.json",
// "model.gguf"), which asks for the format to be given.
absl::StatusOr<std::string> GuessFormat(const ModelConfig& config, std::string_view where);

// --------------------------------------- what every guard does with a format

// The turns a request asks to judge: `conversation`, or prompt [+ response].
// Checks alternation (user first), that not both forms are given, and UTF-8
// (errors name the turn).
absl::StatusOr<std::vector<Turn>> RequestTurns(const GuardRequest& request);

// The prompt a guard runs for `request`: Render() + verdict_lead_ids(). Its
// last position is the verdict position.
absl::StatusOr<RenderedPrompt> RenderForVerdict(const GuardFormat& format,
                                                const GuardRequest& request);

// Fills the score fields of `verdict` (p_unsafe, p_unsafe_full, p_safe_full,
// logit_safe, logit_unsafe; not `unsafe`, whose threshold is the caller's)
// from the verdict position. `logits[i]` belongs to verdict_tokens()[i] (-inf:
// probability 0); `log_normalizer` is the log-sum-exp over the whole
// vocabulary (0 when `logits` are already log-probabilities).
//   logit_safe / logit_unsafe: log-sum-exp over the safe / unsafe answers
//     (the answers' own logits for a two-way format);
//   p_unsafe: softmax over the verdict tokens only, summed over the unsafe
//     answers = logistic(logit_unsafe - logit_safe) (the paper's score);
//   p_unsafe_full / p_safe_full: full-vocabulary probabilities of the groups.
// At least one logit must be finite.
void ScoreVerdict(std::span<const VerdictToken> tokens, std::span<const double> logits,
                  double log_normalizer, GuardVerdict& verdict);

// Sets verdict.categories from a decoded answer, or keeps the text in
// verdict.unparsed_output when it does not parse or is not `complete` (the
// decode stopped at its length limit, not at a stop id).
void ApplyDecodedOutput(const GuardFormat& format, std::string_view text, const Policy* policy,
                        bool complete, GuardVerdict& verdict);

}  // namespace saferoute

#endif  // SAFEROUTE_GUARD_GUARD_FORMAT_H_
