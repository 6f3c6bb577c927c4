// Tests of `saferoute serve`'s configuration: the key table (every TOML key
// and flag reaches its component's field; defaults are the components'
// own), the file and flag forms, validation and printing.
#include "server/server_config.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "util/test_paths.h"

namespace saferoute::server {
namespace {

struct ParsedConfig {
  ServerConfig config;
  absl::Status status;
};

ParsedConfig ParseServe(std::vector<std::string> args, const std::string& toml = "") {
  ParsedConfig out;
  std::string file;
  if (!toml.empty()) {
    file = UniqueTestPath("serve_test.toml");
    std::ofstream(file) << toml;
    args.insert(args.begin(), {"--config", file});
  }
  CLI::App app;
  std::string config_file;
  bool print = false;
  AddServeFlags(app, out.config, config_file, print);
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    out.status = absl::InvalidArgumentError(e.what());
    return out;
  }
  if (!config_file.empty()) out.status = ApplyConfigFile(app, config_file);
  return out;
}

std::string Str(const std::string& s) { return s; }
std::string Str(bool b) { return b ? "true" : "false"; }
template <typename T>
std::string Str(T v) {
  return absl::StrCat(v);
}

// Every key, written here by hand (not from the table under test): the value
// the test sets (as TOML and as a flag, different from the default) and the
// component field(s) it must land in, read as text.
struct ExpectedKey {
  std::string key, toml_value, flag_value;
  std::function<std::vector<std::string>(const ServerConfig&)> fields;
};

std::vector<ExpectedKey> ExpectedKeys() {
  using C = const ServerConfig&;
  auto one = [](auto read) {
    return [read](C c) { return std::vector<std::string>{Str(read(c))}; };
  };
  return {
      {"listen.host", "\"0.0.0.0\"", "0.0.0.0", one([](C c) { return c.http.host; })},
      {"listen.port", "9001", "9001", one([](C c) { return c.http.port; })},
      {"listen.threads", "7", "7", one([](C c) { return c.http.threads; })},
      {"listen.backlog", "77", "77", one([](C c) { return c.http.listen_backlog; })},
      {"listen.read_timeout_ms", "123.5", "123.5", one([](C c) { return c.http.read_timeout_ms; })},
      {"listen.write_timeout_ms", "234.5", "234.5",
       one([](C c) { return c.http.write_timeout_ms; })},
      {"listen.keep_alive_timeout_s", "9", "9",
       one([](C c) { return c.http.keep_alive_timeout_s; })},
      {"listen.keep_alive_max_requests", "11", "11",
       one([](C c) { return c.http.keep_alive_max_requests; })},
      {"listen.tls_cert_file", "\"/c.pem\"", "/c.pem",
       one([](C c) { return c.http.tls_cert_file; })},
      {"listen.tls_key_file", "\"/k.pem\"", "/k.pem", one([](C c) { return c.http.tls_key_file; })},
      {"listen.drain_grace_ms", "12.5", "12.5", one([](C c) { return c.http.drain_grace_ms; })},
      {"listen.drain_timeout_ms", "13.5", "13.5", one([](C c) { return c.http.drain_timeout_ms; })},
      {"auth.api_keys_file", "\"/keys\"", "/keys", one([](C c) { return c.api_keys.file; })},
      {"auth.api_keys_env", "\"KEYS\"", "KEYS", one([](C c) { return c.api_keys.env; })},
      {"auth.metrics", "false", "false", one([](C c) { return c.http.metrics_need_key; })},
      {"model_name", "\"m\"", "m", one([](C c) { return c.service.model_name; })},
      {"log_prompts", "true", "true", one([](C c) { return c.service.log_prompts; })},
      {"categories", "false", "false", one([](C c) { return c.service.cascade.want_categories; })},
      {"small.model_dir", "\"/s\"", "/s", one([](C c) { return c.small.model_dir; })},
      {"small.format", "\"f\"", "f", one([](C c) { return c.small.format; })},
      {"small.precision", "\"bf16\"", "bf16",
       one([](C c) { return std::string(cpu::PrecisionName(c.small.engine.precision)); })},
      {"small.threads", "3", "3", one([](C c) { return c.small.engine.num_threads; })},
      {"small.queue_size", "99", "99",
       one([](C c) { return c.service.small_scheduler.queue_capacity; })},
      {"small.max_batch", "5", "5", one([](C c) { return c.service.small_scheduler.max_batch; })},
      {"small.batch_wait_ms", "1.5", "1.5",
       one([](C c) { return c.service.small_scheduler.batch_wait_ms; })},
      {"router.path", "\"/r\"", "/r", one([](C c) { return c.router_path; })},
      {"router.threshold", "0.25", "0.25",
       one([](C c) { return c.service.cascade.router_threshold; })},
      {"router.budget", "0.5", "0.5",
       one([](C c) { return c.service.cascade.max_escalation_share; })},
      {"router.budget_window_s", "7.5", "7.5",
       one([](C c) { return c.service.cascade.budget_window_seconds; })},
      {"large.mode", "\"remote\"", "remote",
       one([](C c) { return Str(static_cast<int>(c.large_mode)); })},
      {"large.model_dir", "\"/l\"", "/l", one([](C c) { return c.large.model_dir; })},
      {"large.format", "\"g\"", "g", one([](C c) { return c.large.format; })},
      {"large.precision", "\"int8\"", "int8",
       one([](C c) { return std::string(cpu::PrecisionName(c.large.engine.precision)); })},
      {"large.threads", "4", "4", one([](C c) { return c.large.engine.num_threads; })},
      {"large.queue_size", "17", "17",
       one([](C c) { return c.service.large_scheduler.queue_capacity; })},
      {"large.max_batch", "3", "3", one([](C c) { return c.service.large_scheduler.max_batch; })},
      {"large.batch_wait_ms", "0.5", "0.5",
       one([](C c) { return c.service.large_scheduler.batch_wait_ms; })},
      {"remote.kind", "\"llamacpp\"", "llamacpp",
       one([](C c) { return Str(c.remote.kind == RemoteKind::kLlamaCpp); })},
      {"remote.url", "\"http://h:1\"", "http://h:1", one([](C c) { return c.remote.base_url; })},
      {"remote.model", "\"rm\"", "rm", one([](C c) { return c.remote.model; })},
      {"remote.tokenizer", "\"/t.json\"", "/t.json", one([](C c) { return c.remote_tokenizer; })},
      {"remote.timeout_ms", "321.5", "321.5", one([](C c) { return c.remote.timeout_ms; })},
      {"remote.retries", "4", "4", one([](C c) { return c.remote.max_retries; })},
      {"remote.backoff_ms", "8.5", "8.5", one([](C c) { return c.remote.backoff_ms; })},
      {"remote.breaker_failures", "9", "9",
       one([](C c) { return c.remote.breaker_failure_threshold; })},
      {"remote.breaker_open_ms", "99.5", "99.5", one([](C c) { return c.remote.breaker_open_ms; })},
      {"remote.api_key_env", "\"GUARD_KEY\"", "GUARD_KEY",
       one([](C c) { return c.remote_api_key_env; })},
      {"remote.ca_file", "\"/ca.pem\"", "/ca.pem", one([](C c) { return c.remote.ca_file; })},
      {"policy.failure", "\"degrade\"", "degrade",
       one([](C c) { return Str(c.service.cascade.failure_policy == FailurePolicy::kDegrade); })},
      {"policy.degrade_threshold", "0.375", "0.375",
       one([](C c) { return c.service.cascade.degrade_threshold; })},
      {"limits.body_bytes", "4096", "4096", one([](C c) { return c.http.max_body_bytes; })},
      {"limits.inputs_per_request", "6", "6",
       one([](C c) { return c.service.max_inputs_per_request; })},
      {"limits.tokens_per_input", "1000", "1000",
       [](C c) {
         return std::vector<std::string>{Str(c.small.max_input_tokens),
                                         Str(c.large.max_input_tokens),
                                         Str(c.remote.max_input_tokens)};
       }},
      {"limits.turns", "12", "12", one([](C c) { return c.service.max_turns; })},
      {"limits.default_deadline_ms", "1500.5", "1500.5",
       one([](C c) { return c.service.default_deadline_ms; })},
      {"limits.max_deadline_ms", "2500.5", "2500.5",
       one([](C c) { return c.service.max_deadline_ms; })},
      {"shadow.fraction", "0.125", "0.125",
       one([](C c) { return c.service.cascade.shadow_fraction; })},
      {"shadow.seed", "18446744073709551615", "18446744073709551615",
       one([](C c) { return c.service.cascade.shadow_seed; })},
  };
}

std::string FlagOf(const std::string& key) {
  std::string flag = "--" + key;
  for (char& ch : flag) {
    if (ch == '.' || ch == '_') ch = '-';
  }
  return flag;
}

// "a.b" = v as TOML (top-level keys first).
std::string TomlOf(const std::vector<ExpectedKey>& keys) {
  std::string top, sections, section;
  for (const ExpectedKey& k : keys) {
    const size_t dot = k.key.find('.');
    if (dot == std::string::npos) {
      absl::StrAppend(&top, k.key, " = ", k.toml_value, "\n");
      continue;
    }
    if (k.key.substr(0, dot) != section) {
      section = k.key.substr(0, dot);
      absl::StrAppend(&sections, "[", section, "]\n");
    }
    absl::StrAppend(&sections, k.key.substr(dot + 1), " = ", k.toml_value, "\n");
  }
  return top + sections;
}

TEST(ServerConfigTable, TheTableHasExactlyTheDocumentedKeys) {
  std::vector<std::string> table, expected;
  for (const auto& [key, value] : ServerConfigKeyValues(ServerConfig())) table.push_back(key);
  for (const ExpectedKey& k : ExpectedKeys()) expected.push_back(k.key);
  EXPECT_EQ(table, expected);
}

TEST(ServerConfigTable, EveryFileKeyReachesItsField) {
  const std::vector<ExpectedKey> keys = ExpectedKeys();
  const ServerConfig defaults;
  ParsedConfig p = ParseServe({}, TomlOf(keys));
  ASSERT_TRUE(p.status.ok()) << p.status;
  for (const ExpectedKey& k : keys) {
    const std::vector<std::string> got = k.fields(p.config);
    for (const std::string& value : got) {
      std::string want = k.flag_value;
      if (k.key == "large.mode") want = "2";  // LargeGuardMode::kRemote
      if (k.key == "remote.kind" || k.key == "policy.failure") want = "true";
      EXPECT_EQ(value, want) << k.key;
    }
    EXPECT_NE(got, k.fields(defaults)) << k.key << ": the test value is the default";
  }
}

TEST(ServerConfigTable, EveryFlagReachesItsField) {
  const std::vector<ExpectedKey> keys = ExpectedKeys();
  std::vector<std::string> args;
  for (const ExpectedKey& k : keys) {
    args.push_back(FlagOf(k.key));
    args.push_back(k.flag_value);
  }
  ParsedConfig by_flags = ParseServe(args);
  ASSERT_TRUE(by_flags.status.ok()) << by_flags.status;
  ParsedConfig by_file = ParseServe({}, TomlOf(keys));
  ASSERT_TRUE(by_file.status.ok()) << by_file.status;
  for (const ExpectedKey& k : keys) {
    EXPECT_EQ(k.fields(by_flags.config), k.fields(by_file.config)) << k.key;
  }
}

// No flags, no file: every field keeps its component struct's default (the
// table writes none of its own).
TEST(ServerConfigTable, DefaultsAreTheComponentStructs) {
  ParsedConfig p = ParseServe({});
  ASSERT_TRUE(p.status.ok()) << p.status;
  const ServerConfig defaults;
  for (const ExpectedKey& k : ExpectedKeys()) {
    EXPECT_EQ(k.fields(p.config), k.fields(defaults)) << k.key;
  }
  EXPECT_EQ(ServerConfigKeyValues(p.config), ServerConfigKeyValues(defaults));
  // Spot checks against the components' own structs.
  EXPECT_EQ(p.config.http.port, HttpServerOptions().port);
  EXPECT_EQ(p.config.service.cascade.max_escalation_share, CascadeOptions().max_escalation_share);
  EXPECT_EQ(p.config.service.small_scheduler.queue_capacity, SchedulerOptions().queue_capacity);
  EXPECT_EQ(p.config.service.large_scheduler.max_batch, LargeSchedulerDefaults().max_batch);
  EXPECT_EQ(p.config.remote.breaker_open_ms, RemoteGuardOptions().breaker_open_ms);
  EXPECT_EQ(p.config.small.engine.precision, LocalGuardOptions().engine.precision);
  // A key that several components read starts out the same in each.
  EXPECT_EQ(LocalGuardOptions().max_input_tokens, RemoteGuardOptions().max_input_tokens);
}

TEST(ServerConfig, FileKeysAndCommandLineOverride) {
  ParsedConfig p =
      ParseServe({"--router-budget", "0.3", "--log-prompts"},
                 "model_name = \"x\"\n[small]\nmodel_dir = \"/m/1b\"\nmax_batch = 4\n"
                 "[router]\nbudget = 0.2\nthreshold = 0.6\n[policy]\nfailure = \"degrade\"\n");
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.config.service.model_name, "x");
  EXPECT_EQ(p.config.small.model_dir, "/m/1b");
  EXPECT_EQ(p.config.service.small_scheduler.max_batch, 4);
  EXPECT_DOUBLE_EQ(p.config.service.cascade.max_escalation_share, 0.3);  // command line wins
  EXPECT_DOUBLE_EQ(p.config.service.cascade.router_threshold, 0.6);
  EXPECT_EQ(p.config.service.cascade.failure_policy, FailurePolicy::kDegrade);
  EXPECT_TRUE(p.config.service.log_prompts);
  EXPECT_TRUE(ValidateServerConfig(p.config).ok());
}

