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
  int threads = 32;  // worker threads; each holds one connection while it is served
  int64_t max_body_bytes = 1 << 20;
  // Connections the kernel queues before accept(); it caps the value at
  // net.core.somaxconn. httplib's own backlog (5, compiled into Debian's
  // libcpp-httplib.so) drops SYNs under a connection burst.
  int listen_backlog = 1024;
  // Longest silence while reading one request (each read, not the whole
  // request) or writing one response; then the connection is closed and its
  // worker freed, so a stalled client cannot hold a worker for ever.
  double read_timeout_ms = 5000;
  double write_timeout_ms = 5000;
  // Idle wait for the next request on a keep-alive connection. It holds a
  // worker and also delays a graceful stop by up to this long. Whole seconds
  // (httplib's unit).
  int keep_alive_timeout_s = 2;
  int keep_alive_max_requests = 100;  // then the connection is closed
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
  // The socket httplib last created for binding (set by the socket-options
  // callback during Start()): the listening socket once the bind succeeded.
  int bound_socket_ = -1;
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_HTTP_SERVER_H_
