// End-to-end tests of the HTTP service on 127.0.0.1 (ephemeral ports) with
// fake guards and router: API shapes, bad input, backpressure, deadlines,
// batching, the escalation budget, failure policies, shadow sampling,
// graceful drain and the metrics exposition.
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <thread>

#include "cascade/testing/fake_guards.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "server/http_server.h"
#include "server/moderation_api.h"
#include "server/server_config.h"
#include "server/testing/http_harness.h"

namespace saferoute::server {
namespace {

using fakes::FakeGuard;
using fakes::FakeRouter;
using testing::ConnectRaw;
using testing::ExpectOpenAiError;
using testing::Harness;
using Json = nlohmann::json;

// ------------------------------------------------------------- API shapes

TEST(ServerHttp, ModerationSingleInputHasOpenAiShape) {
  Harness h;
  Harness::Reply r = h.Post("/v1/moderations", R"({"model":"x","input":"hurt p=0.92 c=S1,S7"})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["id"].get<std::string>().rfind("modr-", 0), 0u);
  EXPECT_EQ(r.body["model"], "saferoute-lg3");
  ASSERT_EQ(r.body["results"].size(), 1u);
  const Json& result = r.body["results"][0];
  EXPECT_EQ(result["flagged"], true);
  ASSERT_EQ(result["categories"].size(), 13u);
  ASSERT_EQ(result["category_scores"].size(), 13u);
  for (const std::string& key : OpenAiCategoryKeys()) {
    ASSERT_TRUE(result["categories"][key].is_boolean()) << key;
    ASSERT_TRUE(result["category_scores"][key].is_number()) << key;
    EXPECT_EQ(result["category_applied_input_types"][key], Json::array({"text"}));
    const bool expect = key == "violence" || key == "illicit/violent";  // S1; S7 has no key
    EXPECT_EQ(result["categories"][key], expect) << key;
    EXPECT_NEAR(result["category_scores"][key].get<double>(), expect ? 0.92 : 0.0, 1e-6) << key;
  }
  const Json& ext = result["saferoute"];
  EXPECT_EQ(ext["decided_by"], "small");
  EXPECT_EQ(ext["s_codes"], Json::array({"S1", "S7"}));
  EXPECT_EQ(ext["escalated"], false);
  EXPECT_EQ(ext["routing_reason"], "below_threshold");
  EXPECT_NEAR(ext["router_score"].get<double>(), 0.0, 1e-9);
  EXPECT_TRUE(ext["policy_applied"].is_null());
  EXPECT_EQ(ext["degraded"], false);
  for (const char* stage : {"small_queue", "small", "router", "large_queue", "large", "total"}) {
    EXPECT_TRUE(ext["latency_ms"][stage].is_number()) << stage;
  }
  // The small guard was asked for categories and a feature (there is a router).
  ASSERT_EQ(h.small.last_requests().size(), 1u);
  EXPECT_TRUE(h.small.last_requests()[0].want_categories);
  EXPECT_TRUE(h.small.last_requests()[0].want_feature);
}

TEST(ServerHttp, ModerationArrayKeepsOrderAndEscalates) {
  Harness h;
  Harness::Reply r =
      h.Post("/v1/moderations",
             R"({"input":["safe one","bad p=0.8 c=S10","hard p=0.3 r=0.9 lp=0.85 c=S4"]})");
  ASSERT_EQ(r.status, 200) << r.raw;
  const Json& results = r.body["results"];
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0]["flagged"], false);
  EXPECT_EQ(results[1]["flagged"], true);
  EXPECT_EQ(results[1]["categories"]["hate"], true);
  // Input 2: router score 0.9 > 0.5 -> the large guard (p=0.85, S4) overrules
  // the small one (p=0.3).
  const Json& ext = results[2]["saferoute"];
  EXPECT_EQ(ext["escalated"], true);
  EXPECT_EQ(ext["decided_by"], "large");
  EXPECT_EQ(ext["routing_reason"], "router");
  EXPECT_NEAR(ext["p_unsafe_small"].get<double>(), 0.3, 1e-6);
  EXPECT_NEAR(ext["p_unsafe_large"].get<double>(), 0.85, 1e-6);
  EXPECT_EQ(results[2]["flagged"], true);
  EXPECT_EQ(results[2]["categories"]["sexual/minors"], true);
  EXPECT_NEAR(results[2]["category_scores"]["sexual/minors"].get<double>(), 0.85, 1e-6);
  // The large guard saw exactly the escalated input, without asking for a feature.
  ASSERT_EQ(h.large.last_requests().size(), 1u);
  EXPECT_EQ(h.large.last_requests()[0].prompt, "hard p=0.3 r=0.9 lp=0.85 c=S4");
  EXPECT_FALSE(h.large.last_requests()[0].want_feature);
}

TEST(ServerHttp, NativeGuardEndpointCarriesPolicyAndProvenance) {
  Harness h;
  Harness::Reply r = h.Post("/v1/guard", R"({
      "conversation":[{"role":"user","content":"q"},{"role":"assistant","content":"a p=0.7 c=S2"}],
      "policy":{"categories":[{"code":"S1","name":"Violent Crimes."},{"code":"S2","name":"Non-Violent Crimes."}]}})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["id"].get<std::string>().rfind("guard-", 0), 0u);
  EXPECT_EQ(r.body["verdict"], "unsafe");
  EXPECT_EQ(r.body["flagged"], true);
  EXPECT_EQ(r.body["s_codes"], Json::array({"S2"}));
  EXPECT_EQ(r.body["decided_by"], "small");
  EXPECT_EQ(r.body["models"]["small"], "fake-small");
  EXPECT_EQ(r.body["models"]["large"], "fake-large");
  EXPECT_TRUE(r.body["saferoute"]["latency_ms"].is_object());
  std::vector<GuardRequest> seen = h.small.last_requests();
  ASSERT_EQ(seen.size(), 1u);
  ASSERT_EQ(seen[0].conversation.size(), 2u);
  ASSERT_TRUE(seen[0].policy.has_value());
  EXPECT_EQ(seen[0].policy->categories.size(), 2u);

  Harness::Reply p = h.Post("/v1/guard", R"({"prompt":"hello","response":"fine"})");
  ASSERT_EQ(p.status, 200) << p.raw;
  EXPECT_EQ(p.body["verdict"], "safe");
  ASSERT_TRUE(h.small.last_requests()[0].response.has_value());
}