// `--categories false` was refused: a flag took no separate value.
TEST(ServerConfig, BooleanFlagsTakeAnOptionalValue) {
  struct Case {
    std::vector<std::string> args;
    bool categories, log_prompts;
  };
  for (const Case& c : std::vector<Case>{
           {{}, true, false},
           {{"--categories", "false"}, false, false},
           {{"--categories=false", "--log-prompts"}, false, true},
           {{"--log-prompts", "--categories", "no"}, false, true},
           {{"--log-prompts", "true", "--categories", "0"}, false, true},
           {{"--categories", "--log-prompts", "off"}, true, false},
           {{"--log-prompts", "--small-max-batch", "3"}, true, true},
       }) {
    ParsedConfig p = ParseServe(c.args, "");
    const std::string args = absl::StrJoin(c.args, " ");
    ASSERT_TRUE(p.status.ok()) << args << ": " << p.status;
    EXPECT_EQ(p.config.service.cascade.want_categories, c.categories) << args;
    EXPECT_EQ(p.config.service.log_prompts, c.log_prompts) << args;
  }
  ParsedConfig p = ParseServe({"--log-prompts", "--small-max-batch", "3"}, "");
  EXPECT_EQ(p.config.service.small_scheduler.max_batch, 3);
  ParsedConfig bad = ParseServe({"--categories", "maybe"}, "");
  EXPECT_FALSE(bad.status.ok());
  EXPECT_NE(bad.status.message().find("categories"), absl::string_view::npos) << bad.status;
  // The file form is unchanged.
  ParsedConfig file = ParseServe({}, "categories = false\nlog_prompts = true\n");
  ASSERT_TRUE(file.status.ok()) << file.status;
  EXPECT_FALSE(file.config.service.cascade.want_categories);
  EXPECT_TRUE(file.config.service.log_prompts);
}

