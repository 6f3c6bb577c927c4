// The HTTP layer's own behaviour on a real server (127.0.0.1, ephemeral
// ports) with fake guards: request bodies (content types, framing, encodings,
// limits), parse errors, graceful stop, API keys, request ids and TLS.
#include "server/http_server.h"

#include <cstdlib>
#include <future>
#include <thread>

#include "absl/strings/match.h"
#include "cascade/remote_guard.h"
#include "cascade/testing/fake_guards.h"
#include "cascade/testing/self_signed_cert.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "server/testing/http_harness.h"

namespace saferoute::server {
namespace {

using testing::ExpectOpenAiError;
using testing::FakeRouter;
using testing::Harness;
using Json = nlohmann::json;

// {"input":"aaa…"} of exactly `bytes` bytes.
std::string InputBodyOfSize(size_t bytes) {
  const std::string head = R"({"input":")", tail = R"("})";
  SR_CHECK(bytes > head.size() + tail.size());
  return head + std::string(bytes - head.size() - tail.size(), 'a') + tail;
}

HttpServerOptions WithBodyLimit(int64_t bytes) {
  HttpServerOptions options = Harness::DefaultHttpOptions();
  options.max_body_bytes = bytes;
  return options;
}

// ------------------------------------------------------------ request bodies

// curl -d sends application/x-www-form-urlencoded; httplib alone refused such
// bodies over its own 8,192-byte form limit with a 413 that named ours.
TEST(HttpServer, FormEncodedJsonBodyIsReadAsJsonUpToTheBodyLimit) {
  Harness h({}, true, true, FakeRouter(), WithBodyLimit(32768));
  const std::string form = "application/x-www-form-urlencoded";
  Harness::Reply small = h.Post("/v1/moderations", InputBodyOfSize(100), {}, form);
  EXPECT_EQ(small.status, 200) << small.raw;
  Harness::Reply over_8k = h.Post("/v1/moderations", InputBodyOfSize(12000), {}, form);
  EXPECT_EQ(over_8k.status, 200) << over_8k.raw;
  ASSERT_EQ(over_8k.body["results"].size(), 1u);
  Harness::Reply guard =
      h.Post("/v1/guard", R"({"prompt":")" + std::string(9000, 'b') + R"("})", {}, form);
  EXPECT_EQ(guard.status, 200) << guard.raw;

  Harness::Reply over_limit = h.Post("/v1/moderations", InputBodyOfSize(40000), {}, form);
  ExpectOpenAiError(over_limit, 413, "body_too_large", nullptr, "form body over the limit");
  const std::string message = over_limit.body["error"]["message"];
  EXPECT_TRUE(absl::StrContains(message, "32768")) << message;
  EXPECT_TRUE(absl::StrContains(message, "limits.body_bytes")) << message;
  // The same limit for JSON, and for a body without any Content-Type.
  ExpectOpenAiError(h.Post("/v1/moderations", InputBodyOfSize(40000)), 413, "body_too_large",
                    nullptr, "JSON body over the limit");
  EXPECT_EQ(h.Post("/v1/moderations", InputBodyOfSize(30000), {}, "").status, 200);
}

TEST(HttpServer, RealFormDataSaysTheBodyIsReadAsJson) {
  Harness h;
  Harness::Reply r =
      h.Post("/v1/moderations", "input=hello", {}, "application/x-www-form-urlencoded");
  ExpectOpenAiError(r, 400, "invalid_json", nullptr, "form data");
  const std::string message = r.body["error"]["message"];
  EXPECT_TRUE(absl::StrContains(message, "application/x-www-form-urlencoded")) << message;
}

TEST(HttpServer, MultipartIsRefusedWith415NamingTheContentType) {
  Harness h;
  httplib::Client c = h.Client();
  httplib::MultipartFormDataItems items = {{"input", "hello", "", ""}};
  Harness::Reply r = Harness::ReplyOf(c.Post("/v1/moderations", items));
  ExpectOpenAiError(r, 415, "unsupported_media_type", nullptr, "multipart");
  const std::string message = r.body["error"]["message"];
  EXPECT_TRUE(absl::StrContains(message, "multipart/form-data")) << message;
  EXPECT_FALSE(absl::StrContains(message, "boundary")) << message;
  EXPECT_EQ(h.small.batch_sizes().size(), 0u);  // nothing reached the guard
}

// Chunked bodies carry no Content-Length for httplib to check: the limit
// holds on the bytes read.
TEST(HttpServer, ChunkedBodyOverTheLimitIs413) {
  Harness h;  // 4096-byte limit
  auto chunked_post = [&](const std::string& body) {
    httplib::Client c = h.Client();
    return Harness::ReplyOf(c.Post(
        "/v1/moderations",
        [body](size_t offset, httplib::DataSink& sink) {
          if (offset < body.size()) {
            const size_t n = std::min<size_t>(1000, body.size() - offset);
            sink.write(body.data() + offset, n);
          } else {
            sink.done();
          }
          return true;
        },
        "application/json"));
  };
  EXPECT_EQ(chunked_post(InputBodyOfSize(3000)).status, 200);
  ExpectOpenAiError(chunked_post(InputBodyOfSize(6000)), 413, "body_too_large", nullptr,
                    "chunked body over the limit");
  EXPECT_EQ(h.Post("/v1/moderations", R"({"input":"after"})").status, 200);
}

// A gzip body is checked after decompression (a small compressed body must
// not become an unbounded one).
TEST(HttpServer, CompressedBodyIsBoundedAfterDecompression) {
  Harness h;  // 4096-byte limit
  httplib::Client c = h.Client();
  c.set_compress(true);  // gzip, Content-Encoding: gzip
  Harness::Reply fits =
      Harness::ReplyOf(c.Post("/v1/moderations", InputBodyOfSize(3000), "application/json"));
  EXPECT_EQ(fits.status, 200) << fits.raw;
  Harness::Reply bomb =
      Harness::ReplyOf(c.Post("/v1/moderations", InputBodyOfSize(200000), "application/json"));
  ExpectOpenAiError(bomb, 413, "body_too_large", nullptr, "gzip body over the limit");
}

// ------------------------------------------------------------- parse errors

TEST(HttpServer, JsonSyntaxErrorsGiveLineAndColumnWithoutParserInternals) {
  Harness h;
  struct Case {
    std::string body;
    std::string where;  // expected position in the message
  };
  for (const Case& c : std::vector<Case>{
           {"{\n  \"input\": nope\n}", "line 2, column 13"},
           {"{\"input\": \"x\",}", "line 1, column 15"},
           {"", "line 1, column 1"},
           {"{\"input\":\"x\"} trailing", "line 1, column 17"},
       }) {
    Harness::Reply r = h.Post("/v1/moderations", c.body);
    ExpectOpenAiError(r, 400, "invalid_json", nullptr, c.body);
    const std::string message = r.body["error"]["message"];
    EXPECT_TRUE(absl::StartsWith(message, "request body is not valid JSON at line ")) << message;
    EXPECT_TRUE(absl::StrContains(message, c.where)) << c.body << " -> " << message;
    for (const char* internal :
         {"json.exception", "parse_error", "last read", "syntax error while"}) {
      EXPECT_FALSE(absl::StrContains(message, internal)) << c.body << " -> " << message;
    }
  }
  // Encoding errors keep their own codes and also say where.
  Harness::Reply utf8 = h.Post("/v1/moderations", "{\"input\":\"bad \xc0\xaf\"}");
  ExpectOpenAiError(utf8, 400, "invalid_utf8", nullptr, "bad UTF-8");
  EXPECT_TRUE(absl::StrContains(utf8.body["error"]["message"].get<std::string>(), "column"))
      << utf8.raw;
  EXPECT_FALSE(absl::StrContains(utf8.raw, "json.exception")) << utf8.raw;
}

// ------------------------------------------------------------ graceful stop

// More requests than workers when the stop begins: the workers' requests are
// answered (200), the connections waiting for a worker are answered too
// (503 + Retry-After), and /readyz says 503 instead of refusing.
TEST(HttpServer, GracefulStopAnswersEveryAcceptedConnection) {
  constexpr int kWorkers = 8, kRequests = 24;
  HttpServerOptions http_options = Harness::DefaultHttpOptions();
  http_options.threads = kWorkers;
  GuardServiceOptions options;
  options.small_scheduler = {
      .name = "small", .queue_capacity = 64, .max_batch = 1, .batch_wait_ms = 0};
  auto h = std::make_unique<Harness>(options, true, true, FakeRouter(), http_options);
  h->small.CloseGate();
  std::vector<std::future<Harness::Reply>> replies;
  for (int i = 0; i < kRequests; ++i) {
    replies.push_back(std::async(std::launch::async, [&h, i] {
      return h->Post("/v1/moderations", Json{{"input", absl::StrCat("request ", i)}}.dump());
    }));
  }
  // Every worker holds a request: one in the guard, the others in its queue.
  h->small.WaitEntered(1);
  while (
      !absl::StrContains(h->service->metrics().Render(),
                         absl::StrCat("saferoute_queue_depth{guard=\"small\"} ", kWorkers - 1))) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // The other connections are accepted and wait for a worker.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto stopped = std::async(std::launch::async, [&] { h->http->Stop(); });
  while (!h->service->draining()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  Harness::Reply ready = h->Get("/readyz");
  EXPECT_EQ(ready.status, 503) << "readyz while draining: " << ready.raw;
  EXPECT_EQ(ready.body["ready"], false);
  EXPECT_EQ(stopped.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout)
      << "Stop() returned with requests in flight";

  h->small.OpenGate();
  int ok = 0, unavailable = 0;
  for (int i = 0; i < kRequests; ++i) {
    Harness::Reply r = replies[i].get();
    if (r.status == 200) {
      ++ok;
    } else {
      EXPECT_EQ(r.status, 503) << "request " << i << " got no answer (0) or a wrong one";
      EXPECT_EQ(r.retry_after, "1") << "request " << i;
      ++unavailable;
    }
  }
  stopped.get();
  EXPECT_EQ(ok + unavailable, kRequests);
  EXPECT_GE(ok, kWorkers);                  // those the workers held
  EXPECT_EQ(h->Get("/healthz").status, 0);  // the listener is closed now
}

TEST(HttpServer, DrainGraceKeepsTheListenerAnswering) {
  HttpServerOptions http_options = Harness::DefaultHttpOptions();
  http_options.drain_grace_ms = 400;
  auto h = std::make_unique<Harness>(GuardServiceOptions(), true, true, FakeRouter(), http_options);
  const auto start = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { h->http->Stop(); });
  while (!h->service->draining()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(h->Get("/readyz").status, 503);
  Harness::Reply refused = h->Post("/v1/moderations", R"({"input":"late"})");
  ExpectOpenAiError(refused, 503, "unavailable", nullptr, "new work while draining");
  EXPECT_EQ(refused.retry_after, "1");
  EXPECT_EQ(refused.header("Connection"), "close");
  stopped.get();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(390));
}

// ---------------------------------------------------------------- readiness

size_t Occurrences(absl::string_view text, absl::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != absl::string_view::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// A remote large guard whose health probe the test switches.
class FakeRemote : public RemoteGuard {
 public:
  absl::StatusOr<std::vector<GuardVerdict>> Classify(
      const std::vector<GuardRequest>& requests) override {
    if (!up_) return absl::UnavailableError("connection refused");
    return std::vector<GuardVerdict>(requests.size());
  }
  int feature_dim() const override { return 0; }
  std::string fingerprint() const override { return "fake-remote"; }
  std::string name() const override { return "fake-remote"; }
  CircuitState circuit_state() const override { return CircuitState::kClosed; }
  RemoteGuardStats stats() const override { return {}; }
  absl::Status Ping() override {
    ++pings_;
    return up_ ? absl::OkStatus() : absl::UnavailableError("GET /health: Connection refused");
  }
  std::atomic<bool> up_{true};
  std::atomic<int> pings_{0};
};

// /readyz was 503 whenever the remote was down, even where the policy keeps
// answering (fail_open, degrade): every replica would leave the load balancer.
TEST(HttpServer, ReadinessFollowsTheFailurePolicy) {
  for (FailurePolicy policy :
       {FailurePolicy::kFailClosed, FailurePolicy::kFailOpen, FailurePolicy::kDegrade}) {
    const std::string name(FailurePolicyName(policy));
    testing::FakeGuard small("fake-small");
    FakeRemote remote;
    GuardServiceOptions options;
    options.cascade.failure_policy = policy;
    absl::StatusOr<std::unique_ptr<GuardService>> service =
        GuardService::Create({.small = &small, .large = &remote}, options);
    ASSERT_TRUE(service.ok()) << service.status();
    GuardHttpServer http(service->get(), Harness::DefaultHttpOptions());
    absl::StatusOr<int> port = http.Start();
    ASSERT_TRUE(port.ok()) << port.status();
    httplib::Client client("127.0.0.1", *port);
    auto ready = [&] { return Harness::ReplyOf(client.Get("/readyz")); };
    auto up_metric = [&] {
      return absl::StrContains((*service)->metrics().Render(), "saferoute_large_guard_up 1\n");
    };
    EXPECT_EQ(ready().status, 200) << name;
    EXPECT_TRUE(up_metric()) << name;

    ::testing::internal::CaptureStderr();
    remote.up_ = false;
    Harness::Reply down = ready();
    Harness::Reply down_again = ready();
    const bool metric_down = !up_metric();
    remote.up_ = true;
    Harness::Reply back = ready();
    const std::string log = ::testing::internal::GetCapturedStderr();

    if (policy == FailurePolicy::kFailClosed) {
      EXPECT_EQ(down.status, 503) << down.raw;
      EXPECT_TRUE(absl::StrContains(down.body["reason"].get<std::string>(), "fail_closed"))
          << down.raw;
    } else {
      EXPECT_EQ(down.status, 200) << name << ": " << down.raw;
      EXPECT_EQ(down_again.status, 200) << name;
      EXPECT_TRUE(absl::StrContains(log, "still ready: policy " + name)) << log;
    }
    // One line per change, not per probe.
    EXPECT_EQ(Occurrences(log, "unreachable"), 1) << log;
    EXPECT_TRUE(metric_down) << name;
    EXPECT_TRUE(absl::StrContains(log, "reachable again")) << log;
    EXPECT_EQ(back.status, 200) << name;
    EXPECT_TRUE(up_metric()) << name;
    EXPECT_EQ(remote.pings_, 4);
  }
}

// ---------------------------------------------------------------- API keys

constexpr char kKey[] = "sk-test-0123456789abcdef";
constexpr char kOtherKey[] = "sk-test-fedcba9876543210";

HttpServerOptions WithKeys(bool metrics_need_key) {
  HttpServerOptions options = Harness::DefaultHttpOptions();
  absl::StatusOr<std::shared_ptr<const ApiKeySet>> keys = ApiKeySet::FromKeys({kKey, kOtherKey});
  SR_CHECK(keys.ok());
  options.api_keys = *keys;
  options.metrics_need_key = metrics_need_key;
  return options;
}

httplib::Headers Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

TEST(HttpServer, ApiKeysGuardEveryRouteButHealth) {
  Harness h({}, true, true, FakeRouter(), WithKeys(/*metrics_need_key=*/true));
  const std::string body = R"({"input":"x"})";
  Harness::Reply missing = h.Post("/v1/moderations", body);
  ExpectOpenAiError(missing, 401, "missing_api_key", nullptr, "no key");
  EXPECT_EQ(missing.body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(missing.header("WWW-Authenticate"), R"(Bearer realm="saferoute")");
  ExpectOpenAiError(h.Post("/v1/moderations", body, Bearer("sk-test-wrong-key-000000")), 401,
                    "invalid_api_key", nullptr, "wrong key");
  ExpectOpenAiError(h.Post("/v1/guard", R"({"prompt":"x"})", {{"Authorization", kKey}}), 401,
                    "invalid_api_key", nullptr, "key without the Bearer scheme");
  ExpectOpenAiError(h.Post("/v1/moderations", body, Bearer(std::string(kKey) + "x")), 401,
                    "invalid_api_key", nullptr, "key with a suffix");
  ExpectOpenAiError(h.Post("/v1/nope", body), 401, "missing_api_key", nullptr, "unknown route");
  EXPECT_EQ(h.small.batch_sizes().size(), 0u);  // nothing reached the guard

  EXPECT_EQ(h.Post("/v1/moderations", body, Bearer(kKey)).status, 200);
  EXPECT_EQ(h.Post("/v1/guard", R"({"prompt":"x"})", Bearer(kOtherKey)).status, 200);
  EXPECT_EQ(
      h.Post("/v1/moderations", body, {{"Authorization", std::string("bearer ") + kKey}}).status,
      200);
  ExpectOpenAiError(h.Post("/v1/nope", body, Bearer(kKey)), 404, "not_found", nullptr,
                    "unknown route with a key");

  EXPECT_EQ(h.Get("/healthz").status, 200);
  EXPECT_EQ(h.Get("/readyz").status, 200);
  ExpectOpenAiError(h.Get("/metrics"), 401, "missing_api_key", nullptr, "metrics without key");
  EXPECT_EQ(h.Get("/metrics", Bearer(kKey)).status, 200);
  // A large refused body is answered, and its connection closed.
  Harness::Reply big = h.Post("/v1/moderations", InputBodyOfSize(4000));
  EXPECT_EQ(big.status, 401);
  EXPECT_EQ(big.header("Connection"), "close");
  EXPECT_EQ(h.service->metrics().Value("saferoute_http_requests_total",
                                       {"/v1/moderations", "401", "none"}),
            4);
}

TEST(HttpServer, MetricsCanBeLeftOpen) {
  Harness h({}, true, true, FakeRouter(), WithKeys(/*metrics_need_key=*/false));
  EXPECT_EQ(h.Get("/metrics").status, 200);
  EXPECT_EQ(h.Post("/v1/moderations", R"({"input":"x"})").status, 401);
}

// -------------------------------------------------------------- request ids

TEST(HttpServer, RequestIdIsEchoedOrGeneratedAndLogged) {
  Harness h;
  ::testing::internal::CaptureStderr();
  Harness::Reply given =
      h.Post("/v1/moderations", R"({"input":"x"})", {{"X-Request-Id", "client-id_1.2:3"}});
  Harness::Reply absent = h.Post("/v1/moderations", R"({"input":"x"})");
  Harness::Reply hostile =
      h.Post("/v1/moderations", R"({"input":"x"})", {{"X-Request-Id", "bad id\" injected=1"}});
  Harness::Reply too_long =
      h.Post("/v1/moderations", R"({"input":"x"})", {{"X-Request-Id", std::string(129, 'a')}});
  Harness::Reply error = h.Post("/v1/moderations", "{", {{"X-Request-Id", "err-42"}});
  const std::string log = ::testing::internal::GetCapturedStderr();

  EXPECT_EQ(given.header("X-Request-Id"), "client-id_1.2:3");
  EXPECT_EQ(error.status, 400);
  EXPECT_EQ(error.header("X-Request-Id"), "err-42");
  auto is_random_id = [](const std::string& id) {
    if (id.size() != 32) return false;
    for (char c : id) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
    }
    return true;
  };
  for (const Harness::Reply* r : {&absent, &hostile, &too_long}) {
    EXPECT_TRUE(is_random_id(r->header("X-Request-Id"))) << r->header("X-Request-Id");
  }
  EXPECT_NE(absent.header("X-Request-Id"), hostile.header("X-Request-Id"));
  EXPECT_TRUE(absl::StrContains(log, "id=client-id_1.2:3")) << log;
  EXPECT_TRUE(absl::StrContains(log, "id=err-42")) << log;
  EXPECT_TRUE(absl::StrContains(log, "id=" + absent.header("X-Request-Id"))) << log;
  EXPECT_FALSE(absl::StrContains(log, "injected")) << log;
  EXPECT_EQ(h.Get("/healthz").headers.count("X-Request-Id"), 1u);
}

TEST(HttpServer, ResponseIdsAreRandom) {
  Harness h;
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(h.Post("/v1/moderations", R"({"input":"x"})").body["id"]);
    ids.push_back(h.Post("/v1/guard", R"({"prompt":"x"})").body["id"]);
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string prefix = i % 2 == 0 ? "modr-" : "guard-";
    ASSERT_TRUE(absl::StartsWith(ids[i], prefix)) << ids[i];
    EXPECT_EQ(ids[i].size(), prefix.size() + 32) << ids[i];
    for (size_t j = 0; j < i; ++j) {
      // 128 random bits: no two ids share even their first 8 hex digits
      // (chance 2^-32 per pair), unlike a salt followed by a counter.
      const std::string a = ids[i].substr(ids[i].find('-') + 1, 8);
      const std::string b = ids[j].substr(ids[j].find('-') + 1, 8);
      EXPECT_NE(a, b) << ids[i] << " " << ids[j];
    }
  }
}

// --------------------------------------------------------------------- TLS

TEST(HttpServer, ServesHttpsWithTheConfiguredCertificate) {
  std::unique_ptr<fakes::SelfSignedCert> cert = fakes::MakeSelfSignedCert();
  HttpServerOptions http_options = WithKeys(true);
  http_options.tls_cert_file = cert->cert_file;
  http_options.tls_key_file = cert->key_file;
  Harness h({}, true, true, FakeRouter(), http_options);

  httplib::SSLClient tls("127.0.0.1", h.port);
  tls.set_ca_cert_path(cert->cert_file.c_str());
  tls.enable_server_certificate_verification(true);
  tls.set_read_timeout(std::chrono::seconds(30));
  Harness::Reply health = Harness::ReplyOf(tls.Get("/healthz"));
  ASSERT_EQ(health.status, 200) << "TLS error "
                                << static_cast<int>(tls.get_openssl_verify_result());
  Harness::Reply r = Harness::ReplyOf(
      tls.Post("/v1/moderations", Bearer(kKey), R"({"input":"over tls"})", "application/json"));
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(
      Harness::ReplyOf(tls.Post("/v1/moderations", R"({"input":"x"})", "application/json")).status,
      401);
  // Plain HTTP on the TLS port gets no HTTP answer.
  EXPECT_NE(h.Get("/healthz").status, 200);
  // A client that does not trust the certificate refuses it.
  httplib::SSLClient untrusting("127.0.0.1", h.port);
  untrusting.enable_server_certificate_verification(true);
  EXPECT_FALSE(untrusting.Get("/healthz"));
}

TEST(HttpServer, BadTlsFilesFailStartNamingTheFile) {
  std::unique_ptr<fakes::SelfSignedCert> cert = fakes::MakeSelfSignedCert();
  std::unique_ptr<fakes::SelfSignedCert> other = fakes::MakeSelfSignedCert();
  testing::FakeGuard small("fake-small");
  absl::StatusOr<std::unique_ptr<GuardService>> service =
      GuardService::Create({.small = &small}, {});
  ASSERT_TRUE(service.ok());
  struct Case {
    std::string cert, key, expect;
  };
  for (const Case& c : std::vector<Case>{
           {cert->dir + "/missing.pem", cert->key_file, "listen.tls_cert_file"},
           {cert->cert_file, cert->cert_file, "listen.tls_key_file"},
           {cert->cert_file, other->key_file, "mismatch"},
       }) {
    HttpServerOptions options = Harness::DefaultHttpOptions();
    options.tls_cert_file = c.cert;
    options.tls_key_file = c.key;
    GuardHttpServer http(service->get(), options);
    absl::StatusOr<int> port = http.Start();
    ASSERT_FALSE(port.ok()) << c.expect;
    EXPECT_TRUE(absl::StrContains(port.status().message(), c.expect)) << port.status();
  }
}

}  // namespace
}  // namespace saferoute::server
