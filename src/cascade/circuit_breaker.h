// A circuit breaker in front of a remote dependency (the large guard).
//
//   closed --(N consecutive failures)--> open --(open_ms elapsed)--> half-open
//   half-open --(probe succeeds)--> closed;  half-open --(probe fails)--> open
//
// While open, callers are refused at once (no network traffic, no waiting on
// timeouts), so a dead backend costs the service microseconds per request
// instead of timeout x attempts. In half-open exactly one caller at a time is
// admitted as the probe; the others are refused until the probe reports.
//
// Thread-safe. The clock is injectable so tests can step time instead of
// sleeping.
#ifndef SAFEROUTE_CASCADE_CIRCUIT_BREAKER_H_
#define SAFEROUTE_CASCADE_CIRCUIT_BREAKER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

#include "cascade/remote_guard.h"  // CircuitState

namespace saferoute {

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  using NowFn = std::function<Clock::time_point()>;

  // `failure_threshold` >= 1 consecutive failures open the circuit; it stays
  // open for `open_ms` before admitting one half-open probe. `now` defaults to
  // steady_clock::now. `on_change` (optional) gets the new state after each
  // change, under the breaker's lock (it must be quick and must not call
  // back into the breaker); an elapsed open window is reported half-open
  // when Allow() lets the probe through.
  using ChangeFn = std::function<void(CircuitState)>;
  CircuitBreaker(int failure_threshold, double open_ms, NowFn now = nullptr,
                 ChangeFn on_change = nullptr);

  // Asks to send one request. True: go ahead, and report the outcome with
  // RecordSuccess/RecordFailure (a half-open probe must always report, or the
  // breaker stays half-open with the probe slot taken). False: refused, send
  // nothing and report nothing.
  bool Allow();
  void RecordSuccess();
  void RecordFailure();

  // The state as seen now: an open circuit whose open_ms has elapsed reads as
  // half-open (the next Allow() takes the probe slot).
  CircuitState state() const;
  // Times the circuit went closed/half-open -> open (for metrics).
  uint64_t times_opened() const;
  int consecutive_failures() const;

 private:
  void OpenLocked(Clock::time_point now);
  void SetStateLocked(CircuitState state);

  const int failure_threshold_;
  const Clock::duration open_duration_;
  const NowFn now_;
  const ChangeFn on_change_;

  mutable std::mutex mu_;
  CircuitState state_ = CircuitState::kClosed;  // guarded by mu_
  int consecutive_failures_ = 0;                // guarded by mu_
  Clock::time_point opened_at_{};               // guarded by mu_
  bool probe_in_flight_ = false;                // guarded by mu_ (half-open only)
  uint64_t times_opened_ = 0;                   // guarded by mu_
};

const char* CircuitStateName(CircuitState state);  // "closed", "open", "half_open"

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_CIRCUIT_BREAKER_H_