TEST(ServerConfig, UnknownKeyAndBadValueNameTheKey) {
  ParsedConfig unknown = ParseServe({}, "[small]\nmodel_dri = \"/m\"\n");
  EXPECT_FALSE(unknown.status.ok());
  EXPECT_NE(unknown.status.message().find("small.model_dri"), absl::string_view::npos)
      << unknown.status;
  ParsedConfig bad = ParseServe({}, "[small]\nmax_batch = \"many\"\n");
  EXPECT_FALSE(bad.status.ok());
  EXPECT_NE(bad.status.message().find("small.max_batch"), absl::string_view::npos) << bad.status;
  // A name outside a key's choices: the file, the key and the choices.
  for (const auto& [toml, key, choices] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"[policy]\nfailure = \"fail_sometimes\"\n", "policy.failure",
            "fail_closed, fail_open, degrade"},
           {"[large]\nmode = \"cloud\"\n", "large.mode", "none, local, remote"},
           {"[remote]\nkind = \"tgi\"\n", "remote.kind", "vllm, llamacpp"},
           {"[small]\nprecision = \"fp16\"\n", "small.precision", "auto, fp32, bf16, int8"},
       }) {
    ParsedConfig p = ParseServe({}, toml);
    EXPECT_FALSE(p.status.ok()) << toml;
    EXPECT_NE(p.status.message().find("serve_test"), absl::string_view::npos) << p.status;
    EXPECT_NE(p.status.message().find(key), absl::string_view::npos) << p.status;
    EXPECT_NE(p.status.message().find(choices), absl::string_view::npos) << p.status;
  }
  ParsedConfig flag = ParseServe({"--policy-failure", "maybe"});
  EXPECT_FALSE(flag.status.ok());
  EXPECT_NE(flag.status.message().find("policy-failure"), absl::string_view::npos) << flag.status;
}

