#include "cascade/scheduler.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "util/retry_after.h"

namespace saferoute {
namespace {

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool IsPerInputError(const absl::Status& status) {
  return absl::IsInvalidArgument(status) || absl::IsOutOfRange(status);
}

}  // namespace

double RequestTextBytes(const GuardRequest& request) {
  size_t bytes = request.prompt.size() + (request.response ? request.response->size() : 0);
  for (const Turn& turn : request.conversation) bytes += turn.content.size();
  if (request.policy.has_value()) {
    for (const auto& [code, name] : request.policy->categories) bytes += code.size() + name.size();
  }
  return static_cast<double>(bytes);
}

BatchScheduler::BatchScheduler(Guard* guard, SchedulerOptions options, BatchObserver on_batch)
    : guard_(guard), options_(std::move(options)), on_batch_(std::move(on_batch)) {
  SR_CHECK(guard_ != nullptr);
  SR_CHECK(options_.queue_capacity >= 1 && options_.max_batch >= 1);
  SR_CHECK(options_.batch_wait_ms >= 0);
  worker_ = std::thread([this] { WorkerLoop(); });
}

BatchScheduler::~BatchScheduler() { Shutdown(); }

Clock::time_point BatchScheduler::Now() const {
  return options_.clock ? options_.clock() : Clock::now();
}

std::vector<PlannedInput> BatchScheduler::PlannedQueueLocked() const {
  std::vector<PlannedInput> planned;
  planned.reserve(queue_.size());
  for (const Queued& q : queue_) planned.push_back({q.text_bytes, q.item.deadline});
  return planned;
}

absl::Status BatchScheduler::RefusalLocked(const AdmissionCheck& check, Clock::time_point now,
                                           Clock::time_point deadline) const {
  const double left_s = SecondsBetween(now, deadline);
  if (check.hopeless_alone) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "the %s guard needs about %.2f s for this input, more than the %.2f s left before the "
        "deadline",
        options_.name, time_model_.Predict(1, 0), std::max(0.0, left_s)));
  }
  const double drain_s = SecondsBetween(now, check.backlog_end);
  return WithRetryAfter(
      absl::ResourceExhaustedError(absl::StrFormat(
          "%s guard overloaded: %d inputs queued ahead, this request would finish in about "
          "%.2f s, after its deadline in %.2f s (guard time: %s)",
          options_.name, queue_.size(), SecondsBetween(now, check.finish), std::max(0.0, left_s),
          time_model_.DebugString())),
      static_cast<int>(std::ceil(drain_s)));
}

absl::Status BatchScheduler::Submit(std::vector<Item> items) {
  const Clock::time_point now = Now();
  std::vector<PlannedInput> incoming;
  incoming.reserve(items.size());
  Clock::time_point deadline = Clock::time_point::max();
  for (const Item& item : items) {
    incoming.push_back({RequestTextBytes(item.request), item.deadline});
    deadline = std::min(deadline, item.deadline);
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return absl::UnavailableError(
          absl::StrCat(options_.name, " guard queue: server is shutting down"));
    }
    const size_t free = options_.queue_capacity - queue_.size();
    if (items.size() > free) {
      return WithRetryAfter(
          absl::ResourceExhaustedError(
              absl::StrFormat("%s guard queue full: %d inputs queued of capacity %d, request "
                              "needs %d",
                              options_.name, queue_.size(), options_.queue_capacity, items.size())),
          1);
    }
    const AdmissionCheck check = CheckAdmission(PlannedQueueLocked(), incoming, now, busy_until_,
                                                time_model_, options_.max_batch);
    if (!check.admit) return RefusalLocked(check, now, deadline);
    for (size_t i = 0; i < items.size(); ++i) {
      queue_.push_back({std::move(items[i]), now, incoming[i].text_bytes});
    }
  }
  cv_.notify_all();
  return absl::OkStatus();
}

