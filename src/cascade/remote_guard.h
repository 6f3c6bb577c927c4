// A large guard on a remote inference server (vLLM OpenAI-compatible
// /v1/completions with token-id prompts and logprobs, or llama.cpp server's
// /completion with n_probs), behind timeouts, bounded retries with jitter and
// a circuit breaker. Request/response shapes: ../shared/docs/guard-models.md §6.
//
// Thread-safe: Classify may be called concurrently.
//
// Behaviour (remote helper; implementation in remote_guard.cc, wire formats in
// remote_protocol.h):
//  - The prompt is the guard format's (guard/guard_format.h): rendered and
//    tokenized here, sent as token ids ending with the format's verdict lead,
//    so the first generated position is the verdict position.
//  - One HTTP call per GuardRequest; a batch runs up to max_parallel calls at
//    once. With want_categories the same call decodes categories_max_tokens
//    tokens (the verdict position's top-k gives the score, the text is parsed
//    by the format); no second request.
//  - p_unsafe: ScoreVerdict over the format's verdict-token log-probs (two-way
//    softmax); p_unsafe_full / p_safe_full: exp(log-prob); logit_* hold the
//    log-probs (same difference as the logits). A verdict token missing from
//    the returned top-k takes the smallest listed log-prob (an upper bound);
//    all missing = bad response.
//  - feature_dim() is 0: a remote guard gives no router feature.
//  - Errors (first failing request's index in the message): circuit open ->
//    Unavailable, at once, nothing sent; connect errors, 5xx and bad responses
//    (non-JSON, wrong shape, NaN/inf, non-200 2xx/3xx) -> Unavailable after
//    1 + max_retries attempts; per-attempt timeouts -> DeadlineExceeded;
//    HTTP 400/413/422 -> InvalidArgument, other 4xx -> FailedPrecondition (not
//    retried); rendering errors keep their code, a prompt over
//    max_input_tokens is OutOfRange.
//  - An attempt is bounded as a whole by timeout_ms (a watchdog stops its
//    connection), not only each socket read: a server that trickles its
//    answer a byte at a time cannot hold a call for longer.
//  - HTTPS: base_url "https://…"; the server's certificate is verified
//    against ca_file (or the system's store); a failed verification is not
//    retried (FailedPrecondition). api_key goes out as "Authorization:
//    Bearer" (vLLM and llama.cpp server --api-key); a 401/403 says so.
//  - name() is the model's name (the served model id, else the server kind):
//    it reaches responses, so no address; errors name the route, not the host.
//  - Every attempt reports to the circuit breaker: connect/timeout/5xx/bad
//    response count as failures, success and 4xx (the remote answered) as
//    successes. Retries stop as soon as the breaker opens.
#ifndef SAFEROUTE_CASCADE_REMOTE_GUARD_H_
#define SAFEROUTE_CASCADE_REMOTE_GUARD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "guard/guard.h"
#include "guard/guard_format.h"

namespace saferoute {

enum class RemoteKind { kVllm, kLlamaCpp };
enum class CircuitState { kClosed, kOpen, kHalfOpen };

struct RemoteGuardOptions {
  RemoteKind kind = RemoteKind::kVllm;
  std::string base_url;               // "http://127.0.0.1:8000"
  std::string model;                  // model name sent to vLLM
  double timeout_ms = 2000;           // per attempt
  int max_retries = 2;                // attempts after the first, on 5xx/timeouts/garbage
  double backoff_ms = 50;             // base of exponential backoff, with full jitter
  int breaker_failure_threshold = 5;  // consecutive failures that open the circuit
  double breaker_open_ms = 5000;      // how long it stays open before a half-open probe
  int top_logprobs = 20;
  int max_input_tokens = 4096;  // longest prompt sent (verdict lead included)
  // Additions (remote helper):
  double backoff_max_ms = 1000;       // cap of one backoff sleep before jitter
  int max_parallel = 8;               // concurrent HTTP calls for one batch
  int categories_max_tokens = 12;     // decode length when categories are asked for
  bool vllm_return_token_ids = true;  // vLLM extra "return_tokens_as_token_ids"
  bool llama_cpp_cache_prompt = false;
  std::string api_key;  // sent as "Authorization: Bearer"; empty: none. Never logged.
  std::string ca_file;  // https: PEM CA bundle to verify the server; empty: system store
};

struct RemoteGuardStats {
  uint64_t requests = 0, errors = 0, retries = 0, timeouts = 0, bad_responses = 0,
           short_circuited = 0;
  // Additions (remote helper): per-attempt failure reasons and breaker events.
  uint64_t attempts = 0;        // HTTP calls made (first tries + retries)
  uint64_t connect_errors = 0;  // refused / unreachable / reset
  uint64_t server_errors = 0;   // HTTP 5xx (retried)
  uint64_t client_errors = 0;   // HTTP 4xx (not retried)
  uint64_t circuit_opened = 0;  // transitions to open
};

// Events of a remote guard, as the service counts them.
enum class RemoteEvent {
  kRequest,         // a guard request started (one per input, retries not counted)
  kError,           // a guard request failed (after its retries)
  kRetry,           // an attempt after the first
  kTimeout,         // an attempt timed out
  kBadResponse,     // an attempt's answer did not parse
  kShortCircuited,  // the circuit breaker refused an attempt
};
// requests | errors | retries | timeouts | bad_responses | short_circuited
absl::string_view RemoteEventName(RemoteEvent event);

// What a remote guard reports as it works (the server turns it into metrics;
// the guard reads nothing back). Calls come from the threads making HTTP
// calls, the circuit-state ones under the breaker's lock: an implementation
// must be thread-safe, quick, and must not call back into the guard.
class RemoteGuardObserver {
 public:
  virtual ~RemoteGuardObserver() = default;
  virtual void OnRemoteEvent(RemoteEvent event) {}
  // The breaker's state after each change; once at creation (closed). An
  // open circuit reads half-open to circuit_state() once open_ms has passed,
  // but is reported half-open only when the probe is let through.
  virtual void OnCircuitState(CircuitState state) {}
};

class RemoteGuard : public Guard {
 public:
  // `format` renders the prompts and names the verdict tokens; it must be the
  // remote model's format, on the remote model's tokenizer. `observer`
  // (optional) must outlive the guard.
  static absl::StatusOr<std::unique_ptr<RemoteGuard>> Create(
      const RemoteGuardOptions& options, std::shared_ptr<const GuardFormat> format,
      RemoteGuardObserver* observer = nullptr);
  virtual CircuitState circuit_state() const = 0;
  // The guard's own counts (tests and diagnostics; the service counts the
  // observer's events).
  virtual RemoteGuardStats stats() const = 0;
  // Cheap reachability probe for /readyz (GET /health).
  absl::Status Ping() override = 0;
};

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_REMOTE_GUARD_H_