TEST(ServerConfig, ValidationNamesTheKey) {
  ServerConfig c;
  c.small.model_dir = "/m";
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.service.cascade.max_escalation_share = 0;
  EXPECT_NE(ValidateServerConfig(c).message().find("router.budget"), absl::string_view::npos);
  c.service.cascade.max_escalation_share = 1;
  c.large_mode = LargeGuardMode::kRemote;
  EXPECT_NE(ValidateServerConfig(c).message().find("remote.url"), absl::string_view::npos);
  c.large_mode = LargeGuardMode::kNone;
  c.service.cascade.shadow_fraction = 0.1;
  EXPECT_NE(ValidateServerConfig(c).message().find("shadow.fraction"), absl::string_view::npos);
  c.service.cascade.shadow_fraction = 0;
  c.large.max_input_tokens = 0;  // one key, several fields: named by the key
  c.small.max_input_tokens = 0;
  EXPECT_NE(ValidateServerConfig(c).message().find("limits.tokens_per_input"),
            absl::string_view::npos);
}

TEST(ServerConfig, ListenLimitsAreValidatedByKey) {
  ServerConfig c;
  c.small.model_dir = "/m";
  ASSERT_TRUE(ValidateServerConfig(c).ok());
  struct Case {
    const char* key;
    void (*breaks)(ServerConfig&);
  };
  for (const Case& bad : std::initializer_list<Case>{
           {"listen.backlog", [](ServerConfig& x) { x.http.listen_backlog = 0; }},
           {"listen.backlog", [](ServerConfig& x) { x.http.listen_backlog = 70000; }},
           {"listen.read_timeout_ms", [](ServerConfig& x) { x.http.read_timeout_ms = 0.5; }},
           {"listen.write_timeout_ms", [](ServerConfig& x) { x.http.write_timeout_ms = -1; }},
           {"listen.keep_alive_timeout_s",
            [](ServerConfig& x) { x.http.keep_alive_timeout_s = 0; }},
           {"listen.keep_alive_max_requests",
            [](ServerConfig& x) { x.http.keep_alive_max_requests = 0; }},
           {"listen.tls_key_file", [](ServerConfig& x) { x.http.tls_cert_file = "/c"; }},
           {"limits.max_deadline_ms", [](ServerConfig& x) { x.service.max_deadline_ms = 1; }},
       }) {
    ServerConfig broken = c;
    bad.breaks(broken);
    absl::Status status = ValidateServerConfig(broken);
    EXPECT_FALSE(status.ok()) << bad.key;
    EXPECT_NE(status.message().find(bad.key), absl::string_view::npos) << status;
  }
  const std::string toml = ServerConfigToToml(c);
  for (const char* line :
       {"backlog = 1024\n", "read_timeout_ms = 5000.0\n", "write_timeout_ms = 5000.0\n",
        "keep_alive_timeout_s = 2\n", "keep_alive_max_requests = 100\n", "port = 8080\n"}) {
    EXPECT_NE(toml.find(line), std::string::npos) << line << "\n" << toml;
  }
}

