#include "server/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>

#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/api_json.h"
#include "server/guard_api.h"
#include "server/http_status.h"
#include "server/moderation_api.h"

namespace saferoute::server {
namespace {

constexpr char kDeadlineHeader[] = "X-SafeRoute-Deadline-Ms";

// What a route handler produces: a JSON body or an error, and the verdict
// label for the request counter.
struct RouteOutcome {
  absl::StatusOr<nlohmann::json> body;
  std::string verdict = "none";
  std::string log_detail;  // sizes and verdicts; prompt text only with log_prompts
};

RouteOutcome Failed(absl::Status status) {
  RouteOutcome out;
  out.body = std::move(status);
  return out;
}

// Serialises without throwing: guard output may carry invalid UTF-8.
std::string Dump(const nlohmann::json& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<double> DeadlineFromHeader(const httplib::Request& req) {
  if (!req.has_header(kDeadlineHeader)) return 0.0;
  const std::string value = req.get_header_value(kDeadlineHeader);
  char* end = nullptr;
  const double ms = std::strtod(value.c_str(), &end);
  if (value.empty() || end != value.c_str() + value.size() || !std::isfinite(ms) || ms <= 0) {
    return InputError(
        absl::StrCat("header ", kDeadlineHeader, " must be a positive number of milliseconds"),
        kDeadlineHeader, "invalid_value");
  }
  return ms;
}

// httplib's timeouts are (seconds, microseconds).
std::pair<time_t, time_t> SecondsAndMicros(double ms) {
  const auto micros = static_cast<int64_t>(std::llround(ms * 1000));
  return {static_cast<time_t>(micros / 1000000), static_cast<time_t>(micros % 1000000)};
}

std::string VerdictLabel(const std::vector<CascadeDecision>& decisions) {
  for (const CascadeDecision& d : decisions) {
    if (d.flagged) return "flagged";
  }
  return "allowed";
}

std::string PromptsForLog(const std::vector<GuardRequest>& inputs) {
  nlohmann::json texts = nlohmann::json::array();
  for (const GuardRequest& r : inputs) {
    if (!r.conversation.empty()) {
      texts.push_back(r.conversation.back().content);
    } else {
      texts.push_back(r.prompt);
    }
  }
  return Dump(texts);
}

RouteOutcome HandleModerations(GuardService& service, const httplib::Request& req) {
  RouteOutcome out;
  absl::StatusOr<double> deadline = DeadlineFromHeader(req);
  if (!deadline.ok()) return Failed(deadline.status());
  absl::StatusOr<nlohmann::json> body = ParseJsonObject(req.body);
  if (!body.ok()) return Failed(body.status());
  absl::StatusOr<ModerationRequest> parsed =
      ParseModerationRequest(*body, service.options().max_inputs_per_request);
  if (!parsed.ok()) return Failed(parsed.status());
  std::vector<GuardRequest> inputs(parsed->inputs.size());
  size_t bytes = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    bytes += parsed->inputs[i].size();
    inputs[i].prompt = std::move(parsed->inputs[i]);
  }
  out.log_detail = absl::StrCat("inputs=", inputs.size(), " bytes=", bytes);
  if (service.options().log_prompts)
    absl::StrAppend(&out.log_detail, " prompts=", PromptsForLog(inputs));
  absl::StatusOr<std::vector<CascadeDecision>> decisions = service.Decide(inputs, *deadline);
  if (!decisions.ok()) {
    out.body = decisions.status();
    return out;
  }
  out.verdict = VerdictLabel(*decisions);
  out.body = ModerationResponse(service.NextId("modr-"), service.options().model_name, *decisions);
  return out;
}

RouteOutcome HandleGuard(GuardService& service, const httplib::Request& req) {
  RouteOutcome out;
  absl::StatusOr<double> deadline = DeadlineFromHeader(req);
  if (!deadline.ok()) return Failed(deadline.status());
  absl::StatusOr<nlohmann::json> body = ParseJsonObject(req.body);
  if (!body.ok()) return Failed(body.status());
  absl::StatusOr<NativeGuardRequest> parsed =
      ParseNativeGuardRequest(*body, service.options().max_turns);
  if (!parsed.ok()) return Failed(parsed.status());
  const double deadline_ms = parsed->deadline_ms.value_or(*deadline);
  std::vector<GuardRequest> inputs = {std::move(parsed->request)};
  out.log_detail = absl::StrCat("turns=", std::max<size_t>(1, inputs[0].conversation.size()));
  if (service.options().log_prompts)
    absl::StrAppend(&out.log_detail, " prompts=", PromptsForLog(inputs));
  absl::StatusOr<std::vector<CascadeDecision>> decisions = service.Decide(inputs, deadline_ms);
  if (!decisions.ok()) {
    // The single input is the whole request: name the field, not "input[0]".
    out.body =
        RenameParam(decisions.status(), inputs[0].conversation.empty() ? "prompt" : "conversation");
    return out;
  }
  out.verdict = VerdictLabel(*decisions);
  out.body = NativeGuardResponse(service.NextId("guard-"), service.small_name(),
                                 service.large_name(), decisions->front());
  return out;
}

}  // namespace

GuardHttpServer::GuardHttpServer(GuardService* service, HttpServerOptions options)
    : service_(service), options_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
  SR_CHECK(service_ != nullptr);
  // Range checks on outside input live in ValidateServerConfig; here a bad
  // value is a caller's bug (httplib would silently serve no request with a
  // keep-alive count of 0, or time out every read at 0).
  SR_CHECK(options_.threads >= 1 && options_.listen_backlog >= 1);
  SR_CHECK(options_.read_timeout_ms > 0 && options_.write_timeout_ms > 0);
  SR_CHECK(options_.keep_alive_timeout_s >= 1 && options_.keep_alive_max_requests >= 1);
  RegisterRoutes();
}

