// Test doubles for the service tests: a scriptable Guard and a Router whose
// score is the first feature value. Header-only, used by *_test.cc only.
//
// FakeGuard reads its verdict from the prompt text (the last user/assistant
// turn for conversations): tokens "p=0.9" (p_unsafe), "r=0.7" (the feature,
// so the router score), "c=S1,S10" (categories), "fwd=250" and "dec=40"
// (timings.forward_ms / decode_ms). Defaults: p=0.1, r=0, no time.
// A guard built with own_p_key "lp" reads "lp=" first (the large guard).
#ifndef SAFEROUTE_CASCADE_TESTING_FAKE_GUARDS_H_
#define SAFEROUTE_CASCADE_TESTING_FAKE_GUARDS_H_

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "guard/guard.h"
#include "router/router.h"

namespace saferoute::fakes {

inline std::string TextOf(const GuardRequest& r) {
  if (!r.conversation.empty()) return r.conversation.back().content;
  return r.response ? *r.response : r.prompt;
}

// Value of "key=value" in `text`, or `fallback`.
inline std::string Field(const std::string& text, const std::string& key,
                         const std::string& fallback) {
  std::istringstream words(text);
  std::string word;
  while (words >> word) {
    if (word.rfind(key + "=", 0) == 0) return word.substr(key.size() + 1);
  }
  return fallback;
}

// What a fake guard's Classify passes through: it records each batch's size,
// counts the calls, and blocks while the gate is closed, so a test can hold
// a batch inside the guard and see what the scheduler does meanwhile.
class Gate {
 public:
  void Enter(int batch_size) {
    std::unique_lock lock(mu_);
    batch_sizes_.push_back(batch_size);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !closed_; });
  }
  void Close() {
    std::lock_guard l(mu_);
    closed_ = true;
  }
  void Open() {
    {
      std::lock_guard l(mu_);
      closed_ = false;
    }
    cv_.notify_all();
  }
  // Blocks until Enter has been called `n` times in total.
  void WaitEntered(int n) {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return entered_ >= n; });
  }
  std::vector<int> batch_sizes() {
    std::lock_guard l(mu_);
    return batch_sizes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  int entered_ = 0;
  std::vector<int> batch_sizes_;
};

class FakeGuard : public Guard {
 public:
  // `own_p_key`: a key this guard reads before "p" (e.g. "lp" for the large
  // guard), so one text can make the two guards disagree.
  explicit FakeGuard(std::string name, std::string own_p_key = "", int feature_dim = 1)
      : name_(std::move(name)), own_p_key_(std::move(own_p_key)), feature_dim_(feature_dim) {}

  absl::StatusOr<std::vector<GuardVerdict>> Classify(
      const std::vector<GuardRequest>& requests) override {
    {
      std::lock_guard l(mu_);
      last_requests_ = requests;
    }
    gate_.Enter(static_cast<int>(requests.size()));
    {
      std::lock_guard l(mu_);
      if (!fail_with_.ok()) return fail_with_;
    }
    std::vector<GuardVerdict> out;
    for (size_t i = 0; i < requests.size(); ++i) {
      const std::string text = TextOf(requests[i]);
      std::istringstream words(text);
      int n_words = 0;
      for (std::string w; words >> w;) ++n_words;
      if (max_words_ > 0 && n_words > max_words_) {
        // As LocalGuard: the index only where a batch holds several requests.
        const std::string index = requests.size() > 1 ? absl::StrCat("request ", i, ": ") : "";
        return absl::OutOfRangeError(absl::StrFormat("%s%d tokens, over the limit of %d per input",
                                                     index, n_words, max_words_));
      }
      GuardVerdict v;
      std::string p = Field(text, "p", "0.1");
      if (!own_p_key_.empty()) p = Field(text, own_p_key_, p);
      v.p_unsafe = std::strtof(p.c_str(), nullptr);
      v.unsafe = v.p_unsafe > 0.5f;
      if (requests[i].want_categories && v.unsafe) {
        const std::string codes = Field(text, "c", "");
        if (!codes.empty()) v.categories = absl::StrSplit(codes, ',');
      }
      if (requests[i].want_feature) {
        v.feature.assign(feature_dim_, 0.f);
        v.feature[0] = std::strtof(Field(text, "r", "0").c_str(), nullptr);
      }
      v.n_tokens = n_words;
      // "fwd=250" / "dec=40": the timings a LocalGuard would measure (ms).
      v.timings.forward_ms = std::strtod(Field(text, "fwd", "0").c_str(), nullptr);
      v.timings.decode_ms = std::strtod(Field(text, "dec", "0").c_str(), nullptr);
      out.push_back(std::move(v));
    }
    return out;
  }
  int feature_dim() const override { return feature_dim_; }
  std::string fingerprint() const override { return "fake-guard/final-norm"; }
  std::string name() const override { return name_; }
  // Its "c=S1,S10" codes are Llama Guard 3's.
  std::string format_name() const override { return "llama-guard-3-8b"; }