// SIGHUP reads the configuration again: the same command line over the file
// as it is now (the command line still wins), and says which keys changed.
TEST(ServerConfig, RereadTakesTheFileAsItIsNowUnderTheSameCommandLine) {
  const std::string file = UniqueTestPath("reread.toml");
  std::ofstream(file)
      << "[router]\nbudget = 0.2\nthreshold = 0.6\n[small]\nmodel_dir = \"/m/1b\"\nmax_batch = 4\n";
  CLI::App app;
  ServerConfig config;
  std::string config_file;
  bool print = false;
  AddServeFlags(app, config, config_file, print);
  const std::vector<std::string> args = {"--config", file, "--router-budget", "0.3",
                                         "--log-prompts"};
  app.parse(std::vector<std::string>(args.rbegin(), args.rend()));
  const std::vector<std::string> flags = CommandLineFlags(app);
  ASSERT_TRUE(ApplyConfigFile(app, config_file).ok());
  EXPECT_DOUBLE_EQ(config.service.cascade.router_threshold, 0.6);

  std::ofstream(file, std::ios::trunc) << "[router]\nbudget = 0.5\nthreshold = 0.4\n"
                                          "[small]\nmodel_dir = \"/m/1b\"\nmax_batch = 2\n";
  absl::StatusOr<ServerConfig> next = RereadServerConfig(app, flags, config_file);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_DOUBLE_EQ(next->service.cascade.max_escalation_share, 0.3);  // the command line wins
  EXPECT_DOUBLE_EQ(next->service.cascade.router_threshold, 0.4);
  EXPECT_EQ(next->service.small_scheduler.max_batch, 2);
  EXPECT_TRUE(next->service.log_prompts);
  std::vector<std::string> changed = ChangedKeys(config, *next);
  std::sort(changed.begin(), changed.end());
  EXPECT_EQ(changed, (std::vector<std::string>{"router.threshold", "small.max_batch"}));

  std::ofstream(file, std::ios::trunc) << "[router]\nthreshold = \"high\"\n";
  next = RereadServerConfig(app, flags, config_file);
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.status().message().find("router.threshold"), absl::string_view::npos)
      << next.status();
}

