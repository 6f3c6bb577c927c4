// RemoteGuard against an in-test stand-in server (httplib::Server on an
// ephemeral 127.0.0.1 port) that answers in vLLM's and llama.cpp's documented
// shapes and checks the request bodies it receives; plus fault injection:
// closed port, slow answers, garbage, 5xx, 4xx, breaker open and recovery.
#include "cascade/remote_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_split.h"
#include "cascade/circuit_breaker.h"
#include "cascade/testing/self_signed_cert.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "util/utf8.h"

namespace saferoute {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// The stand-in model's vocabulary: its two verdict tokens and its prompt
// tokens (StandInFormat below); the stand-in server answers with these ids.
constexpr int32_t kSafeId = 11, kUnsafeId = 12;
const std::string kSafeKey = absl::StrCat("token_id:", kSafeId);
const std::string kUnsafeKey = absl::StrCat("token_id:", kUnsafeId);

enum class Mode { kVllm, kLlamaCpp, kLlamaCppOld, kGarbage, kError500, kError400, kSlow, kNan };

// HTTPS and an API key for the stand-in (both optional).
struct StandInSecurity {
  std::string cert_file, key_file;  // both set: HTTPS
  std::string api_key;              // set: requests need "Authorization: Bearer <key>"
};

// The stand-in remote. p(unsafe) of a prompt is a function of its first id,
// so batch order is checkable: logprob_unsafe = log(p), logprob_safe = log(1-p).
class StandInRemote {
 public:
  explicit StandInRemote(StandInSecurity security = {})
      : tls_(!security.cert_file.empty()),
        server_(tls_ ? std::make_unique<httplib::SSLServer>(security.cert_file.c_str(),
                                                            security.key_file.c_str())
                     : std::make_unique<httplib::Server>()) {
    httplib::Server& server = *server_;
    const std::string api_key = security.api_key;
    // As vLLM's --api-key: every route needs the key (llama.cpp leaves /health open).
    server.set_pre_routing_handler(
        [this, api_key](const httplib::Request& req, httplib::Response& res) {
          {
            std::lock_guard<std::mutex> lock(mu_);
            last_authorization_ = req.get_header_value("Authorization");
          }
          if (api_key.empty() || req.get_header_value("Authorization") == "Bearer " + api_key) {
            return httplib::Server::HandlerResponse::Unhandled;
          }
          ++unauthorized;
          res.status = 401;
          res.set_content(R"({"error":"Unauthorized"})", "application/json");
          return httplib::Server::HandlerResponse::Handled;
        });
    server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      Handle(req, res, /*vllm_endpoint=*/true);
    });
    server.Post("/completion", [this](const httplib::Request& req, httplib::Response& res) {
      Handle(req, res, /*vllm_endpoint=*/false);
    });
    server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      res.status = healthy_ ? 200 : 503;
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    SR_CHECK(server.is_valid());
    port_ = server.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~StandInRemote() {
    server_->stop();
    thread_.join();
  }

