// libFuzzer target (DEVELOPERS.md, "Fuzzing"): response bodies of the remote
// large guard as RemoteGuard reads them: ParseVllmResponse (vLLM
// /v1/completions) or ParseLlamaCppResponse (llama.cpp server /completion),
// then FillVerdictFromScore.
// Input: one selector byte (bit 0: llama.cpp, else vLLM; bit 1: a third
// verdict token, as a format with "controversial" has), then the body.
// The verdict tokens are stand-ins (ids 1001..1003, texts "safe", "unsafe",
// "controversial"): the parsers do not depend on a guard format, so the target
// needs no tokenizer file and writes no guard family's ids.
// Invariants beyond "no crash":
//  - every error is InvalidArgument with a valid UTF-8 message (it ends up in
//    logs and JSON responses);
//  - a score has one log-prob per verdict token, each <= 0 and not NaN, at
//    least one of them listed and one finite; a token absent from the top-k
//    gets a bound no larger than any listed verdict token's log-prob;
//  - generated ids are exactly the response's "tokens" (llama.cpp: no id
//    silently wrapped into int32);
//  - the verdict's p_unsafe is in [0, 1] and decides `unsafe`;
//  - the score written back as a response of either server (current shape,
//    ids) parses to the same score.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cascade/remote_protocol.h"
#include "nlohmann/json.hpp"
#include "util/status.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

using json = nlohmann::json;

const std::vector<VerdictToken>& VerdictTokens(bool three) {
  static const std::vector<VerdictToken> two = {{"safe", 1001, "safe", false},
                                                {"unsafe", 1002, "unsafe", true}};
  static const std::vector<VerdictToken> with_third = {
      {"safe", 1001, "safe", false},
      {"unsafe", 1002, "unsafe", true},
      {"controversial", 1003, "controversial", true}};
  return three ? with_third : two;
}

void CheckError(const absl::Status& status) {
  SR_CHECK(absl::IsInvalidArgument(status));
  const std::string_view message(status.message().data(), status.message().size());
  SR_CHECK(FindInvalidUtf8(message) == std::string_view::npos);
}

void CheckScore(const RemoteScore& score, std::span<const VerdictToken> tokens) {
  SR_CHECK(score.logprobs.size() == tokens.size() && score.bounded.size() == tokens.size());
  bool any_listed = false, any_finite = false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    SR_CHECK(!std::isnan(score.logprobs[i]) && score.logprobs[i] <= 0);
    any_listed |= !score.bounded[i];
    any_finite |= std::isfinite(score.logprobs[i]);
    if (!score.bounded[i]) continue;
    for (size_t j = 0; j < tokens.size(); ++j) {
      if (!score.bounded[j]) SR_CHECK(score.logprobs[i] <= score.logprobs[j]);
    }
  }
  SR_CHECK(any_listed && any_finite);
  GuardVerdict verdict;
  FillVerdictFromScore(score, tokens, verdict);
  SR_CHECK(verdict.p_unsafe >= 0 && verdict.p_unsafe <= 1);
  SR_CHECK(verdict.unsafe == (verdict.p_unsafe > 0.5));
  SR_CHECK(verdict.generated_ids == score.generated_ids);
}

// The smallest log-prob of the bounded tokens (they all carry the same one),
// written back as a non-verdict entry so the bound survives the round trip.
std::optional<double> Bound(const RemoteScore& score) {
  for (size_t i = 0; i < score.bounded.size(); ++i) {
    if (score.bounded[i]) return score.logprobs[i];
  }
  return std::nullopt;
}

std::string WriteVllm(const RemoteScore& score, std::span<const VerdictToken> tokens) {
  json top = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!score.bounded[i]) top["token_id:" + std::to_string(tokens[i].id)] = score.logprobs[i];
  }
  if (std::optional<double> bound = Bound(score)) top["token_id:-1"] = *bound;
  json generated = json::array();
  for (int32_t id : score.generated_ids) generated.push_back("token_id:" + std::to_string(id));
  json choice = {{"index", 0},
                 {"text", score.text},
                 {"logprobs", {{"tokens", generated}, {"top_logprobs", {top}}}}};
  return json({{"choices", {choice}}}).dump();
}

std::string WriteLlamaCpp(const RemoteScore& score, std::span<const VerdictToken> tokens) {
  json top = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!score.bounded[i]) top.push_back({{"id", tokens[i].id}, {"logprob", score.logprobs[i]}});
  }
  if (std::optional<double> bound = Bound(score)) {
    top.push_back({{"id", -1}, {"logprob", *bound}});
  }
  return json({{"content", score.text},
               {"tokens", score.generated_ids},
               {"completion_probabilities", {{{"top_logprobs", top}}}}})
      .dump();
}

void CheckSame(const absl::StatusOr<RemoteScore>& again, const RemoteScore& score) {
  SR_CHECK(again.ok());
  SR_CHECK(again->logprobs == score.logprobs && again->bounded == score.bounded);
  SR_CHECK(again->text == score.text && again->generated_ids == score.generated_ids);
}

}  // namespace
}  // namespace saferoute

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace saferoute;
  if (size == 0) return 0;
  const bool llama_cpp = data[0] & 1;
  const std::vector<VerdictToken>& tokens = VerdictTokens(data[0] & 2);
  const absl::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<RemoteScore> score =
      llama_cpp ? ParseLlamaCppResponse(body, tokens) : ParseVllmResponse(body, tokens);
  if (!score.ok()) {
    CheckError(score.status());
    return 0;
  }
  CheckScore(*score, tokens);
  if (llama_cpp) {
    const json root = json::parse(body, nullptr, /*allow_exceptions=*/false);
    const auto it = root.find("tokens");
    if (it != root.end() && it->is_array()) SR_CHECK(json(score->generated_ids) == *it);
  }
  // -inf (probability 0 in the top-k) has no JSON form.
  for (double logprob : score->logprobs) {
    if (!std::isfinite(logprob)) return 0;
  }
  CheckSame(ParseLlamaCppResponse(WriteLlamaCpp(*score, tokens), tokens), *score);
  // vLLM's ids come from "token_id:N" strings; llama.cpp's ids may exceed them.
  CheckSame(ParseVllmResponse(WriteVllm(*score, tokens), tokens), *score);
  return 0;
}
