// Wire formats of the remote large guard, without any networking: request
// bodies for vLLM's /v1/completions and llama.cpp server's /completion, and
// parsers that turn a response body into the verdict-position log-probs.
// Shapes: ../shared/docs/guard-models.md §6.1-6.2; token ids §1.5.
//
// Every response is hostile input: a parser never crashes, never guesses, and
// names the JSON field that was wrong ("choices[0].logprobs.top_logprobs[0]").
#ifndef SAFEROUTE_SERVER_REMOTE_PROTOCOL_H_
#define SAFEROUTE_SERVER_REMOTE_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "guard/guard.h"
#include "server/remote_guard.h"

namespace saferoute {

// What one request asks of the remote guard.
struct RemoteQuery {
  const std::vector<int32_t>* prompt_ids = nullptr;  // ends with the verdict position (271)
  int max_tokens = 1;  // 1: score only; more: also greedy-decode the category line
};

// The two verdict tokens as the remote names them.
struct VerdictTokens {
  int32_t safe_id = 19193;
  int32_t unsafe_id = 39257;
  std::string safe_text = "safe";
  std::string unsafe_text = "unsafe";
};

// The remote's answer at the verdict position, plus the decoded text if asked.
struct RemoteScore {
  // Log-probabilities (full-vocabulary softmax) of "safe" and "unsafe".
  double logprob_safe = 0;
  double logprob_unsafe = 0;
  // A verdict token absent from the returned top-k has no exact value; its
  // log-prob is then the smallest log-prob listed, an upper bound (the list is
  // the k most likely tokens). Both absent is a bad response.
  bool safe_bounded = false;
  bool unsafe_bounded = false;
  std::string text;                    // generated text (decode requests)
  std::vector<int32_t> generated_ids;  // when the remote reports ids
};

// Request bodies (JSON text).
std::string BuildVllmRequestBody(const RemoteGuardOptions& options, const RemoteQuery& query);
std::string BuildLlamaCppRequestBody(const RemoteGuardOptions& options, const RemoteQuery& query);

// Parsers. Errors are InvalidArgument with the field path; the caller labels
// them as a bad response from the remote.
absl::StatusOr<RemoteScore> ParseVllmResponse(absl::string_view body, const VerdictTokens& tokens);
absl::StatusOr<RemoteScore> ParseLlamaCppResponse(absl::string_view body,
                                                  const VerdictTokens& tokens);

// Fills the score fields of `verdict` (p_unsafe two-way, p_*_full, logits as
// log-probs: same differences, so the two-way softmax is unchanged).
void FillVerdictFromScore(const RemoteScore& score, GuardVerdict& verdict);

// Parses a greedy decode "unsafe\nS1,S2" / "safe" (Llama Guard 3 output, §1.5)
// into `verdict.categories`; anything else leaves the text in
// `verdict.unparsed_output` and guesses nothing.
void FillCategoriesFromText(absl::string_view text, GuardVerdict& verdict);

}  // namespace saferoute

#endif  // SAFEROUTE_SERVER_REMOTE_PROTOCOL_H_