  std::string url() const { return absl::StrCat(tls_ ? "https" : "http", "://127.0.0.1:", port_); }
  int port() const { return port_; }
  std::string last_authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_authorization_;
  }
  std::atomic<int> unauthorized{0};
  static double PUnsafeFor(int32_t first_id) { return 0.05 + 0.9 * ((first_id % 10) / 9.0); }

  std::atomic<Mode> mode{Mode::kVllm};
  std::atomic<int> fail_first{0};  // answer this many requests with a 500 first
  std::atomic<int> slow_ms{300};
  std::atomic<int> received{0};
  std::atomic<bool> healthy_{true};
  std::atomic<bool> request_shape_ok{true};
  std::string decode_text = "unsafe\nS1,S10";

  json last_body() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_body_;
  }

 private:
  void Handle(const httplib::Request& req, httplib::Response& res, bool vllm_endpoint) {
    ++received;
    json body = json::parse(req.body, nullptr, false);
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_body_ = body;
    }
    if (fail_first.load() > 0 && fail_first-- > 0) {
      res.status = 500;
      res.set_content("upstream overloaded", "text/plain");
      return;
    }
    const Mode m = mode.load();
    if (m == Mode::kGarbage) {
      res.set_content("<html>not json", "text/html");
      return;
    }
    if (m == Mode::kError500) {
      res.status = 503;
      res.set_content(R"({"error":"loading"})", "application/json");
      return;
    }
    if (m == Mode::kError400) {
      res.status = 400;
      res.set_content(R"({"object":"error","message":"maximum context length is 8192 tokens"})",
                      "application/json");
      return;
    }
    if (m == Mode::kSlow) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms.load()));
    if (m == Mode::kNan) {
      res.set_content(R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"safe":NaN}]}}]})",
                      "application/json");
      return;
    }
    // Check the request against the documented shape before answering.
    if (body.is_discarded() || !body.contains("prompt") || !body["prompt"].is_array() ||
        body["prompt"].empty() || !body["prompt"][0].is_number_integer()) {
      request_shape_ok = false;
      res.status = 400;
      return;
    }
    int32_t first_id = body["prompt"][0].get<int32_t>();
    double p = PUnsafeFor(first_id);
    int n_tokens = 1;
    if (vllm_endpoint) {
      if (body.value("logprobs", 0) != 20 || body.value("temperature", -1) != 0 ||
          !body.contains("model")) {
        request_shape_ok = false;
      }
      n_tokens = body.value("max_tokens", 0);
    } else {
      if (body.value("n_probs", 0) != 20 || body.value("cache_prompt", true) != false) {
        request_shape_ok = false;
      }
      n_tokens = body.value("n_predict", 0);
    }
    const std::string text = n_tokens > 1 ? decode_text : (p > 0.5 ? "unsafe" : "safe");
    json answer;
    if (vllm_endpoint) {
      answer = {
          {"id", "cmpl-standin"},
          {"object", "text_completion"},
          {"choices",
           {{{"index", 0},
             {"text", text},
             {"finish_reason", "length"},
             {"logprobs",
              {{"tokens", {p > 0.5 ? kUnsafeKey : kSafeKey}},
               {"token_logprobs", {std::log(std::max(p, 1 - p))}},
               {"top_logprobs", {{{kUnsafeKey, std::log(p)}, {kSafeKey, std::log(1 - p)}}}}}}}}}};
    } else if (m == Mode::kLlamaCppOld) {
      answer = {
          {"content", text},
          {"completion_probabilities",
           {{{"content", text},
             {"probs",
              {{{"tok_str", "unsafe"}, {"prob", p}}, {{"tok_str", "safe"}, {"prob", 1 - p}}}}}}}};
    } else {
      answer = {{"content", text},
                {"tokens", {p > 0.5 ? kUnsafeId : kSafeId}},
                {"stop_type", "limit"},
                {"completion_probabilities",
                 {{{"id", p > 0.5 ? kUnsafeId : kSafeId},
                   {"logprob", std::log(std::max(p, 1 - p))},
                   {"top_logprobs",
                    {{{"id", kSafeId}, {"token", "safe"}, {"logprob", std::log(1 - p)}},
                     {{"id", kUnsafeId}, {"token", "unsafe"}, {"logprob", std::log(p)}}}}}}}};
    }
    res.set_content(answer.dump(), "application/json");
  }

  const bool tls_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  json last_body_;
  std::string last_authorization_;
};

