#include "cascade/circuit_breaker.h"

#include <algorithm>

namespace saferoute {

CircuitBreaker::CircuitBreaker(int failure_threshold, double open_ms, NowFn now, ChangeFn on_change)
    : failure_threshold_(std::max(1, failure_threshold)),
      open_duration_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double, std::milli>(std::max(0.0, open_ms)))),
      now_(now ? std::move(now) : NowFn([] { return Clock::now(); })),
      on_change_(std::move(on_change)) {}

void CircuitBreaker::SetStateLocked(CircuitState state) {
  const bool changed = state != state_;
  state_ = state;
  if (changed && on_change_) on_change_(state);
}

bool CircuitBreaker::Allow() {
  std::lock_guard<std::mutex> lock(mu_);
  switch (state_) {
    case CircuitState::kClosed:
      return true;
    case CircuitState::kOpen:
      if (now_() - opened_at_ < open_duration_) return false;
      SetStateLocked(CircuitState::kHalfOpen);
      probe_in_flight_ = true;
      return true;
    case CircuitState::kHalfOpen:
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::RecordSuccess() {
  std::lock_guard<std::mutex> lock(mu_);
  consecutive_failures_ = 0;
  // A success while open comes from a request admitted before the circuit
  // opened; it is evidence the backend answers, so close as a probe would.
  SetStateLocked(CircuitState::kClosed);
  probe_in_flight_ = false;
}

void CircuitBreaker::RecordFailure() {
  std::lock_guard<std::mutex> lock(mu_);
  ++consecutive_failures_;
  switch (state_) {
    case CircuitState::kClosed:
      if (consecutive_failures_ >= failure_threshold_) OpenLocked(now_());
      break;
    case CircuitState::kHalfOpen:
      OpenLocked(now_());  // the probe failed: back to open for another open_ms
      break;
    case CircuitState::kOpen:
      break;  // a straggler admitted before opening; the open window stands
  }
}

void CircuitBreaker::OpenLocked(Clock::time_point now) {
  SetStateLocked(CircuitState::kOpen);
  opened_at_ = now;
  probe_in_flight_ = false;
  ++times_opened_;
}

CircuitState CircuitBreaker::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == CircuitState::kOpen && now_() - opened_at_ >= open_duration_) {
    return CircuitState::kHalfOpen;
  }
  return state_;
}

uint64_t CircuitBreaker::times_opened() const {
  std::lock_guard<std::mutex> lock(mu_);
  return times_opened_;
}

int CircuitBreaker::consecutive_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return consecutive_failures_;
}

const char* CircuitStateName(CircuitState state) {
  switch (state) {
    case CircuitState::kClosed:
      return "closed";
    case CircuitState::kOpen:
      return "open";
    case CircuitState::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

}  // namespace saferoute
