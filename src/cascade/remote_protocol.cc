#include "cascade/remote_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "nlohmann/json.hpp"
#include "util/utf8.h"

namespace saferoute {
namespace {

using json = nlohmann::json;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("field '", field, "': ", what));
}

absl::StatusOr<json> ParseJsonObject(absl::string_view body) {
  // No exceptions: a parse failure yields a discarded value.
  json root = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    // Quoted: the body may be anything, the message goes into logs and JSON.
    return absl::InvalidArgumentError(absl::StrCat(
        "response is not valid JSON (", body.size(), " bytes, starts with ",
        QuoteForError(std::string_view(body.data(), std::min<size_t>(body.size(), 80))), ")"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("response is JSON ", root.type_name(), ", expected an object"));
  }
  // A 200 with an error object (some proxies do this) is still not an answer.
  if (auto it = root.find("error"); it != root.end() && !it->is_null()) {
    std::string message = it->is_object() && it->contains("message") && (*it)["message"].is_string()
                              ? (*it)["message"].get<std::string>()
                              : it->dump();
    return absl::InvalidArgumentError(absl::StrCat("response carries an error: ", message));
  }
  return root;
}

const json* FindField(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// A log-prob must be a finite number <= 0 (a tiny positive value from
// rounding is tolerated and clamped).
absl::StatusOr<double> CheckedLogprob(const json& value, absl::string_view field) {
  if (!value.is_number()) {
    return FieldError(field, absl::StrCat("expected a number, got ", value.type_name()));
  }
  double logprob = value.get<double>();
  if (!std::isfinite(logprob)) return FieldError(field, "log-prob is not finite");
  if (logprob > 1e-4) return FieldError(field, absl::StrCat("log-prob ", logprob, " > 0"));
  return std::min(logprob, 0.0);
}

// A probability must be finite and in [0, 1]; returned as a log-prob.
absl::StatusOr<double> CheckedProbAsLogprob(const json& value, absl::string_view field) {
  if (!value.is_number()) {
    return FieldError(field, absl::StrCat("expected a number, got ", value.type_name()));
  }
  double prob = value.get<double>();
  if (!std::isfinite(prob) || prob < 0 || prob > 1 + 1e-6) {
    return FieldError(field, absl::StrCat("probability ", prob, " is outside [0, 1]"));
  }
  return prob <= 0 ? kNegInf : std::log(std::min(prob, 1.0));
}

// Collects the verdict tokens out of one top-k list. Tracks the smallest
// log-prob listed, the bound for a verdict token that is not in the list.
class TopKScan {
 public:
  explicit TopKScan(std::span<const VerdictToken> tokens)
      : tokens_(tokens), found_(tokens.size()) {}

  // One top-k entry, known by id (when the server gives ids) or by text.
  void Add(std::optional<int64_t> id, absl::string_view text, double logprob) {
    if (entries_ == 0 || logprob < min_logprob_) min_logprob_ = logprob;
    ++entries_;
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const bool match = id ? *id == tokens_[i].id : text == tokens_[i].text;
      if (match && !found_[i]) found_[i] = logprob;
    }
  }

  absl::StatusOr<RemoteScore> Finish(absl::string_view field) const {
    RemoteScore score;
    bool any = false, any_finite = false;
    for (const std::optional<double>& logprob : found_) {
      any |= logprob.has_value();
      score.logprobs.push_back(logprob.value_or(min_logprob_));
      score.bounded.push_back(!logprob.has_value());
      any_finite |= score.logprobs.back() != kNegInf;
    }
    if (!any) {
      std::string wanted;
      for (const VerdictToken& t : tokens_) {
        absl::StrAppend(&wanted, wanted.empty() ? "" : ", ", "'", t.text, "' (", t.id, ")");
      }
      return FieldError(field, absl::StrCat("none of the verdict tokens ", wanted, " is among the ",
                                            entries_, " top tokens: not a verdict position"));
    }
    if (!any_finite) return FieldError(field, "every verdict token has probability 0");
    return score;
  }

 private:
  std::span<const VerdictToken> tokens_;
  std::vector<std::optional<double>> found_;  // [tokens]
  double min_logprob_ = 0;
  int entries_ = 0;
};

