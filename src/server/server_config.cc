#include "server/server_config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <toml.hpp>  // toml11
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cpu/dispatch.h"
#include "guard/guard_format.h"
#include "util/utf8.h"

namespace saferoute::server {
namespace {

// A key whose value is one of a few names (an enum field).
struct Choice {
  const void* field;  // what it sets (for KeyName)
  std::function<std::string()> get;
  std::function<absl::Status(const std::string&)> set;  // the error lists the names
};

template <typename E>
Choice ChoiceOf(E* field, std::vector<std::pair<std::string, E>> names) {
  return {.field = field,
          .get =
              [field, names] {
                for (const auto& [name, value] : names) {
                  if (value == *field) return name;
                }
                return std::string("?");
              },
          .set =
              [field, names](const std::string& text) {
                std::vector<std::string> all;
                for (const auto& [name, value] : names) {
                  if (name == text) {
                    *field = value;
                    return absl::OkStatus();
                  }
                  all.push_back(name);
                }
                return absl::InvalidArgumentError(
                    absl::StrCat(QuoteForError(text), " is not one of ", absl::StrJoin(all, ", ")));
              }};
}

// The fields one key sets: one field of one component; a limit that several
// components enforce (limits.tokens_per_input) sets each of them.
template <typename T>
using Fields = std::vector<T*>;
using Target = std::variant<Fields<std::string>, Fields<int>, Fields<int64_t>, Fields<uint64_t>,
                            Fields<double>, Fields<bool>, Choice>;

template <typename T, typename... More>
Fields<T> Set(T* field, More*... more) {
  return {field, more...};
}

struct Key {
  const char* section;  // "" for top level
  const char* name;     // TOML key (snake_case)
  std::string help;
  Target value;
};

std::vector<std::pair<std::string, cpu::Precision>> PrecisionNames() {
  std::vector<std::pair<std::string, cpu::Precision>> names;
  for (cpu::Precision p : cpu::kPrecisions) {
    names.push_back({cpu::PrecisionName(p), p});
  }
  return names;
}

std::vector<std::pair<std::string, FailurePolicy>> FailurePolicyNames() {
  std::vector<std::pair<std::string, FailurePolicy>> names;
  for (FailurePolicy p :
       {FailurePolicy::kFailClosed, FailurePolicy::kFailOpen, FailurePolicy::kDegrade}) {
    names.push_back({std::string(FailurePolicyName(p)), p});
  }
  return names;
}

// The one table: every key, the component field it sets, its help. Flags,
// file keys, --print-config and the key names in validation errors come
// from it; the defaults are the fields' own.
std::vector<Key> Keys(ServerConfig& c) {
  HttpServerOptions& http = c.http;
  GuardServiceOptions& service = c.service;
  CascadeOptions& cascade = c.service.cascade;
  RemoteGuardOptions& remote = c.remote;
  std::vector<Key> keys = {
      {"listen", "host", "address to listen on", Set(&http.host)},
      {"listen", "port", "TCP port (0: any free port)", Set(&http.port)},
      {"listen", "threads", "HTTP worker threads (each serves one connection at a time)",
       Set(&http.threads)},
      {"listen", "backlog", "pending connections queued by the kernel (capped at somaxconn)",
       Set(&http.listen_backlog)},
      {"listen", "read_timeout_ms", "close a connection silent this long mid-request",
       Set(&http.read_timeout_ms)},
      {"listen", "write_timeout_ms", "close a connection that accepts no response bytes this long",
       Set(&http.write_timeout_ms)},
      {"listen", "keep_alive_timeout_s", "close an idle keep-alive connection after this (whole s)",
       Set(&http.keep_alive_timeout_s)},
      {"listen", "keep_alive_max_requests", "requests per connection before it is closed",
       Set(&http.keep_alive_max_requests)},
      {"listen", "tls_cert_file", "PEM certificate (chain) file; with tls_key_file: HTTPS only",
       Set(&http.tls_cert_file)},
      {"listen", "tls_key_file", "PEM private key file of tls_cert_file", Set(&http.tls_key_file)},
      {"listen", "drain_grace_ms",
       "on SIGTERM keep answering (new work 503, /readyz 503) at least this long",
       Set(&http.drain_grace_ms)},
      {"listen", "drain_timeout_ms", "on SIGTERM wait at most this long for requests in flight",
       Set(&http.drain_timeout_ms)},
      {"auth", "api_keys_file", "file of API keys, one per line (empty: none)",
       Set(&c.api_keys.file)},
      {"auth", "api_keys_env", "environment variable holding API keys (comma-separated)",
       Set(&c.api_keys.env)},
      {"auth", "metrics", "with API keys, /metrics needs one too", Set(&http.metrics_need_key)},
      {"", "model_name", "\"model\" reported in /v1/moderations responses",
       Set(&service.model_name)},
      {"", "log_prompts", "log prompt text (default: never)", Set(&service.log_prompts)},
      {"", "categories", "ask the guards for S-codes (short greedy decode)",
       Set(&cascade.want_categories)},
  };
  for (auto [name, guard, scheduler] : {std::tuple{"small", &c.small, &service.small_scheduler},
                                        std::tuple{"large", &c.large, &service.large_scheduler}}) {
    const bool small = std::string_view(name) == "small";
    keys.insert(
        keys.end(),
        {
            {name, "model_dir",
             small ? "small guard model directory or .gguf file (required)"
                   : "large guard model directory or .gguf (mode local; tokenizer for remote)",
             Set(&guard->model_dir)},
            {name, "format",
             GuardFormatNameList() + " | empty: guessed from the model's shape" +
                 (small ? "" : " (remote: -8b)"),
             Set(&guard->format)},
            {name, "precision", "auto | fp32 | bf16 | int8",
             ChoiceOf(&guard->engine.precision, PrecisionNames())},
            {name, "threads", "compute threads (0: all cores)", Set(&guard->engine.num_threads)},
            {name, "queue_size",
             small ? "queued inputs before 429"
                   : "queued escalations before the failure policy applies",
             Set(&scheduler->queue_capacity)},
            {name, "max_batch", small ? "inputs per forward pass" : "inputs per large-guard call",
             Set(&scheduler->max_batch)},
            {name, "batch_wait_ms", "longest wait for a batch to fill",
             Set(&scheduler->batch_wait_ms)},
        });
    if (small) {
      keys.insert(
          keys.end(),
          {
              {"router", "path", "router file (empty: no router, nothing escalates)",
               Set(&c.router_path)},
              {"router", "threshold", "escalate iff router score > threshold (<0: router's own)",
               Set(&cascade.router_threshold)},
              {"router", "budget", "cap on the escalated share over the window (1: no cap)",
               Set(&cascade.max_escalation_share)},
              {"router", "budget_window_s", "sliding window of the budget, seconds",
               Set(&cascade.budget_window_seconds)},
              {"large", "mode", "none | local | remote",
               ChoiceOf(&c.large_mode, {{"none", LargeGuardMode::kNone},
                                        {"local", LargeGuardMode::kLocal},
                                        {"remote", LargeGuardMode::kRemote}})},
          });
    }
  }
  keys.insert(
      keys.end(),
      {
          {"remote", "kind", "vllm | llamacpp",
           ChoiceOf(&remote.kind,
                    {{"vllm", RemoteKind::kVllm}, {"llamacpp", RemoteKind::kLlamaCpp}})},
          {"remote", "url", "base URL of the inference server", Set(&remote.base_url)},
          {"remote", "model", "model name sent to vLLM", Set(&remote.model)},
          {"remote", "tokenizer",
           "tokenizer.json or .gguf for prompt ids (empty: large.model_dir's)",
           Set(&c.remote_tokenizer)},
          {"remote", "timeout_ms", "per-attempt timeout", Set(&remote.timeout_ms)},
          {"remote", "retries", "attempts after the first", Set(&remote.max_retries)},
          {"remote", "backoff_ms", "base of the exponential backoff", Set(&remote.backoff_ms)},
          {"remote", "breaker_failures", "consecutive failures that open the circuit",
           Set(&remote.breaker_failure_threshold)},
          {"remote", "breaker_open_ms", "how long the circuit stays open",
           Set(&remote.breaker_open_ms)},
          {"remote", "api_key_env",
           "environment variable holding the server's API key (vLLM/llama.cpp --api-key)",
           Set(&c.remote_api_key_env)},
          {"remote", "ca_file", "https: PEM CA bundle that verifies the server (empty: system's)",
           Set(&remote.ca_file)},
          {"policy", "failure", "when the large guard fails: fail_closed | fail_open | degrade",
           ChoiceOf(&cascade.failure_policy, FailurePolicyNames())},
          {"policy", "degrade_threshold", "degrade: block iff small p_unsafe > this",
           Set(&cascade.degrade_threshold)},
          {"limits", "body_bytes", "largest request body (413 above)", Set(&http.max_body_bytes)},
          {"limits", "inputs_per_request", "most inputs in one /v1/moderations request",
           Set(&service.max_inputs_per_request)},
          {"limits", "tokens_per_input", "most prompt tokens per input (enforced by the guards)",
           Set(&c.small.max_input_tokens, &c.large.max_input_tokens, &remote.max_input_tokens)},
          {"limits", "turns", "most conversation turns in /v1/guard", Set(&service.max_turns)},
          {"limits", "default_deadline_ms", "deadline of a request that sets none",
           Set(&service.default_deadline_ms)},
          {"limits", "max_deadline_ms", "longest deadline a request may ask for",
           Set(&service.max_deadline_ms)},
          {"shadow", "fraction", "share of non-escalated inputs also sent to the large guard",
           Set(&cascade.shadow_fraction)},
          {"shadow", "seed", "sampling seed (0: random)", Set(&cascade.shadow_seed)},
      });
  return keys;
}

std::string FullName(const Key& key) {
  return key.section[0] ? absl::StrCat(key.section, ".", key.name) : key.name;
}

std::string FlagName(const Key& key) {
  std::string name = key.section[0] ? absl::StrCat(key.section, "-", key.name) : key.name;
  for (char& ch : name) {
    if (ch == '_') ch = '-';
  }
  return name;
}

// Whether `key` sets `field`.
bool Sets(const Key& key, const void* field) {
  return std::visit(
      [field](const auto& target) {
        if constexpr (std::is_same_v<std::decay_t<decltype(target)>, Choice>) {
          return target.field == field;
        } else {
          return std::find(target.begin(), target.end(), field) != target.end();
        }
      },
      key.value);
}

// "section.name" of the key that sets `field` of `config`.
std::string KeyName(const ServerConfig& config, const void* field) {
  for (const Key& key : Keys(const_cast<ServerConfig&>(config))) {
    if (Sets(key, field)) return FullName(key);
  }
  SR_CHECK(false && "no config key sets this field");
  return "";
}

std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {  // TOML: escaped
          out += absl::StrFormat("\\u%04x", ch);
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

template <typename T>
std::string TomlScalar(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return TomlString(v);
  } else if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, double>) {
    std::string s = absl::StrFormat("%.17g", v);
    std::string shorter = absl::StrFormat("%.15g", v);
    if (std::strtod(shorter.c_str(), nullptr) == v) s = shorter;
    // TOML floats need a '.' or an exponent.
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
  } else {
    return std::to_string(v);
  }
}

// The key's value as TOML (of its first field: all of a key's fields hold
// the same value once it is set).
std::string TomlValue(const Target& value) {
  return std::visit(
      [](const auto& target) {
        if constexpr (std::is_same_v<std::decay_t<decltype(target)>, Choice>) {
          return TomlString(target.get());
        } else {
          return TomlScalar(*target.front());
        }
      },
      value);
}

// Help text of a flag: the key's help and its default.
std::string FlagHelp(const Key& key) {
  std::string value = TomlValue(key.value);
  if (!value.empty() && value.front() == '"') value = value.substr(1, value.size() - 2);
  return absl::StrCat(key.help, " (default ", value.empty() ? "empty" : value, ")");
}

// The config file as toml11 reads it (comments dropped, tables as std::map:
// keys in a fixed order).
using TomlNode = toml::basic_value<toml::discard_comments, std::map, std::vector>;

// The file's own text of `node` (toml11 keeps the line and the column).
std::string LiteralOf(const TomlNode& node) {
  const toml::source_location where = node.location();
  const std::string& line = where.line_str();
  const size_t begin = std::min<size_t>(where.column() - 1, line.size());
  return line.substr(begin, where.region());
}

// toml11 3.7 reads an integer or float literal with an istream and does not
// check it: out of range it keeps the stream's clamped value (an integer
// above 2^63-1 reads as 2^63-1, 1e400 as inf). The literal, read again with
// std::from_chars, tells whether the value is the file's.
bool LiteralFits(const TomlNode& node) {
  std::string digits;
  for (char ch : LiteralOf(node)) {
    if (ch != '_' && ch != '+') digits += ch;
  }
  const char* begin = digits.data();
  const char* end = begin + digits.size();
  if (node.is_floating()) {
    if (digits.find_first_of("in") != std::string::npos) return true;  // inf, nan
    double value = 0;
    const std::from_chars_result read = std::from_chars(begin, end, value);
    return read.ec == std::errc() && read.ptr == end;
  }
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' &&
      std::isalpha(static_cast<unsigned char>(digits[1]))) {
    base = digits[1] == 'x' ? 16 : digits[1] == 'o' ? 8 : 2;
    begin += 2;
  }
  int64_t value = 0;
  const std::from_chars_result read = std::from_chars(begin, end, value, base);
  return read.ec == std::errc() && read.ptr == end && value == node.as_integer();
}

