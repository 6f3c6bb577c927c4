// The HTTP front of the guard service (cpp-httplib): routes, JSON <-> calls,
// errors in OpenAI's shape, request logging without prompt text.
//
//   POST /v1/moderations  OpenAI moderation API (+ "saferoute" provenance per result)
//   POST /v1/guard        native: one input, full provenance
//   GET  /healthz         liveness (200 while the process serves)
//   GET  /readyz          readiness (503 while draining or the remote guard is unreachable)
//   GET  /metrics         Prometheus text format 0.0.4
//
// Per-request deadline: header "X-SafeRoute-Deadline-Ms" (both POST routes)
// or "deadline_ms" in the /v1/guard body; default and cap from the options.
#ifndef SAFEROUTE_SERVER_HTTP_SERVER_H_
#define SAFEROUTE_SERVER_HTTP_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "server/guard_service.h"

namespace httplib {
class Server;
}

namespace saferoute::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;      // 0: any free port
  int threads = 32;  // worker threads; each holds one request while it waits
  int64_t max_body_bytes = 1 << 20;
};

class GuardHttpServer {
 public:
  // `service` must outlive the server.
  GuardHttpServer(GuardService* service, HttpServerOptions options);
  ~GuardHttpServer();  // Stop()

  // Binds and starts serving on a background thread; returns the bound port.
  absl::StatusOr<int> Start();
  // Graceful: marks the service draining, stops accepting connections,
  // waits for in-flight requests to be answered, then shuts the service's
  // schedulers down. Idempotent.
  void Stop();

 private:
  void RegisterRoutes();

  GuardService* const service_;
  const HttpServerOptions options_;
  std::unique_ptr<httplib::Server> http_;
  std::thread listener_;
  std::atomic<bool> listener_exited_{false};
  bool started_ = false;
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_HTTP_SERVER_H_
