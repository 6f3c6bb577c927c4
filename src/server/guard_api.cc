#include "server/guard_api.h"

#include <cmath>

#include "guard/template_text.h"
#include "server/api_json.h"
#include "server/http_status.h"

namespace saferoute::server {
namespace {

absl::StatusOr<std::string> RequiredString(const nlohmann::json& object, const char* key,
                                           const std::string& param) {
  auto it = object.find(key);
  if (it == object.end()) {
    return InputError(absl::StrCat("missing required field '", param, "'"), param, "missing_field");
  }
  if (!it->is_string()) {
    return InputError(absl::StrCat(param, " must be a string, got ", JsonTypeName(*it)), param,
                      "invalid_type");
  }
  return it->get<std::string>();
}

// A category code as the Llama Guard prompt shows it: "S" and 1-3 digits.
bool IsCategoryCode(const std::string& code) {
  if (code.size() < 2 || code.size() > 4 || code[0] != 'S') return false;
  for (size_t i = 1; i < code.size(); ++i) {
    if (code[i] < '0' || code[i] > '9') return false;
  }
  return true;
}

absl::StatusOr<Policy> ParsePolicy(const nlohmann::json& json) {
  if (!json.is_object()) {
    return InputError(absl::StrCat("policy must be an object, got ", JsonTypeName(json)), "policy",
                      "invalid_type");
  }
  Policy policy;
  for (const auto& [key, value] : json.items()) {
    if (key != "categories" && key != "exclude") {
      return InputError(absl::StrCat("policy has unknown field '", key, "'"), "policy." + key,
                        "unknown_field");
    }
  }
  if (auto categories = json.find("categories"); categories != json.end()) {
    if (!categories->is_array()) {
      return InputError("policy.categories must be an array", "policy.categories", "invalid_type");
    }
    for (size_t i = 0; i < categories->size(); ++i) {
      const std::string param = absl::StrCat("policy.categories[", i, "]");
      const nlohmann::json& item = (*categories)[i];
      if (!item.is_object()) {
        return InputError(param + " must be an object {\"code\",\"name\"}", param, "invalid_type");
      }
      SR_ASSIGN_OR_RETURN(std::string code, RequiredString(item, "code", param + ".code"));
      SR_ASSIGN_OR_RETURN(std::string name, RequiredString(item, "name", param + ".name"));
      if (!IsCategoryCode(code)) {
        return InputError(absl::StrCat(param, ".code '", code, "' is not of the form S<number>"),
                          param + ".code", "invalid_value");
      }
      // The name goes into the guard prompt as one line of the category list
      // (the guard format's own check, here so the error names the field).
      if (PythonStrip(name).empty() || name.find_first_of("\r\n") != std::string::npos) {
        return InputError(param + ".name must be one non-empty line", param + ".name",
                          "invalid_value");
      }
      policy.categories.emplace_back(std::move(code), std::move(name));
    }
  }
  if (auto exclude = json.find("exclude"); exclude != json.end()) {
    if (!exclude->is_array()) {
      return InputError("policy.exclude must be an array of codes", "policy.exclude",
                        "invalid_type");
    }
    for (size_t i = 0; i < exclude->size(); ++i) {
      const std::string param = absl::StrCat("policy.exclude[", i, "]");
      const nlohmann::json& item = (*exclude)[i];
      if (!item.is_string() || !IsCategoryCode(item.get<std::string>())) {
        return InputError(param + " must be a code such as \"S6\"", param, "invalid_value");
      }
      policy.excluded.push_back(item.get<std::string>());
    }
  }
  return policy;
}

}  // namespace

absl::StatusOr<NativeGuardRequest> ParseNativeGuardRequest(const nlohmann::json& body,
                                                           int max_turns) {
  static const char* const kKnown[] = {"prompt", "response", "conversation", "policy",
                                       "deadline_ms"};
  for (const auto& [key, value] : body.items()) {
    bool known = false;
    for (const char* k : kKnown) known = known || key == k;
    if (!known) {
      return InputError(absl::StrCat("unknown field '", key, "'"), key, "unknown_field");
    }
  }
  NativeGuardRequest out;
  const bool has_conversation = body.contains("conversation");
  if (has_conversation && (body.contains("prompt") || body.contains("response"))) {
    return InputError("give either 'conversation' or 'prompt' (+ 'response'), not both",
                      "conversation", "conflicting_fields");
  }
  if (has_conversation) {
    const nlohmann::json& turns = body["conversation"];
    if (!turns.is_array() || turns.empty()) {
      return InputError("conversation must be a non-empty array of turns", "conversation",
                        "invalid_type");
    }
    if (static_cast<int>(turns.size()) > max_turns) {
      return InputError(
          absl::StrFormat("conversation has %d turns; the limit is %d", turns.size(), max_turns),
          "conversation", "too_many_turns");
    }
    for (size_t i = 0; i < turns.size(); ++i) {
      const std::string param = absl::StrCat("conversation[", i, "]");
      if (!turns[i].is_object()) {
        return InputError(param + " must be an object {\"role\",\"content\"}", param,
                          "invalid_type");
      }
      SR_ASSIGN_OR_RETURN(std::string role, RequiredString(turns[i], "role", param + ".role"));
      SR_ASSIGN_OR_RETURN(std::string content,
                          RequiredString(turns[i], "content", param + ".content"));
      // Llama Guard judges alternating user/assistant turns starting with user.
      const bool want_user = i % 2 == 0;
      if (role != (want_user ? "user" : "assistant")) {
        return InputError(absl::StrCat(param, ".role must be '", want_user ? "user" : "assistant",
                                       "' (turns alternate, starting with user), got '", role, "'"),
                          param + ".role", "invalid_value");
      }
      out.request.conversation.push_back(
          {.role = want_user ? Turn::Role::kUser : Turn::Role::kAssistant,
           .content = std::move(content)});
    }
  } else {
    SR_ASSIGN_OR_RETURN(out.request.prompt, RequiredString(body, "prompt", "prompt"));
    if (body.contains("response") && !body["response"].is_null()) {
      SR_ASSIGN_OR_RETURN(out.request.response, RequiredString(body, "response", "response"));
    }
  }
  if (auto policy = body.find("policy"); policy != body.end() && !policy->is_null()) {
    SR_ASSIGN_OR_RETURN(out.request.policy, ParsePolicy(*policy));
  }
  if (auto deadline = body.find("deadline_ms"); deadline != body.end() && !deadline->is_null()) {
    if (!deadline->is_number()) {
      return InputError("deadline_ms must be a number", "deadline_ms", "invalid_type");
    }
    const double ms = deadline->get<double>();
    if (!std::isfinite(ms) || ms <= 0) {
      return InputError("deadline_ms must be a positive number of milliseconds", "deadline_ms",
                        "invalid_value");
    }
    out.deadline_ms = ms;
  }
  return out;
}

nlohmann::json NativeGuardResponse(absl::string_view id, absl::string_view small_model,
                                   absl::string_view large_model, const CascadeDecision& d) {
  return {{"id", std::string(id)},
          {"flagged", d.flagged},
          {"verdict", d.flagged ? "unsafe" : "safe"},
          {"p_unsafe", d.p_unsafe},
          {"s_codes", d.s_codes},
          {"decided_by", std::string(DecidedByName(d.decided_by))},
          {"models",
           {{"small", std::string(small_model)},
            {"large", large_model.empty() ? nlohmann::json(nullptr)
                                          : nlohmann::json(std::string(large_model))}}},
          {"saferoute", DecisionProvenance(d)}};
}

}  // namespace saferoute::server