// A server that reads a request and answers it one byte every `interval`,
// status line included: httplib's per-read timeouts never fire on it.
class TrickleServer {
 public:
  explicit TrickleServer(std::chrono::milliseconds interval) : interval_(interval) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SR_CHECK(listen_fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    SR_CHECK(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    SR_CHECK(::listen(listen_fd_, 16) == 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TrickleServer() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }
  int connections() const { return connections_; }

 private:
  void Serve() {
    for (;;) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;  // shut down
      ++connections_;
      char buffer[4096];
      (void)::recv(fd, buffer, sizeof(buffer), 0);  // the request (small)
      const std::string answer =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
          "{\"choices\":[],\"padding\":\"..........\"}";
      for (char c : answer) {
        if (stop_ || ::send(fd, &c, 1, MSG_NOSIGNAL) != 1) break;
        std::this_thread::sleep_for(interval_);
      }
      ::close(fd);
    }
  }

  const std::chrono::milliseconds interval_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// A port nothing listens on: bind an ephemeral port, then close it.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// The guard format stand-in: the prompt text's first byte picks the first id,
// so each request gets a known p(unsafe) from the stand-in server; the lead is
// one id (4), and the output grammar is "safe" | "unsafe\nS1,S2".
class StandInFormat final : public GuardFormat {
 public:
  std::string_view name() const override { return "stand-in"; }
  const BpeTokenizer& tokenizer() const override { return *tokenizer_; }
  const std::vector<std::pair<std::string, std::string>>& default_categories() const override {
    return categories_;
  }
  absl::StatusOr<RenderedPrompt> Render(const std::vector<Turn>& turns,
                                        const Policy* policy) const override {
    const std::string& text = turns.back().content;
    if (text == "fail-encode") return absl::InvalidArgumentError("too many tokens");
    RenderedPrompt out;
    out.ids = {text.empty() ? 0 : static_cast<unsigned char>(text[0]), 1, 2, 3};
    return out;
  }
  std::span<const int32_t> verdict_lead_ids() const override { return lead_; }
  std::span<const VerdictToken> verdict_tokens() const override { return tokens_; }
  std::span<const int32_t> stop_ids() const override { return stop_; }
  std::optional<ParsedOutput> ParseOutput(std::string_view text,
                                          const Policy* policy) const override {
    if (text == "safe") return ParsedOutput{.verdict = "safe", .categories = {}};
    if (text.substr(0, 7) != "unsafe\n") return std::nullopt;
    ParsedOutput out{.verdict = "unsafe", .categories = {}};
    for (absl::string_view code : absl::StrSplit(AbslView(text.substr(7)), ',')) {
      out.categories.emplace_back(code);
    }
    return out;
  }

 private:
  // Decodes the lead (RenderForVerdict appends its text): bytes 0-255 only.
  std::shared_ptr<const BpeTokenizer> tokenizer_ = [] {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) {
      std::string symbol;
      AppendUtf8(ByteToUnicode(static_cast<uint8_t>(b)), symbol);
      vocab[symbol] = b;
    }
    json spec = {{"normalizer", nullptr},
                 {"added_tokens", json::array()},
                 {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
                 {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
    return std::shared_ptr<const BpeTokenizer>(*BpeTokenizer::FromJson(spec.dump(), "bytes"));
  }();
  std::vector<std::pair<std::string, std::string>> categories_ = {{"S1", "One."}};
  std::vector<int32_t> lead_ = {4};
  std::vector<VerdictToken> tokens_ = {
      {.label = "safe", .id = kSafeId, .text = "safe", .unsafe = false},
      {.label = "unsafe", .id = kUnsafeId, .text = "unsafe", .unsafe = true}};
  std::vector<int32_t> stop_ = {5};
};

std::shared_ptr<const GuardFormat> TestFormat() { return std::make_shared<StandInFormat>(); }

RemoteGuardOptions FastOptions(const std::string& url, RemoteKind kind = RemoteKind::kVllm) {
  RemoteGuardOptions options;
  options.kind = kind;
  options.base_url = url;
  options.model = "llama-guard-3-8b";
  options.timeout_ms = 1000;
  options.max_retries = 2;
  options.backoff_ms = 1;
  options.backoff_max_ms = 5;
  options.breaker_failure_threshold = 100;
  options.breaker_open_ms = 100;
  // httplib::Server (the stand-in) listens with a backlog of 5: beyond ~4
  // simultaneous connects the kernel drops SYNs and the client's retransmit
  // costs a whole second. Stay under it so the tests stay fast.
  options.max_parallel = 4;
  return options;
}

std::unique_ptr<RemoteGuard> MakeGuard(const RemoteGuardOptions& options) {
  absl::StatusOr<std::unique_ptr<RemoteGuard>> guard = RemoteGuard::Create(options, TestFormat());
  EXPECT_TRUE(guard.ok()) << guard.status();
  return guard.ok() ? *std::move(guard) : nullptr;
}

GuardRequest Req(std::string prompt) {
  GuardRequest r;
  r.prompt = std::move(prompt);
  return r;
}

void ExpectVerdictFor(const GuardVerdict& v, const std::string& prompt) {
  double p = StandInRemote::PUnsafeFor(static_cast<unsigned char>(prompt[0]));
  EXPECT_NEAR(v.p_unsafe, p, 1e-5) << prompt;
  EXPECT_EQ(v.unsafe, p > 0.5) << prompt;
  EXPECT_NEAR(v.p_unsafe_full, p, 1e-5) << prompt;
  EXPECT_NEAR(v.p_safe_full, 1 - p, 1e-5) << prompt;
  EXPECT_EQ(v.n_tokens, 5);
  EXPECT_TRUE(v.feature.empty());
}

TEST(RemoteGuardTest, VllmScoresAndSendsTheDocumentedRequest) {
  StandInRemote remote;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("9 unsafe-ish")});
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ASSERT_EQ(verdicts->size(), 1u);
  ExpectVerdictFor((*verdicts)[0], "9 unsafe-ish");
  EXPECT_EQ((*verdicts)[0].generated_ids.size(), 1u);
  json body = remote.last_body();
  EXPECT_EQ(body["prompt"].get<std::vector<int32_t>>(), std::vector<int32_t>({'9', 1, 2, 3, 4}));
  EXPECT_EQ(body["model"], "llama-guard-3-8b");
  EXPECT_EQ(body["max_tokens"], 1);
  EXPECT_TRUE(remote.request_shape_ok.load());
  EXPECT_EQ(guard->feature_dim(), 0);
  EXPECT_EQ(guard->circuit_state(), CircuitState::kClosed);
  RemoteGuardStats stats = guard->stats();
  EXPECT_EQ(stats.requests, 1u);
  EXPECT_EQ(stats.attempts, 1u);
  EXPECT_EQ(stats.errors, 0u);
}

TEST(RemoteGuardTest, LlamaCppCurrentAndOldShapes) {
  StandInRemote remote;
  remote.mode = Mode::kLlamaCpp;
  auto guard = MakeGuard(FastOptions(remote.url(), RemoteKind::kLlamaCpp));
  ASSERT_NE(guard, nullptr);
  for (Mode mode : {Mode::kLlamaCpp, Mode::kLlamaCppOld}) {
    remote.mode = mode;
    absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("3abc"), Req("8x")});
    ASSERT_TRUE(verdicts.ok()) << verdicts.status();
    ExpectVerdictFor((*verdicts)[0], "3abc");
    ExpectVerdictFor((*verdicts)[1], "8x");
  }
  json body = remote.last_body();
  EXPECT_EQ(body["n_predict"], 1);
  EXPECT_TRUE(remote.request_shape_ok.load());
}

