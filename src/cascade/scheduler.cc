#include "cascade/scheduler.h"

#include <algorithm>

namespace saferoute {
namespace {

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

bool IsPerInputError(const absl::Status& status) {
  return absl::IsInvalidArgument(status) || absl::IsOutOfRange(status);
}

}  // namespace

BatchScheduler::BatchScheduler(Guard* guard, SchedulerOptions options, BatchObserver on_batch)
    : guard_(guard), options_(std::move(options)), on_batch_(std::move(on_batch)) {
  SR_CHECK(guard_ != nullptr);
  SR_CHECK(options_.queue_capacity >= 1 && options_.max_batch >= 1);
  SR_CHECK(options_.batch_wait_ms >= 0);
  worker_ = std::thread([this] { WorkerLoop(); });
}

BatchScheduler::~BatchScheduler() { Shutdown(); }

absl::Status BatchScheduler::Submit(std::vector<Item> items) {
  const Clock::time_point now = Clock::now();
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return absl::UnavailableError(
          absl::StrCat(options_.name, " guard queue: server is shutting down"));
    }
    const size_t free = options_.queue_capacity - queue_.size();
    if (items.size() > free) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("%s guard queue full: %d inputs queued of capacity %d, request needs %d",
                          options_.name, queue_.size(), options_.queue_capacity, items.size()));
    }
    for (Item& item : items) queue_.push_back({std::move(item), now});
  }
  cv_.notify_all();
  return absl::OkStatus();
}

int BatchScheduler::free_slots() const {
  std::lock_guard lock(mu_);
  return options_.queue_capacity - static_cast<int>(queue_.size());
}

int BatchScheduler::depth() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(queue_.size());
}

void BatchScheduler::Shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void BatchScheduler::WorkerLoop() {
  const auto batch_wait = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(options_.batch_wait_ms));
  for (;;) {
    std::vector<Queued> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      // Let the batch fill: wait until it is full, the oldest input has waited
      // batch_wait, or shutdown (then run what is there without waiting).
      const Clock::time_point fill_deadline = queue_.front().enqueued + batch_wait;
      cv_.wait_until(lock, fill_deadline, [&] {
        return stopping_ || static_cast<int>(queue_.size()) >= options_.max_batch;
      });
      const size_t take = std::min<size_t>(queue_.size(), options_.max_batch);
      for (size_t i = 0; i < take; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    RunBatch(batch);
  }
}

void BatchScheduler::RunBatch(std::vector<Queued>& batch) {
  const Clock::time_point start = Clock::now();
  // Answer the expired ones without spending guard time on them.
  std::vector<Queued*> live;
  for (Queued& q : batch) {
    if (q.item.deadline <= start) {
      q.item.done({.verdict = absl::DeadlineExceededError(
                       absl::StrFormat("deadline passed after %.1f ms in the %s guard queue",
                                       MsBetween(q.enqueued, start), options_.name)),
                   .queue_ms = MsBetween(q.enqueued, start)});
    } else {
      live.push_back(&q);
    }
  }
  if (live.empty()) return;

  std::vector<GuardRequest> requests;
  requests.reserve(live.size());
  for (Queued* q : live) requests.push_back(q->item.request);
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard_->Classify(requests);
  const Clock::time_point end = Clock::now();
  if (on_batch_) on_batch_(static_cast<int>(live.size()));

  if (verdicts.ok() && verdicts->size() != live.size()) {
    verdicts =
        absl::InternalError(absl::StrFormat("%s guard returned %d verdicts for a batch of %d",
                                            options_.name, verdicts->size(), live.size()));
  }
  if (verdicts.ok()) {
    for (size_t i = 0; i < live.size(); ++i) {
      live[i]->item.done({.verdict = std::move((*verdicts)[i]),
                          .queue_ms = MsBetween(live[i]->enqueued, start),
                          .guard_ms = MsBetween(start, end),
                          .batch_size = static_cast<int>(live.size())});
    }
    return;
  }
  if (live.size() > 1 && IsPerInputError(verdicts.status())) {
    // One input spoiled the batch: run each alone so the others still get
    // an answer and the error lands on the input that caused it.
    for (Queued* q : live) {
      const Clock::time_point solo_start = Clock::now();
      absl::StatusOr<std::vector<GuardVerdict>> solo = guard_->Classify({q->item.request});
      const Clock::time_point solo_end = Clock::now();
      if (on_batch_) on_batch_(1);
      ScheduledResult result{.verdict = absl::InternalError("unset"),
                             .queue_ms = MsBetween(q->enqueued, start),
                             .guard_ms = MsBetween(solo_start, solo_end),
                             .batch_size = 1};
      if (!solo.ok()) {
        result.verdict = solo.status();
      } else if (solo->size() != 1) {
        result.verdict = absl::InternalError(absl::StrFormat(
            "%s guard returned %d verdicts for 1 input", options_.name, solo->size()));
      } else {
        result.verdict = std::move(solo->front());
      }
      q->item.done(std::move(result));
    }
    return;
  }
  for (Queued* q : live) {
    q->item.done({.verdict = verdicts.status(),
                  .queue_ms = MsBetween(q->enqueued, start),
                  .guard_ms = MsBetween(start, end),
                  .batch_size = static_cast<int>(live.size())});
  }
}

}  // namespace saferoute