  // Test controls.
  void CloseGate() { gate_.Close(); }
  void OpenGate() { gate_.Open(); }
  // Blocks until Classify has been entered `n` times in total.
  void WaitEntered(int n) { gate_.WaitEntered(n); }
  void FailWith(absl::Status s) {
    std::lock_guard l(mu_);
    fail_with_ = std::move(s);
  }
  void SetMaxWords(int n) {
    std::lock_guard l(mu_);
    max_words_ = n;
  }
  std::vector<int> batch_sizes() { return gate_.batch_sizes(); }
  std::vector<GuardRequest> last_requests() {
    std::lock_guard l(mu_);
    return last_requests_;
  }

 private:
  const std::string name_;
  const std::string own_p_key_;
  const int feature_dim_;
  Gate gate_;
  std::mutex mu_;  // guards what follows
  int max_words_ = 0;
  absl::Status fail_with_;
  std::vector<GuardRequest> last_requests_;
};

// Score = feature[0]; calibration says threshold t sends (1 - t) of traffic
// (scores uniform on [0, 1]).
class FakeRouter : public Router {
 public:
  explicit FakeRouter(double threshold = 0.5, bool with_table = true) : threshold_(threshold) {
    if (with_table) {
      for (int i = 10; i >= 0; --i)
        table_.push_back({.threshold = i / 10.0, .large_share = 1 - i / 10.0});
    }
  }
  RouterType type() const override { return RouterType::kMlp; }
  int feature_dim() const override { return 1; }
  const std::string& feature_fingerprint() const override { return fingerprint_; }
  float Score(std::span<const float> feature) const override { return feature[0]; }
  void ScoreBatch(std::span<const float> features, std::span<float> out) const override {
    for (size_t i = 0; i < out.size(); ++i) out[i] = features[i];
  }
  double threshold() const override { return threshold_; }
  const std::vector<CalibrationPoint>& calibration() const override { return table_; }
  absl::StatusOr<double> ThresholdForShare(double share) const override {
    if (table_.empty()) return absl::FailedPreconditionError("router has no calibration table");
    return 1 - share;
  }
  absl::Status CheckFeatureSource(std::string_view fingerprint, int dim) const override {
    if (fingerprint != fingerprint_ || dim != 1) {
      return absl::FailedPreconditionError(absl::StrCat("trained on ", fingerprint_, " dim 1, got ",
                                                        std::string(fingerprint), " dim ", dim));
    }
    return absl::OkStatus();
  }

 private:
  double threshold_;
  std::string fingerprint_ = "fake-guard/final-norm";
  std::vector<CalibrationPoint> table_;
};

}  // namespace saferoute::fakes

#endif  // SAFEROUTE_CASCADE_TESTING_FAKE_GUARDS_H_