TEST(RemoteGuardTest, CategoriesComeFromTheSameCallWithALongerDecode) {
  StandInRemote remote;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  GuardRequest request = Req("9");
  request.want_categories = true;
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({request});
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  EXPECT_EQ((*verdicts)[0].categories, std::vector<std::string>({"S1", "S10"}));
  EXPECT_EQ(remote.last_body()["max_tokens"], 12);
  EXPECT_EQ(remote.received.load(), 1);
  remote.decode_text = "I cannot answer that";
  verdicts = guard->Classify({request});
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  EXPECT_TRUE((*verdicts)[0].categories.empty());
  EXPECT_EQ((*verdicts)[0].unparsed_output, "I cannot answer that");
}

TEST(RemoteGuardTest, BatchKeepsOrderAndEncoderErrorsNameTheIndex) {
  StandInRemote remote;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  std::vector<GuardRequest> batch;
  for (char c = '0'; c <= '9'; ++c) batch.push_back(Req(std::string(1, c) + " text"));
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify(batch);
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ASSERT_EQ(verdicts->size(), batch.size());
  for (size_t i = 0; i < batch.size(); ++i) ExpectVerdictFor((*verdicts)[i], batch[i].prompt);
  batch[4] = Req("fail-encode");
  verdicts = guard->Classify(batch);
  ASSERT_FALSE(verdicts.ok());
  EXPECT_EQ(verdicts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(verdicts.status().message().find("request 4"), absl::string_view::npos);
  // Alone, the request needs no index (it would name nothing the caller sent).
  verdicts = guard->Classify({Req("fail-encode")});
  ASSERT_FALSE(verdicts.ok());
  EXPECT_EQ(verdicts.status().message().find("request 0"), absl::string_view::npos)
      << verdicts.status();
}

TEST(RemoteGuardTest, RemoteDownIsUnavailableAfterBoundedRetries) {
  auto guard = MakeGuard(FastOptions("http://127.0.0.1:" + std::to_string(ClosedPort())));
  ASSERT_NE(guard, nullptr);
  Clock::time_point start = Clock::now();
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("1")});
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  ASSERT_FALSE(verdicts.ok());
  EXPECT_EQ(verdicts.status().code(), absl::StatusCode::kUnavailable) << verdicts.status();
  EXPECT_NE(verdicts.status().message().find("after 3 attempts"), absl::string_view::npos);
  RemoteGuardStats stats = guard->stats();
  EXPECT_EQ(stats.attempts, 3u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.connect_errors, 3u);
  EXPECT_EQ(stats.errors, 1u);
  EXPECT_FALSE(guard->Ping().ok());
}

