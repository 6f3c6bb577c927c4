// Request and response identifiers.
//
// A client (or a proxy in front) may send `X-Request-Id`; a valid one (1 to
// 128 characters of [A-Za-z0-9._:+/=-], so it can go into a log line and a
// header as is) is kept, anything else is replaced by a fresh random id. The
// id is echoed in the response header and written in the request's log line.
// Response ids ("modr-…", "guard-…") are random too: 128 bits from OpenSSL's
// CSPRNG, so one client cannot guess another's ids.
#ifndef SAFEROUTE_SERVER_REQUEST_ID_H_
#define SAFEROUTE_SERVER_REQUEST_ID_H_

#include <string>

#include "absl/strings/string_view.h"

namespace saferoute::server {

inline constexpr char kRequestIdHeader[] = "X-Request-Id";
inline constexpr size_t kMaxRequestIdLength = 128;

bool IsValidRequestId(absl::string_view id);

// `prefix` + 32 lowercase hex digits (128 random bits).
std::string RandomId(absl::string_view prefix = "");

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_REQUEST_ID_H_
