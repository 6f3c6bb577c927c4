// OpenAI POST /v1/moderations: request parsing and response building.
//
// Llama Guard 3 S-code -> OpenAI category map (also in README.md). A result's
// category is true iff the deciding verdict is unsafe and lists an S-code
// mapped to it; its score is that verdict's p_unsafe, else 0. `flagged` is the
// cascade's verdict, so codes without a key (S5, S6, S7, S8, S13) and unsafe
// verdicts without decoded codes still flag.
//
//   | code | Llama Guard name          | OpenAI keys                 |
//   |------|---------------------------|-----------------------------|
//   | S1   | Violent Crimes            | violence, illicit/violent   |
//   | S2   | Non-Violent Crimes        | illicit                     |
//   | S3   | Sex-Related Crimes        | sexual, illicit/violent     |
//   | S4   | Child Sexual Exploitation | sexual/minors               |
//   | S5   | Defamation                | (none)                      |
//   | S6   | Specialized Advice        | (none)                      |
//   | S7   | Privacy                   | (none)                      |
//   | S8   | Intellectual Property     | (none)                      |
//   | S9   | Indiscriminate Weapons    | illicit/violent             |
//   | S10  | Hate                      | hate                        |
//   | S11  | Suicide & Self-Harm       | self-harm                   |
//   | S12  | Sexual Content            | sexual                      |
//   | S13  | Elections                 | (none)                      |
//   | S14  | Code Interpreter Abuse    | illicit                     |
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
// OpenAI keys for one Llama Guard code ("S1"); empty for unmapped codes.
std::vector<std::string> OpenAiKeysForCode(absl::string_view s_code);

struct ModerationRequest {
  std::string model;                // as sent ("" if absent)
  std::vector<std::string> inputs;  // one per result
};

// `input`: a string, an array of strings, or an array of {"type":"text",
// "text":...} parts (image parts are refused: the guards read text only).
// Errors name the field ("input[3]"); more than `max_inputs` inputs is refused.
absl::StatusOr<ModerationRequest> ParseModerationRequest(const nlohmann::json& body,
                                                         int max_inputs);

nlohmann::json ModerationResponse(absl::string_view id, absl::string_view model,
                                  const std::vector<CascadeDecision>& decisions);

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_MODERATION_API_H_
