// RemoteGuard over cpp-httplib: one HTTP call per guard request (a batch runs
// its calls concurrently), per-attempt timeouts, bounded retries with full
// jitter, and a CircuitBreaker that every attempt reports to.
#include "cascade/remote_guard.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "cascade/circuit_breaker.h"
#include "cascade/remote_protocol.h"
#include "httplib.h"

namespace saferoute {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A hostile server may stream without end; no guard answer is this large.
constexpr uint64_t kMaxResponseBytes = 8u << 20;
constexpr int kMaxRetries = 10;

struct BaseUrl {
  std::string scheme_host_port;  // "http://127.0.0.1:8000", what httplib::Client takes
  std::string path_prefix;       // "" or "/prefix" (no trailing slash)
};

absl::StatusOr<BaseUrl> ParseBaseUrl(const std::string& url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("remote guard: field 'base_url' (\"", url, "\"): ", why));
  };
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return bad("expected http://host:port[/prefix]");
  std::string scheme = url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") return bad("scheme must be http or https");
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
  if (scheme == "https") return bad("https needs cpp-httplib built with OpenSSL support");
#endif
  std::string rest = url.substr(scheme_end + 3);
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : rest.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (authority.empty()) return bad("missing host");
  if (authority.find_first_of("@?#") != std::string::npos ||
      prefix.find_first_of("?#") != std::string::npos) {
    return bad("credentials, queries and fragments are not supported");
  }
  // Port, if any, must be a number in range ("[::1]:8000" keeps its brackets).
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    int port = 0;
    if (!absl::SimpleAtoi(authority.substr(colon + 1), &port) || port < 1 || port > 65535) {
      return bad("port must be a number in 1..65535");
    }
  }
  return BaseUrl{scheme + "://" + authority, prefix};
}

// How one attempt ended.
enum class AttemptKind {
  kOk,
  kConnect,
  kTimeout,
  kServerError,
  kBadResponse,
  kClientError,  // HTTP 4xx: the remote answered and refused this request
  kConfigError,  // TLS certificates, redirects: no answer, and retrying cannot help
};

struct AttemptResult {
  AttemptKind kind = AttemptKind::kOk;
  absl::Status status;  // error detail when kind != kOk
  RemoteScore score;
};

bool Retryable(AttemptKind kind) {
  return kind == AttemptKind::kConnect || kind == AttemptKind::kTimeout ||
         kind == AttemptKind::kServerError || kind == AttemptKind::kBadResponse;
}

std::string Excerpt(absl::string_view body) {
  std::string out(body.substr(0, 200));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return out;
}

// Stops an attempt's client at its deadline unless Finish() comes first.
// httplib's timeouts are per socket operation; stop() from another thread
// shuts the socket down, so the blocked read returns at once.
class AttemptWatchdog {
 public:
  AttemptWatchdog(httplib::Client& client, Clock::time_point deadline)
      : thread_([this, &client, deadline] {
          std::unique_lock lock(mu_);
          if (!done_cv_.wait_until(lock, deadline, [this] { return done_; })) {
            fired_ = true;
            client.stop();
          }
        }) {}
  ~AttemptWatchdog() { Finish(); }

  // Ends the watch; true if the deadline had stopped the client.
  bool Finish() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    done_cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  bool fired_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

class RemoteGuardImpl final : public RemoteGuard {
 public:
  RemoteGuardImpl(const RemoteGuardOptions& options, BaseUrl url,
                  std::shared_ptr<const GuardFormat> format, RemoteGuardObserver* observer)
      : options_(options),
        url_(std::move(url)),
        format_(std::move(format)),
        observer_(observer != nullptr ? observer : &null_observer_),
        breaker_(options.breaker_failure_threshold, options.breaker_open_ms, nullptr,
                 [this](CircuitState state) { observer_->OnCircuitState(state); }) {
    observer_->OnCircuitState(CircuitState::kClosed);
    endpoint_ =
        url_.path_prefix + (options.kind == RemoteKind::kVllm ? "/v1/completions" : "/completion");
    // Responses carry the name: the model, never the address.
    name_ = !options.model.empty()              ? options.model
            : options.kind == RemoteKind::kVllm ? "vllm"
                                                : "llamacpp";
  }