TEST(RemoteGuardTest, SlowerThanTimeoutIsDeadlineExceededWithoutHanging) {
  StandInRemote remote;
  remote.mode = Mode::kSlow;
  remote.slow_ms = 400;
  RemoteGuardOptions options = FastOptions(remote.url());
  options.timeout_ms = 60;
  options.max_retries = 1;
  auto guard = MakeGuard(options);
  ASSERT_NE(guard, nullptr);
  Clock::time_point start = Clock::now();
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("1")});
  // Two attempts of ~60 ms plus a <= 5 ms backoff; generous bound for sanitizers.
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(350));
  ASSERT_FALSE(verdicts.ok());
  EXPECT_EQ(verdicts.status().code(), absl::StatusCode::kDeadlineExceeded) << verdicts.status();
  EXPECT_EQ(guard->stats().timeouts, 2u);
  EXPECT_EQ(guard->stats().retries, 1u);
}

TEST(RemoteGuardTest, GarbageAndNanAreBadResponsesAndRetried) {
  StandInRemote remote;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  for (Mode mode : {Mode::kGarbage, Mode::kNan}) {
    remote.mode = mode;
    absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("1")});
    ASSERT_FALSE(verdicts.ok());
    EXPECT_EQ(verdicts.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(verdicts.status().message().find("bad response"), absl::string_view::npos)
        << verdicts.status();
  }
  EXPECT_EQ(guard->stats().bad_responses, 6u);
  EXPECT_EQ(remote.received.load(), 6);
}

TEST(RemoteGuardTest, ServerErrorsAreRetriedThenSucceed) {
  StandInRemote remote;
  remote.fail_first = 2;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("7")});
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ExpectVerdictFor((*verdicts)[0], "7");
  RemoteGuardStats stats = guard->stats();
  EXPECT_EQ(stats.server_errors, 2u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.errors, 0u);
  remote.mode = Mode::kError500;
  verdicts = guard->Classify({Req("7")});
  ASSERT_FALSE(verdicts.ok());
  EXPECT_EQ(verdicts.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(verdicts.status().message().find("HTTP 503"), absl::string_view::npos);
}

TEST(RemoteGuardTest, ClientErrorsAreNotRetried) {
  StandInRemote remote;
  remote.mode = Mode::kError400;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("1")});
  ASSERT_FALSE(verdicts.ok());
  EXPECT_EQ(verdicts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(verdicts.status().message().find("maximum context length"), absl::string_view::npos);
  EXPECT_EQ(remote.received.load(), 1);
  EXPECT_EQ(guard->stats().client_errors, 1u);
  EXPECT_EQ(guard->circuit_state(), CircuitState::kClosed);
}

