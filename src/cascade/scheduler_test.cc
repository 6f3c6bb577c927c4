// The batch scheduler in front of a scriptable fake guard: batching, whole-
// request admission, expiry in the queue, isolation of a bad input, shutdown.
#include "cascade/scheduler.h"

#include <memory>
#include <thread>

#include "cascade/testing/fake_guards.h"
#include "gtest/gtest.h"

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

}  // namespace
}  // namespace saferoute
