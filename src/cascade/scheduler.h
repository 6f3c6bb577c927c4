// Dynamic batching in front of one Guard: a bounded queue of single-input
// requests, and one worker thread that collects up to `max_batch` of them
// (waiting at most `batch_wait_ms` after the oldest arrived) into a single
// Guard::Classify call.
//
// Backpressure: Submit refuses (ResourceExhausted -> HTTP 429) when the queue
// cannot take all of a caller's inputs; a multi-input request is admitted
// whole or not at all. Deadlines: an item whose deadline passed while queued
// is answered DeadlineExceeded without running the guard.
// Isolation: if a batch fails with InvalidArgument/OutOfRange (one bad input,
// e.g. over the token limit), each item is retried alone so only the bad one
// fails and the others are answered.
//
// Thread safety: Submit/depth may be called from any thread. Every callback
// runs exactly once, on the worker thread (or on the caller's thread when
// Submit itself fails, in which case no callback runs and the error is returned).
#ifndef SAFEROUTE_CASCADE_SCHEDULER_H_
#define SAFEROUTE_CASCADE_SCHEDULER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "guard/guard.h"

namespace saferoute {

using Clock = std::chrono::steady_clock;

struct SchedulerOptions {
  std::string name = "small";  // for error messages and metrics ("small" | "large")
  int queue_capacity = 256;    // queued inputs (not requests), >= 1
  int max_batch = 16;          // inputs per Classify call, >= 1
  double batch_wait_ms = 2;    // longest wait for a batch to fill after its first input
};

struct ScheduledResult {
  absl::StatusOr<GuardVerdict> verdict;
  double queue_ms = 0;  // time from Submit to the start of the Classify call
  double guard_ms = 0;  // duration of the Classify call that produced it
  int batch_size = 0;   // inputs in that call
};

class BatchScheduler {
 public:
  using Callback = std::function<void(ScheduledResult)>;
  // Called after every Classify call with its batch size (for metrics).
  using BatchObserver = std::function<void(int batch_size)>;

  // `guard` must outlive the scheduler.
  BatchScheduler(Guard* guard, SchedulerOptions options, BatchObserver on_batch = nullptr);
  ~BatchScheduler();  // Shutdown()
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  struct Item {
    GuardRequest request;
    Clock::time_point deadline = Clock::time_point::max();
    Callback done;
  };
  // Enqueues all items or none: ResourceExhausted if they do not fit,
  // Unavailable after Shutdown started.
  absl::Status Submit(std::vector<Item> items);

  // Free slots right now (for best-effort work such as shadow sampling).
  int free_slots() const;
  int depth() const;
  const SchedulerOptions& options() const { return options_; }

  // Stops accepting, answers everything already queued, joins the worker.
  // Idempotent.
  void Shutdown();

 private:
  struct Queued {
    Item item;
    Clock::time_point enqueued;
  };
  void WorkerLoop();
  void RunBatch(std::vector<Queued>& batch);

  Guard* const guard_;
  const SchedulerOptions options_;
  const BatchObserver on_batch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_SCHEDULER_H_