TEST(ServerConfig, PrintedConfigReadsBackToTheSameValues) {
  ServerConfig c;
  c.small.model_dir = "/models/with \"quotes\"";
  c.service.cascade.max_escalation_share = 0.125;
  c.large_mode = LargeGuardMode::kRemote;
  c.remote.base_url = "http://127.0.0.1:8000";
  c.service.log_prompts = true;
  c.service.cascade.shadow_seed = 42;
  c.service.cascade.failure_policy = FailurePolicy::kFailOpen;
  ParsedConfig back = ParseServe({}, ServerConfigToToml(c));
  ASSERT_TRUE(back.status.ok()) << back.status << "\n" << ServerConfigToToml(c);
  EXPECT_EQ(ServerConfigToToml(back.config), ServerConfigToToml(c));
  EXPECT_EQ(back.config.small.model_dir, c.small.model_dir);
  EXPECT_DOUBLE_EQ(back.config.service.cascade.max_escalation_share, 0.125);
  EXPECT_TRUE(back.config.service.log_prompts);
  EXPECT_EQ(back.config.service.cascade.failure_policy, FailurePolicy::kFailOpen);
  EXPECT_EQ(back.config.large_mode, LargeGuardMode::kRemote);
}

}  // namespace
}  // namespace saferoute::server
