// Native POST /v1/guard: one input with full decision provenance.
//
// Request:
//   {"prompt": "...", "response": "..."}            prompt (+ optional response)
//   {"conversation": [{"role":"user","content":"..."}, {"role":"assistant",...}, ...]}
//   optional "policy": {"categories": [{"code":"S1","name":"Violent Crimes."}, ...],
//                       "exclude": ["S6", ...]}
//   optional "deadline_ms": number (instead of the server default; capped at
//                           limits.max_deadline_ms)
// Response:
//   {"id", "flagged", "verdict": "safe"|"unsafe", "p_unsafe", "s_codes",
//    "decided_by", "models": {"small", "large"}, "saferoute": {provenance}}
#ifndef SAFEROUTE_SERVER_GUARD_API_H_
#define SAFEROUTE_SERVER_GUARD_API_H_

#include <optional>
#include <string>

#include "cascade/cascade.h"
#include "guard/guard.h"
#include "nlohmann/json.hpp"

namespace saferoute::server {

struct NativeGuardRequest {
  GuardRequest request;
  std::optional<double> deadline_ms;
};

// Errors name the field ("conversation[2].role", "policy.categories[0].code").
// `max_turns` bounds the conversation length.
absl::StatusOr<NativeGuardRequest> ParseNativeGuardRequest(const nlohmann::json& body,
                                                           int max_turns);

nlohmann::json NativeGuardResponse(absl::string_view id, absl::string_view small_model,
                                   absl::string_view large_model, const CascadeDecision& decision);

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_GUARD_API_H_
