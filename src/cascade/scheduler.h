// Dynamic batching in front of one Guard: a bounded queue of single-input
// requests, and one worker thread that collects up to `max_batch` of them
// (waiting at most `batch_wait_ms` after the oldest arrived) into a single
// Guard::Classify call.
//
// Deadlines drive admission and batching (deadline_planner.h), from a running
// estimate of the guard's time per call, per input and per kilobyte of text
// (guard_time_model.h, fed by every call):
//  - Submit admits a request only if all its inputs are predicted to finish
//    within their deadline behind the work already queued; otherwise
//    ResourceExhausted (HTTP 429) carrying a retry-after (util/retry_after.h) of
//    when the queue ahead is predicted to drain, or DeadlineExceeded if an
//    input could not finish in time even on an idle guard.
//  - A batch takes inputs while its predicted end stays within the
//    tightest deadline in it (and up to max_batch).
//  - An input whose deadline passed before its batch starts, or that would
//    miss it even alone, is answered DeadlineExceeded without running it.
// So under overload the guard spends its time on answers that arrive in
// time, and the excess is refused at once instead of timing out.
//
// Backpressure: Submit refuses (ResourceExhausted -> HTTP 429) when the queue
// cannot take all of a caller's inputs; a multi-input request is admitted
// whole or not at all.
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

#include "cascade/deadline_planner.h"
#include "cascade/guard_time_model.h"
#include "guard/guard.h"

namespace saferoute {

struct SchedulerOptions {
  std::string name = "small";  // for error messages and metrics ("small" | "large")
  int queue_capacity = 256;    // queued inputs (not requests), >= 1
  int max_batch = 16;          // inputs per Classify call, >= 1
  double batch_wait_ms = 2;    // longest wait for a batch to fill after its first input
  // The time source for deadlines and guard times; empty: Clock::now. Tests
  // pass a fake clock (then batch_wait_ms should be 0: waits use real time).
  std::function<Clock::time_point()> clock = nullptr;
};

// Bytes of text the guard reads for `request` (prompt, response, turns,
// policy): what the time model scales with.
double RequestTextBytes(const GuardRequest& request);

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

  // The guard-time estimate admission and batching use right now.
  GuardTimeModel::Coefficients time_estimate() const;

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
    double text_bytes = 0;
  };
  Clock::time_point Now() const;
  std::vector<PlannedInput> PlannedQueueLocked() const;
  absl::Status RefusalLocked(const AdmissionCheck& check, Clock::time_point now,
                             Clock::time_point deadline) const;
  // Takes the next batch out of the queue (and the inputs it drops).
  void TakeBatchLocked(std::vector<Queued>& batch, std::vector<Queued>& dropped,
                       std::vector<std::string>& why_dropped);
  void WorkerLoop();
  void RunBatch(std::vector<Queued>& batch);

  Guard* const guard_;
  const SchedulerOptions options_;
  const BatchObserver on_batch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  GuardTimeModel time_model_;     // guarded by mu_
  Clock::time_point busy_until_;  // predicted end of the running batch
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_SCHEDULER_H_