// What a TOML value is, for messages.
std::string TypeName(const TomlNode& node) {
  std::ostringstream name;
  name << node.type();
  return name.str() == "floating" ? "float" : name.str();
}

// Sets the fields of `target` to `node`'s value, checked against their type.
absl::Status SetFromToml(const Target& target, const TomlNode& node) {
  auto expected = [&node](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", what, ", got ", TypeName(node)));
  };
  if ((node.is_integer() || node.is_floating()) && !LiteralFits(node)) {
    return absl::InvalidArgumentError(
        absl::StrCat(QuoteForError(LiteralOf(node)), " is out of range for a TOML ", TypeName(node),
                     node.is_integer() ? " (64-bit signed)" : " (double)"));
  }
  return std::visit(
      [&](const auto& fields) -> absl::Status {
        using Kind = std::decay_t<decltype(fields)>;
        if constexpr (std::is_same_v<Kind, Choice>) {
          if (!node.is_string()) return expected("a string");
          return fields.set(node.as_string().str);
        } else {
          using T = std::remove_pointer_t<typename Kind::value_type>;
          T value{};
          if constexpr (std::is_same_v<T, std::string>) {
            if (!node.is_string()) return expected("a string");
            value = node.as_string().str;
            // "\u0000" is valid TOML, but a path or name holding it would be
            // cut there when it is opened or sent.
            if (value.find('\0') != std::string::npos) {
              return absl::InvalidArgumentError("holds a NUL character (\\u0000)");
            }
          } else if constexpr (std::is_same_v<T, bool>) {
            if (!node.is_boolean()) return expected("a boolean (true or false)");
            value = node.as_boolean();
          } else if constexpr (std::is_same_v<T, double>) {
            // An integer is taken too (`budget = 1`) where the double holds it exactly.
            constexpr int64_t kExact = int64_t{1} << 53;
            if (node.is_integer() && node.as_integer() >= -kExact && node.as_integer() <= kExact) {
              value = static_cast<double>(node.as_integer());
            } else if (node.is_floating()) {
              value = node.as_floating();
            } else {
              return expected("a number");
            }
          } else {
            if (!node.is_integer()) return expected("an integer");
            const int64_t v = node.as_integer();
            if (!std::in_range<T>(v)) {
              return absl::InvalidArgumentError(absl::StrCat(v, " is out of range (",
                                                             std::numeric_limits<T>::min(), "..",
                                                             std::numeric_limits<T>::max(), ")"));
            }
            value = static_cast<T>(v);
          }
          for (T* field : fields) *field = value;
          return absl::OkStatus();
        }
      },
      target);
}

