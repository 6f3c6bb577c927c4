// A guard service on a real HTTP server (127.0.0.1, ephemeral port) with
// fake guards and router, and small clients for it. Header-only, for tests.
#ifndef SAFEROUTE_SERVER_TESTING_HTTP_HARNESS_H_
#define SAFEROUTE_SERVER_TESTING_HTTP_HARNESS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "cascade/testing/fake_guards.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/http_server.h"

namespace saferoute::server::testing {

using fakes::FakeGuard;  // cascade/testing/fake_guards.h
using fakes::FakeRouter;
using Json = nlohmann::json;

struct Harness {
  FakeGuard small{"fake-small"};
  FakeGuard large{"fake-large", "lp"};
  FakeRouter router;
  std::unique_ptr<GuardService> service;
  std::unique_ptr<GuardHttpServer> http;
  int port = 0;

  static HttpServerOptions DefaultHttpOptions() {
    return {.port = 0, .threads = 16, .max_body_bytes = 4096};
  }

  // `with_large`/`with_router` select the cascade's parts.
  explicit Harness(GuardServiceOptions options = {}, bool with_large = true,
                   bool with_router = true, FakeRouter r = FakeRouter(),
                   HttpServerOptions http_options = DefaultHttpOptions())
      : router(r) {
    absl::StatusOr<std::unique_ptr<GuardService>> s =
        GuardService::Create({.small = &small,
                              .router = with_router ? &router : nullptr,
                              .large = with_large ? &large : nullptr},
                             options);
    SR_CHECK(s.ok());
    service = std::move(*s);
    http = std::make_unique<GuardHttpServer>(service.get(), std::move(http_options));
    absl::StatusOr<int> p = http->Start();
    SR_CHECK(p.ok());
    port = *p;
  }
  ~Harness() {
    small.OpenGate();
    large.OpenGate();
    http->Stop();
  }
  httplib::Client Client() {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(std::chrono::seconds(30));
    c.set_keep_alive(false);
    return c;
  }
  struct Reply {
    int status = 0;  // 0: transport error (no response)
    Json body;
    std::string raw;
    std::string retry_after;
    httplib::Headers headers;
    std::string header(const std::string& name) const {
      auto it = headers.find(name);
      return it == headers.end() ? "" : it->second;
    }
  };
  static Reply ReplyOf(const httplib::Result& r) {
    Reply out;
    if (!r) return out;
    out.status = r->status;
    out.raw = r->body;
    out.headers = r->headers;
    out.retry_after = r->get_header_value("Retry-After");
    out.body = Json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    return out;
  }
  Reply Post(const std::string& path, const std::string& body, httplib::Headers headers = {},
             const std::string& content_type = "application/json") {
    httplib::Client c = Client();
    return ReplyOf(c.Post(path.c_str(), headers, body, content_type.c_str()));
  }
  Reply Get(const std::string& path, httplib::Headers headers = {}) {
    httplib::Client c = Client();
    return ReplyOf(c.Get(path.c_str(), headers));
  }
};

inline void ExpectOpenAiError(const Harness::Reply& r, int status, const std::string& code,
                              const Json& param, const std::string& context) {
  EXPECT_EQ(r.status, status) << context << ": " << r.raw;
  ASSERT_TRUE(r.body.is_object()) << context << ": " << r.raw;
  const Json& e = r.body["error"];
  ASSERT_TRUE(e.is_object()) << context << ": " << r.raw;
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << context;
  EXPECT_TRUE(e["type"].is_string()) << context;
  EXPECT_TRUE(e.contains("param")) << context;
  EXPECT_EQ(e["code"], code) << context << ": " << r.raw;
  if (!param.is_discarded()) {
    EXPECT_EQ(e["param"], param) << context << ": " << r.raw;
  }
}

// A plain TCP client (no HTTP library), to send a request that never ends.
// Receives give up after `receive_timeout_ms` so a test cannot hang.
inline int ConnectRaw(int port, int receive_timeout_ms) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  SR_CHECK(fd >= 0);
  timeval timeout{.tv_sec = receive_timeout_ms / 1000, .tv_usec = receive_timeout_ms % 1000 * 1000};
  SR_CHECK(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) == 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  SR_CHECK(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  return fd;
}

}  // namespace saferoute::server::testing

#endif  // SAFEROUTE_SERVER_TESTING_HTTP_HARNESS_H_
