// Error policy (one for the whole code base):
//  - Recoverable errors (I/O, bad input, capacity, remote failures) are returned
//    as absl::Status / absl::StatusOr<T>. Messages say *what* and *where*
//    (file, tensor, line, field), e.g. "model.safetensors: tensor 'x': ...".
//  - Broken internal invariants use SR_CHECK, which is always on and aborts.
//  - No exception crosses a library or HTTP boundary; library code never exits
//    the process. Status codes map to HTTP codes in exactly one function
//    (server/http_status.h) and to process exit codes in cli/main.cc.
#ifndef SAFEROUTE_UTIL_STATUS_H_
#define SAFEROUTE_UTIL_STATUS_H_

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"       // IWYU pragma: export
#include "absl/status/statusor.h"     // IWYU pragma: export
#include "absl/strings/str_cat.h"     // IWYU pragma: export
#include "absl/strings/str_format.h"  // IWYU pragma: export

namespace saferoute {

// Debian's Abseil has its own string_view type, not std::string_view: pass
// std::string_view to absl::StrCat and friends through this.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

// The request field an error is about ("input[2]", "conversation[1].role"),
// carried as a payload so that a front end can point at it (the HTTP layer's
// OpenAI "param") without parsing the message.
inline constexpr char kStatusFieldPayload[] = "saferoute.dev/param";
inline absl::Status WithField(absl::Status status, absl::string_view field) {
  if (!status.ok()) status.SetPayload(kStatusFieldPayload, absl::Cord(field));
  return status;
}
inline std::optional<std::string> FieldOf(const absl::Status& status) {
  auto cord = status.GetPayload(kStatusFieldPayload);  // absl::optional in this abseil build
  if (!cord) return std::nullopt;
  return std::string(*cord);
}

}  // namespace saferoute

#define SR_INTERNAL_CONCAT_(a, b) a##b
#define SR_INTERNAL_CONCAT(a, b) SR_INTERNAL_CONCAT_(a, b)

// Returns early from the enclosing function if `expr` (a Status) is not OK.
#define SR_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status sr_status_ = (expr);      \
    if (!sr_status_.ok()) return sr_status_; \
  } while (0)

// SR_ASSIGN_OR_RETURN(auto x, MakeX());  Declares/assigns `lhs` from a
// StatusOr, or returns its error.
#define SR_ASSIGN_OR_RETURN(lhs, expr) \
  SR_INTERNAL_ASSIGN_OR_RETURN(SR_INTERNAL_CONCAT(sr_statusor_, __LINE__), lhs, expr)
#define SR_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

// Always-on invariant check. Only for programming errors, never for input.
#define SR_CHECK(cond)                                                              \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

#endif  // SAFEROUTE_UTIL_STATUS_H_