// toml11 3.7.1 (Debian) fails on some hostile text instead of refusing it
// (server_config_fuzz): it reads past its buffer on invalid UTF-8 in a
// literal string, it recurses once per level of nested arrays and
// inline tables (about 5,000 levels, a 15 KB file, overflow an 8 MiB stack)
// and reads a binary integer of 63 or more digits with a signed 64-bit
// product that overflows (undefined behaviour). Its time also grows with the
// square of the number of keys and of dotted-key parts (50,000 keys: 28 s).
// So the text is bounded before it reads any: its size, the count of '[' and
// '{' (bounding any nesting; no serve key takes an array or a table value:
// a config needs ten, one per [section]) and the digits after "0b". The scan
// is of raw text, so it counts what a string or comment holds as well.
// And it dereferences the last element of an EMPTY array when a later dotted
// key or [table] goes through that key ("a = []" then "a.b = 1": a segfault
// in release, 16 bytes of config); no serve key takes an array, so array
// values and [[arrays of tables]] are refused first (FindArray).
constexpr int kMaxOpeningBrackets = 100;
constexpr int kMaxBinaryDigits = 62;

// The line of the first array in `text` (TOML): a '[' in a value, or a
// "[[" table header; 0 if none. Strings (basic, literal, multi-line) and
// comments are skipped; a '[' that starts a line is a [table] header.
int FindArray(std::string_view text) {
  int line = 1;
  bool line_start = true;  // only blanks since the last newline
  size_t i = 0;
  auto skip_string = [&](std::string_view quote, bool escapes) {
    const char mark = quote[0];
    i += quote.size();
    while (i < text.size() && text.substr(i, quote.size()) != quote) {
      const bool escape = escapes && text[i] == '\\' && i + 1 < text.size();
      if (text[i + escape] == '\n') ++line;
      i += escape ? 2 : 1;
    }
    i += quote.size();
    // A multi-line string may end with one or two more quotes ("""a""""").
    for (int extra = 0; quote.size() == 3 && extra < 2 && i < text.size() && text[i] == mark;
         ++extra) {
      ++i;
    }
  };
  while (i < text.size()) {
    const char ch = text[i];
    if (ch == '\n') {
      ++line;
      line_start = true;
      ++i;
      continue;
    }
    if (ch == ' ' || ch == '\t' || ch == '\r') {
      ++i;
      continue;
    }
    const bool at_line_start = line_start;
    line_start = false;
    if (ch == '#') {
      while (i < text.size() && text[i] != '\n') ++i;
    } else if (text.substr(i, 3) == "\"\"\"" || text.substr(i, 3) == "'''") {
      skip_string(text.substr(i, 3), ch == '"');
    } else if (ch == '"' || ch == '\'') {
      skip_string(text.substr(i, 1), ch == '"');
    } else if (ch == '[') {
      if (!at_line_start || text.substr(i, 2) == "[[") return line;
      ++i;  // a [table] header
    } else {
      ++i;
    }
  }
  return 0;
}

