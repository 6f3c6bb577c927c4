// The batch scheduler in front of a scriptable fake guard: batching, whole-
// request admission, expiry in the queue, isolation of a bad input, shutdown.
#include "cascade/scheduler.h"

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "cascade/testing/fake_guards.h"
#include "gtest/gtest.h"
#include "util/retry_after.h"

namespace saferoute {
namespace {

using fakes::FakeGuard;

struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<ScheduledResult> results;
  BatchScheduler::Callback Add() {
    return [this](ScheduledResult r) {
      std::lock_guard l(mu);
      results.push_back(std::move(r));
      cv.notify_all();
    };
  }
  void WaitFor(size_t n) {
    std::unique_lock l(mu);
    cv.wait(l, [&] { return results.size() >= n; });
  }
};

BatchScheduler::Item ItemFor(std::string prompt, BatchScheduler::Callback cb,
                             Clock::time_point deadline = Clock::time_point::max()) {
  GuardRequest r;
  r.prompt = std::move(prompt);
  return {.request = r, .deadline = deadline, .done = std::move(cb)};
}

TEST(BatchScheduler, BatchesWhatArrivesTogether) {
  FakeGuard guard("small");
  guard.CloseGate();
  BatchScheduler scheduler(&guard, {.queue_capacity = 64, .max_batch = 4, .batch_wait_ms = 1});
  Collector c;
  ASSERT_TRUE(scheduler.Submit({ItemFor("first", c.Add())}).ok());
  guard.WaitEntered(1);  // worker is busy with a batch of 1
  std::vector<BatchScheduler::Item> items;
  for (int i = 0; i < 6; ++i) items.push_back(ItemFor("x", c.Add()));
  ASSERT_TRUE(scheduler.Submit(std::move(items)).ok());
  guard.OpenGate();
  c.WaitFor(7);
  EXPECT_EQ(guard.batch_sizes(), (std::vector<int>{1, 4, 2}));
}

TEST(BatchScheduler, FullQueueRefusesWholeRequest) {
  FakeGuard guard("small");
  guard.CloseGate();
  BatchScheduler scheduler(&guard, {.queue_capacity = 3, .max_batch = 1, .batch_wait_ms = 0});
  Collector c;
  ASSERT_TRUE(scheduler.Submit({ItemFor("a", c.Add())}).ok());
  guard.WaitEntered(1);
  std::vector<BatchScheduler::Item> two;
  two.push_back(ItemFor("b", c.Add()));
  two.push_back(ItemFor("c", c.Add()));
  ASSERT_TRUE(scheduler.Submit(std::move(two)).ok());
  std::vector<BatchScheduler::Item> too_many;
  too_many.push_back(ItemFor("d", c.Add()));
  too_many.push_back(ItemFor("e", c.Add()));
  absl::Status full = scheduler.Submit(std::move(too_many));
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_EQ(scheduler.depth(), 2);  // nothing of the refused request was queued
  guard.OpenGate();
  c.WaitFor(3);
}

TEST(BatchScheduler, ExpiredItemsAreAnsweredWithoutTheGuard) {
  FakeGuard guard("small");
  guard.CloseGate();
  BatchScheduler scheduler(&guard, {.queue_capacity = 8, .max_batch = 8, .batch_wait_ms = 0});
  Collector c;
  ASSERT_TRUE(scheduler.Submit({ItemFor("a", c.Add())}).ok());
  guard.WaitEntered(1);
  ASSERT_TRUE(scheduler.Submit({ItemFor("late", c.Add(), Clock::now())}).ok());
  guard.OpenGate();
  c.WaitFor(2);
  int expired = 0;
  for (const ScheduledResult& r : c.results)
    expired += absl::IsDeadlineExceeded(r.verdict.status());
  EXPECT_EQ(expired, 1);
  EXPECT_EQ(guard.batch_sizes(), (std::vector<int>{1}));
}

TEST(BatchScheduler, OneBadInputDoesNotFailItsBatch) {
  FakeGuard guard("small");
  guard.SetMaxWords(3);
  guard.CloseGate();
  BatchScheduler scheduler(&guard, {.queue_capacity = 8, .max_batch = 8, .batch_wait_ms = 50});
  Collector c;
  ASSERT_TRUE(scheduler.Submit({ItemFor("warm", c.Add())}).ok());
  guard.WaitEntered(1);
  std::vector<BatchScheduler::Item> items;
  items.push_back(ItemFor("ok p=0.9", c.Add()));
  items.push_back(ItemFor("far too many words here", c.Add()));
  items.push_back(ItemFor("fine", c.Add()));
  ASSERT_TRUE(scheduler.Submit(std::move(items)).ok());
  guard.OpenGate();
  c.WaitFor(4);
  int ok = 0, out_of_range = 0;
  for (const ScheduledResult& r : c.results) {
    ok += r.verdict.ok();
    out_of_range += absl::IsOutOfRange(r.verdict.status());
  }
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(out_of_range, 1);
}

TEST(BatchScheduler, ShutdownAnswersQueuedWorkAndRefusesNew) {
  FakeGuard guard("small");
  guard.CloseGate();
  auto scheduler = std::make_unique<BatchScheduler>(
      &guard, SchedulerOptions{.queue_capacity = 8, .max_batch = 1, .batch_wait_ms = 0});
  Collector c;
  ASSERT_TRUE(scheduler->Submit({ItemFor("a", c.Add()), ItemFor("b", c.Add())}).ok());
  guard.WaitEntered(1);
  std::thread stopper([&] { scheduler->Shutdown(); });
  // Shutdown waits for the queue to drain; new work is refused meanwhile.
  while (scheduler->Submit({ItemFor("c", c.Add())}).ok()) {
    std::this_thread::yield();  // raced ahead of Shutdown: that one is queued too
  }
  guard.OpenGate();
  stopper.join();
  for (const ScheduledResult& r : c.results) EXPECT_TRUE(r.verdict.ok());
  EXPECT_GE(c.results.size(), 2u);
}

// A guard on a fake clock: each call advances the clock by `per_input`
// seconds per input (after waiting for the gate, like FakeGuard's).
class SteppingGuard : public Guard {
 public:
  explicit SteppingGuard(double per_input) : per_input_(per_input) {}
  void SetPerInput(double seconds) { per_input_ = seconds; }
  absl::StatusOr<std::vector<GuardVerdict>> Classify(
      const std::vector<GuardRequest>& requests) override {
    gate_.Enter(static_cast<int>(requests.size()));
    now_ns_ +=
        static_cast<int64_t>(per_input_.load() * 1e9) * static_cast<int64_t>(requests.size());
    return std::vector<GuardVerdict>(requests.size());
  }
  int feature_dim() const override { return 0; }
  std::string fingerprint() const override { return "stepping"; }
  std::string name() const override { return "stepping"; }

