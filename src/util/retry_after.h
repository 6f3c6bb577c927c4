// A "retry after this many seconds" hint carried on a Status (as a payload),
// so the library can say when capacity is expected back and the HTTP layer
// can send it as `Retry-After` without parsing messages.
#ifndef SAFEROUTE_UTIL_RETRY_AFTER_H_
#define SAFEROUTE_UTIL_RETRY_AFTER_H_

#include <optional>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "util/status.h"

namespace saferoute {

inline constexpr char kRetryAfterPayload[] = "type.saferoute/retry-after-seconds";

// `status` with the hint attached (whole seconds, at least 1).
inline absl::Status WithRetryAfter(absl::Status status, int seconds) {
  status.SetPayload(kRetryAfterPayload, absl::Cord(std::to_string(seconds < 1 ? 1 : seconds)));
  return status;
}

inline std::optional<int> RetryAfterSeconds(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryAfterPayload);  // absl::optional<Cord>
  int seconds = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &seconds)) {
    return std::nullopt;
  }
  return seconds;
}

}  // namespace saferoute

#endif  // SAFEROUTE_UTIL_RETRY_AFTER_H_