absl::Status CheckWithinReaderLimits(std::string_view text, const std::string& name) {
  if (text.size() > kMaxConfigFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": larger than ", kMaxConfigFileBytes, " bytes: not a serve config"));
  }
  // TOML text is UTF-8; toml11 reads past its buffer on a bad sequence in a
  // literal string ("'\xff'", heap-buffer-overflow under ASan).
  if (const size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", 1 + std::count(text.begin(), text.begin() + bad, '\n'),
                     ": not UTF-8 (byte ", bad, "): a TOML file is UTF-8"));
  }
  int line = 1, brackets = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == '\n') ++line;
    if ((ch == '[' || ch == '{') && ++brackets > kMaxOpeningBrackets) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", line, ": more than ", kMaxOpeningBrackets,
                       " '[' and '{' in the file: not a serve config (no key takes an array or "
                       "a table, and the TOML reader would recurse once per nesting level)"));
    }
    if (ch == '0' && i + 1 < text.size() && text[i + 1] == 'b') {
      int digits = 0;
      for (size_t j = i + 2;
           j < text.size() && (text[j] == '0' || text[j] == '1' || text[j] == '_'); ++j) {
        digits += text[j] != '_';
      }
      if (digits > kMaxBinaryDigits) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ":", line, ": a binary integer of more than ", kMaxBinaryDigits,
                         " digits is out of range for a TOML integer (64-bit signed)"));
      }
    }
  }
  if (const int array_line = FindArray(text); array_line > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ":", array_line, ": an array (or [[array of tables]]): no serve setting takes one"));
  }
  return absl::OkStatus();
}

