// Errors at the HTTP boundary: the one Status -> HTTP status mapping, and the
// OpenAI error body {"error":{"message","type","param","code"}}.
//
// Input errors carry two optional payloads so the body can name *where* the
// problem is ("param", e.g. "input[2]") and a stable machine-readable "code"
// (e.g. "invalid_utf8"); see InputError().
#ifndef SAFEROUTE_SERVER_HTTP_STATUS_H_
#define SAFEROUTE_SERVER_HTTP_STATUS_H_

#include <string>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "util/status.h"

namespace saferoute::server {

// The only Status -> HTTP code mapping in the code base:
//   OK 200 | InvalidArgument, OutOfRange, FailedPrecondition 400 | Unauthenticated 401 |
//   PermissionDenied 403 | NotFound 404 | Aborted 409 | ResourceExhausted 429 (queue full) |
//   Unimplemented 501 | Unavailable, Cancelled 503 (shutting down, model not ready) |
//   DeadlineExceeded 504 | everything else 500.
// A status made by HttpError() carries its HTTP code (413 body too large, 415
// unsupported media type), which wins over the table.
int HttpStatusFor(const absl::Status& status);

// InvalidArgument with "param" and "code" payloads for the error body.
absl::Status InputError(absl::string_view message, absl::string_view param, absl::string_view code);

// An error of the HTTP exchange itself that no Status code names (413, 415):
// `status_code` is the closest canonical code for callers that only look at it.
absl::Status HttpError(absl::StatusCode status_code, int http_code, absl::string_view message,
                       absl::string_view code);

// The "param" payload is util/status.h's WithField (set below the HTTP layer
// too, e.g. by the cascade for input i). Overrides the "param" payload only if the status has one
// (renames "input[0]" to "prompt" on the single-input route; queue-full stays null).
absl::Status RenameParam(absl::Status status, absl::string_view param);

// "<param>: <message>" for an error whose message does not name its field
// (the cascade's: the field travels as a payload), payloads kept.
absl::Status MessageNamesParam(absl::Status status);

// {"error":{"message","type","param","code"}}; type follows OpenAI's names
// ("invalid_request_error", "rate_limit_error", "timeout_error", ...).
nlohmann::json ErrorBody(const absl::Status& status);

// Body for an HTTP error the library raised itself (413, 404 route, 400 parse).
nlohmann::json ErrorBodyForHttpCode(int http_code, absl::string_view message);

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_HTTP_STATUS_H_