// "token_id:123" (vLLM with return_tokens_as_token_ids) -> 123.
std::optional<int32_t> TokenIdFromKey(absl::string_view key) {
  constexpr absl::string_view kPrefix = "token_id:";
  if (key.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  int32_t id = 0;
  if (!absl::SimpleAtoi(key.substr(kPrefix.size()), &id) || id < 0) return std::nullopt;
  return id;
}

// A JSON integer that is a token id (0..2^31-1); anything else is refused,
// not wrapped into another id.
std::optional<int32_t> TokenIdFromJson(const json& value) {
  constexpr int64_t kMaxId = std::numeric_limits<int32_t>::max();
  if (value.is_number_unsigned()) {
    if (value.get<uint64_t>() > static_cast<uint64_t>(kMaxId)) return std::nullopt;
  } else if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
             value.get<int64_t>() > kMaxId) {
    return std::nullopt;
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

}  // namespace

std::string BuildVllmRequestBody(const RemoteGuardOptions& options, const RemoteQuery& query) {
  json body = {
      {"model", options.model},
      {"prompt", *query.prompt_ids},  // token ids: no template or BOS added by the server
      {"max_tokens", query.max_tokens},
      {"temperature", 0},
      {"logprobs", options.top_logprobs},
  };
  // vLLM extra: top_logprobs keys become "token_id:N", no string matching.
  if (options.vllm_return_token_ids) body["return_tokens_as_token_ids"] = true;
  return body.dump();
}

std::string BuildLlamaCppRequestBody(const RemoteGuardOptions& options, const RemoteQuery& query) {
  json body = {
      {"prompt", *query.prompt_ids},
      {"n_predict", query.max_tokens},
      {"n_probs", options.top_logprobs},
      {"temperature", 0},
      // Prompt-cache reuse changes logits slightly (batch-size dependent, per
      // llama.cpp's README); off unless the deployment opts in.
      {"cache_prompt", options.llama_cpp_cache_prompt},
      {"return_tokens", true},
  };
  return body.dump();
}

absl::StatusOr<RemoteScore> ParseVllmResponse(absl::string_view body,
                                              std::span<const VerdictToken> tokens) {
  SR_ASSIGN_OR_RETURN(json root, ParseJsonObject(body));
  const json* choices = FindField(root, "choices");
  if (choices == nullptr || !choices->is_array() || choices->empty()) {
    return FieldError("choices", "missing or not a non-empty array");
  }
  // With one prompt there is one choice; pick index 0 explicitly if labelled.
  const json* choice = &(*choices)[0];
  for (const json& c : *choices) {
    if (c.is_object() && c.contains("index") && c["index"] == 0) {
      choice = &c;
      break;
    }
  }
  if (!choice->is_object()) return FieldError("choices[0]", "not an object");
  const json* logprobs = FindField(*choice, "logprobs");
  if (logprobs == nullptr || !logprobs->is_object()) {
    return FieldError("choices[0].logprobs",
                      "missing or null (does the server honour 'logprobs'?)");
  }
  const json* top = FindField(*logprobs, "top_logprobs");
  if (top == nullptr || !top->is_array() || top->empty()) {
    return FieldError("choices[0].logprobs.top_logprobs", "missing or not a non-empty array");
  }
  const json& first = (*top)[0];
  if (!first.is_object() || first.empty()) {
    return FieldError("choices[0].logprobs.top_logprobs[0]",
                      "expected a non-empty object {token: logprob}");
  }
  TopKScan scan(tokens);
  for (const auto& [key, value] : first.items()) {
    std::string field = absl::StrCat("choices[0].logprobs.top_logprobs[0][\"", key, "\"]");
    SR_ASSIGN_OR_RETURN(double logprob, CheckedLogprob(value, field));
    scan.Add(TokenIdFromKey(key), key, logprob);
  }
  SR_ASSIGN_OR_RETURN(RemoteScore score, scan.Finish("choices[0].logprobs.top_logprobs[0]"));
  if (const json* text = FindField(*choice, "text"); text != nullptr) {
    if (!text->is_string()) return FieldError("choices[0].text", "not a string");
    score.text = text->get<std::string>();
  }
  // Generated ids are only known in the token-id form.
  if (const json* toks = FindField(*logprobs, "tokens"); toks != nullptr && toks->is_array()) {
    std::vector<int32_t> ids;
    for (const json& t : *toks) {
      std::optional<int32_t> id =
          t.is_string() ? TokenIdFromKey(t.get<std::string>()) : std::nullopt;
      if (!id) {
        ids.clear();
        break;
      }
      ids.push_back(*id);
    }
    score.generated_ids = std::move(ids);
  }
  return score;
}

absl::StatusOr<RemoteScore> ParseLlamaCppResponse(absl::string_view body,
                                                  std::span<const VerdictToken> tokens) {
  SR_ASSIGN_OR_RETURN(json root, ParseJsonObject(body));

  // Locate the top-k list of the first generated position in one of the
  // three shapes llama-server has used (guard-models.md §6.2):
  //   completion_probabilities[0].top_logprobs[{id,token,logprob}]  (current)
  //   completion_probabilities[0].top_probs[{id,token,prob}]        (post_sampling_probs)
  //   completion_probabilities[0].probs[{tok_str,prob}] or probs[...] (before ~Dec 2024)
  const json* list = nullptr;
  std::string field;
  bool values_are_probs = false;
  if (const json* cp = FindField(root, "completion_probabilities"); cp != nullptr) {
    if (!cp->is_array() || cp->empty() || !(*cp)[0].is_object()) {
      return FieldError("completion_probabilities",
                        "not a non-empty array of objects (does the server honour 'n_probs'?)");
    }
    const json& first = (*cp)[0];
    if (const json* v = FindField(first, "top_logprobs"); v != nullptr) {
      list = v, field = "completion_probabilities[0].top_logprobs";
    } else if (const json* v2 = FindField(first, "top_probs"); v2 != nullptr) {
      list = v2, field = "completion_probabilities[0].top_probs", values_are_probs = true;
    } else if (const json* v3 = FindField(first, "probs"); v3 != nullptr) {
      list = v3, field = "completion_probabilities[0].probs", values_are_probs = true;
    } else {
      return FieldError("completion_probabilities[0]",
                        "has none of 'top_logprobs', 'top_probs', 'probs'");
    }
  } else if (const json* probs = FindField(root, "probs"); probs != nullptr) {
    if (!probs->is_array() || probs->empty()) {
      return FieldError("probs", "not a non-empty array");
    }
    // Either the per-position list (each with its own "probs") or directly
    // the top-k list of the only position.
    const json& first = (*probs)[0];
    if (first.is_object() && first.contains("probs")) {
      list = &first["probs"], field = "probs[0].probs";
    } else {
      list = probs, field = "probs";
    }
    values_are_probs = true;
  } else {
    return FieldError("completion_probabilities",
                      "missing (and no legacy 'probs'): does the server honour 'n_probs'?");
  }
  if (!list->is_array() || list->empty()) return FieldError(field, "not a non-empty array");

  TopKScan scan(tokens);
  for (size_t i = 0; i < list->size(); ++i) {
    const json& entry = (*list)[i];
    std::string entry_field = absl::StrCat(field, "[", i, "]");
    if (!entry.is_object()) return FieldError(entry_field, "not an object");
    const char* value_key = values_are_probs ? "prob" : "logprob";
    const json* value = FindField(entry, value_key);
    if (value == nullptr) return FieldError(entry_field, absl::StrCat("missing '", value_key, "'"));
    std::string value_field = absl::StrCat(entry_field, ".", value_key);
    SR_ASSIGN_OR_RETURN(double logprob, values_are_probs ? CheckedProbAsLogprob(*value, value_field)
                                                         : CheckedLogprob(*value, value_field));
    if (const json* id = FindField(entry, "id"); id != nullptr) {
      if (!id->is_number_integer()) return FieldError(entry_field + ".id", "not an integer");
      scan.Add(id->get<int64_t>(), "", logprob);
    } else {
      const json* text = FindField(entry, "token");
      if (text == nullptr) text = FindField(entry, "tok_str");
      if (text == nullptr || !text->is_string()) {
        return FieldError(entry_field, "has neither 'id' nor a string 'token'/'tok_str'");
      }
      scan.Add(std::nullopt, text->get<std::string>(), logprob);
    }
  }
  SR_ASSIGN_OR_RETURN(RemoteScore score, scan.Finish(field));
  if (const json* content = FindField(root, "content"); content != nullptr) {
    if (!content->is_string()) return FieldError("content", "not a string");
    score.text = content->get<std::string>();
  }
  if (const json* toks = FindField(root, "tokens"); toks != nullptr && toks->is_array()) {
    for (const json& t : *toks) {
      std::optional<int32_t> id = TokenIdFromJson(t);
      if (!id) return FieldError("tokens", "not an array of token ids (integers 0..2^31-1)");
      score.generated_ids.push_back(*id);
    }
  }
  return score;
}

void FillVerdictFromScore(const RemoteScore& score, std::span<const VerdictToken> tokens,
                          GuardVerdict& verdict) {
  // Log-probs differ from logits by one constant, so the two-way softmax is
  // the logits' and the full-vocabulary probabilities are exp(log-prob).
  ScoreVerdict(tokens, score.logprobs, /*log_normalizer=*/0, verdict);
  verdict.unsafe = verdict.p_unsafe > 0.5;
  verdict.generated_ids = score.generated_ids;
}

}  // namespace saferoute