// toml11's message for a file that is not TOML, on one line: its first line
// without the "[error] toml::function:" prefix, or the note under the
// offending text when that line says nothing more.
std::string SyntaxErrorReason(const std::string& what) {
  std::vector<absl::string_view> lines = absl::StrSplit(what, '\n');
  absl::string_view reason = lines.front();
  absl::ConsumePrefix(&reason, "[error] ");
  if (const size_t colon = reason.find(": ");
      colon != absl::string_view::npos && reason.substr(0, colon).find(' ') == reason.npos) {
    reason.remove_prefix(colon + 2);
  }
  reason = absl::StripAsciiWhitespace(reason);
  if (reason.empty() || absl::EndsWith(reason, ":")) {
    for (absl::string_view line : lines) {
      if (const size_t note = line.find("^--- "); note != absl::string_view::npos) {
        reason = line.substr(note + 5);
        break;
      }
    }
  }
  // The message may quote the file's text: kept only if it is plain.
  const std::string text(reason);
  const bool plain = FindInvalidUtf8(text) == std::string::npos &&
                     std::none_of(text.begin(), text.end(), [](char ch) {
                       return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f;
                     });
  return plain ? text : QuoteForError(text);
}

}  // namespace

void AddServeFlags(CLI::App& app, ServerConfig& config, std::string& config_file,
                   bool& print_config) {
  app.add_option("--config", config_file,
                 "TOML configuration file; command-line flags override its keys")
      ->check(CLI::ExistingFile);
  app.add_flag("--print-config", print_config, "print the effective configuration (TOML) and exit");
  for (const Key& key : Keys(config)) {
    const std::string flag = "--" + FlagName(key);
    const std::string help = FlagHelp(key);
    std::visit(
        [&](const auto& target) {
          using Kind = std::decay_t<decltype(target)>;
          if constexpr (std::is_same_v<Kind, Choice>) {
            app.add_option_function<std::string>(
                   flag,
                   [flag, set = target.set](const std::string& text) {
                     if (absl::Status status = set(text); !status.ok()) {
                       throw CLI::ValidationError(flag, std::string(status.message()));
                     }
                   },
                   help)
                ->type_name("TEXT");
          } else {
            using T = std::remove_pointer_t<typename Kind::value_type>;
            auto set_all = [fields = target](const T& value) {
              for (T* field : fields) *field = value;
            };
            CLI::Option* option = app.add_option_function<T>(flag, set_all, help);
            if constexpr (std::is_same_v<T, bool>) {
              // A value is optional: `--categories` means true, and
              // `--categories false` works as well as `--categories=false`.
              option->expected(0, 1)->default_str("true")->option_text("[true|false]");
            }
          }
        },
        key.value);
  }
}