TEST(ServerHttp, HealthAndReadiness) {
  Harness h;
  EXPECT_EQ(h.Get("/healthz").status, 200);
  Harness::Reply ready = h.Get("/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body["ready"], true);
  h.service->BeginDrain();
  Harness::Reply draining = h.Get("/readyz");
  EXPECT_EQ(draining.status, 503);
  EXPECT_EQ(draining.body["ready"], false);
  ExpectOpenAiError(h.Post("/v1/moderations", R"({"input":"x"})"), 503, "unavailable",
                    Json(Json::value_t::discarded), "moderation while draining");
}

TEST(ServerHttp, PromptTextIsLoggedOnlyWhenAsked) {
  for (bool log_prompts : {false, true}) {
    GuardServiceOptions options;
    options.log_prompts = log_prompts;
    Harness h(options);
    ::testing::internal::CaptureStderr();
    ASSERT_EQ(h.Post("/v1/moderations", R"({"input":"my secret prompt"})").status, 200);
    ASSERT_EQ(h.Post("/v1/guard", R"({"prompt":"another secret"})").status, 200);
    ASSERT_EQ(h.Post("/v1/moderations", "{\"input\":\"secret \xff\"}").status, 400);
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(log.find("/v1/moderations 200"), std::string::npos) << log;
    EXPECT_NE(log.find("inputs=1"), std::string::npos) << log;
    EXPECT_EQ(log.find("my secret prompt") != std::string::npos, log_prompts) << log;
    EXPECT_EQ(log.find("another secret") != std::string::npos, log_prompts) << log;
  }
}

// --------------------------------------------------------------- bad input

TEST(ServerHttp, BadInputMatrixGivesOpenAiErrors) {
  Harness h;
  struct Case {
    std::string path, body;
    int status;
    std::string code;
    Json param;
  };
  const Json any(Json::value_t::discarded);
  const std::vector<Case> cases = {
      {"/v1/moderations", "not json", 400, "invalid_json", nullptr},
      {"/v1/moderations", "", 400, "invalid_json", nullptr},
      {"/v1/moderations", "[\"x\"]", 400, "invalid_type", nullptr},
      {"/v1/moderations", R"({"input":{"text":"x"}})", 400, "invalid_type", "input"},
      {"/v1/moderations", R"({"input":[1,2]})", 400, "invalid_type", "input[0]"},
      {"/v1/moderations", R"({"input":[]})", 400, "empty_input", "input"},
      {"/v1/moderations", "{\"input\":\"bad \xc0\xaf utf8\"}", 400, "invalid_utf8", nullptr},
      {"/v1/moderations", R"({"input":"lone \ud800 surrogate"})", 400, "invalid_unicode", nullptr},
      {"/v1/moderations", R"({"input":["ok","\udfff"]})", 400, "invalid_unicode", nullptr},
      {"/v1/moderations", std::string(5000, ' ') + "{}", 413, "body_too_large", nullptr},
      {"/v1/moderations", std::string(2000, '[') + std::string(2000, ']'), 400, "invalid_json",
       nullptr},
      {"/v1/guard", R"({"prompt":["x"]})", 400, "invalid_type", "prompt"},
      {"/v1/guard", R"({"prompt":"x","conversation":[{"role":"user","content":"y"}]})", 400,
       "conflicting_fields", "conversation"},
      {"/v1/guard", R"({"conversation":[{"role":"system","content":"y"}]})", 400, "invalid_value",
       "conversation[0].role"},
      {"/v1/nope", R"({})", 404, "not_found", nullptr},
  };
  for (const Case& c : cases) {
    ExpectOpenAiError(h.Post(c.path, c.body), c.status, c.code, c.param,
                      c.path + " " + c.body.substr(0, 60));
  }
  ExpectOpenAiError(
      h.Post("/v1/moderations", R"({"input":"x"})", {{"X-SafeRoute-Deadline-Ms", "soon"}}), 400,
      "invalid_value", "X-SafeRoute-Deadline-Ms", "deadline header");
  // The server is still healthy after all of that.
  EXPECT_EQ(h.Post("/v1/moderations", R"({"input":"x"})").status, 200);
}

TEST(ServerHttp, TooManyTokensIsA400ForThatInputOnly) {
  Harness h;
  h.small.SetMaxWords(3);
  Harness::Reply r = h.Post("/v1/moderations", R"({"input":["short","one two three four five"]})");
  ExpectOpenAiError(r, 400, "out_of_range", "input[1]", "token limit");
  // The message names the input as the request does, then the guard's reason;
  // no internal names ("small guard", the guard's own batch index).
  EXPECT_EQ(r.body["error"]["message"], "input[1]: 5 tokens, over the limit of 3 per input")
      << r.raw;
  Harness::Reply g = h.Post("/v1/guard", R"({"prompt":"one two three four five"})");
  ExpectOpenAiError(g, 400, "out_of_range", "prompt", "token limit on /v1/guard");
  EXPECT_EQ(g.body["error"]["message"], "prompt: 5 tokens, over the limit of 3 per input") << g.raw;
}

// ------------------------------------------------- backpressure and time

TEST(ServerHttp, FullQueueGives429WithRetryAfter) {
  GuardServiceOptions options;
  options.small_scheduler = {
      .name = "small", .queue_capacity = 2, .max_batch = 1, .batch_wait_ms = 0};
  options.max_inputs_per_request = 2;
  Harness h(options);
  h.small.CloseGate();
  // One input in the guard, two queued: the queue is full.
  auto first =
      std::async(std::launch::async, [&] { return h.Post("/v1/moderations", R"({"input":"a"})"); });
  h.small.WaitEntered(1);
  auto second = std::async(std::launch::async,
                           [&] { return h.Post("/v1/moderations", R"({"input":["b","c"]})"); });
  while (h.service->metrics().Render().find("saferoute_queue_depth{guard=\"small\"} 2") ==
         std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  Harness::Reply refused = h.Post("/v1/moderations", R"({"input":"d"})");
  ExpectOpenAiError(refused, 429, "queue_full", nullptr, "full queue");
  EXPECT_EQ(refused.retry_after, "1");
  h.small.OpenGate();
  EXPECT_EQ(first.get().status, 200);
  EXPECT_EQ(second.get().status, 200);
}

TEST(ServerHttp, SmallStageDeadlineGives504) {
  Harness h;
  h.small.CloseGate();
  Harness::Reply r =
      h.Post("/v1/moderations", R"({"input":"x"})", {{"X-SafeRoute-Deadline-Ms", "50"}});
  ExpectOpenAiError(r, 504, "deadline_exceeded", "input[0]", "small deadline");
  Harness::Reply g = h.Post("/v1/guard", R"({"prompt":"x","deadline_ms":30})");
  ExpectOpenAiError(g, 504, "deadline_exceeded", "prompt", "small deadline on /v1/guard");
}

// Under overload a request that cannot finish in time is refused at once
// (429, Retry-After = when the queue ahead is predicted to drain) instead of
// waiting out its deadline for a 504 while the guard works for nobody.
TEST(ServerHttp, OverloadIsRefusedAtOnceWithRetryAfter) {
  GuardServiceOptions options;
  options.small_scheduler = {
      .name = "small", .queue_capacity = 64, .max_batch = 16, .batch_wait_ms = 0};
  options.max_inputs_per_request = 16;
  Harness h(options);
  const httplib::Headers patient = {{"X-SafeRoute-Deadline-Ms", "60000"}};
  // A first call held for 300 ms: the guard's estimated time per input is
  // now at least 0.3 s (the scheduler times its calls).
  h.small.CloseGate();
  auto warm = std::async(std::launch::async,
                         [&] { return h.Post("/v1/moderations", R"({"input":"warm"})", patient); });
  h.small.WaitEntered(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  h.small.OpenGate();
  ASSERT_EQ(warm.get().status, 200);
  // Hold the next call and queue ten inputs behind it: at least 3 s of work.
  h.small.CloseGate();
  auto running = std::async(std::launch::async, [&] {
    return h.Post("/v1/moderations", R"({"input":"running"})", patient);
  });
  h.small.WaitEntered(2);
  auto queued = std::async(std::launch::async, [&] {
    Json inputs = Json::array();
    for (int i = 0; i < 10; ++i) inputs.push_back(absl::StrCat("queued ", i));
    return h.Post("/v1/moderations", Json{{"input", inputs}}.dump(), patient);
  });
  while (h.service->metrics().Render().find("saferoute_queue_depth{guard=\"small\"} 10") ==
         std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Due in 2 s it cannot finish behind them.
  Harness::Reply refused =
      h.Post("/v1/moderations", R"({"input":"x"})", {{"X-SafeRoute-Deadline-Ms", "2000"}});
  ExpectOpenAiError(refused, 429, "queue_full", nullptr, "overloaded");
  EXPECT_GE(std::atoi(refused.retry_after.c_str()), 3) << refused.retry_after;
  // Due in 100 ms it could not finish even on an idle guard: 504 at once.
  Harness::Reply hopeless = h.Post("/v1/guard", R"({"prompt":"y","deadline_ms":100})");
  EXPECT_EQ(hopeless.status, 504) << hopeless.raw;
  h.small.OpenGate();
  EXPECT_EQ(running.get().status, 200);
  EXPECT_EQ(queued.get().status, 200);
  EXPECT_EQ(h.small.batch_sizes().size(), 3u);  // warm, running, the ten together
}

TEST(ServerHttp, ConcurrentRequestsShareOneBatch) {
  GuardServiceOptions options;
  options.small_scheduler = {
      .name = "small", .queue_capacity = 64, .max_batch = 8, .batch_wait_ms = 0};
  Harness h(options);
  // Hold the worker in a first call so that the next eight concurrent
  // requests meet in the queue however slowly their threads start.
  h.small.CloseGate();
  // The scheduler times that first call (gate included) as the guard's time
  // per input and sizes batches to fit their deadline: a long one, so that
  // however slowly the threads start, all eight fit one batch.
  const httplib::Headers patient = {{"X-SafeRoute-Deadline-Ms", "60000"}};
  auto warm = std::async(std::launch::async,
                         [&] { return h.Post("/v1/moderations", R"({"input":"warm"})", patient); });
  h.small.WaitEntered(1);
  std::vector<std::future<Harness::Reply>> replies;
  for (int i = 0; i < 8; ++i) {
    replies.push_back(std::async(std::launch::async, [&h, i, &patient] {
      return h.Post("/v1/moderations", Json{{"input", absl::StrCat("request ", i)}}.dump(),
                    patient);
    }));
  }
  while (h.service->metrics().Render().find("saferoute_queue_depth{guard=\"small\"} 8") ==
         std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  h.small.OpenGate();
  EXPECT_EQ(warm.get().status, 200);
  for (auto& r : replies) EXPECT_EQ(r.get().status, 200);
  // Eight HTTP requests, one Classify call.
  EXPECT_EQ(h.small.batch_sizes(), (std::vector<int>{1, 8}));
  EXPECT_EQ(h.service->metrics().Count("saferoute_batch_size", {"small"}), 2u);
}

// -------------------------------------------------- cascade behaviour

TEST(ServerHttp, EscalationBudgetCapBinds) {
  GuardServiceOptions options;
  options.cascade.max_escalation_share = 0.25;
  options.cascade.router_threshold = 0.0;  // uncapped, everything would escalate
  options.max_inputs_per_request = 40;
  options.small_scheduler.queue_capacity = 64;
  Harness h(options);
  Json inputs = Json::array();
  std::vector<double> scores;
  for (int i = 0; i < 40; ++i) {
    const double score = ((i * 17) % 40 + 0.5) / 40;  // a permutation of 40 distinct scores
    scores.push_back(score);
    inputs.push_back(absl::StrFormat("item r=%.4f", score));
  }
  Harness::Reply r = h.Post("/v1/moderations", Json{{"input", inputs}}.dump());
  ASSERT_EQ(r.status, 200) << r.raw;
  int escalated = 0, capped = 0;
  for (int i = 0; i < 40; ++i) {
    const Json& ext = r.body["results"][i]["saferoute"];
    if (ext["escalated"] == true) {
      ++escalated;
      // A hard cap, from the first input on: never more than 25% so far.
      EXPECT_LE(escalated, 0.25 * (i + 1)) << "after input " << i;
      // Whenever the cap bound, only scores above the calibrated 0.75 got through.
      if (ext["router_threshold"].get<double>() > 0) {
        EXPECT_GT(scores[i], 0.75) << i;
      }
    }
    capped += ext["routing_reason"] == "budget_capped";
  }
  EXPECT_LE(escalated, 10);  // 25% of 40
  EXPECT_GE(escalated, 6);   // and the budget is used
  EXPECT_EQ(capped, 40 - escalated);
  EXPECT_EQ(h.service->metrics().Value("saferoute_routing_decisions_total", {"budget_capped"}),
            capped);
}

// SIGHUP's reload path: the router and threshold change while requests run;
// each request is routed wholly by the old or wholly by the new routing, and
// none fails. A reload that cannot work leaves the routing as it was.
TEST(ServerHttp, RoutingReloadUnderLoadDropsNothing) {
  GuardServiceOptions options;
  options.small_scheduler.queue_capacity = 256;
  Harness h(options);
  auto low = std::make_shared<FakeRouter>(0.3);
  auto high = std::make_shared<FakeRouter>(0.7);
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0}, failed{0}, mixed{0};
  // The harness's own router has threshold 0.5; publish one of the two under
  // test before the clients start, or a request that wins the race against
  // the first reload is (rightly) routed at 0.5 and counted as mixed.
  ASSERT_TRUE(h.service->ReloadRouting({.router = high}).ok());
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      while (!stop) {
        // Score 0.5: escalated under 0.3, not under 0.7.
        Harness::Reply r = h.Post("/v1/moderations", R"({"input":["a r=0.5","b r=0.5"]})");
        if (r.status != 200) {
          ++failed;
          continue;
        }
        ++answered;
        const Json& results = r.body["results"];
        const double t0 = results[0]["saferoute"]["router_threshold"];
        const double t1 = results[1]["saferoute"]["router_threshold"];
        const bool e0 = results[0]["saferoute"]["escalated"];
        if (t0 != t1 || (t0 != 0.3 && t0 != 0.7) || e0 != (t0 < 0.5)) ++mixed;
      }
    });
  }
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(h.service->ReloadRouting({.router = i % 2 ? low : high}).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(h.service->ReloadRouting({.router = low}).ok());
  // A cap needs a calibration table this router lacks: refused, nothing changes.
  absl::Status bad =
      h.service->ReloadRouting({.router = std::make_shared<FakeRouter>(0.9, /*with_table=*/false),
                                .max_escalation_share = 0.2});
  EXPECT_TRUE(absl::IsFailedPrecondition(bad)) << bad;
  EXPECT_NE(bad.message().find("calibration table"), absl::string_view::npos) << bad;
  stop = true;
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(mixed, 0);
  EXPECT_GT(answered, 10);
  EXPECT_DOUBLE_EQ(h.service->router_threshold(), 0.3);
  Harness::Reply after = h.Post("/v1/moderations", R"({"input":"c r=0.5"})");
  EXPECT_EQ(after.body["results"][0]["saferoute"]["escalated"], true) << after.raw;
  // An explicit threshold wins over the router's own.
  ASSERT_TRUE(h.service->ReloadRouting({.router = low, .router_threshold = 0.6}).ok());
  EXPECT_EQ(h.Post("/v1/moderations", R"({"input":"d r=0.5"})")
                .body["results"][0]["saferoute"]["escalated"],
            false);
}

struct PolicyCase {
  FailurePolicy policy;
  bool timeout;  // large guard hangs past the deadline instead of failing
};

class FailurePolicyTest : public ::testing::TestWithParam<PolicyCase> {};

TEST_P(FailurePolicyTest, LargeGuardFailureFollowsThePolicy) {
  const PolicyCase c = GetParam();
  GuardServiceOptions options;
  options.cascade.failure_policy = c.policy;
  options.cascade.degrade_threshold = 0.5;
  Harness h(options);
  if (c.timeout) {
    h.large.CloseGate();
  } else {
    h.large.FailWith(absl::UnavailableError("remote large guard: connection refused"));
  }
  // Small says safe (p=0.3) but the router escalates (r=0.9); the second
  // input's small verdict is unsafe with category S1.
  Harness::Reply r =
      h.Post("/v1/moderations", R"({"input":["x p=0.3 r=0.9","y p=0.8 r=0.9 c=S1"]})",
             {{"X-SafeRoute-Deadline-Ms", "300"}});
  ASSERT_EQ(r.status, 200) << r.raw;
  const std::string name(FailurePolicyName(c.policy));
  for (int i = 0; i < 2; ++i) {
    const Json& result = r.body["results"][i];
    const Json& ext = result["saferoute"];
    EXPECT_EQ(ext["escalated"], true);
    EXPECT_EQ(ext["decided_by"], "policy");
    EXPECT_EQ(ext["policy_applied"], name);
    EXPECT_TRUE(ext["large_error"].is_string());
    const bool small_unsafe = i == 1;
    const bool expect_flagged = c.policy == FailurePolicy::kFailClosed ? true
                                : c.policy == FailurePolicy::kFailOpen ? false
                                                                       : small_unsafe;
    EXPECT_EQ(result["flagged"], expect_flagged) << name << " input " << i;
    EXPECT_EQ(ext["degraded"], c.policy == FailurePolicy::kDegrade);
    // p_unsafe agrees with the decision: the policy's certainty, or under
    // degrade the small guard's score that decided.
    const double small_p = small_unsafe ? 0.8 : 0.3;
    const double expect_p = c.policy == FailurePolicy::kFailClosed ? 1.0
                            : c.policy == FailurePolicy::kFailOpen ? 0.0
                                                                   : small_p;
    EXPECT_NEAR(ext["p_unsafe"].get<double>(), expect_p, 1e-6) << name << " input " << i;
    EXPECT_NEAR(ext["p_unsafe_small"].get<double>(), small_p, 1e-6);
    EXPECT_EQ(ext["p_unsafe"].get<double>() > 0.5, expect_flagged) << name << " input " << i;
    // Category scores follow the deciding p_unsafe; allowed inputs name none.
    EXPECT_NEAR(result["category_scores"]["violence"].get<double>(),
                expect_flagged && small_unsafe ? expect_p : 0.0, 1e-6);
    if (!expect_flagged) {
      EXPECT_TRUE(ext["s_codes"].empty()) << name << " input " << i;
    }
  }
  // The native API says the same at the top level.
  Harness::Reply native = h.Post("/v1/guard", R"({"prompt":"x p=0.3 r=0.9","deadline_ms":300})");
  ASSERT_EQ(native.status, 200) << native.raw;
  EXPECT_EQ(native.body["decided_by"], "policy");
  EXPECT_EQ(native.body["saferoute"]["policy_applied"], name);
  EXPECT_EQ(native.body["verdict"],
            native.body["p_unsafe"].get<double>() > 0.5 ? "unsafe" : "safe");
  EXPECT_NEAR(native.body["p_unsafe"].get<double>(),
              c.policy == FailurePolicy::kFailClosed ? 1.0
              : c.policy == FailurePolicy::kFailOpen ? 0.0
                                                     : 0.3,
              1e-6);
  EXPECT_EQ(h.service->metrics().Value("saferoute_failure_policy_total",
                                       {name, c.timeout ? "timeout" : "error"}),
            3);
  h.large.OpenGate();
}

INSTANTIATE_TEST_SUITE_P(Policies, FailurePolicyTest,
                         ::testing::Values(PolicyCase{FailurePolicy::kFailClosed, false},
                                           PolicyCase{FailurePolicy::kFailOpen, false},
                                           PolicyCase{FailurePolicy::kDegrade, false},
                                           PolicyCase{FailurePolicy::kFailClosed, true},
                                           PolicyCase{FailurePolicy::kDegrade, true}));

TEST(ServerHttp, ShadowSamplesCountDisagreement) {
  GuardServiceOptions options;
  options.cascade.shadow_fraction = 1.0;
  options.cascade.shadow_seed = 1;
  Harness h(options);
  // Not escalated (r=0); the shadow call goes to the large fake, which reads
  // the same text: agreement, except where the large guard's answer differs.
  ASSERT_EQ(h.Post("/v1/moderations", R"({"input":["a p=0.9","b p=0.1"]})").status, 200);
  MetricsRegistry& m = h.service->metrics();
  // Shadow calls run in the background: wait for them before breaking the guard.
  for (int i = 0; i < 2000 && m.Value("saferoute_shadow_samples_total", {"agree"}) < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  h.large.FailWith(absl::UnavailableError("down"));
  ASSERT_EQ(h.Post("/v1/moderations", R"({"input":"c"})").status, 200);
  for (int i = 0; i < 2000 && m.Value("saferoute_shadow_samples_total", {"error"}) < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(m.Value("saferoute_shadow_samples_total", {"agree"}), 2);
  EXPECT_EQ(m.Value("saferoute_shadow_samples_total", {"error"}), 1);
  EXPECT_EQ(m.Value("saferoute_shadow_samples_total", {"disagree"}), 0);
}

TEST(ServerHttp, ShadowDisagreementIsCounted) {
  GuardServiceOptions options;
  options.cascade.shadow_fraction = 1.0;
  options.cascade.shadow_seed = 1;
  Harness h(options);
  // Small says safe, the large guard (reads lp= first) says unsafe.
  Harness::Reply r = h.Post("/v1/moderations", R"({"input":"b p=0.1 lp=0.9"})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["results"][0]["flagged"], false);  // shadow never changes the answer
  MetricsRegistry& m = h.service->metrics();
  for (int i = 0; i < 2000 && m.Value("saferoute_shadow_samples_total", {"disagree"}) < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(m.Value("saferoute_shadow_samples_total", {"disagree"}), 1);
}

// --------------------------------------------------------------- shutdown

TEST(ServerHttp, GracefulStopDrainsInFlightRequests) {
  auto h = std::make_unique<Harness>();
  h->small.CloseGate();
  auto in_flight = std::async(std::launch::async,
                              [&] { return h->Post("/v1/moderations", R"({"input":"x"})"); });
  h->small.WaitEntered(1);
  auto stopped = std::async(std::launch::async, [&] { h->http->Stop(); });
  // Stop must wait for the in-flight request.
  EXPECT_EQ(stopped.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  EXPECT_TRUE(h->service->draining());
  h->small.OpenGate();
  Harness::Reply r = in_flight.get();
  EXPECT_EQ(r.status, 200) << r.raw;
  stopped.get();
  // The listener is gone.
  EXPECT_EQ(h->Get("/healthz").status, 0);
}

// ---------------------------------------------------------------- metrics

TEST(ServerHttp, MetricsExposition) {
  Harness h;
  ASSERT_EQ(
      h.Post("/v1/moderations", R"({"input":["a p=0.9 fwd=250 dec=40","b r=0.8 fwd=250"]})").status,
      200);
  ASSERT_EQ(h.Post("/v1/moderations", "oops").status, 400);
  Harness::Reply m = h.Get("/metrics");
  ASSERT_EQ(m.status, 200);
  const std::string& text = m.raw;
  for (const char* family :
       {"saferoute_http_requests_total", "saferoute_stage_latency_seconds", "saferoute_queue_depth",
        "saferoute_batch_size", "saferoute_escalation_share", "saferoute_routing_decisions_total",
        "saferoute_shadow_samples_total", "saferoute_failure_policy_total",
        "saferoute_router_score", "saferoute_guard_phase_seconds"}) {
    EXPECT_NE(text.find(absl::StrCat("# HELP ", family, " ")), std::string::npos) << family;
    EXPECT_NE(text.find(absl::StrCat("# TYPE ", family, " ")), std::string::npos) << family;
  }
  EXPECT_NE(text.find("saferoute_http_requests_total{route=\"/v1/moderations\",status=\"200\","
                      "verdict=\"flagged\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("saferoute_http_requests_total{route=\"/v1/moderations\",status=\"400\","
                      "verdict=\"none\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("saferoute_stage_latency_seconds_bucket{stage=\"small\",le=\"+Inf\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("saferoute_stage_latency_seconds_count{stage=\"small\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("saferoute_escalation_share 0.5\n"), std::string::npos);
  // The small guard's phases, per input: 250 ms forward each, 40 ms decode for one.
  EXPECT_NE(text.find("saferoute_guard_phase_seconds_sum{stage=\"small\",phase=\"forward\"} 0.5\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("saferoute_guard_phase_seconds_sum{stage=\"small\",phase=\"decode\"} 0.04\n"),
            std::string::npos);
  EXPECT_NE(text.find("saferoute_guard_phase_seconds_count{stage=\"small\",phase=\"decode\"} 2\n"),
            std::string::npos);
  // Every sample line is "name{labels} value" or "name value", ending in a newline.
  EXPECT_EQ(text.back(), '\n');
  // For the Python parser check (ctest label e2e): dump the text if asked.
  if (const char* dump = std::getenv("SAFEROUTE_METRICS_DUMP")) std::ofstream(dump) << text;
}

// ------------------------------------------------- connection protection

TEST(ServerHttp, StalledHalfRequestIsClosedAfterReadTimeoutAndFreesItsWorker) {
  HttpServerOptions options = Harness::DefaultHttpOptions();
  options.threads = 1;  // the stalled client holds the only worker
  options.read_timeout_ms = 200;
  options.keep_alive_timeout_s = 1;
  Harness h({}, true, true, FakeRouter(), options);

  constexpr int kClientGivesUpMs = 3000;
  const int stalled = ConnectRaw(h.port, kClientGivesUpMs);
  // Slowloris: a request line and half a header, then silence.
  const std::string half = "POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le";
  ASSERT_EQ(::send(stalled, half.data(), half.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(half.size()));
  const auto stalled_at = std::chrono::steady_clock::now();
  // Let the single worker take the stalled connection before the normal one
  // arrives, so the normal request can only be served once it is cut.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto normal =
      std::async(std::launch::async, [&] { return h.Post("/v1/moderations", R"({"input":"a"})"); });

  std::string received;
  bool closed_by_server = false;
  for (;;) {
    char buffer[4096];
    const ssize_t n = ::recv(stalled, buffer, sizeof(buffer), 0);
    if (n > 0) {
      received.append(buffer, static_cast<size_t>(n));
      continue;
    }
    closed_by_server = n == 0 || errno == ECONNRESET;  // not EAGAIN: our own timeout
    break;
  }
  const double closed_after_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - stalled_at)
          .count();
  ::close(stalled);
  ASSERT_TRUE(closed_by_server) << "stalled connection still open after " << kClientGivesUpMs
                                << " ms; received: " << received;
  // Not before the read timeout; httplib answers the broken header with a 400
  // and then waits at most the keep-alive timeout for a next request.
  EXPECT_GE(closed_after_ms, 180) << received;
  EXPECT_LE(closed_after_ms, 200 + 1000 + 800) << received;
  if (!received.empty()) {
    EXPECT_EQ(received.rfind("HTTP/1.1 400", 0), 0u) << received;
  }

  Harness::Reply r = normal.get();
  EXPECT_EQ(r.status, 200) << r.raw;
}

// The accept-queue limit of the TCP socket listening on 127.0.0.1:`port`, as
// the kernel reports it (`ss -lt` shows it as Send-Q): one sock_diag dump.
absl::StatusOr<uint32_t> KernelListenBacklog(int port) {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("netlink: ", std::strerror(errno)));
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  message.request.sdiag_family = AF_INET;
  message.request.sdiag_protocol = IPPROTO_TCP;
  constexpr int kTcpListenState = 10;  // TCP_LISTEN in the kernel's tcp_states.h
  message.request.idiag_states = 1u << kTcpListenState;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &message, sizeof(message), 0, reinterpret_cast<const sockaddr*>(&kernel),
               sizeof(kernel)) < 0) {
    const int error = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("sock_diag request: ", std::strerror(error)));
  }
  absl::StatusOr<uint32_t> result = absl::NotFoundError("no listening socket on that port");
  alignas(nlmsghdr) char buffer[1 << 15];
  for (bool done = false; !done;) {
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      result = absl::UnavailableError("sock_diag reply: nothing received");
      break;
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        result = absl::UnavailableError("sock_diag reply: error");
        done = true;
        break;
      }
      const auto* diag = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      if (ntohs(diag->id.idiag_sport) == port) result = diag->idiag_wqueue;  // max backlog
    }
  }
  ::close(fd);
  return result;
}

TEST(ServerHttp, ListenBacklogIsTheConfiguredOne) {
  HttpServerOptions options = Harness::DefaultHttpOptions();
  options.listen_backlog = 777;  // not httplib's 5, not a kernel default
  Harness h({}, true, true, FakeRouter(), options);
  absl::StatusOr<uint32_t> backlog = KernelListenBacklog(h.port);
  if (absl::IsUnavailable(backlog.status())) {
    GTEST_SKIP() << "cannot ask the kernel here: " << backlog.status();
  }
  ASSERT_TRUE(backlog.ok()) << backlog.status();
  // The kernel caps listen()'s backlog at net.core.somaxconn.
  uint32_t somaxconn = 4096;
  std::ifstream("/proc/sys/net/core/somaxconn") >> somaxconn;
  EXPECT_EQ(*backlog, std::min<uint32_t>(777, somaxconn));
  EXPECT_EQ(h.Get("/healthz").status, 200);
}

}  // namespace
}  // namespace saferoute::server
