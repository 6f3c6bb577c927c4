#include "server/moderation_api.h"

#include "guard/guard_format.h"
#include "server/api_json.h"
#include "server/http_status.h"

namespace saferoute::server {
namespace {

absl::StatusOr<std::string> TextPart(const nlohmann::json& part, const std::string& param) {
  if (!part.is_object()) {
    return InputError(absl::StrCat(param, " must be a string or a {\"type\":\"text\"} object, got ",
                                   JsonTypeName(part)),
                      param, "invalid_type");
  }
  auto type = part.find("type");
  if (type == part.end() || !type->is_string()) {
    return InputError(absl::StrCat(param, ".type must be a string"), param + ".type",
                      "invalid_type");
  }
  if (*type != "text") {
    return InputError(absl::StrCat(param, ".type '", type->get<std::string>(),
                                   "' is not supported: the guards read text only"),
                      param + ".type", "unsupported_input_type");
  }
  auto text = part.find("text");
  if (text == part.end() || !text->is_string()) {
    return InputError(absl::StrCat(param, ".text must be a string"), param + ".text",
                      "invalid_type");
  }
  return text->get<std::string>();
}

}  // namespace

const std::vector<std::string>& OpenAiCategoryKeys() {
  static const auto* keys = new std::vector<std::string>{"harassment",
                                                         "harassment/threatening",
                                                         "hate",
                                                         "hate/threatening",
                                                         "illicit",
                                                         "illicit/violent",
                                                         "self-harm",
                                                         "self-harm/intent",
                                                         "self-harm/instructions",
                                                         "sexual",
                                                         "sexual/minors",
                                                         "violence",
                                                         "violence/graphic"};
  return *keys;
}

absl::StatusOr<ModerationRequest> ParseModerationRequest(const nlohmann::json& body,
                                                         int max_inputs) {
  ModerationRequest request;
  if (auto model = body.find("model"); model != body.end() && !model->is_null()) {
    if (!model->is_string()) {
      return InputError(absl::StrCat("model must be a string, got ", JsonTypeName(*model)), "model",
                        "invalid_type");
    }
    request.model = model->get<std::string>();
  }
  auto input = body.find("input");
  if (input == body.end()) {
    return InputError("missing required field 'input'", "input", "missing_field");
  }
  if (input->is_string()) {
    request.inputs.push_back(input->get<std::string>());
    return request;
  }
  if (!input->is_array()) {
    return InputError(
        absl::StrCat("input must be a string or an array of strings, got ", JsonTypeName(*input)),
        "input", "invalid_type");
  }
  if (input->empty()) return InputError("input must not be an empty array", "input", "empty_input");
  if (static_cast<int>(input->size()) > max_inputs) {
    return InputError(absl::StrFormat("input has %d items; the limit is %d per request",
                                      input->size(), max_inputs),
                      "input", "too_many_inputs");
  }
  for (size_t i = 0; i < input->size(); ++i) {
    const nlohmann::json& item = (*input)[i];
    const std::string param = absl::StrCat("input[", i, "]");
    if (item.is_string()) {
      request.inputs.push_back(item.get<std::string>());
    } else {
      SR_ASSIGN_OR_RETURN(std::string text, TextPart(item, param));
      request.inputs.push_back(std::move(text));
    }
  }
  return request;
}

nlohmann::json ModerationResponse(absl::string_view id, absl::string_view model,
                                  const std::vector<CascadeDecision>& decisions,
                                  std::string_view small_format, std::string_view large_format) {
  nlohmann::json results = nlohmann::json::array();
  for (const CascadeDecision& d : decisions) {
    nlohmann::json categories = nlohmann::json::object();
    nlohmann::json scores = nlohmann::json::object();
    nlohmann::json applied = nlohmann::json::object();
    for (const std::string& key : OpenAiCategoryKeys()) {
      categories[key] = false;
      scores[key] = 0.0;
      applied[key] = nlohmann::json::array({"text"});
    }
    // Categories come from the deciding verdict's codes (the small guard's
    // under a failure policy), read through that guard's format, and only
    // when the result is flagged: an allowed input (e.g. fail_open) reports
    // no category.
    if (d.flagged) {
      const std::string_view format =
          d.decided_by == DecidedBy::kLarge ? large_format : small_format;
      for (const std::string& code : d.s_codes) {
        for (const std::string& key : ModerationKeys(format, code)) {
          categories[key] = true;
          scores[key] = d.p_unsafe;
        }
      }
    }
    results.push_back({{"flagged", d.flagged},
                       {"categories", std::move(categories)},
                       {"category_scores", std::move(scores)},
                       {"category_applied_input_types", std::move(applied)},
                       {"saferoute", DecisionProvenance(d)}});
  }
  return {{"id", std::string(id)}, {"model", std::string(model)}, {"results", std::move(results)}};
}

}  // namespace saferoute::server
