// Configuration of `saferoute serve`: the options of each component it wires
// (HTTP listener, guard service with its schedulers and cascade, local guards,
// remote guard), their command-line flags, their TOML file form, validation
// and printing.
//
// Each component's defaults are written once, in its own options struct
// (HttpServerOptions, GuardServiceOptions, CascadeOptions, SchedulerOptions,
// LocalGuardOptions, RemoteGuardOptions); ServerConfig only holds them. One
// table (server_config.cc) maps every TOML key and flag onto a field of those
// structs: flags, file keys, --print-config and validation messages come from
// it, so nothing is copied field by field.
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
#include "cascade/remote_guard.h"
#include "guard/local_guard.h"
#include "server/guard_service.h"
#include "server/http_server.h"
#include "util/status.h"

namespace saferoute::server {

// Where the large guard runs ([large] mode).
enum class LargeGuardMode { kNone, kLocal, kRemote };

// Where the API keys come from ([auth]); never the keys themselves.
struct ApiKeySources {
  std::string file;  // one key per line ('#' comments)
  std::string env;   // name of an environment variable holding keys
};

struct ServerConfig {
  // [listen], auth.metrics, limits.body_bytes (api_keys: from `api_keys`).
  HttpServerOptions http;
  ApiKeySources api_keys;  // [auth]
  // model_name, log_prompts, categories, [limits], the schedulers' keys of
  // [small] and [large], the cascade's of [router], [policy] and [shadow].
  GuardServiceOptions service;
  // [small]: model_dir, format, precision, threads; limits.tokens_per_input.
  // Its max_batch is the small scheduler's (set where the guard is opened).
  LocalGuardOptions small;
  std::string router_path;  // [router] path; "" = no router, nothing escalates
  LargeGuardMode large_mode = LargeGuardMode::kNone;
  // [large] as [small] (mode local; its model_dir/tokenizer.json also renders
  // the remote guard's prompts unless remote.tokenizer says otherwise).
  LocalGuardOptions large;
  RemoteGuardOptions remote;     // [remote] (mode remote); limits.tokens_per_input
  std::string remote_tokenizer;  // [remote] tokenizer; "" = large.model_dir's
  // [remote] api_key_env: the environment variable holding the remote's API
  // key (RemoteGuardOptions::api_key is read from it at start; the key itself
  // never passes through flags or the config file).
  std::string remote_api_key_env;
};

// Declares every flag (bound to `config`), plus --config FILE and
// --print-config (bound to the two out-parameters).
void AddServeFlags(CLI::App& app, ServerConfig& config, std::string& config_file,
                   bool& print_config);

// Every boolean key takes an optional value on the command line: `--k`,
// `--k true|false`, `--k=false` (also yes/no, on/off, 1/0).

// The largest config file read: ten times the full --print-config output
// (every key with its comment). It bounds the TOML reader's time, which grows
// with the square of the number of keys.
inline constexpr size_t kMaxConfigFileBytes = 32 * 1024;

// Applies the TOML file `path` (TOML 1.0, read with toml11) to `config`, the
// ServerConfig that `app`'s flags are bound to (AddServeFlags), except the
// keys whose flag was given on the command line: those win. Errors name the
// file and line, and the key: an unknown key, a value of the wrong type
// (expected vs given) or out of range, a file that is not TOML (toml11's
// reason: unterminated string, duplicate key...), a file past the bounds
// that keep toml11 3.7 safe (size, '[' and '{' count, binary digits: see
// CheckWithinReaderLimits in server_config.cc).
absl::Status ApplyConfigFile(const CLI::App& app, const std::string& path, ServerConfig& config);
// The same for the file's text; `name` stands for the file in errors.
absl::Status ApplyConfigText(const CLI::App& app, std::string_view text, const std::string& name,
                             ServerConfig& config);

// Range and consistency checks; errors name the key.
absl::Status ValidateServerConfig(const ServerConfig& config);

// The flags `app` was given on the command line.
std::vector<std::string> CommandLineFlags(const CLI::App& app);

// The configuration as it reads now: the same command line (`flags` of
// `app`, from CommandLineFlags) over `config_file` as it is on disk now
// ("" = none), validated. For a reload on SIGHUP.
absl::StatusOr<ServerConfig> RereadServerConfig(const CLI::App& app,
                                                const std::vector<std::string>& flags,
                                                const std::string& config_file);

// The keys ("router.threshold") whose values differ between `a` and `b`.
std::vector<std::string> ChangedKeys(const ServerConfig& a, const ServerConfig& b);

// The HTTP server's options with the API keys loaded (errors name the file
// or variable, never a key).
absl::StatusOr<HttpServerOptions> HttpServerOptionsFrom(const ServerConfig& config);

// The effective configuration as a TOML file that ApplyConfigFile reads back.
std::string ServerConfigToToml(const ServerConfig& config);

// Every key as "section.name" ("name" at top level), in table order, with its
// value as ServerConfigToToml writes it: for tests and tools.
std::vector<std::pair<std::string, std::string>> ServerConfigKeyValues(const ServerConfig& config);

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_SERVER_CONFIG_H_