GuardTimeModel::Coefficients BatchScheduler::time_estimate() const {
  std::lock_guard lock(mu_);
  return time_model_.coefficients();
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

void BatchScheduler::TakeBatchLocked(std::vector<Queued>& batch, std::vector<Queued>& dropped,
                                     std::vector<std::string>& why_dropped) {
  const Clock::time_point start = Now();
  const BatchChoice choice =
      ChooseBatch(PlannedQueueLocked(), start, time_model_, options_.max_batch);
  std::vector<Queued> head(std::make_move_iterator(queue_.begin()),
                           std::make_move_iterator(queue_.begin() + choice.examined));
  queue_.erase(queue_.begin(), queue_.begin() + choice.examined);
  double bytes = 0;
  for (size_t i : choice.run) {
    bytes += head[i].text_bytes;
    batch.push_back(std::move(head[i]));
  }
  for (size_t i : choice.expired) {
    why_dropped.push_back(absl::StrFormat("deadline passed after %.1f ms in the %s guard queue",
                                          MsBetween(head[i].enqueued, start), options_.name));
    dropped.push_back(std::move(head[i]));
  }
  for (size_t i : choice.hopeless) {
    why_dropped.push_back(absl::StrFormat(
        "dropped after %.1f ms in the %s guard queue: %.1f ms were left before the deadline and "
        "the guard needs about %.1f ms",
        MsBetween(head[i].enqueued, start), options_.name, MsBetween(start, head[i].item.deadline),
        1e3 * time_model_.Predict(1, head[i].text_bytes)));
    dropped.push_back(std::move(head[i]));
  }
  busy_until_ = start + Seconds(time_model_.PredictUpper(static_cast<int>(batch.size()), bytes));
}

void BatchScheduler::WorkerLoop() {
  const auto batch_wait = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(options_.batch_wait_ms));
  for (;;) {
    std::vector<Queued> batch, dropped;
    std::vector<std::string> why_dropped;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      // Let the batch fill: wait until it is full, the oldest input has waited
      // batch_wait, or shutdown (then run what is there without waiting).
      if (batch_wait > Clock::duration::zero()) {
        const Clock::time_point fill_deadline = queue_.front().enqueued + batch_wait;
        cv_.wait_until(lock, fill_deadline, [&] {
          return stopping_ || static_cast<int>(queue_.size()) >= options_.max_batch;
        });
      }
      TakeBatchLocked(batch, dropped, why_dropped);
    }
    for (size_t i = 0; i < dropped.size(); ++i) {
      dropped[i].item.done({.verdict = absl::DeadlineExceededError(why_dropped[i]),
                            .queue_ms = MsBetween(dropped[i].enqueued, Now())});
    }
    if (!batch.empty()) RunBatch(batch);
  }
}

void BatchScheduler::RunBatch(std::vector<Queued>& batch) {
  std::vector<GuardRequest> requests;
  requests.reserve(batch.size());
  double bytes = 0;
  for (Queued& q : batch) {
    requests.push_back(q.item.request);
    bytes += q.text_bytes;
  }
  const Clock::time_point start = Now();
  absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard_->Classify(requests);
  const Clock::time_point end = Now();
  if (on_batch_) on_batch_(static_cast<int>(batch.size()));
  {
    std::lock_guard lock(mu_);
    busy_until_ = end;  // done, however long it was predicted to take
    if (verdicts.ok()) {
      time_model_.Observe(static_cast<int>(batch.size()), bytes, SecondsBetween(start, end));
    }
  }

  if (verdicts.ok() && verdicts->size() != batch.size()) {
    verdicts =
        absl::InternalError(absl::StrFormat("%s guard returned %d verdicts for a batch of %d",
                                            options_.name, verdicts->size(), batch.size()));
  }
  if (verdicts.ok()) {
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].item.done({.verdict = std::move((*verdicts)[i]),
                          .queue_ms = MsBetween(batch[i].enqueued, start),
                          .guard_ms = MsBetween(start, end),
                          .batch_size = static_cast<int>(batch.size())});
    }
    return;
  }
  if (batch.size() > 1 && IsPerInputError(verdicts.status())) {
    // One input spoiled the batch: run each alone so the others still get
    // an answer and the error lands on the input that caused it.
    for (Queued& q : batch) {
      const Clock::time_point solo_start = Now();
      absl::StatusOr<std::vector<GuardVerdict>> solo = guard_->Classify({q.item.request});
      const Clock::time_point solo_end = Now();
      if (on_batch_) on_batch_(1);
      ScheduledResult result{.verdict = absl::InternalError("unset"),
                             .queue_ms = MsBetween(q.enqueued, start),
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
      q.item.done(std::move(result));
    }
    return;
  }
  for (Queued& q : batch) {
    q.item.done({.verdict = verdicts.status(),
                 .queue_ms = MsBetween(q.enqueued, start),
                 .guard_ms = MsBetween(start, end),
                 .batch_size = static_cast<int>(batch.size())});
  }
}

}  // namespace saferoute
