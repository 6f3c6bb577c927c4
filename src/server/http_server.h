// The HTTP front of the guard service (cpp-httplib): routes, JSON <-> calls,
// errors in OpenAI's shape, request logging without prompt text.
//
//   POST /v1/moderations  OpenAI moderation API (+ "saferoute" provenance per result)
//   POST /v1/guard        native: one input, full provenance
//   GET  /healthz         liveness (200 while the process serves)
//   GET  /readyz          readiness (503 while draining or not ready; see GuardService::Ready)
//   GET  /metrics         Prometheus text format 0.0.4
//
// Per-request deadline: header "X-SafeRoute-Deadline-Ms" (both POST routes)
// or "deadline_ms" in the /v1/guard body; default and cap from the options.
// Bodies are read as JSON whatever their Content-Type says (curl -d sends
// application/x-www-form-urlencoded), up to max_body_bytes after any
// Content-Encoding is undone; multipart/form-data is refused (415).
// With API keys, every route but /healthz and /readyz (and /metrics if so
// configured) needs "Authorization: Bearer <key>" (401 otherwise). Every
// response carries X-Request-Id (the client's if valid, else a random one).
#ifndef SAFEROUTE_SERVER_HTTP_SERVER_H_
#define SAFEROUTE_SERVER_HTTP_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "server/api_keys.h"
#include "server/connection_pool.h"
#include "server/guard_service.h"

namespace httplib {
class Server;
class ContentReader;
struct Request;
struct Response;
}  // namespace httplib

namespace saferoute::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;   // 0: any free port
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
  // HTTPS when both are set: PEM files (the certificate file may hold the
  // chain). TLS 1.2 or newer.
  std::string tls_cert_file = "";
  std::string tls_key_file = "";
  // API keys; null: no authentication. /healthz and /readyz are always open.
  std::shared_ptr<const ApiKeySet> api_keys = nullptr;
  bool metrics_need_key = true;  // with api_keys: /metrics needs a key too
  // Graceful stop: the listener stays open (answering 503, /readyz 503) for
  // at least drain_grace_ms, so load balancers see the replica leave, and
  // until the requests in flight are answered, at most drain_timeout_ms.
  double drain_grace_ms = 0;
  double drain_timeout_ms = 30000;
};

class GuardHttpServer {
 public:
  // `service` must outlive the server.
  GuardHttpServer(GuardService* service, HttpServerOptions options);
  ~GuardHttpServer();  // Stop()

  // Binds and starts serving on a background thread; returns the bound port.
  absl::StatusOr<int> Start();
  // Graceful: marks the service draining (new work 503, /readyz 503) while
  // the listener stays open (see drain_grace_ms), answers every connection
  // accepted or queued, closes the listener once nothing is in flight, then
  // shuts the service's schedulers down. Idempotent.
  void Stop();

  // What a route produced (defined in http_server.cc).
  struct Outcome;

 private:
  using PostHandler = Outcome (*)(GuardService&, const httplib::Request&, const std::string&);

  void RegisterRoutes();
  // A POST route: authentication, Content-Type, the bounded body, the handler.
  void ServePost(const std::string& route, PostHandler handler, const httplib::Request& req,
                 httplib::Response& res, const httplib::ContentReader& read_body);
  void Respond(const std::string& route, const httplib::Request& req, httplib::Response& res,
               Outcome& outcome, double seconds);
  absl::Status Authenticate(const httplib::Request& req) const;
  // Waits until the drain may close the listener (see Stop()).
  void WaitForDrain();

  GuardService* const service_;
  const HttpServerOptions options_;
  std::unique_ptr<httplib::Server> http_;
  absl::Status tls_status_;  // why the TLS context could not be set up
  std::unique_ptr<ConnectionPool> pool_;
  std::atomic<int> requests_in_flight_{0};
  std::thread listener_;
  std::atomic<bool> listener_exited_{false};
  bool started_ = false;
  std::atomic<bool> stopped_{false};
  // The socket httplib last created for binding (set by the socket-options
  // callback during Start()): the listening socket once the bind succeeded.
  int bound_socket_ = -1;
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_HTTP_SERVER_H_