absl::Status ApplyConfigText(const CLI::App& app, std::string_view text, const std::string& name,
                             ServerConfig& config) {
  SR_RETURN_IF_ERROR(CheckWithinReaderLimits(text, name));
  TomlNode root;
  try {
    std::istringstream in{std::string(text)};
    root = toml::parse<toml::discard_comments, std::map, std::vector>(in, name);
  } catch (const toml::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", e.location().line(), ": not TOML: ", SyntaxErrorReason(e.what())));
  }
  std::map<std::pair<std::string_view, std::string_view>, const Key*> by_name;
  const std::vector<Key> keys = Keys(config);
  for (const Key& key : keys) by_name[{key.section, key.name}] = &key;
  // Top-level keys, then each [section]'s (a value nested deeper is no key).
  std::vector<std::tuple<std::string, std::string, const TomlNode*>> entries;
  for (const auto& [top, node] : root.as_table()) {
    if (!node.is_table()) {
      entries.push_back({"", top, &node});
      continue;
    }
    for (const auto& [inner, value] : node.as_table()) entries.push_back({top, inner, &value});
  }
  for (const auto& [section, key_name, node] : entries) {
    const std::string full = section.empty() ? key_name : absl::StrCat(section, ".", key_name);
    const std::string where = absl::StrCat(name, ":", node->location().line(), ": key ");
    const auto found = by_name.find({section, key_name});
    if (found == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, QuoteForError(full), " is not a serve setting"));
    }
    const Key& key = *found->second;
    const CLI::Option* flag = app.get_option_no_throw("--" + FlagName(key));
    if (flag != nullptr && flag->count() > 0) continue;  // the command line wins
    if (absl::Status set = SetFromToml(key.value, *node); !set.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "'", full, "': ", set.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyConfigFile(const CLI::App& app, const std::string& path, ServerConfig& config) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  std::string text(kMaxConfigFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": cannot read config file"));
  text.resize(static_cast<size_t>(in.gcount()));
  return ApplyConfigText(app, text, path, config);
}

