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
  if (!config_file.empty()) out.status = ApplyConfigFile(app, config_file, out.config);
  return out;
}

std::string Repeat(const std::string& s, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += s;
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
      {"shadow.seed", "9223372036854775807", "9223372036854775807",
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
           {"[small]\nprecision = \"fp16\"\n", "small.precision",
            "auto, fp32, bf16, int8, int8-a16"},
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

// The file is TOML 1.0 (toml11): CLI11's reader, used before, cut a quoted
// value at '#', kept "\\" escaped (a path printed by --print-config read back
// doubled) and did not decode \u escapes.
TEST(ServerConfigFile, StringsAreReadAsTomlWritesThem) {
  ParsedConfig p =
      ParseServe({},
                 "model_name = \"a#b [v2]\"  # a [comment]\n"
                 "[auth]\napi_keys_file = \"/etc/keys#1\"\n"
                 "[small]\nmodel_dir = \"C:\\\\m\\\"1\\\" caf\\u00e9 \\U0001F600\\t\"\n"
                 "format = 'literal \\ # \"kept\" ['\n"
                 "[remote]\nmodel = \"\"\"\n[first]\n  second \\\n    joined\"\"\"\n"
                 "url = '''http://h/#x\n'''\n");
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.config.service.model_name, "a#b [v2]");
  EXPECT_EQ(p.config.api_keys.file, "/etc/keys#1");
  EXPECT_EQ(p.config.small.model_dir, "C:\\m\"1\" caf\xc3\xa9 \xf0\x9f\x98\x80\t");
  EXPECT_EQ(p.config.small.format, "literal \\ # \"kept\" [");
  // A newline right after the opening quotes is dropped; a backslash at a
  // line's end joins it to the next non-blank text (TOML 1.0).
  EXPECT_EQ(p.config.remote.model, "[first]\n  second joined");
  EXPECT_EQ(p.config.remote.base_url, "http://h/#x\n");
  // --print-config writes each of them so that it reads back the same.
  ParsedConfig back = ParseServe({}, ServerConfigToToml(p.config));
  ASSERT_TRUE(back.status.ok()) << back.status << "\n" << ServerConfigToToml(p.config);
  EXPECT_EQ(ServerConfigKeyValues(back.config), ServerConfigKeyValues(p.config));
  EXPECT_EQ(back.config.small.model_dir, p.config.small.model_dir);
  EXPECT_EQ(back.config.remote.model, p.config.remote.model);
}

TEST(ServerConfigFile, EachTypedKeyTakesItsTomlType) {
  ParsedConfig p =
      ParseServe({},
                 "log_prompts = true\ncategories = false\n"
                 "[listen]\nport = 0x1F91\nthreads = 1_000\nread_timeout_ms = 2.5e3\n"
                 "write_timeout_ms = 700\n"  // an integer where a float goes: exact, taken
                 "[router]\nthreshold = -0.25\nbudget = 1\n"
                 "[limits]\nbody_bytes = 0o4000000\n[shadow]\nseed = 0b101\nfraction = +0.5\n");
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_TRUE(p.config.service.log_prompts);
  EXPECT_FALSE(p.config.service.cascade.want_categories);
  EXPECT_EQ(p.config.http.port, 8081);
  EXPECT_EQ(p.config.http.threads, 1000);
  EXPECT_EQ(p.config.http.read_timeout_ms, 2500.0);
  EXPECT_EQ(p.config.http.write_timeout_ms, 700.0);
  EXPECT_EQ(p.config.service.cascade.router_threshold, -0.25);
  EXPECT_EQ(p.config.service.cascade.max_escalation_share, 1.0);
  EXPECT_EQ(p.config.http.max_body_bytes, 1 << 20);
  EXPECT_EQ(p.config.service.cascade.shadow_seed, 5u);
  EXPECT_EQ(p.config.service.cascade.shadow_fraction, 0.5);
  // Dotted keys and inline tables are the same keys as under [section].
  ParsedConfig dotted = ParseServe({}, "small.max_batch = 3\nlarge = { max_batch = 2 }\n");
  ASSERT_TRUE(dotted.status.ok()) << dotted.status;
  EXPECT_EQ(dotted.config.service.small_scheduler.max_batch, 3);
  EXPECT_EQ(dotted.config.service.large_scheduler.max_batch, 2);
}

// Each bad file: the file, the line and what is wrong, on one line; nothing
// is applied silently.
TEST(ServerConfigFile, BadFilesAreRefusedNamingTheLineAndKey) {
  struct Case {
    std::string toml;
    std::vector<std::string> expect_in_message;
  };
  for (const Case& c : std::vector<Case>{
           // not TOML (toml11's reason)
           {"model_name = \"x\"\n[small]\nmodel_dir = \"/m\n",
            {"serve_test.toml:3:", "not TOML", "not a valid string"}},
           {"model_name = \"x\"\nmodel_name = \"y\"\n",
            {"serve_test.toml:2:", "not TOML", "already exists"}},
           {"[small]\nthreads = 1\n[small]\nqueue_size = 2\n",
            {"serve_test.toml:3:", "already exists"}},
           {"[small]\nmax_batch = \n", {"serve_test.toml:2:", "missing value"}},
           {"model_name = \"a\" \"b\"\n", {"serve_test.toml:1:", "not TOML"}},
           {"[remote]\nurl = \"\"\"never closed\n", {"serve_test.toml:2:", "not TOML"}},
           // not UTF-8 (toml11 read past its buffer on the second)
           {"\nmodel_name = \"\x80\"\n", {"serve_test.toml:2:", "not UTF-8 (byte 15)"}},
           {"'\xff'", {"serve_test.toml:1:", "not UTF-8"}},
           // unknown keys
           {"\n[small]\nmodel_dri = \"/m\"\n",
            {"serve_test.toml:3:", "\"small.model_dri\" is not a serve setting"}},
           {"[small.extra]\nx = 1\n", {"\"small.extra\" is not a serve setting"}},
           {"\"small.max_batch\" = 2\n", {":1:", "\"small.max_batch\" is not a serve setting"}},
           {"[small]\nmodel-dir = \"/m\"\n", {"\"small.model-dir\" is not a serve setting"}},
           {"config = \"/etc/other.toml\"\n", {"\"config\" is not a serve setting"}},
           {"[[small]]\nmax_batch = 1\n", {":1:", "an array (or [[array of tables]])"}},
           // wrong type: expected vs given
           {"[small]\n\nmax_batch = \"many\"\n",
            {"serve_test.toml:3:", "'small.max_batch'", "expected an integer, got string"}},
           {"[small]\nmax_batch = 4.0\n", {"'small.max_batch'", "expected an integer, got float"}},
           {"log_prompts = \"yes\"\n", {"'log_prompts'", "expected a boolean", "got string"}},
           {"log_prompts = 1\n", {"'log_prompts'", "expected a boolean", "got integer"}},
           {"[router]\nthreshold = \"high\"\n", {"'router.threshold'", "expected a number"}},
           {"[small]\nmodel_dir = 7\n", {"'small.model_dir'", "expected a string, got integer"}},
           {"[small]\nmodel_dir = [\"/a\", \"/b\"]\n",
            {"serve_test.toml:2:", "an array", "no serve setting takes one"}},
           // toml11 dereferences the end of an empty array that a later
           // dotted key or [table] goes through (server_config_fuzz: a
           // segfault in release): arrays are refused before it reads them.
           {"a = []\na.b = 1\n", {"serve_test.toml:1:", "an array"}},
           {"a.b = []\na.b.c = 1\n", {"serve_test.toml:1:", "an array"}},
           {"[a]\nb = []\n[a.b.c]\n", {"serve_test.toml:2:", "an array"}},
           {"a = [ # c\n]\n[a.b]\n", {"serve_test.toml:1:", "an array"}},
           {"[small]\nmodel_dir = \"\"\"x\n\"\"\"\"\na = []\n[a.b]\n",
            {"serve_test.toml:4:", "an array"}},
           {"[policy]\nfailure = true\n", {"'policy.failure'", "expected a string"}},
           {"[small]\nmodel_dir = 1979-05-27\n", {"expected a string, got local_date"}},
           {"[small]\nmodel_dir = \"/m/a\\u0000b\"\n",
            {"serve_test.toml:2:", "'small.model_dir'", "holds a NUL character"}},
           // out of range: the file's value is never clamped
           {"[listen]\nport = 4294967296\n", {"'listen.port'", "4294967296 is out of range"}},
           {"[shadow]\nseed = -1\n", {"'shadow.seed'", "out of range"}},
           {"[limits]\nbody_bytes = 9223372036854775808\n",
            {"serve_test.toml:2:", "'limits.body_bytes'", "out of range for a TOML integer"}},
           {"[limits]\nbody_bytes = 0xFFFFFFFFFFFFFFFF\n", {"out of range for a TOML integer"}},
           {"[router]\nbudget = 1e400\n", {"'router.budget'", "out of range for a TOML float"}},
           {"[router]\nbudget = 9007199254740993\n", {"'router.budget'", "expected a number"}},
           // bounds on the text the TOML reader is given (it would overflow the
           // stack, or overflow a signed product, instead of refusing these)
           {"\nx = " + std::string(5000, '[') + std::string(5000, ']') + "\n",
            {"serve_test.toml:2:", "more than 100 '[' and '{'"}},
           {"x = " + Repeat("{a = ", 5000) + "1" + std::string(5000, '}') + "\n",
            {"serve_test.toml:1:", "more than 100 '[' and '{'"}},
           {"[shadow]\nseed = 0b" + std::string(63, '1') + "\n",
            {"serve_test.toml:2:", "binary integer of more than 62 digits"}},
           {"[shadow]\nseed = 0b" + Repeat("0_", 63) + "1\n", {"binary integer"}},
       }) {
    ParsedConfig bad = ParseServe({}, c.toml);
    EXPECT_FALSE(bad.status.ok()) << c.toml;
    for (const std::string& part : c.expect_in_message) {
      EXPECT_NE(bad.status.message().find(part), absl::string_view::npos)
          << c.toml << " -> " << bad.status << "\n(expected " << part << ")";
    }
    EXPECT_EQ(bad.status.message().find('\n'), absl::string_view::npos) << bad.status;
  }
}

TEST(ServerConfigFile, CommandLineWinsOverTheFileAndTheFileIsBounded) {
  ParsedConfig p = ParseServe({"--small-max-batch", "9", "--router-threshold", "0.1"},
                              "[small]\nmax_batch = 4\n[router]\nthreshold = 0.6\nbudget = 0.5\n");
  ASSERT_TRUE(p.status.ok()) << p.status;
  EXPECT_EQ(p.config.service.small_scheduler.max_batch, 9);
  EXPECT_EQ(p.config.service.cascade.router_threshold, 0.1);
  EXPECT_EQ(p.config.service.cascade.max_escalation_share, 0.5);
  // A key given on the command line is not read from the file at all.
  ParsedConfig replaced = ParseServe({"--small-max-batch", "9"}, "[small]\nmax_batch = \"x\"\n");
  EXPECT_TRUE(replaced.status.ok()) << replaced.status;

  ParsedConfig big = ParseServe({}, std::string(kMaxConfigFileBytes, '#') + "\n");
  EXPECT_FALSE(big.status.ok());
  EXPECT_NE(big.status.message().find("larger than"), absl::string_view::npos) << big.status;
  // Just within the bounds: read.
  ParsedConfig within =
      ParseServe({}, std::string(kMaxConfigFileBytes - 200, '#') + "\n[shadow]\nseed = 0b" +
                         std::string(62, '1') + "\n" + "# " + std::string(90, '[') + "\n");
  ASSERT_TRUE(within.status.ok()) << within.status;
  EXPECT_EQ(within.config.service.cascade.shadow_seed, (uint64_t{1} << 62) - 1);
  // The text entry point (the fuzz target's) names what it was given.
  CLI::App app;
  ServerConfig config;
  std::string file;
  bool print = false;
  AddServeFlags(app, config, file, print);
  absl::Status status = ApplyConfigText(app, "[small]\nqueue_size = true\n", "<text>", config);
  EXPECT_NE(status.message().find("<text>:2: key 'small.queue_size'"), absl::string_view::npos)
      << status;
}

TEST(ServerConfig, ShadowSeedFitsATomlInteger) {
  ServerConfig c;
  c.small.model_dir = "/m";
  c.service.cascade.shadow_seed = uint64_t{1} << 63;
  EXPECT_NE(ValidateServerConfig(c).message().find("shadow.seed"), absl::string_view::npos);
  c.service.cascade.shadow_seed = (uint64_t{1} << 63) - 1;
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  ParsedConfig back = ParseServe({}, ServerConfigToToml(c));
  ASSERT_TRUE(back.status.ok()) << back.status;
  EXPECT_EQ(back.config.service.cascade.shadow_seed, c.service.cascade.shadow_seed);
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
  ASSERT_TRUE(ApplyConfigFile(app, config_file, config).ok());
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