  absl::StatusOr<std::vector<GuardVerdict>> Classify(
      const std::vector<GuardRequest>& requests) override {
    const size_t n = requests.size();
    std::vector<GuardVerdict> verdicts(n);
    std::vector<std::vector<int32_t>> prompt_ids(n);
    for (size_t i = 0; i < n; ++i) {
      Clock::time_point start = Clock::now();
      absl::StatusOr<std::vector<int32_t>> ids = EncodePrompt(requests[i]);
      if (!ids.ok()) return Annotate(ids.status(), i, n, "encoding the prompt");
      prompt_ids[i] = *std::move(ids);
      verdicts[i].timings.tokenize_ms = MsSince(start);
      verdicts[i].n_tokens = static_cast<int>(prompt_ids[i].size());
    }

    std::vector<absl::Status> statuses(n);
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i = next++; i < n; i = next++) {
        statuses[i] = ClassifyOne(requests[i], prompt_ids[i], verdicts[i]);
      }
    };
    const size_t n_threads =
        std::min<size_t>(n, static_cast<size_t>(std::max(1, options_.max_parallel)));
    std::vector<std::thread> helpers;
    for (size_t t = 1; t < n_threads; ++t) helpers.emplace_back(worker);
    worker();
    for (std::thread& t : helpers) t.join();

