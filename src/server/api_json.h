// JSON shared by the HTTP endpoints: parsing a hostile request body into a
// JSON object with precise errors, and the decision-provenance object every
// response carries.
#ifndef SAFEROUTE_SERVER_API_JSON_H_
#define SAFEROUTE_SERVER_API_JSON_H_

#include "absl/strings/string_view.h"
#include "cascade/cascade.h"
#include "nlohmann/json.hpp"

namespace saferoute::server {

// Parses `body` as a JSON object. Errors (InvalidArgument, with "code"):
// invalid_json (syntax, with line and column), invalid_utf8 (ill-formed UTF-8
// bytes in a string), invalid_unicode (lone or mis-ordered \ud800-\udfff
// surrogate escapes), invalid_type (not an object). Nesting deeper than
// `max_depth` is refused before parsing (bounds recursion on hostile input).
absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view body, int max_depth = 64);

// The provenance of one decision (the "saferoute" extension object):
// p_unsafe, p_unsafe_small, p_unsafe_large, s_codes, decided_by,
// router_score, router_threshold, escalated, routing_reason, degraded,
// policy_applied, large_error, latency_ms{small_queue, small, router,
// large_queue, large, total}.
nlohmann::json DecisionProvenance(const CascadeDecision& decision);

// Readable JSON type name for error messages ("array", "number", ...).
std::string JsonTypeName(const nlohmann::json& value);

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_API_JSON_H_
