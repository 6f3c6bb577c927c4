#include "server/http_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/api_json.h"
#include "server/guard_api.h"
#include "server/http_status.h"
#include "server/moderation_api.h"
#include "server/request_id.h"
#include "util/retry_after.h"

namespace saferoute::server {

// What a route handler produces: a JSON body or an error, and the verdict
// label for the request counter.
struct GuardHttpServer::Outcome {
  absl::StatusOr<nlohmann::json> body;
  std::string verdict = "none";
  std::string log_detail;  // sizes and verdicts; prompt text only with log_prompts
  // The body may be partly unread (refused before or while reading it): the
  // connection cannot carry another request.
  bool close_connection = false;
};

namespace {

using Outcome = GuardHttpServer::Outcome;
using Clock = std::chrono::steady_clock;

constexpr char kDeadlineHeader[] = "X-SafeRoute-Deadline-Ms";

Outcome Failed(absl::Status status) {
  Outcome out;
  out.body = std::move(status);
  return out;
}

// Serialises without throwing: guard output may carry invalid UTF-8.
std::string Dump(const nlohmann::json& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Clock::duration Millis(double ms) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
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

// The media type of the Content-Type header, lower case, without parameters
// (";boundary=…", ";charset=…"); printable ASCII only, since it is quoted
// back in error messages.
std::string MediaType(const httplib::Request& req) {
  std::string type = req.get_header_value("Content-Type");
  type = std::string(absl::StripAsciiWhitespace(type.substr(0, type.find(';'))));
  absl::AsciiStrToLower(&type);
  if (type.size() > 100) type.resize(100);
  for (char& c : type) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return type;
}

// A JSON parse error in the body, for a client that sent a form type: the
// body is JSON whatever the Content-Type says; say so.
absl::Status WithContentTypeHint(absl::Status status, const httplib::Request& req) {
  const std::string type = MediaType(req);
  if (type.empty() || type == "application/json") return status;
  absl::Status hinted(status.code(),
                      absl::StrCat(status.message(), " (the body is read as JSON whatever its ",
                                   "Content-Type says; this one says ", type, ")"));
  status.ForEachPayload(
      [&](absl::string_view key, const absl::Cord& value) { hinted.SetPayload(key, value); });
  return hinted;
}

absl::StatusOr<nlohmann::json> ParseBody(const httplib::Request& req, const std::string& body) {
  absl::StatusOr<nlohmann::json> parsed = ParseJsonObject(body);
  if (!parsed.ok()) return WithContentTypeHint(parsed.status(), req);
  return parsed;
}

Outcome HandleModerations(GuardService& service, const httplib::Request& req,
                          const std::string& raw_body) {
  Outcome out;
  absl::StatusOr<double> deadline = DeadlineFromHeader(req);
  if (!deadline.ok()) return Failed(deadline.status());
  absl::StatusOr<nlohmann::json> body = ParseBody(req, raw_body);
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
    out.body = MessageNamesParam(decisions.status());  // "input[1]: …"
    return out;
  }
  out.verdict = VerdictLabel(*decisions);
  out.body = ModerationResponse(RandomId("modr-"), service.options().model_name, *decisions,
                                service.small_format(), service.large_format());
  return out;
}

Outcome HandleGuard(GuardService& service, const httplib::Request& req,
                    const std::string& raw_body) {
  Outcome out;
  absl::StatusOr<double> deadline = DeadlineFromHeader(req);
  if (!deadline.ok()) return Failed(deadline.status());
  absl::StatusOr<nlohmann::json> body = ParseBody(req, raw_body);
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
    out.body = MessageNamesParam(RenameParam(
        decisions.status(), inputs[0].conversation.empty() ? "prompt" : "conversation"));
    return out;
  }
  out.verdict = VerdictLabel(*decisions);
  out.body = NativeGuardResponse(RandomId("guard-"), service.small_name(), service.large_name(),
                                 decisions->front());
  return out;
}

absl::Status BodyTooLarge(int64_t max_body) {
  return HttpError(
      absl::StatusCode::kInvalidArgument, 413,
      absl::StrCat("request body exceeds the limit of ", max_body, " bytes (limits.body_bytes)"),
      "body_too_large");
}

// Reads the body through httplib's content reader: at most `max_body` bytes
// after any Content-Encoding (gzip, br) is undone, whatever the framing
// (Content-Length, chunked, or until the client closes). Past the limit up to
// kDiscardBytes more are read and dropped: a client that sends its whole body
// before reading (most do) then receives the 413 instead of a reset.
constexpr int64_t kDiscardBytes = 8 << 20;

absl::StatusOr<std::string> ReadBody(const httplib::ContentReader& reader, int64_t max_body,
                                     const httplib::Response& res, bool keep) {
  std::string body;
  int64_t seen = 0;
  const bool complete = reader([&](const char* data, size_t n) {
    seen += static_cast<int64_t>(n);
    if (seen <= max_body) {
      if (keep) body.append(data, n);
      return true;
    }
    if (keep) {
      keep = false;
      body.clear();
      body.shrink_to_fit();
    }
    return seen <= max_body + kDiscardBytes;
  });
  const bool too_large = seen > max_body;
  if (complete && !too_large) return body;
  // httplib sets 413 (Content-Length over the limit), 415 (unknown
  // Content-Encoding) or 400 (the client stopped, bad chunking, bad gzip).
  if (too_large || res.status == 413) return BodyTooLarge(max_body);
  if (res.status == 415) {
    return HttpError(absl::StatusCode::kInvalidArgument, 415,
                     "the request's Content-Encoding is not supported (gzip, deflate or br)",
                     "unsupported_media_type");
  }
  return InputError(
      "could not read the request body (connection closed, timed out, or broken chunked or "
      "compressed encoding)",
      "", "invalid_body");
}

// OpenSSL's queued errors as one line (and the queue emptied).
std::string OpenSslErrors() {
  std::string out;
  while (unsigned long error = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(error, text, sizeof(text));
    absl::StrAppend(&out, out.empty() ? "" : "; ", text);
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// TLS 1.2+, no compression or renegotiation; certificate chain and key from
// PEM files, checked against each other.
absl::Status ConfigureTls(SSL_CTX& ctx, const std::string& cert_file, const std::string& key_file) {
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(&ctx, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen.tls_cert_file ", cert_file, ": ", OpenSslErrors()));
  }
  if (SSL_CTX_use_PrivateKey_file(&ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen.tls_key_file ", key_file, ": ", OpenSslErrors()));
  }
  if (SSL_CTX_check_private_key(&ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("listen.tls_key_file ", key_file,
                                                   " does not match listen.tls_cert_file ",
                                                   cert_file, ": ", OpenSslErrors()));
  }
  return absl::OkStatus();
}

// Connections the kernel has completed but httplib has not accept()ed yet
// (for a listening socket, TCP_INFO's tcpi_unacked is the accept queue's
// length). -1 if the kernel does not say.
int AcceptQueueLength(int listening_socket) {
  tcp_info info{};
  socklen_t size = sizeof(info);
  if (::getsockopt(listening_socket, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return -1;
  return static_cast<int>(info.tcpi_unacked);
}

// httplib's task queue interface over our pool (httplib owns the adapter).
class PoolTaskQueue final : public httplib::TaskQueue {
 public:
  explicit PoolTaskQueue(ConnectionPool* pool) : pool_(pool) {}
  void enqueue(std::function<void()> fn) override { pool_->Enqueue(std::move(fn)); }
  void shutdown() override { pool_->Shutdown(); }

 private:
  ConnectionPool* const pool_;
};

// Counts the requests inside a route handler (the drain waits for them).
class InFlight {
 public:
  explicit InFlight(std::atomic<int>& count) : count_(count) { ++count_; }
  ~InFlight() { --count_; }

 private:
  std::atomic<int>& count_;
};

}  // namespace

GuardHttpServer::GuardHttpServer(GuardService* service, HttpServerOptions options)
    : service_(service), options_(std::move(options)) {
  SR_CHECK(service_ != nullptr);
  // Range checks on outside input live in ValidateServerConfig; here a bad
  // value is a caller's bug (httplib would silently serve no request with a
  // keep-alive count of 0, or time out every read at 0).
  SR_CHECK(options_.threads >= 1 && options_.listen_backlog >= 1);
  SR_CHECK(options_.read_timeout_ms > 0 && options_.write_timeout_ms > 0);
  SR_CHECK(options_.keep_alive_timeout_s >= 1 && options_.keep_alive_max_requests >= 1);
  SR_CHECK(options_.tls_cert_file.empty() == options_.tls_key_file.empty());
  if (options_.tls_cert_file.empty()) {
    http_ = std::make_unique<httplib::Server>();
  } else {
    http_ = std::make_unique<httplib::SSLServer>([this](SSL_CTX& ctx) {
      tls_status_ = ConfigureTls(ctx, options_.tls_cert_file, options_.tls_key_file);
      return tls_status_.ok();
    });
  }
  RegisterRoutes();
}

GuardHttpServer::~GuardHttpServer() { Stop(); }

absl::Status GuardHttpServer::Authenticate(const httplib::Request& req) const {
  if (options_.api_keys == nullptr) return absl::OkStatus();
  auto unauthenticated = [](absl::string_view message, absl::string_view code) {
    return HttpError(absl::StatusCode::kUnauthenticated, 401, message, code);
  };
  if (!req.has_header("Authorization")) {
    return unauthenticated(
        "You didn't provide an API key. Provide it in an Authorization header using Bearer auth "
        "(Authorization: Bearer YOUR_KEY).",
        "missing_api_key");
  }
  const std::string authorization = req.get_header_value("Authorization");  // a copy: views below
  std::optional<absl::string_view> token = BearerToken(authorization);
  if (!token.has_value() || !options_.api_keys->Matches(*token)) {
    return unauthenticated("Incorrect API key provided.", "invalid_api_key");
  }
  return absl::OkStatus();
}

void GuardHttpServer::ServePost(const std::string& route, PostHandler handler,
                                const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& read_body) {
  InFlight in_flight(requests_in_flight_);
  const Clock::time_point start = Clock::now();
  const int64_t max_body = options_.max_body_bytes;
  Outcome outcome;
  if (absl::Status auth = Authenticate(req); !auth.ok()) {
    // Read (and drop) what the limit allows, so the answer reaches a client
    // still sending; the connection closes after it either way.
    (void)ReadBody(read_body, max_body, res, /*keep=*/false);
    outcome = Failed(std::move(auth));
    outcome.close_connection = true;
  } else if (req.is_multipart_form_data()) {
    outcome =
        Failed(HttpError(absl::StatusCode::kInvalidArgument, 415,
                         absl::StrCat("Content-Type ", MediaType(req),
                                      " is not supported: send the JSON object itself as the body "
                                      "(Content-Type: application/json)"),
                         "unsupported_media_type"));
    outcome.close_connection = true;
  } else if (absl::StatusOr<std::string> body = ReadBody(read_body, max_body, res, true);
             !body.ok()) {
    outcome = Failed(body.status());
    outcome.close_connection = true;
  } else if (handler == nullptr) {
    outcome = Failed(absl::NotFoundError(absl::StrCat("no route ", req.method, " ", req.path)));
  } else {
    outcome = handler(*service_, req, *body);
  }
  Respond(route, req, res, outcome, SecondsSince(start));
}

void GuardHttpServer::Respond(const std::string& route, const httplib::Request& req,
                              httplib::Response& res, Outcome& outcome, double seconds) {
  int status = 200;
  if (outcome.body.ok()) {
    res.set_content(Dump(*outcome.body), "application/json");
  } else {
    status = HttpStatusFor(outcome.body.status());
    if (status == 429 || status == 503) {
      // The library's estimate of when there is room again (the scheduler's
      // predicted drain time of the queue ahead), else 1 s.
      res.set_header("Retry-After",
                     std::to_string(RetryAfterSeconds(outcome.body.status()).value_or(1)));
    }
    if (status == 401) {
      res.set_header("WWW-Authenticate", R"(Bearer realm="saferoute")");
    }
    res.set_content(Dump(ErrorBody(outcome.body.status())), "application/json");
  }
  res.status = status;
  if (outcome.close_connection && !res.has_header("Connection")) {
    res.set_header("Connection", "close");
  }
  MetricsRegistry& metrics = service_->metrics();
  metrics.Increment("saferoute_http_requests_total",
                    {route, std::to_string(status), outcome.verdict});
  metrics.Observe("saferoute_http_request_duration_seconds", {route}, seconds);
  // One line per request; never prompt text unless log_prompts.
  const std::string error =
      outcome.body.ok() ? "" : absl::StrCat(" error=", outcome.body.status().message());
  std::fprintf(stderr, "saferoute: %s %s %d id=%s verdict=%s %s ms=%.1f%s\n", req.method.c_str(),
               route.c_str(), status, res.get_header_value(kRequestIdHeader).c_str(),
               outcome.verdict.c_str(), outcome.log_detail.c_str(), seconds * 1e3, error.c_str());
}

void GuardHttpServer::RegisterRoutes() {
  httplib::Server& http = *http_;
  http.new_task_queue = [this] { return new PoolTaskQueue(pool_.get()); };
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

  // Before any route: the request id, and the key for routes without a body
  // (POST routes check it themselves, before reading the body).
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const std::string sent = req.get_header_value(kRequestIdHeader);
    res.set_header(kRequestIdHeader, IsValidRequestId(sent) ? sent : RandomId());
    const bool open = req.path == "/healthz" || req.path == "/readyz" ||
                      (req.path == "/metrics" && !options_.metrics_need_key);
    if (req.method == "POST" || open) return httplib::Server::HandlerResponse::Unhandled;
    absl::Status auth = Authenticate(req);
    if (auth.ok()) return httplib::Server::HandlerResponse::Unhandled;
    Outcome outcome = Failed(std::move(auth));
    outcome.close_connection = true;  // a body, if any, is left unread
    Respond(req.path == "/metrics" ? "/metrics" : "other", req, res, outcome, 0);
    return httplib::Server::HandlerResponse::Handled;
  });
  // While draining, every answer closes its connection: keep-alive clients
  // reconnect (to another replica) instead of holding this one open.
  http.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
    if (service_->draining() && !res.has_header("Connection")) {
      res.set_header("Connection", "close");
    }
  });

  auto post = [this](const std::string& route, PostHandler handler) {
    return [this, route, handler](const httplib::Request& req, httplib::Response& res,
                                  const httplib::ContentReader& read_body) {
      ServePost(route, handler, req, res, read_body);
    };
  };
  http.Post("/v1/moderations", post("/v1/moderations", HandleModerations));
  http.Post("/v1/guard", post("/v1/guard", HandleGuard));
  // Any other POST: authenticated, its body read within the limit, then 404
  // (httplib's own path would read a form body under a different limit).
  http.Post(".*", post("other", nullptr));

  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    absl::Status ready = service_->Ready();
    nlohmann::json body = {{"ready", ready.ok()}};
    if (!ready.ok()) {
      body["reason"] = std::string(ready.message());
      res.status = HttpStatusFor(ready);
    }
    res.set_content(Dump(body), "application/json");
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(service_->metrics().Render(), "text/plain; version=0.0.4; charset=utf-8");
  });

  // Errors the library raises itself (unknown GET route, a request it cannot
  // parse) get the same JSON error shape as ours.
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = res.status == 413
                              ? absl::StrCat("request body exceeds the limit of ",
                                             options_.max_body_bytes, " bytes (limits.body_bytes)")
                          : res.status == 404 ? absl::StrCat("no route ", req.method, " ", req.path)
                                              : absl::StrCat("HTTP error ", res.status);
    res.set_content(Dump(ErrorBodyForHttpCode(res.status, message)), "application/json");
    service_->metrics().Increment("saferoute_http_requests_total",
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
  if (!http_->is_valid()) {
    return tls_status_.ok() ? absl::InternalError("cannot set up the TLS context") : tls_status_;
  }
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
  // During a drain as many helpers as workers: queued connections are
  // answered (503) while the workers finish the requests in flight.
  pool_ = std::make_unique<ConnectionPool>(options_.threads, options_.threads);
  started_ = true;
  listener_ = std::thread([this] {
    http_->listen_after_bind();
    listener_exited_ = true;
  });
  // The accept loop must run before Stop() can end it cleanly.
  while (!http_->is_running() && !listener_exited_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return port;
}

void GuardHttpServer::WaitForDrain() {
  const Clock::time_point start = Clock::now();
  const Clock::time_point grace_end = start + Millis(options_.drain_grace_ms);
  const Clock::time_point give_up =
      start + Millis(std::max(options_.drain_grace_ms, options_.drain_timeout_ms));
  while (Clock::now() < give_up && !listener_exited_) {
    const bool idle =
        requests_in_flight_ == 0 && pool_->queued() == 0 && AcceptQueueLength(bound_socket_) <= 0;
    if (idle && Clock::now() >= grace_end) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!listener_exited_) {
    std::fprintf(stderr,
                 "saferoute: drain timeout (%.0f ms) with %d requests in flight; closing the "
                 "listener\n",
                 options_.drain_timeout_ms, requests_in_flight_.load());
  }
}

void GuardHttpServer::Stop() {
  if (stopped_.exchange(true)) return;
  service_->BeginDrain();
  if (started_) {
    pool_->BeginDrain();
    WaitForDrain();
    // shutdown() makes the blocked accept() fail, so httplib's loop closes
    // the socket and leaves; its socket variable keeps its value, so the
    // connections still queued or kept alive are served (answered) before
    // the pool's shutdown returns. httplib's stop() would instead mark the
    // socket invalid first, which makes every such connection close
    // unanswered. Connections that reach the kernel after this are refused.
    if (!listener_exited_) ::shutdown(bound_socket_, SHUT_RDWR);
    if (listener_.joinable()) listener_.join();
  }
  service_->Shutdown();
}

}  // namespace saferoute::server
