// Configuration of `saferoute serve`: one struct, its command-line flags, its
// TOML file form, validation and printing.
//
// Every key can come from the TOML file given by --config and be overridden
// on the command line; the flag for key `k` in section `[s]` is `--s-k`
// (underscores become dashes), e.g. [router] budget = 0.2 <-> --router-budget 0.2.
// Unknown keys in the file are an error naming the file and key.
#ifndef SAFEROUTE_SERVER_SERVER_CONFIG_H_
#define SAFEROUTE_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "server/http_server.h"
#include "util/status.h"

namespace saferoute::server {

struct GuardStageConfig {
  std::string model_dir;           // HF directory (config.json, *.safetensors, tokenizer.json)
  std::string format;              // a registered guard format | "" (guessed from the shape)
  std::string precision = "auto";  // auto | fp32 | bf16 | int8 (cpu/dispatch.h)
  int threads = 0;                 // 0: all cores
  int queue_size = 256;            // queued inputs before 429
  int max_batch = 16;              // inputs per forward pass
  double batch_wait_ms = 2;        // how long a batch may wait to fill
};

// The large guard sees only escalations: a shorter queue and smaller batches.
inline GuardStageConfig LargeStageDefaults() {
  GuardStageConfig stage;
  stage.queue_size = 64;
  stage.max_batch = 8;
  return stage;
}

struct ServerConfig {
  // [listen]
  std::string listen_host = "127.0.0.1";
  int listen_port = 8080;     // 0: any free port (printed at start)
  int listen_threads = 32;    // HTTP worker threads (each serves one connection at a time)
  int listen_backlog = 1024;  // pending connections (kernel caps at somaxconn)
  double listen_read_timeout_ms = 5000;      // longest silence while reading a request
  double listen_write_timeout_ms = 5000;     // longest stall while writing a response
  int listen_keep_alive_timeout_s = 2;       // idle keep-alive connection is closed after this
  int listen_keep_alive_max_requests = 100;  // requests per connection, then it is closed
  std::string listen_tls_cert_file;          // PEM certificate (chain); with the key: HTTPS only
  std::string listen_tls_key_file;           // PEM private key
  double listen_drain_grace_ms = 0;          // stop: keep answering (503) at least this long
  double listen_drain_timeout_ms = 30000;    // stop: wait at most this long for requests in flight
  // [auth]  API keys: from a file and/or an environment variable, never in clear here
  std::string auth_api_keys_file;  // one key per line ('#' comments)
  std::string auth_api_keys_env;   // name of an environment variable holding keys
  bool auth_metrics = true;        // with keys: /metrics needs one too
  // top level
  std::string model_name = "saferoute-lg3";  // "model" in /v1/moderations responses
  bool log_prompts = false;                  // prompt text in logs (off: only sizes and verdicts)
  bool categories = true;                    // ask the guards for S-codes (short greedy decode)
  // [small]
  GuardStageConfig small;
  // [router]
  std::string router_path;       // router file; "" = no router, nothing escalates
  double router_threshold = -1;  // ε; < 0: the router file's threshold
  double router_budget = 1;      // cap on the escalated share over the window; 1 = none
  double router_budget_window_s = 60;
  // [large]
  std::string large_mode = "none";  // none | local | remote
  GuardStageConfig large = LargeStageDefaults();
  // [remote]  (large_mode = remote)
  std::string remote_kind = "vllm";  // vllm | llamacpp
  std::string remote_url;            // http://host:port
  std::string remote_model;          // model name sent to vLLM
  std::string remote_tokenizer;      // tokenizer.json used to render prompts ("" = large.model_dir)
  double remote_timeout_ms = 2000;   // per attempt
  int remote_retries = 2;
  double remote_backoff_ms = 50;
  int remote_breaker_failures = 5;
  double remote_breaker_open_ms = 5000;
  std::string remote_api_key_env;  // environment variable holding the server's API key
  std::string remote_ca_file;      // https: PEM CA bundle to verify the server ("" = system's)
  // [policy]
  std::string policy_failure = "fail_closed";  // fail_closed | fail_open | degrade
  double policy_degrade_threshold = 0.5;       // degrade: small p_unsafe > this blocks
  // [limits]
  int64_t limits_body_bytes = 1 << 20;
  int limits_inputs_per_request = 32;
  int limits_tokens_per_input = 4096;
  int limits_turns = 64;
  double limits_default_deadline_ms = 5000;
  double limits_max_deadline_ms = 60000;
  // [shadow]
  double shadow_fraction = 0;  // of non-escalated inputs, also run by the large guard
  uint64_t shadow_seed = 0;    // 0: random
};

// Declares every flag (bound to `config`), plus --config FILE and
// --print-config (bound to the two out-parameters).
void AddServeFlags(CLI::App& app, ServerConfig& config, std::string& config_file,
                   bool& print_config);

// Every boolean key takes an optional value on the command line: `--k`,
// `--k true|false`, `--k=false` (also yes/no, on/off, 1/0).

// Applies the TOML file to the flags of `app` that the command line did not
// set. Errors name the file and the key.
absl::Status ApplyConfigFile(CLI::App& app, const std::string& path);

// Range and consistency checks; errors name the key.
absl::Status ValidateServerConfig(const ServerConfig& config);

// The flags `app` was given on the command line (call before
// ApplyConfigFile, which marks the file's keys as given too).
std::vector<std::string> CommandLineFlags(const CLI::App& app);

// The configuration as it reads now: the same command line (`flags` of
// `app`, from CommandLineFlags) over `config_file` as it is on disk now
// ("" = none), validated. For a reload on SIGHUP.
absl::StatusOr<ServerConfig> RereadServerConfig(const CLI::App& app,
                                                const std::vector<std::string>& flags,
                                                const std::string& config_file);

// The keys ("router.threshold") whose values differ between `a` and `b`.
std::vector<std::string> ChangedKeys(const ServerConfig& a, const ServerConfig& b);

// The HTTP server's options ([listen], [auth], limits.body_bytes); loads the
// API keys (errors name the file or variable, never a key).
absl::StatusOr<HttpServerOptions> HttpServerOptionsFrom(const ServerConfig& config);

// The effective configuration as a TOML file that ApplyConfigFile reads back.
std::string ServerConfigToToml(const ServerConfig& config);

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_SERVER_CONFIG_H_
