#include "cascade/circuit_breaker.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace saferoute {
namespace {

using Clock = CircuitBreaker::Clock;
using std::chrono::milliseconds;

// A clock the test steps by hand; no sleeping.
struct FakeClock {
  Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
  CircuitBreaker::NowFn Fn() {
    return [this] { return now; };
  }
};

TEST(CircuitBreakerTest, OpensAfterConsecutiveFailuresOnly) {
  FakeClock clock;
  CircuitBreaker breaker(/*failure_threshold=*/3, /*open_ms=*/1000, clock.Fn());
  EXPECT_EQ(breaker.state(), CircuitState::kClosed);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(breaker.Allow());
    breaker.RecordFailure();
  }
  // A success resets the run of failures.
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.consecutive_failures(), 0);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(breaker.Allow());
    breaker.RecordFailure();
  }
  EXPECT_EQ(breaker.state(), CircuitState::kClosed);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();  // third in a row
  EXPECT_EQ(breaker.state(), CircuitState::kOpen);
  EXPECT_EQ(breaker.times_opened(), 1u);
  EXPECT_FALSE(breaker.Allow());
}

TEST(CircuitBreakerTest, HalfOpenAdmitsOneProbeThenClosesOnSuccess) {
  FakeClock clock;
  CircuitBreaker breaker(1, 1000, clock.Fn());
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();
  ASSERT_EQ(breaker.state(), CircuitState::kOpen);
  clock.now += milliseconds(999);
  EXPECT_FALSE(breaker.Allow());
  EXPECT_EQ(breaker.state(), CircuitState::kOpen);
  clock.now += milliseconds(1);
  EXPECT_EQ(breaker.state(), CircuitState::kHalfOpen);
  EXPECT_TRUE(breaker.Allow());   // the probe
  EXPECT_FALSE(breaker.Allow());  // everyone else waits for the probe
  EXPECT_EQ(breaker.state(), CircuitState::kHalfOpen);
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.state(), CircuitState::kClosed);
  EXPECT_TRUE(breaker.Allow());
  EXPECT_TRUE(breaker.Allow());
}

TEST(CircuitBreakerTest, FailedProbeReopensForAnotherWindow) {
  FakeClock clock;
  CircuitBreaker breaker(2, 500, clock.Fn());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(breaker.Allow());
    breaker.RecordFailure();
  }
  clock.now += milliseconds(500);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();  // probe failed: open again at once, not after 2 more
  EXPECT_EQ(breaker.state(), CircuitState::kOpen);
  EXPECT_EQ(breaker.times_opened(), 2u);
  clock.now += milliseconds(499);
  EXPECT_FALSE(breaker.Allow());
  clock.now += milliseconds(1);
  EXPECT_TRUE(breaker.Allow());
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.state(), CircuitState::kClosed);
}

TEST(CircuitBreakerTest, StragglerFailureWhileOpenDoesNotExtendWindow) {
  FakeClock clock;
  CircuitBreaker breaker(1, 100, clock.Fn());
  ASSERT_TRUE(breaker.Allow());
  ASSERT_TRUE(breaker.Allow());  // two requests in flight
  breaker.RecordFailure();       // opens
  clock.now += milliseconds(60);
  breaker.RecordFailure();  // the second one fails later
  EXPECT_EQ(breaker.times_opened(), 1u);
  clock.now += milliseconds(40);
  EXPECT_EQ(breaker.state(), CircuitState::kHalfOpen);
}

TEST(CircuitBreakerTest, StateNames) {
  EXPECT_STREQ(CircuitStateName(CircuitState::kClosed), "closed");
  EXPECT_STREQ(CircuitStateName(CircuitState::kOpen), "open");
  EXPECT_STREQ(CircuitStateName(CircuitState::kHalfOpen), "half_open");
}

// Many threads against one breaker (meaningful under TSan): in half-open only
// one probe is admitted at a time, so admissions never outnumber reports+1.
TEST(CircuitBreakerTest, ConcurrentCallersAdmitOneProbeAtATime) {
  std::atomic<int64_t> fake_ms{0};
  CircuitBreaker breaker(1, 10, [&] { return Clock::time_point{} + milliseconds(fake_ms.load()); });
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();
  fake_ms += 10;  // half-open from now on
  std::atomic<int> probes_in_flight{0}, max_in_flight{0}, admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (!breaker.Allow()) continue;
        ++admitted;
        int now_in_flight = ++probes_in_flight;
        int seen = max_in_flight.load();
        while (now_in_flight > seen && !max_in_flight.compare_exchange_weak(seen, now_in_flight)) {
        }
        --probes_in_flight;
        // Keep failing so the breaker cycles open -> half-open.
        breaker.RecordFailure();
        fake_ms += 10;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_GT(admitted.load(), 0);
  EXPECT_EQ(max_in_flight.load(), 1);
}

TEST(CircuitBreakerTest, ReportsEveryStateChangeOnce) {
  FakeClock clock;
  std::vector<CircuitState> changes;
  CircuitBreaker breaker(/*failure_threshold=*/2, /*open_ms=*/1000, clock.Fn(),
                         [&](CircuitState s) { changes.push_back(s); });
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordSuccess();  // closed -> closed: no change
  for (int i = 0; i < 3; ++i) {
    if (breaker.Allow()) breaker.RecordFailure();
  }
  EXPECT_EQ(changes, std::vector<CircuitState>{CircuitState::kOpen});
  clock.now += milliseconds(1000);
  EXPECT_TRUE(changes.size() == 1);  // an elapsed window is reported when the probe goes
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordFailure();  // the probe fails: open again
  clock.now += milliseconds(1000);
  ASSERT_TRUE(breaker.Allow());
  breaker.RecordSuccess();
  EXPECT_EQ(changes, (std::vector<CircuitState>{CircuitState::kOpen, CircuitState::kHalfOpen,
                                                CircuitState::kOpen, CircuitState::kHalfOpen,
                                                CircuitState::kClosed}));
}

}  // namespace
}  // namespace saferoute