TEST(RemoteGuardTest, BreakerOpensFailsFastAndRecovers) {
  StandInRemote remote;
  remote.mode = Mode::kError500;
  RemoteGuardOptions options = FastOptions(remote.url());
  options.max_retries = 0;
  options.breaker_failure_threshold = 3;
  options.breaker_open_ms = 150;
  auto guard = MakeGuard(options);
  ASSERT_NE(guard, nullptr);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(guard->Classify({Req("1")}).ok());
  EXPECT_EQ(guard->circuit_state(), CircuitState::kOpen);
  EXPECT_EQ(remote.received.load(), 3);

  // Open: refused without a network call.
  Clock::time_point start = Clock::now();
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("1")});
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(50));
  ASSERT_FALSE(verdicts.ok());
  EXPECT_EQ(verdicts.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(verdicts.status().message().find("circuit breaker open"), absl::string_view::npos);
  EXPECT_EQ(remote.received.load(), 3);
  EXPECT_EQ(guard->stats().short_circuited, 1u);
  EXPECT_EQ(guard->stats().circuit_opened, 1u);

  // The remote heals; after open_ms one probe goes through and closes it.
  remote.mode = Mode::kVllm;
  std::this_thread::sleep_for(std::chrono::milliseconds(170));
  EXPECT_EQ(guard->circuit_state(), CircuitState::kHalfOpen);
  verdicts = guard->Classify({Req("2")});
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  EXPECT_EQ(guard->circuit_state(), CircuitState::kClosed);
  EXPECT_EQ(remote.received.load(), 4);
}

TEST(RemoteGuardTest, ConcurrentCallersShareOneGuard) {
  StandInRemote remote;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        std::string prompt = std::to_string((t + i) % 10) + " concurrent";
        absl::StatusOr<std::vector<GuardVerdict>> v = guard->Classify({Req(prompt), Req("5")});
        if (!v.ok() || std::abs((*v)[0].p_unsafe - StandInRemote::PUnsafeFor(prompt[0])) > 1e-5) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(guard->stats().requests, 2u * 20u * 2u);
}

TEST(RemoteGuardTest, PingUsesHealth) {
  StandInRemote remote;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  EXPECT_TRUE(guard->Ping().ok());
  remote.healthy_ = false;
  absl::Status status = guard->Ping();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("503"), absl::string_view::npos);
}

TEST(RemoteGuardTest, CreateRejectsBadOptionsNamingTheField) {
  struct Case {
    std::function<void(RemoteGuardOptions&)> edit;
    const char* field;
  };
  const Case cases[] = {
      {[](RemoteGuardOptions& o) { o.base_url = "127.0.0.1:8000"; }, "base_url"},
      {[](RemoteGuardOptions& o) { o.base_url = "ftp://h:1"; }, "base_url"},
      {[](RemoteGuardOptions& o) { o.base_url = "http://h:99999"; }, "base_url"},
      {[](RemoteGuardOptions& o) { o.base_url = "http://"; }, "base_url"},
      {[](RemoteGuardOptions& o) { o.model = ""; }, "model"},
      {[](RemoteGuardOptions& o) { o.timeout_ms = 0; }, "timeout_ms"},
      {[](RemoteGuardOptions& o) { o.timeout_ms = NAN; }, "timeout_ms"},
      {[](RemoteGuardOptions& o) { o.max_retries = -1; }, "max_retries"},
      {[](RemoteGuardOptions& o) { o.breaker_failure_threshold = 0; }, "breaker_failure_threshold"},
      {[](RemoteGuardOptions& o) { o.top_logprobs = 0; }, "top_logprobs"},
  };
  for (const Case& c : cases) {
    RemoteGuardOptions options = FastOptions("http://127.0.0.1:1");
    c.edit(options);
    absl::StatusOr<std::unique_ptr<RemoteGuard>> guard = RemoteGuard::Create(options, TestFormat());
    ASSERT_FALSE(guard.ok()) << c.field;
    EXPECT_EQ(guard.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(guard.status().message().find(c.field), absl::string_view::npos) << guard.status();
  }
  EXPECT_FALSE(RemoteGuard::Create(FastOptions("http://127.0.0.1:1"), nullptr).ok());
  // A path prefix is kept (servers behind a reverse proxy).
  EXPECT_TRUE(
      RemoteGuard::Create(FastOptions("https://guard.example:8443/llm/"), TestFormat()).ok());
}

// A server that answers a byte at a time (status line included) never trips
// a per-read timeout; the attempt's own deadline cuts it.
TEST(RemoteGuardTest, TrickledAnswerIsCutAtTheAttemptTimeout) {
  TrickleServer trickle(std::chrono::milliseconds(50));  // ~100 bytes: ~5 s per answer
  RemoteGuardOptions options = FastOptions(trickle.url());
  options.timeout_ms = 150;
  options.max_retries = 1;
  auto guard = MakeGuard(options);
  ASSERT_NE(guard, nullptr);
  const Clock::time_point start = Clock::now();
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("1")});
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(verdicts.ok());
  EXPECT_EQ(verdicts.status().code(), absl::StatusCode::kDeadlineExceeded) << verdicts.status();
  // Two attempts of 150 ms (+ <= 5 ms backoff), far from one trickled answer.
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500));
  EXPECT_EQ(guard->stats().timeouts, 2u);
  EXPECT_EQ(trickle.connections(), 2);
}

