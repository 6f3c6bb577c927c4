// Deadline-aware batching and admission for the batch scheduler, as pure
// functions of the queue, the time and the guard's time model (so tests run
// them on a fake clock with fake guard times).
//
//  - ChooseBatch: the next batch at `start`, walking the FIFO queue from its
//    head: an input whose deadline has passed is dropped (expired), one that
//    would miss its deadline even alone is dropped (hopeless: running it
//    would only spend guard time on an answer nobody waits for), the others
//    join the batch while it has room (max_batch) and its predicted end stays
//    within the tightest deadline in it.
//  - CheckAdmission: plays ChooseBatch forward over the queue plus the new
//    inputs (from when the running batch is predicted to end) and admits the
//    new inputs only if every one of them is predicted to finish within its
//    deadline.
// Batch ends are planned with GuardTimeModel::PredictUpper (the fit with room
// for the guard's recent scatter); an input is hopeless when even the plain
// fit says it cannot finish in time.
// Until the model has seen one call nothing is predicted: every input is
// admitted and batches hold one input, so the first call measures the guard.
// An estimate can also be wrong the other way (a slow first call, a busy
// spell): so that it cannot lock the guard out for good, an idle guard
// admits a request even when it looks hopeless, and a batch that would
// otherwise be empty runs one hopeless input (a probe) instead of dropping it.
#ifndef SAFEROUTE_CASCADE_DEADLINE_PLANNER_H_
#define SAFEROUTE_CASCADE_DEADLINE_PLANNER_H_

#include <chrono>
#include <span>
#include <vector>

#include "cascade/guard_time_model.h"

namespace saferoute {

using Clock = std::chrono::steady_clock;

struct PlannedInput {
  double text_bytes = 0;  // prompt + response + conversation + policy text
  Clock::time_point deadline = Clock::time_point::max();
};

struct BatchChoice {
  std::vector<size_t> run;       // queue indices, in queue order
  std::vector<size_t> expired;   // deadline passed before the batch starts
  std::vector<size_t> hopeless;  // predicted to miss the deadline even alone
  size_t examined = 0;           // queue[0, examined) is exactly run + expired + hopeless
  // `run` is one input that is hopeless by the estimate, run because nothing
  // else could (a probe that measures the guard again).
  bool probe = false;
};

BatchChoice ChooseBatch(std::span<const PlannedInput> queue, Clock::time_point start,
                        const GuardTimeModel& model, int max_batch);

struct AdmissionCheck {
  bool admit = true;
  // An incoming input would miss its deadline even with nothing queued.
  bool hopeless_alone = false;
  Clock::time_point finish;       // predicted end of the last incoming input
  Clock::time_point backlog_end;  // predicted end of the work queued before them
};

// `busy_until`: predicted end of the batch running now (<= now when idle).
AdmissionCheck CheckAdmission(std::span<const PlannedInput> queued,
                              std::span<const PlannedInput> incoming, Clock::time_point now,
                              Clock::time_point busy_until, const GuardTimeModel& model,
                              int max_batch);

// Seconds as a Clock duration.
inline Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_DEADLINE_PLANNER_H_
