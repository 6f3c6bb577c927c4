// OpenAI POST /v1/moderations: request parsing and response building.
//
// A result's category is true iff the deciding verdict is unsafe and lists a
// category code that the deciding guard's format maps to it
// (GuardFormatEntry::moderation_keys; Llama Guard 3's table is in
// guard/llama_guard3.cc and README.md); its score is that verdict's p_unsafe,
// else 0. `flagged` is the cascade's verdict, so codes without a key and
// unsafe verdicts without decoded codes still flag.
#ifndef SAFEROUTE_SERVER_MODERATION_API_H_
#define SAFEROUTE_SERVER_MODERATION_API_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cascade/cascade.h"
#include "nlohmann/json.hpp"

namespace saferoute::server {

// The 13 category keys of omni-moderation, in OpenAI's order.
const std::vector<std::string>& OpenAiCategoryKeys();

struct ModerationRequest {
  std::string model;                // as sent ("" if absent)
  std::vector<std::string> inputs;  // one per result
};

// `input`: a string, an array of strings, or an array of {"type":"text",
// "text":...} parts (image parts are refused: the guards read text only).
// Errors name the field ("input[3]"); more than `max_inputs` inputs is refused.
absl::StatusOr<ModerationRequest> ParseModerationRequest(const nlohmann::json& body,
                                                         int max_inputs);

// `small_format`/`large_format`: the guards' format names (Guard::format_name),
// which map a decision's category codes to OpenAI keys.
nlohmann::json ModerationResponse(absl::string_view id, absl::string_view model,
                                  const std::vector<CascadeDecision>& decisions,
                                  std::string_view small_format, std::string_view large_format);

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_MODERATION_API_H_
