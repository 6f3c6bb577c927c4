// Unit tests of the service's parts without HTTP: metrics exposition,
// request parsing (the config: server_config_test.cc).
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include "absl/strings/str_join.h"
#include "cascade/testing/fake_guards.h"
#include "gtest/gtest.h"
#include "guard/guard_format.h"
#include "server/api_json.h"
#include "server/guard_api.h"
#include "server/http_status.h"
#include "server/metrics.h"
#include "server/moderation_api.h"
#include "util/test_paths.h"

namespace saferoute::server {
namespace {

using fakes::FakeGuard;

// ---------------------------------------------------------------- metrics

TEST(Metrics, RendersExactTextFormat) {
  MetricsRegistry m;
  m.AddCounter("req_total", "Requests.\nSecond line \\ here", {"route"});
  m.AddGauge("depth", "Queue depth.");
  m.AddHistogram("lat_seconds", "Latency.", {0.005, 0.5}, {"stage"});
  m.Increment("req_total", {"a\"b\\c\nd"}, 2);
  m.Observe("lat_seconds", {"small"}, 0.001);
  m.Observe("lat_seconds", {"small"}, 0.25);
  m.Observe("lat_seconds", {"small"}, 7);
  EXPECT_EQ(m.Render(),
            "# HELP req_total Requests.\\nSecond line \\\\ here\n"
            "# TYPE req_total counter\n"
            "req_total{route=\"a\\\"b\\\\c\\nd\"} 2\n"
            "# HELP depth Queue depth.\n"
            "# TYPE depth gauge\n"
            "depth 0\n"
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{stage=\"small\",le=\"0.005\"} 1\n"
            "lat_seconds_bucket{stage=\"small\",le=\"0.5\"} 2\n"
            "lat_seconds_bucket{stage=\"small\",le=\"+Inf\"} 3\n"
            "lat_seconds_sum{stage=\"small\"} 7.251\n"
            "lat_seconds_count{stage=\"small\"} 3\n");
}

TEST(Metrics, SampleValuesAndCallbacks) {
  EXPECT_EQ(FormatSampleValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatSampleValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(FormatSampleValue(0.1), "0.1");
  EXPECT_EQ(FormatSampleValue(3), "3");
  MetricsRegistry m;
  m.AddCallbackFamily("ev_total", "Events.", true, {"event"}, [] {
    return MetricsRegistry::SeriesList{{{"x"}, 4}};
  });
  EXPECT_EQ(m.Render(),
            "# HELP ev_total Events.\n# TYPE ev_total counter\nev_total{event=\"x\"} 4\n");
}

TEST(MetricsDeathTest, UndeclaredMetricIsAProgrammingError) {
  MetricsRegistry m;
  EXPECT_DEATH(m.Increment("nope_total"), "undeclared metric");
}

// ------------------------------------------------------------- API parsing

absl::Status ParseModeration(const std::string& body, int max_inputs = 4) {
  absl::StatusOr<nlohmann::json> json = ParseJsonObject(body);
  if (!json.ok()) return json.status();
  return ParseModerationRequest(*json, max_inputs).status();
}

std::string CodeOf(const absl::Status& s) { return ErrorBody(s)["error"]["code"]; }
nlohmann::json ParamOf(const absl::Status& s) { return ErrorBody(s)["error"]["param"]; }

TEST(ModerationApi, AcceptsOpenAiInputForms) {
  absl::StatusOr<nlohmann::json> json =
      ParseJsonObject(R"({"model":"m","input":["a",{"type":"text","text":"b"}]})");
  ASSERT_TRUE(json.ok());
  absl::StatusOr<ModerationRequest> r = ParseModerationRequest(*json, 4);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->inputs, (std::vector<std::string>{"a", "b"}));
}

TEST(ModerationApi, RejectsBadInputNamingTheField) {
  struct Case {
    std::string body, code;
    nlohmann::json param;
  };
  const std::vector<Case> cases = {
      {"{", "invalid_json", nullptr},
      {"[1]", "invalid_type", nullptr},
      {R"({"model":"m"})", "missing_field", "input"},
      {R"({"input":7})", "invalid_type", "input"},
      {R"({"input":[]})", "empty_input", "input"},
      {R"({"input":["a",3]})", "invalid_type", "input[1]"},
      {R"({"input":["a","b","c","d","e"]})", "too_many_inputs", "input"},
      {R"({"input":[{"type":"image_url","image_url":{"url":"x"}}]})", "unsupported_input_type",
       "input[0].type"},
      {R"({"input":[{"type":"text"}]})", "invalid_type", "input[0].text"},
      {R"({"input":"a","model":5})", "invalid_type", "model"},
      {"{\"input\":\"\xff\xfe\"}", "invalid_utf8", nullptr},
      {"{\"input\":\"\xc3\"}", "invalid_utf8", nullptr},
      {R"({"input":"\ud800"})", "invalid_unicode", nullptr},
      {R"({"input":"\udc00x"})", "invalid_unicode", nullptr},
      {R"({"input":"\ud800\u0041"})", "invalid_unicode", nullptr},
      {std::string(100, '[') + std::string(100, ']'), "invalid_json", nullptr},
  };
  for (const Case& c : cases) {
    absl::Status s = ParseModeration(c.body);
    EXPECT_EQ(HttpStatusFor(s), 400) << c.body << " -> " << s;
    EXPECT_EQ(CodeOf(s), c.code) << c.body << " -> " << s;
    EXPECT_EQ(ParamOf(s), c.param) << c.body << " -> " << s;
  }
  // Parse errors keep the position but never echo the body (it is logged).
  absl::Status echoed = ParseModeration("{\"input\":\"my secret \xff\"}");
  EXPECT_EQ(echoed.message().find("secret"), absl::string_view::npos) << echoed;
  EXPECT_NE(echoed.message().find("column"), absl::string_view::npos) << echoed;
  // A valid surrogate pair is fine.
  EXPECT_TRUE(ParseModeration(R"({"input":"\ud83d\ude00"})").ok());
}

// Found by http_body_fuzz: nlohmann takes a NUL byte for the end of the
// input, so whatever followed it was silently ignored.
TEST(ModerationApi, RefusesNulBytes) {
  const std::string trailing = std::string(R"({"input":"a"})") + '\0' + R"({"input":"b"})";
  const std::string in_string = std::string(R"({"input":"a)") + '\0' + R"(b"})";
  for (const std::string& body : {trailing, in_string}) {
    absl::Status s = ParseModeration(body);
    EXPECT_EQ(HttpStatusFor(s), 400) << s;
    EXPECT_EQ(CodeOf(s), "invalid_json") << s;
  }
  EXPECT_NE(ParseModeration(trailing).message().find("line 1, column 14: NUL byte"),
            absl::string_view::npos)
      << ParseModeration(trailing);
}

// Every registered format maps its codes onto OpenAI's keys only.
TEST(ModerationApi, FormatsMapOntoOpenAiKeysOnly) {
  const std::vector<std::string>& keys = OpenAiCategoryKeys();
  EXPECT_EQ(keys.size(), 13u);
  for (const GuardFormatEntry& entry : GuardFormatEntries()) {
    int mapped = 0;
    for (int s = 1; s <= 30; ++s) {
      for (const std::string& key : ModerationKeys(entry.name, absl::StrCat("S", s))) {
        EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << entry.name << " " << key;
        ++mapped;
      }
    }
    EXPECT_GT(mapped, 0) << entry.name;
  }
}

// Categories are read through the DECIDING guard's format: a small guard
// whose format maps nothing flags without categories; the large guard's S1
// is violence.
TEST(ModerationApi, CategoriesFollowTheDecidingGuardsFormat) {
  CascadeDecision by_small, by_large;
  by_small.flagged = by_large.flagged = true;
  by_small.p_unsafe = 0.8;
  by_large.p_unsafe = 0.875;  // exact in float
  by_small.s_codes = by_large.s_codes = {"S1"};
  by_small.decided_by = DecidedBy::kSmall;
  by_large.decided_by = DecidedBy::kLarge;
  const nlohmann::json response =
      ModerationResponse("id", "m", {by_small, by_large}, /*small_format=*/"", "llama-guard-3-8b");
  const nlohmann::json& small = response["results"][0];
  EXPECT_EQ(small["flagged"], true);
  for (const auto& [key, value] : small["categories"].items()) EXPECT_EQ(value, false) << key;
  const nlohmann::json& large = response["results"][1];
  EXPECT_EQ(large["categories"]["violence"], true);
  EXPECT_EQ(large["categories"]["illicit/violent"], true);
  EXPECT_EQ(large["categories"]["hate"], false);
  EXPECT_EQ(large["category_scores"]["violence"].get<double>(), 0.875);
}

TEST(GuardApi, ParsesConversationAndPolicy) {
  absl::StatusOr<nlohmann::json> json = ParseJsonObject(R"({
    "conversation": [{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}],
    "policy": {"categories":[{"code":"S1","name":"Violent Crimes."}], "exclude":["S6"]},
    "deadline_ms": 250})");
  ASSERT_TRUE(json.ok());
  absl::StatusOr<NativeGuardRequest> r = ParseNativeGuardRequest(*json, 8);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->request.conversation.size(), 2u);
  EXPECT_EQ(r->request.conversation[1].role, Turn::Role::kAssistant);
  ASSERT_TRUE(r->request.policy.has_value());
  EXPECT_EQ(r->request.policy->categories.at(0).first, "S1");
  EXPECT_EQ(r->request.policy->excluded, std::vector<std::string>{"S6"});
  EXPECT_EQ(r->deadline_ms, 250);
}

TEST(GuardApi, RejectsBadRequestsNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({})", "prompt"},
      {R"({"prompt":1})", "prompt"},
      {R"({"prompt":"a","conversation":[]})", "conversation"},
      {R"({"conversation":[{"role":"assistant","content":"x"}]})", "conversation[0].role"},
      {R"({"conversation":[{"role":"user"}]})", "conversation[0].content"},
      {R"({"conversation":[{"role":"user","content":"a"},{"role":"user","content":"b"}]})",
       "conversation[1].role"},
      {R"({"prompt":"a","policy":{"categories":[{"code":"X1","name":"n"}]}})",
       "policy.categories[0].code"},
      {R"({"prompt":"a","policy":{"categories":[{"code":"S1","name":"a\nb"}]}})",
       "policy.categories[0].name"},
      // Break http_body_fuzz's invariant: accepted here, refused only when rendering.
      {R"({"prompt":"a","policy":{"categories":[{"code":"S1","name":"a\rb"}]}})",
       "policy.categories[0].name"},
      {R"({"prompt":"a","policy":{"categories":[{"code":"S1","name":" \t"}]}})",
       "policy.categories[0].name"},
      {R"({"prompt":"a","policy":{"exclude":[3]}})", "policy.exclude[0]"},
      {R"({"prompt":"a","deadline_ms":-5})", "deadline_ms"},
      {R"({"prompt":"a","extra":true})", "extra"},
  };
  for (const auto& [body, param] : cases) {
    absl::StatusOr<nlohmann::json> json = ParseJsonObject(body);
    ASSERT_TRUE(json.ok()) << body;
    absl::Status s = ParseNativeGuardRequest(*json, 8).status();
    EXPECT_EQ(HttpStatusFor(s), 400) << body;
    EXPECT_EQ(ParamOf(s), param) << body << " -> " << s;
  }
}

TEST(HttpStatus, OneMappingForEveryCode) {
  EXPECT_EQ(HttpStatusFor(absl::OkStatus()), 200);
  EXPECT_EQ(HttpStatusFor(absl::InvalidArgumentError("")), 400);
  EXPECT_EQ(HttpStatusFor(absl::OutOfRangeError("")), 400);
  EXPECT_EQ(HttpStatusFor(absl::ResourceExhaustedError("")), 429);
  EXPECT_EQ(HttpStatusFor(absl::DeadlineExceededError("")), 504);
  EXPECT_EQ(HttpStatusFor(absl::UnavailableError("")), 503);
  EXPECT_EQ(HttpStatusFor(absl::InternalError("")), 500);
  nlohmann::json body = ErrorBody(absl::ResourceExhaustedError("full"));
  EXPECT_EQ(body["error"]["type"], "rate_limit_error");
  EXPECT_EQ(body["error"]["message"], "full");
  EXPECT_TRUE(body["error"]["param"].is_null());
}

}  // namespace
}  // namespace saferoute::server