    for (size_t i = 0; i < n; ++i) {
      if (!statuses[i].ok()) return Annotate(statuses[i], i, n, name_);
    }
    return verdicts;
  }

  int feature_dim() const override { return 0; }  // a remote guard gives no router feature
  std::string fingerprint() const override { return "remote:" + name_; }
  std::string name() const override { return name_; }
  std::string format_name() const override { return std::string(format_->name()); }
  CircuitState circuit_state() const override { return breaker_.state(); }

  RemoteGuardStats stats() const override {
    RemoteGuardStats s;
    s.requests = requests_.load();
    s.errors = errors_.load();
    s.retries = retries_.load();
    s.timeouts = timeouts_.load();
    s.bad_responses = bad_responses_.load();
    s.short_circuited = short_circuited_.load();
    s.attempts = attempts_.load();
    s.connect_errors = connect_errors_.load();
    s.server_errors = server_errors_.load();
    s.client_errors = client_errors_.load();
    s.circuit_opened = breaker_.times_opened();
    return s;
  }

  absl::Status Ping() override {
    std::unique_ptr<httplib::Client> client = NewClient();
    httplib::Result result = client->Get(url_.path_prefix + "/health");
    if (!result) {
      return absl::UnavailableError(absl::StrCat(
          "remote guard ", name_, ": GET /health: ", httplib::to_string(result.error())));
    }
    if (result->status != 200) {
      return absl::UnavailableError(absl::StrCat("remote guard ", name_, ": GET /health: HTTP ",
                                                 result->status, " ", Excerpt(result->body)));
    }
    return absl::OkStatus();
  }

 private:
  // The index names the request only where a batch holds several (a lone
  // request's "request 0" would name nothing the caller sent).
  static absl::Status Annotate(const absl::Status& status, size_t index, size_t n,
                               absl::string_view what) {
    const std::string request = n > 1 ? absl::StrCat("request ", index, ": ") : "";
    return absl::Status(status.code(), absl::StrCat(request, what, ": ", status.message()));
  }

  // The format's scoring prompt (its last position is the verdict position).
  absl::StatusOr<std::vector<int32_t>> EncodePrompt(const GuardRequest& request) const {
    SR_ASSIGN_OR_RETURN(RenderedPrompt rendered, RenderForVerdict(*format_, request));
    if (rendered.ids.size() > static_cast<size_t>(options_.max_input_tokens)) {
      return absl::OutOfRangeError(
          absl::StrFormat("the guard's prompt for this input has %d tokens, over the limit of %d "
                          "per input",
                          rendered.ids.size(), options_.max_input_tokens));
    }
    return std::move(rendered.ids);
  }

  // One guard request: attempts until success, a non-retryable error, the
  // retry budget is spent, or the breaker refuses.
  absl::Status ClassifyOne(const GuardRequest& request, const std::vector<int32_t>& ids,
                           GuardVerdict& verdict) {
    Report(RemoteEvent::kRequest);
    RemoteQuery query{&ids, request.want_categories ? options_.categories_max_tokens : 1};
    const std::string body = options_.kind == RemoteKind::kVllm
                                 ? BuildVllmRequestBody(options_, query)
                                 : BuildLlamaCppRequestBody(options_, query);
    Clock::time_point start = Clock::now();
    absl::Status last_error;
    const int max_attempts = 1 + std::clamp(options_.max_retries, 0, kMaxRetries);
    for (int attempt = 0; attempt < max_attempts; ++attempt) {
      if (!breaker_.Allow()) {
        Report(RemoteEvent::kShortCircuited);
        Report(RemoteEvent::kError);
        std::string why = absl::StrCat("circuit breaker open (", options_.breaker_failure_threshold,
                                       " consecutive failures; next probe after ",
                                       options_.breaker_open_ms, " ms)");
        if (!last_error.ok()) absl::StrAppend(&why, "; last error: ", last_error.message());
        return absl::UnavailableError(why);
      }
      if (attempt > 0) Report(RemoteEvent::kRetry);
      ++attempts_;
      AttemptResult result = Attempt(body);
      if (result.kind == AttemptKind::kOk) {
        breaker_.RecordSuccess();
        FillVerdictFromScore(result.score, format_->verdict_tokens(), verdict);
        if (request.want_categories) {
          const Policy* policy = request.policy ? &*request.policy : nullptr;
          ApplyDecodedOutput(*format_, result.score.text, policy, /*complete=*/true, verdict);
        }
        verdict.timings.forward_ms = MsSince(start);
        return absl::OkStatus();
      }
      if (!Retryable(result.kind)) {
        // A 4xx means the remote answered, so it is alive; a configuration
        // error means it was never reached.
        if (result.kind == AttemptKind::kClientError) {
          breaker_.RecordSuccess();
        } else {
          breaker_.RecordFailure();
        }
        Report(RemoteEvent::kError);
        return result.status;
      }
      breaker_.RecordFailure();
      last_error = result.status;
      if (attempt + 1 < max_attempts) SleepBackoff(attempt);
    }
    Report(RemoteEvent::kError);
    return absl::Status(last_error.code(),
                        absl::StrCat("after ", max_attempts, " attempts: ", last_error.message()));
  }

  // Counts `event` in stats() and reports it to the observer.
  void Report(RemoteEvent event) {
    switch (event) {
      case RemoteEvent::kRequest:
        ++requests_;
        break;
      case RemoteEvent::kError:
        ++errors_;
        break;
      case RemoteEvent::kRetry:
        ++retries_;
        break;
      case RemoteEvent::kTimeout:
        ++timeouts_;
        break;
      case RemoteEvent::kBadResponse:
        ++bad_responses_;
        break;
      case RemoteEvent::kShortCircuited:
        ++short_circuited_;
        break;
    }
    observer_->OnRemoteEvent(event);
  }

  // Full jitter: uniform in [0, min(cap, base * 2^attempt)].
  void SleepBackoff(int attempt) {
    double ceiling = std::min(options_.backoff_max_ms,
                              options_.backoff_ms * std::ldexp(1.0, std::min(attempt, 30)));
    if (!(ceiling > 0)) return;
    thread_local std::mt19937_64 rng{std::random_device{}()};
    double ms = std::uniform_real_distribution<double>(0.0, ceiling)(rng);
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
  }

  AttemptResult Attempt(const std::string& body) {
    AttemptResult out;
    auto fail = [&](AttemptKind kind, absl::Status status) {
      out.kind = kind;
      out.status = std::move(status);
      switch (kind) {
        case AttemptKind::kConnect:
          ++connect_errors_;
          break;
        case AttemptKind::kTimeout:
          Report(RemoteEvent::kTimeout);
          break;
        case AttemptKind::kServerError:
          ++server_errors_;
          break;
        case AttemptKind::kBadResponse:
          Report(RemoteEvent::kBadResponse);
          break;
        case AttemptKind::kClientError:
          ++client_errors_;
          break;
        case AttemptKind::kConfigError:
          ++connect_errors_;
          break;
        case AttemptKind::kOk:
          break;
      }
      return out;
    };
    // The route, not the host: errors end up in responses (large_error).
    const std::string where = absl::StrCat("POST ", endpoint_);
    std::unique_ptr<httplib::Client> client = NewClient();

    // httplib's timeouts apply per socket operation; the progress callback
    // bounds the body read by the attempt's deadline and size, and the
    // watchdog the whole attempt (a status line trickled byte by byte never
    // reaches the progress callback).
    const Clock::time_point start = Clock::now();
    const Clock::time_point deadline =
        start + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double, std::milli>(options_.timeout_ms));
    AttemptWatchdog watchdog(*client, deadline);
    bool deadline_hit = false, too_large = false;
    httplib::Request req;
    req.method = "POST";
    req.path = endpoint_;
    req.body = body;
    req.set_header("Content-Type", "application/json");
    req.progress = [&](uint64_t current, uint64_t /*total*/) {
      if (current > kMaxResponseBytes) too_large = true;
      if (Clock::now() > deadline) deadline_hit = true;
      return !too_large && !deadline_hit;
    };
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    bool sent = client->send(req, res, error);
    const double elapsed_ms = MsSince(start);
    if (watchdog.Finish()) deadline_hit = true;

    if (!sent) {
      if (too_large) {
        return fail(AttemptKind::kBadResponse,
                    absl::UnavailableError(absl::StrCat(where, ": bad response: body over ",
                                                        kMaxResponseBytes, " bytes")));
      }
      const bool timed_out = deadline_hit || error == httplib::Error::ConnectionTimeout ||
                             ((error == httplib::Error::Read || error == httplib::Error::Write) &&
                              elapsed_ms >= 0.9 * options_.timeout_ms);
      if (timed_out) {
        return fail(AttemptKind::kTimeout, absl::DeadlineExceededError(absl::StrCat(
                                               where, ": no answer within ", options_.timeout_ms,
                                               " ms (", httplib::to_string(error), ")")));
      }
      if (error == httplib::Error::SSLLoadingCerts ||
          error == httplib::Error::SSLServerVerification ||
          error == httplib::Error::ExceedRedirectCount || error == httplib::Error::BindIPAddress) {
        // Configuration problems: retrying cannot help.
        return fail(AttemptKind::kConfigError, absl::FailedPreconditionError(absl::StrCat(
                                                   where, ": ", httplib::to_string(error))));
      }
      return fail(AttemptKind::kConnect,
                  absl::UnavailableError(absl::StrCat(where, ": ", httplib::to_string(error))));
    }
    if (res.status >= 500) {
      return fail(AttemptKind::kServerError,
                  absl::UnavailableError(
                      absl::StrCat(where, ": HTTP ", res.status, ": ", Excerpt(res.body))));
    }
    if (res.status >= 400) {
      // 400/413/422: the remote refused this input (e.g. over its context
      // length); other 4xx (401/403/404) point at the configuration.
      std::string message = absl::StrCat(where, ": HTTP ", res.status, ": ", Excerpt(res.body));
      if (res.status == 401 || res.status == 403) {
        absl::StrAppend(&message, options_.api_key.empty()
                                      ? " (no API key configured: remote.api_key_env)"
                                      : " (the configured API key was refused)");
      }
      bool input_problem = res.status == 400 || res.status == 413 || res.status == 422;
      return fail(AttemptKind::kClientError, input_problem
                                                 ? absl::InvalidArgumentError(message)
                                                 : absl::FailedPreconditionError(message));
    }
    if (res.status != 200) {
      return fail(AttemptKind::kBadResponse,
                  absl::UnavailableError(absl::StrCat(where, ": bad response: HTTP ", res.status)));
    }
    absl::StatusOr<RemoteScore> score =
        options_.kind == RemoteKind::kVllm
            ? ParseVllmResponse(res.body, format_->verdict_tokens())
            : ParseLlamaCppResponse(res.body, format_->verdict_tokens());
    if (!score.ok()) {
      return fail(AttemptKind::kBadResponse,
                  absl::UnavailableError(
                      absl::StrCat(where, ": bad response: ", score.status().message())));
    }
    out.score = *std::move(score);
    return out;
  }

  // A fresh client, hence a fresh connection, per attempt. Keep-alive is
  // deliberately off: a pool of idle keep-alive connections pins worker
  // threads of thread-per-connection servers (llama-server is httplib too),
  // and a connection that went stale between calls would surface as a
  // spurious failure that feeds the breaker. A loopback/LAN connect costs
  // well under a millisecond against a large guard's forward pass.
  std::unique_ptr<httplib::Client> NewClient() const {
    auto client = std::make_unique<httplib::Client>(url_.scheme_host_port);
    client->set_tcp_nodelay(true);  // no Nagle/delayed-ACK stall between header and body sends
    if (!options_.ca_file.empty()) client->set_ca_cert_path(options_.ca_file);
    client->enable_server_certificate_verification(true);
    if (!options_.api_key.empty()) client->set_bearer_token_auth(options_.api_key);
    const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::duration<double, std::milli>(options_.timeout_ms));
    client->set_connection_timeout(timeout);
    client->set_read_timeout(timeout);
    client->set_write_timeout(timeout);
    client->set_keep_alive(false);
    return client;
  }

  const RemoteGuardOptions options_;
  const BaseUrl url_;
  const std::shared_ptr<const GuardFormat> format_;
  RemoteGuardObserver null_observer_;  // observer_ when none is given
  RemoteGuardObserver* const observer_;
  std::string endpoint_;
  std::string name_;
  CircuitBreaker breaker_;

  std::atomic<uint64_t> requests_{0}, errors_{0}, retries_{0}, timeouts_{0}, bad_responses_{0},
      short_circuited_{0}, attempts_{0}, connect_errors_{0}, server_errors_{0}, client_errors_{0};
};

}  // namespace

