#include "server/http_status.h"

#include <optional>

#include "absl/strings/numbers.h"

namespace saferoute::server {
namespace {

constexpr const char* kParamPayload = kStatusFieldPayload;  // util/status.h: WithField
constexpr char kCodePayload[] = "saferoute.dev/code";
constexpr char kHttpPayload[] = "saferoute.dev/http";

std::optional<std::string> Payload(const absl::Status& status, const char* key) {
  auto cord = status.GetPayload(key);  // absl::optional (not std:: in this abseil build)
  if (!cord) return std::nullopt;
  return std::string(*cord);
}

std::string ErrorTypeForHttp(int http_code) {
  switch (http_code) {
    case 401:  // what OpenAI answers for a missing or wrong key
      return "invalid_request_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable_error";
    case 504:
      return "timeout_error";
    default:
      return http_code < 500 ? "invalid_request_error" : "server_error";
  }
}

// Default "code" when the status carries none: a stable snake_case name.
std::string DefaultCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
      return "invalid_request";
    case absl::StatusCode::kOutOfRange:
      return "out_of_range";
    case absl::StatusCode::kResourceExhausted:
      return "queue_full";
    case absl::StatusCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case absl::StatusCode::kUnavailable:
      return "unavailable";
    case absl::StatusCode::kCancelled:
      return "shutting_down";
    case absl::StatusCode::kNotFound:
      return "not_found";
    case absl::StatusCode::kUnauthenticated:
      return "invalid_api_key";
    default:
      return "internal_error";
  }
}

}  // namespace

int HttpStatusFor(const absl::Status& status) {
  if (std::optional<std::string> http = Payload(status, kHttpPayload)) {
    int code = 0;
    if (absl::SimpleAtoi(*http, &code)) return code;
  }
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

absl::Status InputError(absl::string_view message, absl::string_view param,
                        absl::string_view code) {
  absl::Status status = absl::InvalidArgumentError(message);
  if (!param.empty()) status.SetPayload(kParamPayload, absl::Cord(param));
  if (!code.empty()) status.SetPayload(kCodePayload, absl::Cord(code));
  return status;
}

absl::Status HttpError(absl::StatusCode status_code, int http_code, absl::string_view message,
                       absl::string_view code) {
  absl::Status status(status_code, message);
  status.SetPayload(kHttpPayload, absl::Cord(std::to_string(http_code)));
  if (!code.empty()) status.SetPayload(kCodePayload, absl::Cord(code));
  return status;
}

absl::Status RenameParam(absl::Status status, absl::string_view param) {
  if (status.GetPayload(kParamPayload).has_value()) return WithField(std::move(status), param);
  return status;
}

absl::Status MessageNamesParam(absl::Status status) {
  std::optional<std::string> param = Payload(status, kParamPayload);
  if (!param.has_value()) return status;
  absl::Status named(status.code(), absl::StrCat(*param, ": ", status.message()));
  status.ForEachPayload(
      [&](absl::string_view key, const absl::Cord& value) { named.SetPayload(key, value); });
  return named;
}

nlohmann::json ErrorBody(const absl::Status& status) {
  const int http_code = HttpStatusFor(status);
  std::optional<std::string> param = Payload(status, kParamPayload);
  std::optional<std::string> code = Payload(status, kCodePayload);
  nlohmann::json error = {
      {"message", std::string(status.message())},
      {"type", ErrorTypeForHttp(http_code)},
      {"param", param ? nlohmann::json(*param) : nlohmann::json(nullptr)},
      {"code", code ? *code : DefaultCode(status.code())},
  };
  return {{"error", std::move(error)}};
}

nlohmann::json ErrorBodyForHttpCode(int http_code, absl::string_view message) {
  std::string code = http_code == 413   ? "body_too_large"
                     : http_code == 404 ? "not_found"
                     : http_code == 405 ? "method_not_allowed"
                                        : "http_" + std::to_string(http_code);
  return {{"error",
           {{"message", std::string(message)},
            {"type", ErrorTypeForHttp(http_code)},
            {"param", nullptr},
            {"code", code}}}};
}

}  // namespace saferoute::server
