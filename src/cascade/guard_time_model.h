// A running estimate of how long one Guard::Classify call takes, from the
// calls already made: seconds = per_batch + per_input * inputs
// + per_kilobyte * kilobytes of input text, fitted by non-negative least
// squares over the most recent `window` calls.
//
// Why these terms: a batch streams the weights once (per_batch), every input
// pays its own prompt suffix and, with categories on, a greedy decode that is
// not batched (per_input), and prefill grows with the prompt's tokens, which
// the text length predicts without tokenizing (per_kilobyte). A term joins
// the fit only if it lowers the squared error by more than 2% over the
// simpler fit ("if it pays"); with one call seen, the whole time is per input
// (the estimate that errs slow for bigger batches, never fast).
//
// Planning uses PredictUpper: the fit times the 90th percentile of the ratio
// of actual to predicted time over the recent calls (each predicted before
// it was seen, by a fit of at least two calls; clamped to [1, 2]; 1.25 until
// there is one), so a guard whose times scatter (a shared machine) gets
// planned with room for that scatter.
//
// Not thread-safe: the batch scheduler calls it under its own lock.
#ifndef SAFEROUTE_CASCADE_GUARD_TIME_MODEL_H_
#define SAFEROUTE_CASCADE_GUARD_TIME_MODEL_H_

#include <deque>
#include <string>

namespace saferoute {

class GuardTimeModel {
 public:
  explicit GuardTimeModel(int window = 16);

  // One finished call: `inputs` inputs with `text_bytes` of text in total
  // took `seconds`.
  void Observe(int inputs, double text_bytes, double seconds);

  // False until the first Observe: nothing is known about the guard yet.
  bool ready() const { return !calls_.empty(); }
  // Predicted seconds for a call (0 before the first Observe).
  double Predict(int inputs, double text_bytes) const;
  // Predict times the recent scatter factor (see above): what planning uses.
  double PredictUpper(int inputs, double text_bytes) const;
  double scatter() const { return scatter_; }

  struct Coefficients {
    double per_batch_s = 0, per_input_s = 0, per_kilobyte_s = 0;
  };
  const Coefficients& coefficients() const { return fit_; }
  std::string DebugString() const;

 private:
  struct Call {
    double inputs, kilobytes, seconds;
  };
  void Refit();

  const size_t window_;
  std::deque<Call> calls_;
  std::deque<double> ratios_;  // actual / predicted, out of sample
  Coefficients fit_;
  double scatter_ = 1.25;
};

}  // namespace saferoute

#endif  // SAFEROUTE_CASCADE_GUARD_TIME_MODEL_H_