absl::string_view RemoteEventName(RemoteEvent event) {
  switch (event) {
    case RemoteEvent::kRequest:
      return "requests";
    case RemoteEvent::kError:
      return "errors";
    case RemoteEvent::kRetry:
      return "retries";
    case RemoteEvent::kTimeout:
      return "timeouts";
    case RemoteEvent::kBadResponse:
      return "bad_responses";
    case RemoteEvent::kShortCircuited:
      return "short_circuited";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<RemoteGuard>> RemoteGuard::Create(
    const RemoteGuardOptions& options, std::shared_ptr<const GuardFormat> format,
    RemoteGuardObserver* observer) {
  auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("remote guard: field '", field, "': ", why));
  };
  if (format == nullptr) return bad("format", "no guard format given");
  SR_ASSIGN_OR_RETURN(BaseUrl url, ParseBaseUrl(options.base_url));
  if (options.kind == RemoteKind::kVllm && options.model.empty()) {
    return bad("model", "vLLM needs the served model name");
  }
  if (!(options.timeout_ms > 0) || options.timeout_ms > 3600e3) {
    return bad("timeout_ms", absl::StrCat(options.timeout_ms, " is not in (0, 3600000]"));
  }
  if (options.max_retries < 0 || options.max_retries > kMaxRetries) {
    return bad("max_retries",
               absl::StrCat(options.max_retries, " is not in [0, ", kMaxRetries, "]"));
  }
  if (!(options.backoff_ms >= 0) || !(options.backoff_max_ms >= 0)) {
    return bad("backoff_ms", "must be >= 0");
  }
  if (options.breaker_failure_threshold < 1) {
    return bad("breaker_failure_threshold", "must be >= 1");
  }
  if (!(options.breaker_open_ms >= 0)) return bad("breaker_open_ms", "must be >= 0");
  if (options.top_logprobs < 1 || options.top_logprobs > 1000) {
    return bad("top_logprobs", "must be in [1, 1000]");
  }
  if (options.max_parallel < 1) return bad("max_parallel", "must be >= 1");
  if (options.categories_max_tokens < 2) return bad("categories_max_tokens", "must be >= 2");
  if (options.max_input_tokens < 1) return bad("max_input_tokens", "must be >= 1");
  if (!options.ca_file.empty()) {
    if (url.scheme_host_port.rfind("https://", 0) != 0) {
      return bad("ca_file", "set, but base_url is not https://");
    }
    if (!std::ifstream(options.ca_file).good()) {
      return bad("ca_file", absl::StrCat(options.ca_file, ": cannot read"));
    }
  }
  for (char c : options.api_key) {
    if (c <= 0x20 || c >= 0x7f) return bad("api_key", "not printable ASCII without spaces");
  }
  return std::unique_ptr<RemoteGuard>(
      new RemoteGuardImpl(options, std::move(url), std::move(format), observer));
}

}  // namespace saferoute
