#include "cascade/deadline_planner.h"

#include <algorithm>

#include "util/status.h"

namespace saferoute {

BatchChoice ChooseBatch(std::span<const PlannedInput> queue, Clock::time_point start,
                        const GuardTimeModel& model, int max_batch) {
  SR_CHECK(max_batch >= 1);
  BatchChoice choice;
  const int limit = model.ready() ? max_batch : 1;
  Clock::time_point tightest = Clock::time_point::max();
  double bytes = 0;
  for (; choice.examined < queue.size(); ++choice.examined) {
    const PlannedInput& input = queue[choice.examined];
    if (input.deadline <= start) {
      choice.expired.push_back(choice.examined);
      continue;
    }
    if (model.ready() && start + Seconds(model.Predict(1, input.text_bytes)) > input.deadline) {
      choice.hopeless.push_back(choice.examined);
      continue;
    }
    if (static_cast<int>(choice.run.size()) >= limit) break;
    const Clock::time_point end =
        start + Seconds(model.PredictUpper(static_cast<int>(choice.run.size()) + 1,
                                           bytes + input.text_bytes));
    if (!choice.run.empty() && end > std::min(tightest, input.deadline)) break;
    choice.run.push_back(choice.examined);
    tightest = std::min(tightest, input.deadline);
    bytes += input.text_bytes;
  }
  // Nothing else could run: the last hopeless input runs after all (the
  // guard would idle anyway) as a probe, so an estimate that has grown
  // stale, e.g. from a slow first call, is measured again instead of
  // refusing every input from then on.
  if (choice.run.empty() && !choice.hopeless.empty()) {
    choice.run.push_back(choice.hopeless.back());
    choice.hopeless.pop_back();
    choice.probe = true;
  }
  return choice;
}

AdmissionCheck CheckAdmission(std::span<const PlannedInput> queued,
                              std::span<const PlannedInput> incoming, Clock::time_point now,
                              Clock::time_point busy_until, const GuardTimeModel& model,
                              int max_batch) {
  AdmissionCheck check;
  check.finish = check.backlog_end = std::max(now, busy_until);
  if (!model.ready() || incoming.empty()) return check;
  // An idle guard takes one request even if it looks hopeless: the probe
  // that keeps the estimate current (see ChooseBatch).
  const bool idle = queued.empty() && busy_until <= now;
  for (const PlannedInput& input : incoming) {
    if (!idle && now + Seconds(model.Predict(1, input.text_bytes)) > input.deadline) {
      check.admit = false;
      check.hopeless_alone = true;
      return check;
    }
  }
  std::vector<PlannedInput> plan(queued.begin(), queued.end());
  plan.insert(plan.end(), incoming.begin(), incoming.end());
  const size_t first_incoming = queued.size();
  std::span<const PlannedInput> rest(plan);
  size_t offset = 0;  // index of rest[0] in plan
  Clock::time_point t = check.finish;
  while (!rest.empty()) {
    const Clock::time_point t0 = t;  // this batch's start
    const BatchChoice choice = ChooseBatch(rest, t, model, max_batch);
    // Whether any input of `list` is one of the new ones.
    const auto any_incoming = [&](const std::vector<size_t>& list) {
      return std::any_of(list.begin(), list.end(),
                         [&](size_t i) { return offset + i >= first_incoming; });
    };
    double bytes = 0;
    for (size_t i : choice.run) bytes += rest[i].text_bytes;
    if (!choice.run.empty()) {
      t += Seconds(model.PredictUpper(static_cast<int>(choice.run.size()), bytes));
      if (offset + choice.run.front() < first_incoming) check.backlog_end = t;
    }
    // A probe of a new input is no promise to finish it in time: only the
    // idle guard's first batch may be one.
    const bool probes_incoming = choice.probe && any_incoming(choice.run);
    const bool first_on_idle_guard = idle && t0 == now;
    if (any_incoming(choice.expired) || any_incoming(choice.hopeless) ||
        (probes_incoming && !first_on_idle_guard)) {
      check.admit = false;
      break;
    }
    rest = rest.subspan(choice.examined);
    offset += choice.examined;
  }
  check.finish = t;
  return check;
}

}  // namespace saferoute
