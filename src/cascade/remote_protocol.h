// Wire formats of the remote large guard, without any networking: request
// bodies for vLLM's /v1/completions and llama.cpp server's /completion, and
// parsers that turn a response body into the verdict-position log-probs.
// Shapes: ../shared/docs/guard-models.md §6.1-6.2. The verdict tokens are the
// guard format's (GuardFormat::verdict_tokens).
//
// Every response is hostile input: a parser never crashes, never guesses, and
// names the JSON field that was wrong ("choices[0].logprobs.top_logprobs[0]").
#ifndef SAFEROUTE_CASCADE_REMOTE_PROTOCOL_H_
#define SAFEROUTE_CASCADE_REMOTE_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cascade/remote_guard.h"
#include "guard/guard.h"
#include "guard/guard_format.h"

namespace saferoute {

// What one request asks of the remote guard.
struct RemoteQuery {
  const std::vector<int32_t>* prompt_ids = nullptr;  // ends with the format's verdict lead
  int max_tokens = 1;  // 1: score only; more: also greedy-decode the category line
};

// The remote's answer at the verdict position, plus the decoded text if asked.
struct RemoteScore {
  // Log-probabilities (full-vocabulary softmax) of the verdict tokens, in the
  // order of the format's verdict_tokens().
  std::vector<double> logprobs;
  // A verdict token absent from the returned top-k has no exact value; its
  // log-prob is then the smallest log-prob listed, an upper bound (the list is
  // the k most likely tokens). All absent is a bad response.
  std::vector<bool> bounded;
  std::string text;                    // generated text (decode requests)
  std::vector<int32_t> generated_ids;  // when the remote reports ids
};

// Request bodies (JSON text).
std::string BuildVllmRequestBody(const RemoteGuardOptions& options, const RemoteQuery& query);
std::string BuildLlamaCppRequestBody(const RemoteGuardOptions& options, const RemoteQuery& query);

// Parsers. Errors are InvalidArgument with the field path; the caller labels
// them as a bad response from the remote.
absl::StatusOr<RemoteScore> ParseVllmResponse(absl::string_view body,
                                              std::span<const VerdictToken> tokens);
absl::StatusOr<RemoteScore> ParseLlamaCppResponse(absl::string_view body,
                                                  std::span<const VerdictToken> tokens);

// Fills the score fields of `verdict` (ScoreVerdict over the log-probs: the
// two-way softmax is that of the logits) and its unsafe flag (p_unsafe > 0.5).
void FillVerdictFromScore(const RemoteScore& score, std::span<const VerdictToken> tokens,
                          GuardVerdict& verdict);

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_REMOTE_PROTOCOL_H_
