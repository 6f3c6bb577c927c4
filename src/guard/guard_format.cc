// What every guard does with a format: the request's turns, the scoring
// prompt, the verdict score and the decoded answer. The registry is in
// format_registry.cc, the families in their own files.
#include "guard/guard_format.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "util/utf8.h"

namespace saferoute {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

std::string_view RoleName(Turn::Role role) {
  return role == Turn::Role::kUser ? "user" : "assistant";
}

// log(sum(exp(logits[i]))) over the tokens with `unsafe` == want; -inf if none.
double GroupLogSumExp(std::span<const VerdictToken> tokens, std::span<const double> logits,
                      bool want) {
  double max = kNegInf;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].unsafe == want) max = std::max(max, logits[i]);
  }
  if (max == kNegInf) return kNegInf;
  double sum = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].unsafe == want) sum += std::exp(logits[i] - max);
  }
  return max + std::log(sum);
}

}  // namespace

absl::StatusOr<std::vector<Turn>> RequestTurns(const GuardRequest& request) {
  std::vector<Turn> turns;
  if (!request.conversation.empty()) {
    if (!request.prompt.empty() || request.response.has_value()) {
      return absl::InvalidArgumentError(
          "request gives both a conversation and a prompt/response; give one");
    }
    turns = request.conversation;
  } else {
    turns.push_back({Turn::Role::kUser, request.prompt});
    if (request.response.has_value()) turns.push_back({Turn::Role::kAssistant, *request.response});
  }
  for (size_t i = 0; i < turns.size(); ++i) {
    const Turn::Role expected = i % 2 == 0 ? Turn::Role::kUser : Turn::Role::kAssistant;
    if (turns[i].role != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "conversation turn ", i, ": roles must alternate user/assistant starting with user"));
    }
    SR_RETURN_IF_ERROR(ValidateUtf8(
        turns[i].content,
        absl::StrCat("conversation turn ", i, " (", AbslView(RoleName(turns[i].role)), ")")));
  }
  return turns;
}

absl::StatusOr<RenderedPrompt> RenderForVerdict(const GuardFormat& format,
                                                const GuardRequest& request) {
  SR_ASSIGN_OR_RETURN(std::vector<Turn> turns, RequestTurns(request));
  const Policy* policy = request.policy.has_value() ? &*request.policy : nullptr;
  SR_ASSIGN_OR_RETURN(RenderedPrompt rendered, format.Render(turns, policy));
  const std::span<const int32_t> lead = format.verdict_lead_ids();
  rendered.ids.insert(rendered.ids.end(), lead.begin(), lead.end());
  SR_ASSIGN_OR_RETURN(std::string lead_text, format.tokenizer().Decode(lead));
  rendered.text += lead_text;
  return rendered;
}

void ScoreVerdict(std::span<const VerdictToken> tokens, std::span<const double> logits,
                  double log_normalizer, GuardVerdict& verdict) {
  SR_CHECK(tokens.size() == logits.size());
  const double safe = GroupLogSumExp(tokens, logits, false);
  const double unsafe = GroupLogSumExp(tokens, logits, true);
  SR_CHECK(safe > kNegInf || unsafe > kNegInf);
  // Two-way softmax over the groups, the logistic of the difference; an
  // impossible group (-inf) gives exactly 0 or 1.
  double p_unsafe;
  if (safe == kNegInf) {
    p_unsafe = 1;
  } else if (unsafe == kNegInf) {
    p_unsafe = 0;
  } else {
    p_unsafe = 1.0 / (1.0 + std::exp(safe - unsafe));
  }
  verdict.p_unsafe = static_cast<float>(p_unsafe);
  verdict.p_unsafe_full = static_cast<float>(std::exp(unsafe - log_normalizer));
  verdict.p_safe_full = static_cast<float>(std::exp(safe - log_normalizer));
  verdict.logit_safe = static_cast<float>(safe);
  verdict.logit_unsafe = static_cast<float>(unsafe);
}

void ApplyDecodedOutput(const GuardFormat& format, std::string_view text, const Policy* policy,
                        bool complete, GuardVerdict& verdict) {
  verdict.categories.clear();
  verdict.unparsed_output.reset();
  std::optional<ParsedOutput> parsed;
  if (complete) parsed = format.ParseOutput(text, policy);
  if (parsed.has_value()) {
    verdict.categories = std::move(parsed->categories);
  } else {
    verdict.unparsed_output = std::string(text);  // kept verbatim, nothing guessed
  }
}

}  // namespace saferoute