std::unique_ptr<fakes::SelfSignedCert> Cert() { return fakes::MakeSelfSignedCert(); }

TEST(RemoteGuardTest, HttpsWithCaFileAndApiKey) {
  auto cert = Cert();
  StandInRemote remote({cert->cert_file, cert->key_file, "remote-secret-key-1"});
  ASSERT_EQ(remote.url().rfind("https://", 0), 0u);
  RemoteGuardOptions options = FastOptions(remote.url());
  options.ca_file = cert->cert_file;
  options.api_key = "remote-secret-key-1";
  auto guard = MakeGuard(options);
  ASSERT_NE(guard, nullptr);
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard->Classify({Req("9 over tls")});
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ExpectVerdictFor((*verdicts)[0], "9 over tls");
  EXPECT_EQ(remote.last_authorization(), "Bearer remote-secret-key-1");
  EXPECT_TRUE(guard->Ping().ok());
  EXPECT_EQ(remote.unauthorized, 0);

  // No key, or the wrong one: the remote says 401, not retried, and the
  // message says which.
  for (const char* key : {"", "wrong-key-000"}) {
    options.api_key = key;
    auto keyless = MakeGuard(options);
    ASSERT_NE(keyless, nullptr);
    absl::Status status = keyless->Classify({Req("1")}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_NE(status.message().find("401"), absl::string_view::npos) << status;
    EXPECT_NE(status.message().find(*key == 0 ? "no API key" : "refused"), absl::string_view::npos)
        << status;
    EXPECT_EQ(keyless->stats().attempts, 1u);
    EXPECT_EQ(status.message().find("wrong-key-000"), absl::string_view::npos) << status;
  }
}

TEST(RemoteGuardTest, UntrustedCertificateFailsAtOnceWithoutRetries) {
  auto cert = Cert();
  auto other = Cert();
  StandInRemote remote({cert->cert_file, cert->key_file, ""});
  for (const std::string& ca : {std::string(""), other->cert_file}) {
    RemoteGuardOptions options = FastOptions(remote.url());
    options.ca_file = ca;  // system store / another CA: neither trusts the stand-in
    auto guard = MakeGuard(options);
    ASSERT_NE(guard, nullptr);
    absl::Status status = guard->Classify({Req("1")}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_EQ(guard->stats().attempts, 1u) << "a verification failure is not retried";
    EXPECT_FALSE(guard->Ping().ok());
  }
  EXPECT_EQ(remote.received, 0);
}

TEST(RemoteGuardTest, HttpsToAPlainServerIsUnavailableAfterRetries) {
  StandInRemote plain;
  RemoteGuardOptions options = FastOptions("https://127.0.0.1:" + std::to_string(plain.port()));
  auto guard = MakeGuard(options);
  ASSERT_NE(guard, nullptr);
  absl::Status status = guard->Classify({Req("1")}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(guard->stats().attempts, 3u);
}

// name() and error messages reach HTTP responses: no address in them.
TEST(RemoteGuardTest, NameAndErrorsCarryNoAddress) {
  StandInRemote remote;
  remote.mode = Mode::kError500;
  auto guard = MakeGuard(FastOptions(remote.url()));
  ASSERT_NE(guard, nullptr);
  EXPECT_EQ(guard->name(), "llama-guard-3-8b");
  absl::Status status = guard->Classify({Req("1")}).status();
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.message().find("127.0.0.1"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("/v1/completions"), absl::string_view::npos) << status;
  RemoteGuardOptions llamacpp = FastOptions(remote.url(), RemoteKind::kLlamaCpp);
  llamacpp.model = "";
  auto unnamed = MakeGuard(llamacpp);
  ASSERT_NE(unnamed, nullptr);
  EXPECT_EQ(unnamed->name(), "llamacpp");
}

TEST(RemoteGuardTest, CreateChecksTlsAndKeyOptions) {
  auto cert = Cert();
  struct Case {
    std::string url, ca_file, api_key, field;
  };
  for (const Case& c : std::vector<Case>{
           {"http://127.0.0.1:1", cert->cert_file, "", "ca_file"},
           {"https://127.0.0.1:1", cert->dir + "/missing.pem", "", "ca_file"},
           {"https://127.0.0.1:1", "", "two words", "api_key"},
       }) {
    RemoteGuardOptions options = FastOptions(c.url);
    options.ca_file = c.ca_file;
    options.api_key = c.api_key;
    absl::StatusOr<std::unique_ptr<RemoteGuard>> guard = RemoteGuard::Create(options, TestFormat());
    ASSERT_FALSE(guard.ok()) << c.field;
    EXPECT_NE(guard.status().message().find(c.field), absl::string_view::npos) << guard.status();
    EXPECT_EQ(guard.status().message().find("two words"), absl::string_view::npos);
  }
}

// Records what the guard reports (as the service's metrics would see it).
class RecordingObserver final : public RemoteGuardObserver {
 public:
  void OnRemoteEvent(RemoteEvent event) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++events_[std::string(RemoteEventName(event))];
  }
  void OnCircuitState(CircuitState state) override {
    std::lock_guard<std::mutex> lock(mu_);
    states_.push_back(CircuitStateName(state));
  }
  int events(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return events_[name];
  }
  std::vector<std::string> states() {
    std::lock_guard<std::mutex> lock(mu_);
    return states_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> events_;
  std::vector<std::string> states_;
};

TEST(RemoteGuardTest, ReportsEventsAndCircuitChangesToItsObserver) {
  StandInRemote remote;
  remote.mode = Mode::kError500;
  RemoteGuardOptions options = FastOptions(remote.url());
  options.max_retries = 1;
  options.breaker_failure_threshold = 3;
  options.breaker_open_ms = 150;
  RecordingObserver observer;
  absl::StatusOr<std::unique_ptr<RemoteGuard>> guard =
      RemoteGuard::Create(options, TestFormat(), &observer);
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_EQ(observer.states(), std::vector<std::string>{"closed"});
  // 500s: the third failed attempt opens the circuit; later attempts are refused.
  for (int i = 0; i < 3; ++i) EXPECT_FALSE((*guard)->Classify({Req("1")}).ok());
  EXPECT_EQ(observer.states(), (std::vector<std::string>{"closed", "open"}));
  const RemoteGuardStats stats = (*guard)->stats();
  EXPECT_EQ(stats.requests, 3u);
  EXPECT_GE(stats.short_circuited, 1u);
  EXPECT_GE(stats.retries, 1u);
  EXPECT_EQ(observer.events("requests"), 3);
  EXPECT_EQ(observer.events("errors"), static_cast<int>(stats.errors));
  EXPECT_EQ(observer.events("errors"), 3);
  EXPECT_EQ(observer.events("retries"), static_cast<int>(stats.retries));
  EXPECT_EQ(observer.events("short_circuited"), static_cast<int>(stats.short_circuited));
  EXPECT_EQ(observer.events("timeouts"), 0);

  remote.mode = Mode::kVllm;
  std::this_thread::sleep_for(std::chrono::milliseconds(170));
  ASSERT_TRUE((*guard)->Classify({Req("2")}).ok());
  EXPECT_EQ(observer.states(), (std::vector<std::string>{"closed", "open", "half_open", "closed"}));
}

}  // namespace
}  // namespace saferoute
