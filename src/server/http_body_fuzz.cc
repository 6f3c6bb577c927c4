// libFuzzer target (DEVELOPERS.md, "Fuzzing"): request bodies of both HTTP
// APIs as the server reads them: ParseJsonObject, then
// ParseModerationRequest (OpenAI POST /v1/moderations) or
// ParseNativeGuardRequest (POST /v1/guard).
// Input: one selector byte (bit 0: /v1/guard, else /v1/moderations), then
// the body.
// Invariants beyond "no crash":
//  - ParseJsonObject accepts exactly the JSON objects nlohmann accepts that
//    nest at most max_depth deep (its own bracket scan checked against the
//    parsed depth) and hold no NUL byte, and gives the same value;
//  - every error message is valid UTF-8 (it goes into a JSON response);
//  - a parsed request is within the limits and written back as a body of
//    the same API it parses to the same request.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "guard/template_text.h"
#include "nlohmann/json.hpp"
#include "server/api_json.h"
#include "server/guard_api.h"
#include "server/moderation_api.h"
#include "util/utf8.h"

namespace saferoute::server {
namespace {

constexpr int kMaxDepth = 8;  // small, so the fuzzer reaches the limit easily
constexpr int kMaxInputs = 4;
constexpr int kMaxTurns = 4;

void CheckError(const absl::Status& status) {
  SR_CHECK(!status.ok());
  const std::string_view message(status.message().data(), status.message().size());
  SR_CHECK(FindInvalidUtf8(message) == std::string_view::npos);
}

int Depth(const nlohmann::json& value) {
  if (!value.is_structured()) return 0;
  int deepest = 0;
  for (const nlohmann::json& child : value) deepest = std::max(deepest, Depth(child));
  return deepest + 1;
}

absl::StatusOr<nlohmann::json> CheckedParse(std::string_view body) {
  absl::StatusOr<nlohmann::json> parsed =
      ParseJsonObject(absl::string_view(body.data(), body.size()), kMaxDepth);
  const nlohmann::json reference = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  // nlohmann alone stops at a NUL byte as if the input ended there.
  const bool acceptable = body.find('\0') == std::string_view::npos && !reference.is_discarded() &&
                          reference.is_object() && Depth(reference) <= kMaxDepth;
  SR_CHECK(parsed.ok() == acceptable);
  if (parsed.ok()) {
    SR_CHECK(*parsed == reference);
  } else {
    CheckError(parsed.status());
  }
  return parsed;
}

void CheckModeration(const nlohmann::json& body) {
  absl::StatusOr<ModerationRequest> request = ParseModerationRequest(body, kMaxInputs);
  if (!request.ok()) return CheckError(request.status());
  SR_CHECK(!request->inputs.empty() && request->inputs.size() <= kMaxInputs);
  nlohmann::json written = {{"input", request->inputs}};
  if (!request->model.empty()) written["model"] = request->model;
  absl::StatusOr<ModerationRequest> again = ParseModerationRequest(written, kMaxInputs);
  SR_CHECK(again.ok() && again->model == request->model && again->inputs == request->inputs);
}

nlohmann::json WriteGuardRequest(const NativeGuardRequest& parsed) {
  const GuardRequest& r = parsed.request;
  nlohmann::json body = nlohmann::json::object();
  if (r.conversation.empty()) {
    body["prompt"] = r.prompt;
    if (r.response) body["response"] = *r.response;
  } else {
    for (const Turn& turn : r.conversation) {
      body["conversation"].push_back(
          {{"role", turn.role == Turn::Role::kUser ? "user" : "assistant"},
           {"content", turn.content}});
    }
  }
  if (r.policy) {
    nlohmann::json& policy = body["policy"] = nlohmann::json::object();
    for (const auto& [code, name] : r.policy->categories) {
      policy["categories"].push_back({{"code", code}, {"name", name}});
    }
    if (!r.policy->excluded.empty()) policy["exclude"] = r.policy->excluded;
  }
  if (parsed.deadline_ms) body["deadline_ms"] = *parsed.deadline_ms;
  return body;
}

void CheckGuard(const nlohmann::json& body) {
  absl::StatusOr<NativeGuardRequest> parsed = ParseNativeGuardRequest(body, kMaxTurns);
  if (!parsed.ok()) return CheckError(parsed.status());
  const GuardRequest& r = parsed->request;
  SR_CHECK(r.conversation.size() <= kMaxTurns);
  for (size_t i = 0; i < r.conversation.size(); ++i) {
    SR_CHECK(r.conversation[i].role == (i % 2 == 0 ? Turn::Role::kUser : Turn::Role::kAssistant));
  }
  if (r.policy) {
    for (const auto& [code, name] : r.policy->categories) {
      // One line of the prompt's category list, as the guard format checks
      // it (an error at render time would not name the field).
      SR_CHECK(!PythonStrip(name).empty() && name.find_first_of("\r\n") == std::string::npos);
      SR_CHECK(code.size() >= 2 && code[0] == 'S');
    }
  }
  SR_CHECK(!parsed->deadline_ms ||
           (std::isfinite(*parsed->deadline_ms) && *parsed->deadline_ms > 0));
  absl::StatusOr<NativeGuardRequest> again =
      ParseNativeGuardRequest(WriteGuardRequest(*parsed), kMaxTurns);
  SR_CHECK(again.ok());
  const GuardRequest& a = again->request;
  SR_CHECK(a.prompt == r.prompt && a.response == r.response &&
           a.policy.has_value() == r.policy.has_value() &&
           again->deadline_ms == parsed->deadline_ms &&
           a.conversation.size() == r.conversation.size());
  for (size_t i = 0; i < r.conversation.size(); ++i) {
    SR_CHECK(a.conversation[i].role == r.conversation[i].role &&
             a.conversation[i].content == r.conversation[i].content);
  }
  if (r.policy) {
    SR_CHECK(a.policy->categories == r.policy->categories &&
             a.policy->excluded == r.policy->excluded);
  }
}

}  // namespace
}  // namespace saferoute::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<nlohmann::json> json = saferoute::server::CheckedParse(body);
  if (!json.ok()) return 0;
  if (data[0] & 1) {
    saferoute::server::CheckGuard(*json);
  } else {
    saferoute::server::CheckModeration(*json);
  }
  return 0;
}
