#include "server/api_json.h"

#include <algorithm>

#include "server/http_status.h"

namespace saferoute::server {
namespace {

// Maximum nesting depth of brackets outside strings: a cheap scan so a body
// of a million '[' never reaches the recursive parser.
bool NestingWithin(absl::string_view body, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// "line L, column C" (1-based) of the byte at offset `at` of `body`.
std::string Position(absl::string_view body, size_t at) {
  const absl::string_view before = body.substr(0, at);
  const size_t line = 1 + std::count(before.begin(), before.end(), '\n');
  const size_t line_start = before.rfind('\n');
  const size_t column = line_start == absl::string_view::npos ? at + 1 : at - line_start;
  return absl::StrCat("line ", line, ", column ", column);
}

// "<what> at line L, column C: <why>" from nlohmann's parse_error, without
// its internals ("[json.exception.parse_error.101]", "syntax error while
// parsing value") and without its "last read: '…'", a piece of the body
// (messages are logged; prompt text must not be).
std::string ParseErrorMessage(absl::string_view body, const nlohmann::json::parse_error& e) {
  // e.byte: 1-based index of the last byte read (size + 1 at the end).
  const size_t at = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, body.size());

  absl::string_view why = e.what();
  if (size_t dash = why.find(" - "); dash != absl::string_view::npos) why.remove_prefix(dash + 3);
  std::string expected;
  if (size_t last_read = why.find("; last read: "); last_read != absl::string_view::npos) {
    // What follows the excerpt, if anything, is "; expected <token name>";
    // keep it only when it is one of nlohmann's token names.
    const absl::string_view tail = why.substr(last_read);
    why = why.substr(0, last_read);
    static constexpr absl::string_view kNames[] = {"end of input",
                                                   "string literal",
                                                   "number literal",
                                                   "'['",
                                                   "'{'",
                                                   "']'",
                                                   "'}'",
                                                   "':'",
                                                   "','",
                                                   "value",
                                                   "'[', '{', or a literal"};
    if (size_t pos = tail.rfind("; expected "); pos != absl::string_view::npos) {
      const absl::string_view name = tail.substr(pos + 11);
      for (absl::string_view known : kNames) {
        if (name == known) expected = absl::StrCat("; expected ", known);
      }
    }
  }
  return absl::StrCat("request body is not valid JSON at ", Position(body, at), ": ", why,
                      expected);
}

}  // namespace

std::string JsonTypeName(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "object";
    case nlohmann::json::value_t::array:
      return "array";
    case nlohmann::json::value_t::string:
      return "string";
    case nlohmann::json::value_t::boolean:
      return "boolean";
    case nlohmann::json::value_t::binary:
      return "binary";
    case nlohmann::json::value_t::discarded:
      return "invalid";
    default:
      return "number";
  }
}

absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view body, int max_depth) {
  if (!NestingWithin(body, max_depth)) {
    return InputError(absl::StrCat("request body nests deeper than ", max_depth, " levels"), "",
                      "invalid_json");
  }
  // nlohmann takes a NUL byte for the end of the input: "{...}\0<more>"
  // would parse with <more> silently ignored. JSON text never holds a raw NUL
  // (RFC 8259: control characters inside strings are escaped).
  if (const size_t nul = body.find('\0'); nul != absl::string_view::npos) {
    return InputError(
        absl::StrCat("request body is not valid JSON at ", Position(body, nul), ": NUL byte"), "",
        "invalid_json");
  }
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann validates UTF-8 and surrogate pairs itself. Classify the error
    // so clients can tell the cases apart.
    const std::string what = e.what();
    std::string code = "invalid_json";
    if (what.find("surrogate") != std::string::npos)
      code = "invalid_unicode";
    else if (what.find("UTF-8") != std::string::npos)
      code = "invalid_utf8";
    return InputError(ParseErrorMessage(body, e), "", code);
  } catch (const nlohmann::json::exception& e) {
    return InputError("request body is not valid JSON", "", "invalid_json");
  }
  if (!parsed.is_object()) {
    return InputError(
        absl::StrCat("request body must be a JSON object, got ", JsonTypeName(parsed)), "",
        "invalid_type");
  }
  return parsed;
}

nlohmann::json DecisionProvenance(const CascadeDecision& d) {
  auto optional_number = [](const auto& value) {
    return value.has_value() ? nlohmann::json(*value) : nlohmann::json(nullptr);
  };
  nlohmann::json out = {
      {"p_unsafe", d.p_unsafe},
      {"p_unsafe_small", d.p_unsafe_small},
      {"p_unsafe_large", optional_number(d.p_unsafe_large)},
      {"s_codes", d.s_codes},
      {"decided_by", std::string(DecidedByName(d.decided_by))},
      {"router_score", optional_number(d.router_score)},
      {"router_threshold", d.router_threshold},
      {"escalated", d.escalated},
      {"routing_reason", d.routing_reason},
      {"degraded", d.degraded},
      {"policy_applied", d.policy_applied
                             ? nlohmann::json(std::string(FailurePolicyName(*d.policy_applied)))
                             : nlohmann::json(nullptr)},
      {"n_tokens", d.n_tokens},
      {"latency_ms",
       {{"small_queue", d.latency.small_queue_ms},
        {"small", d.latency.small_ms},
        {"router", d.latency.router_ms},
        {"large_queue", d.latency.large_queue_ms},
        {"large", d.latency.large_ms},
        {"total", d.latency.total_ms}}},
  };
  if (!d.large_error.empty()) out["large_error"] = d.large_error;
  if (d.unparsed_output) out["unparsed_output"] = *d.unparsed_output;
  return out;
}

}  // namespace saferoute::server
