#include "server/server_config.h"

#include <cmath>
#include <variant>
#include <vector>

#include "cpu/dispatch.h"
#include "guard/guard_format.h"

namespace saferoute::server {
namespace {

using ValuePtr = std::variant<std::string*, int*, int64_t*, uint64_t*, double*, bool*>;

struct Key {
  const char* section;  // "" for top level
  const char* name;     // TOML key (snake_case)
  std::string help;
  ValuePtr value;
};

// The one list of keys: flags, file keys and --print-config come from it.
std::vector<Key> Keys(ServerConfig& c) {
  return {
      {"listen", "host", "address to listen on", &c.listen_host},
      {"listen", "port", "TCP port (0: any free port)", &c.listen_port},
      {"listen", "threads", "HTTP worker threads (each serves one connection at a time)",
       &c.listen_threads},
      {"listen", "backlog", "pending connections queued by the kernel (capped at somaxconn)",
       &c.listen_backlog},
      {"listen", "read_timeout_ms", "close a connection silent this long mid-request",
       &c.listen_read_timeout_ms},
      {"listen", "write_timeout_ms", "close a connection that accepts no response bytes this long",
       &c.listen_write_timeout_ms},
      {"listen", "keep_alive_timeout_s", "close an idle keep-alive connection after this (whole s)",
       &c.listen_keep_alive_timeout_s},
      {"listen", "keep_alive_max_requests", "requests per connection before it is closed",
       &c.listen_keep_alive_max_requests},
      {"listen", "tls_cert_file", "PEM certificate (chain) file; with tls_key_file: HTTPS only",
       &c.listen_tls_cert_file},
      {"listen", "tls_key_file", "PEM private key file of tls_cert_file", &c.listen_tls_key_file},
      {"listen", "drain_grace_ms",
       "on SIGTERM keep answering (new work 503, /readyz 503) at least this long",
       &c.listen_drain_grace_ms},
      {"listen", "drain_timeout_ms", "on SIGTERM wait at most this long for requests in flight",
       &c.listen_drain_timeout_ms},
      {"auth", "api_keys_file", "file of API keys, one per line (empty: none)",
       &c.auth_api_keys_file},
      {"auth", "api_keys_env", "environment variable holding API keys (comma-separated)",
       &c.auth_api_keys_env},
      {"auth", "metrics", "with API keys, /metrics needs one too", &c.auth_metrics},
      {"", "model_name", "\"model\" reported in /v1/moderations responses", &c.model_name},
      {"", "log_prompts", "log prompt text (default: never)", &c.log_prompts},
      {"", "categories", "ask the guards for S-codes (short greedy decode)", &c.categories},
      {"small", "model_dir", "small guard model directory or .gguf file (required)",
       &c.small.model_dir},
      {"small", "format", GuardFormatNameList() + " | empty: guessed from the model's shape",
       &c.small.format},
      {"small", "precision", "auto | fp32 | bf16 | int8", &c.small.precision},
      {"small", "threads", "compute threads (0: all cores)", &c.small.threads},
      {"small", "queue_size", "queued inputs before 429", &c.small.queue_size},
      {"small", "max_batch", "inputs per forward pass", &c.small.max_batch},
      {"small", "batch_wait_ms", "longest wait for a batch to fill", &c.small.batch_wait_ms},
      {"router", "path", "router file (empty: no router, nothing escalates)", &c.router_path},
      {"router", "threshold", "escalate iff router score > threshold (<0: router's own)",
       &c.router_threshold},
      {"router", "budget", "cap on the escalated share over the window (1: no cap)",
       &c.router_budget},
      {"router", "budget_window_s", "sliding window of the budget, seconds",
       &c.router_budget_window_s},
      {"large", "mode", "none | local | remote", &c.large_mode},
      {"large", "model_dir",
       "large guard model directory or .gguf (mode local; tokenizer for remote)",
       &c.large.model_dir},
      {"large", "format",
       GuardFormatNameList() + " | empty: guessed from the model's shape (remote: -8b)",
       &c.large.format},
      {"large", "precision", "auto | fp32 | bf16 | int8", &c.large.precision},
      {"large", "threads", "compute threads (0: all cores)", &c.large.threads},
      {"large", "queue_size", "queued escalations before the failure policy applies",
       &c.large.queue_size},
      {"large", "max_batch", "inputs per large-guard call", &c.large.max_batch},
      {"large", "batch_wait_ms", "longest wait for a batch to fill", &c.large.batch_wait_ms},
      {"remote", "kind", "vllm | llamacpp", &c.remote_kind},
      {"remote", "url", "base URL of the inference server", &c.remote_url},
      {"remote", "model", "model name sent to vLLM", &c.remote_model},
      {"remote", "tokenizer", "tokenizer.json or .gguf for prompt ids (empty: large.model_dir's)",
       &c.remote_tokenizer},
      {"remote", "timeout_ms", "per-attempt timeout", &c.remote_timeout_ms},
      {"remote", "retries", "attempts after the first", &c.remote_retries},
      {"remote", "backoff_ms", "base of the exponential backoff", &c.remote_backoff_ms},
      {"remote", "breaker_failures", "consecutive failures that open the circuit",
       &c.remote_breaker_failures},
      {"remote", "breaker_open_ms", "how long the circuit stays open", &c.remote_breaker_open_ms},
      {"remote", "api_key_env",
       "environment variable holding the server's API key (vLLM/llama.cpp --api-key)",
       &c.remote_api_key_env},
      {"remote", "ca_file", "https: PEM CA bundle that verifies the server (empty: system's)",
       &c.remote_ca_file},
      {"policy", "failure", "when the large guard fails: fail_closed | fail_open | degrade",
       &c.policy_failure},
      {"policy", "degrade_threshold", "degrade: block iff small p_unsafe > this",
       &c.policy_degrade_threshold},
      {"limits", "body_bytes", "largest request body (413 above)", &c.limits_body_bytes},
      {"limits", "inputs_per_request", "most inputs in one /v1/moderations request",
       &c.limits_inputs_per_request},
      {"limits", "tokens_per_input", "most prompt tokens per input (enforced by the guard)",
       &c.limits_tokens_per_input},
      {"limits", "turns", "most conversation turns in /v1/guard", &c.limits_turns},
      {"limits", "default_deadline_ms", "deadline of a request that sets none",
       &c.limits_default_deadline_ms},
      {"limits", "max_deadline_ms", "longest deadline a request may ask for",
       &c.limits_max_deadline_ms},
      {"shadow", "fraction", "share of non-escalated inputs also sent to the large guard",
       &c.shadow_fraction},
      {"shadow", "seed", "sampling seed (0: random)", &c.shadow_seed},
  };
}

std::string FlagName(const Key& key) {
  std::string name = key.section[0] ? absl::StrCat(key.section, "-", key.name) : key.name;
  for (char& ch : name) {
    if (ch == '_') ch = '-';
  }
  return name;
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
        if (static_cast<unsigned char>(ch) < 0x20) {
          out += absl::StrFormat("\\u%04x", ch);
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string TomlValue(const ValuePtr& value) {
  struct Visitor {
    std::string operator()(std::string* s) const { return TomlString(*s); }
    std::string operator()(int* v) const { return std::to_string(*v); }
    std::string operator()(int64_t* v) const { return std::to_string(*v); }
    std::string operator()(uint64_t* v) const { return std::to_string(*v); }
    std::string operator()(double* v) const {
      std::string s = absl::StrFormat("%.17g", *v);
      std::string shorter = absl::StrFormat("%.15g", *v);
      if (std::strtod(shorter.c_str(), nullptr) == *v) s = shorter;
      // TOML floats need a '.' or an exponent.
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
    std::string operator()(bool* v) const { return *v ? "true" : "false"; }
  };
  return std::visit(Visitor{}, value);
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
    std::visit(
        [&](auto* ptr) {
          using T = std::remove_pointer_t<decltype(ptr)>;
          if constexpr (std::is_same_v<T, bool>) {
            // A value is optional: `--categories` means true, and
            // `--categories false` works as well as `--categories=false`.
            app.add_option(flag, *ptr,
                           absl::StrCat(key.help, " (default ", *ptr ? "true" : "false", ")"))
                ->expected(0, 1)
                ->default_str("true")
                ->option_text("[true|false]");
          } else {
            app.add_option(flag, *ptr, key.help)->capture_default_str();
          }
        },
        key.value);
  }
}

absl::Status ApplyConfigFile(CLI::App& app, const std::string& path) {
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const CLI::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read config: ", e.what()));
  }
  for (const CLI::ConfigItem& item : items) {
    // CLI11 marks section starts/ends with "++"/"--" items.
    if (item.name == "++" || item.name == "--") continue;
    std::string key = item.name;
    std::string flag;
    for (const std::string& parent : item.parents) absl::StrAppend(&flag, parent, "-");
    absl::StrAppend(&flag, key);
    for (char& ch : flag) {
      if (ch == '_') ch = '-';
    }
    const std::string where = absl::StrCat(path, ": key '", item.fullname(), "'");
    CLI::Option* option = app.get_option_no_throw("--" + flag);
    if (option == nullptr || flag == "config" || flag == "print-config") {
      return absl::InvalidArgumentError(absl::StrCat(where, " is not a serve setting"));
    }
    if (option->count() > 0) continue;  // the command line wins
    if (item.inputs.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected one value"));
    }
    try {
      option->add_result(item.inputs.front());
      option->run_callback();
    } catch (const CLI::Error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": bad value '", item.inputs.front(), "': ", e.what()));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateServerConfig(const ServerConfig& c) {
  auto bad = [](const char* key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("config key ", key, ": ", why));
  };
  if (c.listen_port < 0 || c.listen_port > 65535) return bad("listen.port", "not in 0..65535");
  if (c.listen_threads < 1 || c.listen_threads > 1024)
    return bad("listen.threads", "not in 1..1024");
  if (c.listen_backlog < 1 || c.listen_backlog > 65535) {
    return bad("listen.backlog", "not in 1..65535");
  }
  // 0 would make every read or write give up at once; under 1 ms is no better.
  if (!(c.listen_read_timeout_ms >= 1 && c.listen_read_timeout_ms <= 3600000)) {
    return bad("listen.read_timeout_ms", "not in 1..3600000");
  }
  if (!(c.listen_write_timeout_ms >= 1 && c.listen_write_timeout_ms <= 3600000)) {
    return bad("listen.write_timeout_ms", "not in 1..3600000");
  }
  if (c.listen_keep_alive_timeout_s < 1 || c.listen_keep_alive_timeout_s > 3600) {
    return bad("listen.keep_alive_timeout_s", "not in 1..3600");
  }
  if (c.listen_tls_cert_file.empty() != c.listen_tls_key_file.empty()) {
    return bad(c.listen_tls_cert_file.empty() ? "listen.tls_cert_file" : "listen.tls_key_file",
               "needed too: HTTPS takes both a certificate and its key");
  }
  if (!(c.listen_drain_grace_ms >= 0 && c.listen_drain_grace_ms <= 3600000)) {
    return bad("listen.drain_grace_ms", "not in 0..3600000");
  }
  if (!(c.listen_drain_timeout_ms >= 0 && c.listen_drain_timeout_ms <= 3600000)) {
    return bad("listen.drain_timeout_ms", "not in 0..3600000");
  }
  if (c.listen_keep_alive_max_requests < 1 || c.listen_keep_alive_max_requests > 1000000) {
    return bad("listen.keep_alive_max_requests", "not in 1..1000000");
  }
  if (c.small.model_dir.empty()) return bad("small.model_dir", "required");
  for (const auto& [name, stage] :
       {std::pair<const char*, const GuardStageConfig*>{"small", &c.small}, {"large", &c.large}}) {
    const std::string s = name;
    if (!cpu::ParsePrecision(stage->precision).ok()) {
      return bad((s + ".precision").c_str(), "must be auto, fp32, bf16 or int8");
    }
    if (stage->threads < 0) return bad((s + ".threads").c_str(), "must be >= 0");
    if (stage->queue_size < 1) return bad((s + ".queue_size").c_str(), "must be >= 1");
    if (stage->max_batch < 1) return bad((s + ".max_batch").c_str(), "must be >= 1");
    if (!(stage->batch_wait_ms >= 0 && stage->batch_wait_ms <= 1000)) {
      return bad((s + ".batch_wait_ms").c_str(), "not in 0..1000");
    }
  }
  if (!(c.router_budget > 0 && c.router_budget <= 1)) return bad("router.budget", "not in (0, 1]");
  if (!(c.router_threshold < 1)) return bad("router.threshold", "must be < 1");
  if (!(c.router_budget_window_s > 0)) return bad("router.budget_window_s", "must be > 0");
  if (c.large_mode != "none" && c.large_mode != "local" && c.large_mode != "remote") {
    return bad("large.mode", "must be none, local or remote");
  }
  if (c.large_mode == "local" && c.large.model_dir.empty()) {
    return bad("large.model_dir", "required when large.mode = local");
  }
  if (c.large_mode == "remote") {
    if (c.remote_url.empty()) return bad("remote.url", "required when large.mode = remote");
    if (c.remote_kind != "vllm" && c.remote_kind != "llamacpp") {
      return bad("remote.kind", "must be vllm or llamacpp");
    }
    if (c.remote_tokenizer.empty() && c.large.model_dir.empty()) {
      return bad("remote.tokenizer", "needed (or large.model_dir) to render the large prompt");
    }
    if (!(c.remote_timeout_ms > 0)) return bad("remote.timeout_ms", "must be > 0");
    if (c.remote_retries < 0) return bad("remote.retries", "must be >= 0");
    if (c.remote_breaker_failures < 1) return bad("remote.breaker_failures", "must be >= 1");
  }
  if (c.policy_failure != "fail_closed" && c.policy_failure != "fail_open" &&
      c.policy_failure != "degrade") {
    return bad("policy.failure", "must be fail_closed, fail_open or degrade");
  }
  if (!(c.policy_degrade_threshold >= 0 && c.policy_degrade_threshold < 1)) {
    return bad("policy.degrade_threshold", "not in [0, 1)");
  }
  if (c.limits_body_bytes < 64 || c.limits_body_bytes > (int64_t{1} << 30)) {
    return bad("limits.body_bytes", "not in 64..2^30");
  }
  if (c.limits_inputs_per_request < 1) return bad("limits.inputs_per_request", "must be >= 1");
  if (c.limits_inputs_per_request > c.small.queue_size) {
    return bad("limits.inputs_per_request",
               "larger than small.queue_size: such a request could never be admitted");
  }
  if (c.limits_tokens_per_input < 1) return bad("limits.tokens_per_input", "must be >= 1");
  if (c.limits_turns < 1) return bad("limits.turns", "must be >= 1");
  if (!(c.limits_default_deadline_ms > 0)) return bad("limits.default_deadline_ms", "must be > 0");
  if (!(c.limits_max_deadline_ms >= c.limits_default_deadline_ms)) {
    return bad("limits.max_deadline_ms", "must be >= limits.default_deadline_ms");
  }
  if (!(c.shadow_fraction >= 0 && c.shadow_fraction <= 1)) {
    return bad("shadow.fraction", "not in [0, 1]");
  }
  if (c.shadow_fraction > 0 && c.large_mode == "none") {
    return bad("shadow.fraction", "needs a large guard (large.mode local or remote)");
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
  if (!config_file.empty()) SR_RETURN_IF_ERROR(ApplyConfigFile(fresh, config_file));
  SR_RETURN_IF_ERROR(ValidateServerConfig(config));
  return config;
}

std::vector<std::string> ChangedKeys(const ServerConfig& a, const ServerConfig& b) {
  ServerConfig a_copy = a, b_copy = b;
  const std::vector<Key> a_keys = Keys(a_copy), b_keys = Keys(b_copy);
  std::vector<std::string> changed;
  for (size_t i = 0; i < a_keys.size(); ++i) {
    if (TomlValue(a_keys[i].value) != TomlValue(b_keys[i].value)) {
      const Key& key = a_keys[i];
      changed.push_back(key.section[0] ? absl::StrCat(key.section, ".", key.name) : key.name);
    }
  }
  return changed;
}

absl::StatusOr<HttpServerOptions> HttpServerOptionsFrom(const ServerConfig& c) {
  HttpServerOptions o{.host = c.listen_host,
                      .port = c.listen_port,
                      .threads = c.listen_threads,
                      .max_body_bytes = c.limits_body_bytes,
                      .listen_backlog = c.listen_backlog,
                      .read_timeout_ms = c.listen_read_timeout_ms,
                      .write_timeout_ms = c.listen_write_timeout_ms,
                      .keep_alive_timeout_s = c.listen_keep_alive_timeout_s,
                      .keep_alive_max_requests = c.listen_keep_alive_max_requests,
                      .tls_cert_file = c.listen_tls_cert_file,
                      .tls_key_file = c.listen_tls_key_file,
                      .metrics_need_key = c.auth_metrics,
                      .drain_grace_ms = c.listen_drain_grace_ms,
                      .drain_timeout_ms = c.listen_drain_timeout_ms};
  if (!c.auth_api_keys_file.empty() || !c.auth_api_keys_env.empty()) {
    SR_ASSIGN_OR_RETURN(o.api_keys, ApiKeySet::Load(c.auth_api_keys_file, c.auth_api_keys_env));
  }
  return o;
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

}  // namespace saferoute::server