absl::Status ValidateServerConfig(const ServerConfig& c) {
  auto bad = [&c](const void* field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("config key ", KeyName(c, field), ": ", why));
  };
  const HttpServerOptions& h = c.http;
  if (h.port < 0 || h.port > 65535) return bad(&h.port, "not in 0..65535");
  if (h.threads < 1 || h.threads > 1024) return bad(&h.threads, "not in 1..1024");
  if (h.listen_backlog < 1 || h.listen_backlog > 65535) {
    return bad(&h.listen_backlog, "not in 1..65535");
  }
  // 0 would make every read or write give up at once; under 1 ms is no better.
  for (const double* timeout : {&h.read_timeout_ms, &h.write_timeout_ms}) {
    if (!(*timeout >= 1 && *timeout <= 3600000)) return bad(timeout, "not in 1..3600000");
  }
  if (h.keep_alive_timeout_s < 1 || h.keep_alive_timeout_s > 3600) {
    return bad(&h.keep_alive_timeout_s, "not in 1..3600");
  }
  if (h.tls_cert_file.empty() != h.tls_key_file.empty()) {
    return bad(h.tls_cert_file.empty() ? &h.tls_cert_file : &h.tls_key_file,
               "needed too: HTTPS takes both a certificate and its key");
  }
  for (const double* drain : {&h.drain_grace_ms, &h.drain_timeout_ms}) {
    if (!(*drain >= 0 && *drain <= 3600000)) return bad(drain, "not in 0..3600000");
  }
  if (h.keep_alive_max_requests < 1 || h.keep_alive_max_requests > 1000000) {
    return bad(&h.keep_alive_max_requests, "not in 1..1000000");
  }
  if (c.small.model_dir.empty()) return bad(&c.small.model_dir, "required");
  for (const auto& [guard, scheduler] : {std::pair{&c.small, &c.service.small_scheduler},
                                         std::pair{&c.large, &c.service.large_scheduler}}) {
    if (guard->engine.num_threads < 0) return bad(&guard->engine.num_threads, "must be >= 0");
    if (scheduler->queue_capacity < 1) return bad(&scheduler->queue_capacity, "must be >= 1");
    if (scheduler->max_batch < 1) return bad(&scheduler->max_batch, "must be >= 1");
    if (!(scheduler->batch_wait_ms >= 0 && scheduler->batch_wait_ms <= 1000)) {
      return bad(&scheduler->batch_wait_ms, "not in 0..1000");
    }
  }
  const CascadeOptions& cascade = c.service.cascade;
  if (!(cascade.max_escalation_share > 0 && cascade.max_escalation_share <= 1)) {
    return bad(&cascade.max_escalation_share, "not in (0, 1]");
  }
  if (!(cascade.router_threshold < 1)) return bad(&cascade.router_threshold, "must be < 1");
  if (!(cascade.budget_window_seconds > 0)) {
    return bad(&cascade.budget_window_seconds, "must be > 0");
  }
  if (c.large_mode == LargeGuardMode::kLocal && c.large.model_dir.empty()) {
    return bad(&c.large.model_dir, "required when large.mode = local");
  }
  if (c.large_mode == LargeGuardMode::kRemote) {
    const RemoteGuardOptions& r = c.remote;
    if (r.base_url.empty()) return bad(&r.base_url, "required when large.mode = remote");
    if (c.remote_tokenizer.empty() && c.large.model_dir.empty()) {
      return bad(&c.remote_tokenizer, "needed (or large.model_dir) to render the large prompt");
    }
    if (!(r.timeout_ms > 0)) return bad(&r.timeout_ms, "must be > 0");
    if (r.max_retries < 0) return bad(&r.max_retries, "must be >= 0");
    if (r.breaker_failure_threshold < 1) return bad(&r.breaker_failure_threshold, "must be >= 1");
  }
  if (!(cascade.degrade_threshold >= 0 && cascade.degrade_threshold < 1)) {
    return bad(&cascade.degrade_threshold, "not in [0, 1)");
  }
  if (h.max_body_bytes < 64 || h.max_body_bytes > (int64_t{1} << 30)) {
    return bad(&h.max_body_bytes, "not in 64..2^30");
  }
  const GuardServiceOptions& s = c.service;
  if (s.max_inputs_per_request < 1) return bad(&s.max_inputs_per_request, "must be >= 1");
  if (s.max_inputs_per_request > s.small_scheduler.queue_capacity) {
    return bad(&s.max_inputs_per_request,
               absl::StrCat("larger than ", KeyName(c, &s.small_scheduler.queue_capacity),
                            ": such a request could never be admitted"));
  }
  if (c.small.max_input_tokens < 1) return bad(&c.small.max_input_tokens, "must be >= 1");
  if (s.max_turns < 1) return bad(&s.max_turns, "must be >= 1");
  if (!(s.default_deadline_ms > 0)) return bad(&s.default_deadline_ms, "must be > 0");
  if (!(s.max_deadline_ms >= s.default_deadline_ms)) {
    return bad(&s.max_deadline_ms, absl::StrCat("must be >= ", KeyName(c, &s.default_deadline_ms)));
  }
  if (!(cascade.shadow_fraction >= 0 && cascade.shadow_fraction <= 1)) {
    return bad(&cascade.shadow_fraction, "not in [0, 1]");
  }
  if (cascade.shadow_fraction > 0 && c.large_mode == LargeGuardMode::kNone) {
    return bad(&cascade.shadow_fraction, "needs a large guard (large.mode local or remote)");
  }
  // A TOML integer is signed 64-bit: a larger seed could not be written to
  // the config file or read back from --print-config.
  if (cascade.shadow_seed > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return bad(&cascade.shadow_seed, "not in 0..2^63-1");
  }
  return absl::OkStatus();
}