GuardHttpServer::~GuardHttpServer() { Stop(); }

void GuardHttpServer::RegisterRoutes() {
  httplib::Server& http = *http_;
  const int threads = options_.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(static_cast<size_t>(options_.max_body_bytes));
  // httplib writes headers and body in separate send()s; with Nagle on, the
  // body waits for the client's delayed ACK (~40 ms on Linux loopback).
  http.set_tcp_nodelay(true);
  // Per-connection limits (a slow or stalled client frees its worker).
  const auto [read_s, read_us] = SecondsAndMicros(options_.read_timeout_ms);
  http.set_read_timeout(read_s, read_us);
  const auto [write_s, write_us] = SecondsAndMicros(options_.write_timeout_ms);
  http.set_write_timeout(write_s, write_us);
  http.set_keep_alive_timeout(options_.keep_alive_timeout_s);
  http.set_keep_alive_max_count(static_cast<size_t>(options_.keep_alive_max_requests));
  // httplib's default options (address reuse), plus a note of the socket so
  // Start() can raise its listen backlog after the bind.
  int* bound_socket = &bound_socket_;
  http.set_socket_options([bound_socket](socket_t sock) {
    httplib::default_socket_options(sock);
    *bound_socket = sock;
  });
  GuardService* service = service_;
  const int64_t max_body = options_.max_body_bytes;

  auto serve = [service](const std::string& route,
                         RouteOutcome (*handler)(GuardService&, const httplib::Request&)) {
    return [service, route, handler](const httplib::Request& req, httplib::Response& res) {
      const Clock::time_point start = Clock::now();
      RouteOutcome outcome = handler(*service, req);
      int status = 200;
      if (outcome.body.ok()) {
        res.set_content(Dump(*outcome.body), "application/json");
      } else {
        status = HttpStatusFor(outcome.body.status());
        if (status == 429 || status == 503) res.set_header("Retry-After", "1");
        res.set_content(Dump(ErrorBody(outcome.body.status())), "application/json");
      }
      res.status = status;
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      MetricsRegistry& metrics = service->metrics();
      metrics.Increment("saferoute_http_requests_total",
                        {route, std::to_string(status), outcome.verdict});
      metrics.Observe("saferoute_http_request_duration_seconds", {route}, seconds);
      // One line per request; never prompt text unless log_prompts.
      std::fprintf(stderr, "saferoute: %s %s %d verdict=%s %s ms=%.1f%s%s\n", req.method.c_str(),
                   route.c_str(), status, outcome.verdict.c_str(), outcome.log_detail.c_str(),
                   seconds * 1e3, outcome.body.ok() ? "" : " error=",
                   outcome.body.ok() ? "" : std::string(outcome.body.status().message()).c_str());
    };
  };
  http.Post("/v1/moderations", serve("/v1/moderations", HandleModerations));
  http.Post("/v1/guard", serve("/v1/guard", HandleGuard));

  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http.Get("/readyz", [service](const httplib::Request&, httplib::Response& res) {
    absl::Status ready = service->Ready();
    nlohmann::json body = {{"ready", ready.ok()}};
    if (!ready.ok()) {
      body["reason"] = std::string(ready.message());
      res.status = HttpStatusFor(ready);
    }
    res.set_content(Dump(body), "application/json");
  });
  http.Get("/metrics", [service](const httplib::Request&, httplib::Response& res) {
    res.set_content(service->metrics().Render(), "text/plain; version=0.0.4; charset=utf-8");
  });

  // Errors the library raises itself (unknown route, body over the limit)
  // get the same JSON error shape as ours.
  http.set_error_handler([service, max_body](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message =
        res.status == 413   ? absl::StrCat("request body exceeds the limit of ", max_body, " bytes")
        : res.status == 404 ? absl::StrCat("no route ", req.method, " ", req.path)
                            : absl::StrCat("HTTP error ", res.status);
    res.set_content(Dump(ErrorBodyForHttpCode(res.status, message)), "application/json");
    service->metrics().Increment("saferoute_http_requests_total",
                                 {"other", std::to_string(res.status), "none"});
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                std::exception_ptr error) {
    std::string what = "unknown exception";
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(Dump(ErrorBody(absl::InternalError(absl::StrCat("internal error: ", what)))),
                    "application/json");
  });
}

absl::StatusOr<int> GuardHttpServer::Start() {
  SR_CHECK(!started_);
  int port = options_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
  } else if (!http_->bind_to_port(options_.host, port)) {
    port = -1;
  }
  if (port < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port));
  }
  // httplib listened with its compiled-in backlog of 5. listen() on a socket
  // that already listens only updates the backlog (Linux), so this raises it
  // before any connection is accepted.
  if (::listen(bound_socket_, options_.listen_backlog) != 0) {
    const int error = errno;
    ::close(bound_socket_);  // never handed to listen_after_bind()
    return absl::UnavailableError(absl::StrCat("cannot set listen backlog ",
                                               options_.listen_backlog, " on ", options_.host, ":",
                                               port, ": ", std::strerror(error)));
  }
  started_ = true;
  listener_ = std::thread([this] {
    http_->listen_after_bind();
    listener_exited_ = true;
  });
  // httplib's stop() does nothing until the accept loop runs, so a Stop()
  // right after Start() could otherwise leave the listener running forever.
  while (!http_->is_running() && !listener_exited_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return port;
}

void GuardHttpServer::Stop() {
  service_->BeginDrain();
  if (started_) {
    // stop() closes the listening socket; listen_after_bind() returns after
    // the worker pool has answered the requests it is serving.
    http_->stop();
    if (listener_.joinable()) listener_.join();
  }
  service_->Shutdown();
}

}  // namespace saferoute::server