  Clock::time_point Now() const {
    return Clock::time_point(std::chrono::nanoseconds(now_ns_.load()));
  }
  void CloseGate() { gate_.Close(); }
  void OpenGate() { gate_.Open(); }
  void WaitEntered(int n) { gate_.WaitEntered(n); }
  std::vector<int> batch_sizes() { return gate_.batch_sizes(); }

 private:
  std::atomic<double> per_input_;
  std::atomic<int64_t> now_ns_{3600 * int64_t{1000000000}};
  fakes::Gate gate_;
};

// Eleven inputs due 5 s after they arrive, a guard that takes 1 s per input,
// all on a fake clock. Before, the second batch took all ten waiting inputs
// and ended at 11 s: every answer after its deadline. Now the first call
// (one input: nothing is known yet) measures the guard, the next batch holds
// what fits before the deadline and the rest are answered at once.
TEST(BatchScheduler, BatchesFitTheDeadlineOnAFakeClock) {
  SteppingGuard guard(/*per_input=*/1.0);
  guard.CloseGate();
  BatchScheduler scheduler(
      &guard, {.queue_capacity = 64, .max_batch = 16, .batch_wait_ms = 0, .clock = [&guard] {
                 return guard.Now();
               }});
  const Clock::time_point t0 = guard.Now();
  const Clock::time_point deadline = t0 + std::chrono::seconds(5);
  std::mutex mu;
  int in_time = 0, late = 0, dropped = 0;
  std::condition_variable done;
  auto callback = [&](ScheduledResult r) {
    std::lock_guard l(mu);
    if (!r.verdict.ok()) {
      EXPECT_TRUE(absl::IsDeadlineExceeded(r.verdict.status())) << r.verdict.status();
      ++dropped;
    } else {
      (guard.Now() <= deadline ? in_time : late)++;
    }
    done.notify_all();
  };
  ASSERT_TRUE(scheduler.Submit({ItemFor("first", callback, deadline)}).ok());
  guard.WaitEntered(1);
  std::vector<BatchScheduler::Item> items;
  for (int i = 0; i < 10; ++i) items.push_back(ItemFor("x", callback, deadline));
  ASSERT_TRUE(scheduler.Submit(std::move(items)).ok());  // unmeasured guard: admitted
  guard.OpenGate();
  {
    std::unique_lock l(mu);
    done.wait(l, [&] { return in_time + late + dropped == 11; });
  }
  // At 1 s: 1 s per input, planned with x1.25 room (no scatter measured
  // yet): 3 inputs (to 4 s). At 4 s: one more, alone (it needs 1 s and has
  // 1 s). At 5 s the other six are past their deadline.
  EXPECT_EQ(guard.batch_sizes(), (std::vector<int>{1, 3, 1}));
  EXPECT_EQ(in_time, 5);
  EXPECT_EQ(late, 0);
  EXPECT_EQ(dropped, 6);
  EXPECT_NEAR(scheduler.time_estimate().per_input_s, 1.0, 1e-9);

  // Measured now. While the guard is busy, an input that cannot make its
  // deadline even alone is refused as such (an idle guard would take it as
  // a probe); a request behind too much queued work gets 429 with the time
  // the queue ahead needs.
  guard.CloseGate();
  ASSERT_TRUE(
      scheduler.Submit({ItemFor("a", callback, guard.Now() + std::chrono::seconds(10))}).ok());
  guard.WaitEntered(4);
  absl::Status hopeless =
      scheduler.Submit({ItemFor("tight", callback, guard.Now() + std::chrono::milliseconds(500))});
  EXPECT_TRUE(absl::IsDeadlineExceeded(hopeless)) << hopeless;
  std::vector<BatchScheduler::Item> queued;
  for (int i = 0; i < 4; ++i) {
    queued.push_back(ItemFor("q", callback, guard.Now() + std::chrono::seconds(10)));
  }
  ASSERT_TRUE(scheduler.Submit(std::move(queued)).ok());  // 1 running + 4 queued: done at 5 s
  absl::Status refused =
      scheduler.Submit({ItemFor("late", callback, guard.Now() + std::chrono::milliseconds(5500))});
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_EQ(RetryAfterSeconds(refused), 5);
  guard.OpenGate();
  scheduler.Shutdown();  // its callbacks use the locals above
}

// A first call ten times slower than the guard (page faults, a busy
// machine) makes every later input look hopeless against a 5 s deadline. An
// idle guard still takes a request, so the estimate is measured again and
// the guard is not locked out.
TEST(BatchScheduler, SlowFirstCallDoesNotLockTheGuardOut) {
  SteppingGuard guard(/*per_input=*/10.0);
  BatchScheduler scheduler(
      &guard, {.queue_capacity = 64, .max_batch = 16, .batch_wait_ms = 0, .clock = [&guard] {
                 return guard.Now();
               }});
  Collector c;
  ASSERT_TRUE(
      scheduler.Submit({ItemFor("first", c.Add(), guard.Now() + std::chrono::seconds(60))}).ok());
  c.WaitFor(1);
  EXPECT_NEAR(scheduler.time_estimate().per_input_s, 10.0, 1e-9);
  guard.SetPerInput(1.0);
  for (size_t n = 2; n <= 4; ++n) {
    const Clock::time_point deadline = guard.Now() + std::chrono::seconds(5);
    const absl::Status submitted = scheduler.Submit({ItemFor("probe", c.Add(), deadline)});
    ASSERT_TRUE(submitted.ok()) << n << ": " << submitted;
    c.WaitFor(n);
    EXPECT_TRUE(c.results.back().verdict.ok()) << n;
    EXPECT_LE(guard.Now(), deadline) << n;  // answered in time
  }
  // Three calls of 1 s beside the 10 s one: 3.25 s per input, below 5 s.
  EXPECT_NEAR(scheduler.time_estimate().per_input_s, 13.0 / 4, 1e-9);
  scheduler.Shutdown();
}

}  // namespace
}  // namespace saferoute
