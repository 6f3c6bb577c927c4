// The guard-time model, deadline-aware batch choice and admission on a fake
// clock with fake guard times (deterministic: no thread, no real time).
#include "cascade/deadline_planner.h"

#include <deque>
#include <random>

#include "absl/strings/str_format.h"
#include "cascade/guard_time_model.h"
#include "gtest/gtest.h"

namespace saferoute {
namespace {

const Clock::time_point kT0 = Clock::time_point(std::chrono::hours(1));

Clock::time_point At(double seconds) { return kT0 + Seconds(seconds); }

// ---------------------------------------------------------- time model

TEST(GuardTimeModel, RecoversEveryTermFromExactTimes) {
  GuardTimeModel model;
  EXPECT_FALSE(model.ready());
  std::mt19937 rng(3);
  for (int call = 0; call < 16; ++call) {
    const int inputs = 1 + static_cast<int>(rng() % 8);
    const double bytes = 100.0 * (rng() % 50);
    model.Observe(inputs, bytes, 0.2 + 1.0 * inputs + 0.05 * bytes / 1000);
  }
  EXPECT_NEAR(model.coefficients().per_batch_s, 0.2, 1e-9);
  EXPECT_NEAR(model.coefficients().per_input_s, 1.0, 1e-9);
  EXPECT_NEAR(model.coefficients().per_kilobyte_s, 0.05, 1e-9);
  EXPECT_NEAR(model.Predict(3, 2000), 0.2 + 3 + 0.1, 1e-9);
  EXPECT_NEAR(model.scatter(), 1.0, 1e-9);  // every call was predicted exactly
}

TEST(GuardTimeModel, OneCallIsAllPerInput) {
  GuardTimeModel model;
  model.Observe(4, 800, 2.0);
  ASSERT_TRUE(model.ready());
  EXPECT_DOUBLE_EQ(model.coefficients().per_input_s, 0.5);
  EXPECT_DOUBLE_EQ(model.coefficients().per_batch_s, 0);
  EXPECT_DOUBLE_EQ(model.coefficients().per_kilobyte_s, 0);
  EXPECT_DOUBLE_EQ(model.PredictUpper(2, 0), 1.25);  // no scatter seen yet: 1.25
}

TEST(GuardTimeModel, TextTermOnlyWhenItPays) {
  GuardTimeModel model;
  std::mt19937 rng(5);
  for (int call = 0; call < 16; ++call) {
    const int inputs = 1 + static_cast<int>(rng() % 8);
    model.Observe(inputs, 100.0 * (rng() % 50), 0.3 * inputs);  // text length does not matter
  }
  EXPECT_DOUBLE_EQ(model.coefficients().per_kilobyte_s, 0);
  EXPECT_NEAR(model.coefficients().per_input_s, 0.3, 1e-12);
}

TEST(GuardTimeModel, NoNegativeTermsAndScatterIsBounded) {
  GuardTimeModel model;
  std::mt19937 rng(9);
  std::uniform_real_distribution<double> noise(0.7, 1.6);
  for (int call = 0; call < 40; ++call) {
    const int inputs = 1 + static_cast<int>(rng() % 8);
    // Bigger batches faster overall: a least-squares fit would go negative.
    model.Observe(inputs, 500, (2.0 - 0.1 * inputs) * noise(rng));
    EXPECT_GE(model.coefficients().per_batch_s, 0);
    EXPECT_GE(model.coefficients().per_input_s, 0);
    EXPECT_GE(model.coefficients().per_kilobyte_s, 0);
    EXPECT_GE(model.scatter(), 1.0);
    EXPECT_LE(model.scatter(), 2.0);
  }
  EXPECT_GT(model.scatter(), 1.2);  // times scattered by up to 1.6x
}

TEST(GuardTimeModel, WindowFollowsAChangeOfSpeed) {
  GuardTimeModel model(/*window=*/8);
  for (int call = 0; call < 8; ++call) model.Observe(1 + call % 4, 0, 1.0 * (1 + call % 4));
  EXPECT_NEAR(model.coefficients().per_input_s, 1.0, 1e-12);
  for (int call = 0; call < 8; ++call) model.Observe(1 + call % 4, 0, 0.5 * (1 + call % 4));
  EXPECT_NEAR(model.coefficients().per_input_s, 0.5, 1e-12);
}

// A model that has seen exact calls of `per_input` seconds per input (so
// its scatter factor is 1 and PredictUpper == Predict).
GuardTimeModel ExactModel(double per_call, double per_input) {
  GuardTimeModel model;
  for (int inputs : {1, 2, 4, 3}) model.Observe(inputs, 0, per_call + per_input * inputs);
  return model;
}

std::vector<PlannedInput> Inputs(const std::vector<double>& deadlines_s) {
  std::vector<PlannedInput> out;
  for (double d : deadlines_s) out.push_back({.text_bytes = 0, .deadline = At(d)});
  return out;
}

// ------------------------------------------------------------ batching

TEST(ChooseBatch, UnmeasuredGuardRunsOneInput) {
  const GuardTimeModel unmeasured;
  const BatchChoice c = ChooseBatch(Inputs({5, 5, 5}), At(0), unmeasured, 16);
  EXPECT_EQ(c.run, (std::vector<size_t>{0}));
  EXPECT_EQ(c.examined, 1u);
}

TEST(ChooseBatch, BatchEndsWithinTheTightestDeadline) {
  const GuardTimeModel model = ExactModel(0, 1.0);
  // Ten inputs due at 5 s, the batch starting at 0: five fit (5 x 1 s).
  BatchChoice c = ChooseBatch(Inputs(std::vector<double>(10, 5)), At(0), model, 16);
  EXPECT_EQ(c.run.size(), 5u);
  EXPECT_EQ(c.examined, 5u);
  // The third input is due at 2.5 s: the batch closes before it, since three
  // inputs would end at 3 s.
  c = ChooseBatch(Inputs({10, 10, 2.5, 10}), At(0), model, 16);
  EXPECT_EQ(c.run, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(c.examined, 2u);
  // max_batch still caps it.
  c = ChooseBatch(Inputs(std::vector<double>(10, 50)), At(0), model, 4);
  EXPECT_EQ(c.run.size(), 4u);
}

TEST(ChooseBatch, DropsExpiredAndHopelessInputs) {
  const GuardTimeModel model = ExactModel(0.2, 1.0);
  // Due at 9 s (passed at start 10), at 10.8 s (needs 1.2 s alone), at 15 s.
  const BatchChoice c = ChooseBatch(Inputs({9, 10.8, 15, 15}), At(10), model, 16);
  EXPECT_EQ(c.expired, (std::vector<size_t>{0}));
  EXPECT_EQ(c.hopeless, (std::vector<size_t>{1}));
  EXPECT_EQ(c.run, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(c.examined, 4u);
}

TEST(ChooseBatch, AHopelessInputRunsWhenNothingElseCould) {
  const GuardTimeModel model = ExactModel(0, 1.0);
  // Alone and due in 0.5 s (it needs 1 s): run anyway, as a probe.
  BatchChoice c = ChooseBatch(Inputs({0.5}), At(0), model, 16);
  EXPECT_EQ(c.run, (std::vector<size_t>{0}));
  EXPECT_TRUE(c.probe);
  EXPECT_TRUE(c.hopeless.empty());
  // Beside an input that can make it, it is dropped.
  c = ChooseBatch(Inputs({0.5, 5}), At(0), model, 16);
  EXPECT_EQ(c.run, (std::vector<size_t>{1}));
  EXPECT_EQ(c.hopeless, (std::vector<size_t>{0}));
  EXPECT_FALSE(c.probe);
}

TEST(ChooseBatch, LongerTextTakesLonger) {
  GuardTimeModel model;
  for (int inputs : {1, 2, 3, 4})
    for (double kb : {0.0, 2.0}) model.Observe(inputs, kb * 1000, 0.5 * inputs + 0.5 * kb);
  std::vector<PlannedInput> queue = Inputs({3, 3, 3, 3});
  EXPECT_EQ(ChooseBatch(queue, At(0), model, 16).run.size(), 4u);  // 2 s
  for (PlannedInput& in : queue) in.text_bytes = 1000;             // 1 s each
  EXPECT_EQ(ChooseBatch(queue, At(0), model, 16).run.size(), 3u);  // 3 s
  for (PlannedInput& in : queue) in.text_bytes = 2000;             // 1.5 s each
  EXPECT_EQ(ChooseBatch(queue, At(0), model, 16).run.size(), 2u);  // 3 s
}

// ----------------------------------------------------------- admission

TEST(CheckAdmission, UnmeasuredGuardAdmitsEverything) {
  const GuardTimeModel unmeasured;
  EXPECT_TRUE(
      CheckAdmission(Inputs(std::vector<double>(100, 1)), Inputs({1}), At(0), At(0), unmeasured, 16)
          .admit);
}

TEST(CheckAdmission, AdmitsOnlyWhatFinishesInTime) {
  const GuardTimeModel model = ExactModel(0, 1.0);
  // A batch runs until 1 s; three queued inputs due at 5 s run 1..4 s.
  const std::vector<PlannedInput> queued = Inputs({5, 5, 5});
  AdmissionCheck a = CheckAdmission(queued, Inputs({5}), At(0), At(1), model, 16);
  EXPECT_TRUE(a.admit);  // joins their batch: 1 + 4 x 1 s = 5 s
  EXPECT_EQ(a.finish, At(5));
  // A two-input request due at 5 s cannot both make it: refused whole.
  a = CheckAdmission(queued, Inputs({5, 5}), At(0), At(1), model, 16);
  EXPECT_FALSE(a.admit);
  EXPECT_FALSE(a.hopeless_alone);
  // The queue ahead is done when the batch with its last input ends: 5 s
  // (the first of the two joined that batch), the Retry-After.
  EXPECT_EQ(a.backlog_end, At(5));
  // Due at 7 s it fits in the next batch (4..6 s).
  a = CheckAdmission(queued, Inputs({7, 7}), At(0), At(1), model, 16);
  EXPECT_TRUE(a.admit);
  EXPECT_EQ(a.finish, At(6));
}

TEST(CheckAdmission, InputThatCannotMakeItEvenAloneIsHopeless) {
  const GuardTimeModel model = ExactModel(0, 1.0);
  // The guard is busy until 0.2 s; the input needs 1 s and is due at 0.5 s.
  const AdmissionCheck a = CheckAdmission({}, Inputs({0.5}), At(0), At(0.2), model, 16);
  EXPECT_FALSE(a.admit);
  EXPECT_TRUE(a.hopeless_alone);
}

// An estimate that says everything is hopeless (a slow first call) must not
// lock the guard out: an idle guard takes the request and measures again.
TEST(CheckAdmission, IdleGuardTakesAHopelessRequestAsAProbe) {
  const GuardTimeModel model = ExactModel(0, 1.0);
  EXPECT_TRUE(CheckAdmission({}, Inputs({0.5}), At(0), At(0), model, 16).admit);
  // Not idle: refused (busy, or with work queued).
  EXPECT_FALSE(CheckAdmission({}, Inputs({0.5}), At(0), At(0.1), model, 16).admit);
  EXPECT_FALSE(CheckAdmission(Inputs({10}), Inputs({0.5}), At(0), At(0), model, 16).admit);
  // A probe is one input's: a second hopeless input is not taken along.
  EXPECT_FALSE(CheckAdmission({}, Inputs({0.5, 0.5}), At(0), At(0), model, 16).admit);
}

// ------------------------------------------------------ goodput, simulated
//
// A discrete-event run of one guard worker on a fake clock: Poisson arrivals,
// each input due `deadline_s` after it arrives, the guard taking exactly
// per_call + per_input * n seconds. "Good" = answered by its deadline.
struct SimResult {
  int good = 0, late = 0, dropped = 0, refused = 0;
};

SimResult Simulate(bool deadline_aware, double arrivals_per_s, double seconds, double deadline_s) {
  constexpr double kPerCall = 0.2, kPerInput = 1.3;  // 1B shape, categories on
  constexpr int kMaxBatch = 16;
  std::mt19937_64 rng(11);
  std::exponential_distribution<double> gap(arrivals_per_s);
  std::vector<double> arrivals;
  for (double t = gap(rng); t < seconds; t += gap(rng)) arrivals.push_back(t);

  SimResult r;
  GuardTimeModel model;
  std::deque<PlannedInput> queue;
  double worker_free = 0;
  size_t next = 0;
  auto admit = [&](double t) {
    const PlannedInput input{.text_bytes = 200, .deadline = At(t + deadline_s)};
    if (deadline_aware) {
      const std::vector<PlannedInput> queued(queue.begin(), queue.end());
      if (!CheckAdmission(queued, {&input, 1}, At(t), At(worker_free), model, kMaxBatch).admit) {
        ++r.refused;
        return;
      }
    }
    queue.push_back(input);
  };
  while (next < arrivals.size() || !queue.empty()) {
    // Arrivals up to the moment the worker can start (or the next one).
    const double start = std::max(worker_free, queue.empty() ? arrivals[next] : worker_free);
    while (next < arrivals.size() && arrivals[next] <= start) admit(arrivals[next++]);
    if (queue.empty()) continue;
    std::vector<PlannedInput> batch;
    if (deadline_aware) {
      const std::vector<PlannedInput> view(queue.begin(), queue.end());
      const BatchChoice c = ChooseBatch(view, At(start), model, kMaxBatch);
      for (size_t i : c.run) batch.push_back(view[i]);
      r.dropped += static_cast<int>(c.expired.size() + c.hopeless.size());
      queue.erase(queue.begin(), queue.begin() + c.examined);
    } else {  // before: up to max_batch in arrival order, expired ones dropped
      while (!queue.empty() && static_cast<int>(batch.size()) < kMaxBatch) {
        if (queue.front().deadline <= At(start)) {
          ++r.dropped;
        } else {
          batch.push_back(queue.front());
        }
        queue.pop_front();
      }
    }
    if (batch.empty()) {
      worker_free = start;
      continue;
    }
    const double took = kPerCall + kPerInput * static_cast<double>(batch.size());
    model.Observe(static_cast<int>(batch.size()), 200.0 * batch.size(), took);
    worker_free = start + took;
    for (const PlannedInput& in : batch) (At(worker_free) <= in.deadline ? r.good : r.late)++;
  }
  return r;
}

TEST(DeadlineAwareScheduling, KeepsGoodputUnderOverload) {
  // Capacity: with a 5 s deadline the best batch is 3 inputs per 4.1 s
  // (0.73 inputs/s). Offer 1x, 2x and 4x that for 600 s.
  for (double load : {0.73, 1.46, 2.92}) {
    const SimResult before = Simulate(false, load, 600, 5.0);
    const SimResult after = Simulate(true, load, 600, 5.0);
    SCOPED_TRACE(
        absl::StrFormat("load %.2f/s: before good %d late %d dropped %d; after good %d "
                        "late %d dropped %d refused %d",
                        load, before.good, before.late, before.dropped, after.good, after.late,
                        after.dropped, after.refused));
    EXPECT_EQ(after.late, 0);  // no guard time spent on answers that come too late
    // At least 80% of capacity answered in time once the load reaches it.
    EXPECT_GE(after.good, static_cast<int>(0.8 * 0.73 * 600 * std::min(1.0, load / 0.73)) - 40);
    if (load > 1.0) {
      EXPECT_LT(before.good, after.good / 4);  // before: batches outlive the deadline
    }
  }
}

}  // namespace
}  // namespace saferoute
