#include "server/connection_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>

#include "gtest/gtest.h"

namespace saferoute::server {
namespace {

// A gate that jobs wait on until it opens.
class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void WaitForWaiters(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return waiting_ >= n; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

TEST(ConnectionPool, QueuedJobsWaitForWorkersUntilTheDrainGivesThemHelpers) {
  ConnectionPool pool(2, 2);
  Gate gate;
  for (int i = 0; i < 2; ++i) pool.Enqueue([&] { gate.Wait(); });
  gate.WaitForWaiters(2);  // both workers are busy
  std::atomic<int> queued_ran{0};
  std::promise<void> ran_two;
  for (int i = 0; i < 3; ++i) {
    pool.Enqueue([&] {
      if (++queued_ran == 2) ran_two.set_value();
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(queued_ran, 0);
  EXPECT_EQ(pool.queued(), 3u);
  pool.BeginDrain();  // two helpers (the cap), while the workers stay busy
  ASSERT_EQ(ran_two.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(pool.helpers_started(), 2);
  for (int i = 0; i < 200 && queued_ran < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(queued_ran, 3);
  gate.Open();
  pool.Shutdown();
}

TEST(ConnectionPool, ShutdownRunsEverythingQueued) {
  std::atomic<int> ran{0};
  {
    ConnectionPool pool(1, 0);
    Gate gate;
    pool.Enqueue([&] { gate.Wait(); });
    gate.WaitForWaiters(1);
    for (int i = 0; i < 10; ++i) pool.Enqueue([&] { ++ran; });
    auto shutdown = std::async(std::launch::async, [&] { pool.Shutdown(); });
    gate.Open();
    shutdown.get();
    EXPECT_EQ(ran, 10);
    pool.Enqueue([&] { ++ran; });  // after shutdown: runs on this thread
    EXPECT_EQ(ran, 11);
  }
}

TEST(ConnectionPool, DrainStartsNoHelperWhileWorkersAreIdle) {
  ConnectionPool pool(4, 4);
  pool.BeginDrain();
  std::promise<void> done;
  pool.Enqueue([&] { done.set_value(); });
  done.get_future().wait();
  EXPECT_EQ(pool.helpers_started(), 0);
}

}  // namespace
}  // namespace saferoute::server