std::vector<std::string> CommandLineFlags(const CLI::App& app) {
  std::vector<std::string> flags;
  for (const CLI::Option* option : app.get_options()) {
    if (option->count() > 0 && option->get_name() != "--config") {
      flags.push_back(option->get_name());
    }
  }
  return flags;
}

absl::StatusOr<ServerConfig> RereadServerConfig(const CLI::App& app,
                                                const std::vector<std::string>& flags,
                                                const std::string& config_file) {
  ServerConfig config;
  std::string ignored_file;
  bool ignored_print = false;
  CLI::App fresh;
  AddServeFlags(fresh, config, ignored_file, ignored_print);
  for (const std::string& name : flags) {
    const CLI::Option* given = app.get_option_no_throw(name);
    CLI::Option* option = fresh.get_option_no_throw(name);
    if (given == nullptr || option == nullptr) continue;
    try {
      // A bare boolean flag has no result string: it meant "true".
      option->add_result(given->results().empty() ? std::vector<std::string>{"true"}
                                                  : given->results());
      option->run_callback();
    } catch (const CLI::Error& e) {
      return absl::InvalidArgumentError(absl::StrCat("flag ", name, ": ", e.what()));
    }
  }
  if (!config_file.empty()) SR_RETURN_IF_ERROR(ApplyConfigFile(fresh, config_file, config));
  SR_RETURN_IF_ERROR(ValidateServerConfig(config));
  return config;
}

std::vector<std::string> ChangedKeys(const ServerConfig& a, const ServerConfig& b) {
  ServerConfig a_copy = a, b_copy = b;
  const std::vector<Key> a_keys = Keys(a_copy), b_keys = Keys(b_copy);
  std::vector<std::string> changed;
  for (size_t i = 0; i < a_keys.size(); ++i) {
    if (TomlValue(a_keys[i].value) != TomlValue(b_keys[i].value)) {
      changed.push_back(FullName(a_keys[i]));
    }
  }
  return changed;
}

absl::StatusOr<HttpServerOptions> HttpServerOptionsFrom(const ServerConfig& c) {
  HttpServerOptions options = c.http;
  if (!c.api_keys.file.empty() || !c.api_keys.env.empty()) {
    SR_ASSIGN_OR_RETURN(options.api_keys, ApiKeySet::Load(c.api_keys.file, c.api_keys.env));
  }
  return options;
}

std::string ServerConfigToToml(const ServerConfig& config) {
  ServerConfig copy = config;
  std::string out = "# saferoute serve: effective configuration\n";
  std::string section;
  // Top-level keys must precede the first [section] in TOML.
  for (bool top_level : {true, false}) {
    for (const Key& key : Keys(copy)) {
      if ((key.section[0] == '\0') != top_level) continue;
      if (key.section != section) {
        section = key.section;
        absl::StrAppend(&out, "\n[", section, "]\n");
      }
      absl::StrAppend(&out, "# ", key.help, "\n", key.name, " = ", TomlValue(key.value), "\n");
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> ServerConfigKeyValues(const ServerConfig& config) {
  ServerConfig copy = config;
  std::vector<std::pair<std::string, std::string>> out;
  for (const Key& key : Keys(copy)) out.push_back({FullName(key), TomlValue(key.value)});
  return out;
}

}  // namespace saferoute::server
