// ScoreDataset with a deterministic fake Guard: file contents, features,
// meta.json, and crash recovery (a child process SIGKILLed mid-run, plus torn
// tails) giving output byte-identical to an uninterrupted run.
#include "eval/scoring.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "eval/score_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router/feature_set.h"

namespace saferoute::eval {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

uint64_t Hash(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// Verdicts are pure functions of the request text, so two runs agree exactly.
class FakeGuard : public Guard {
 public:
  explicit FakeGuard(int dim, int kill_on_call = -1) : dim_(dim), kill_on_call_(kill_on_call) {}
  absl::StatusOr<std::vector<GuardVerdict>> Classify(
      const std::vector<GuardRequest>& requests) override {
    if (++calls_ == kill_on_call_) ::raise(SIGKILL);  // die like a crashed process
    std::vector<GuardVerdict> out;
    for (const GuardRequest& r : requests) {
      const std::string text = r.prompt + "\x1f" + r.response.value_or("<none>");
      const uint64_t h = Hash(text);
      GuardVerdict v;
      v.logit_safe = static_cast<float>(h % 1000) / 100.0f;
      v.logit_unsafe = static_cast<float>((h >> 10) % 1000) / 100.0f;
      v.p_unsafe = 1.0f / (1.0f + std::exp(v.logit_safe - v.logit_unsafe));
      v.p_unsafe_full = v.p_unsafe / 2;
      v.p_safe_full = (1 - v.p_unsafe) / 2;
      v.unsafe = v.p_unsafe > 0.5f;
      v.n_tokens = static_cast<int>(text.size());
      v.timings.forward_ms = static_cast<double>(h % 97);
      if (r.want_feature) {
        for (int k = 0; k < dim_; ++k)
          v.feature.push_back(static_cast<float>((h >> (k % 48)) % 1000) / 250.0f - 2);
      }
      out.push_back(std::move(v));
    }
    return out;
  }
  int feature_dim() const override { return dim_; }
  std::string fingerprint() const override {
    return "fake-guard/layer-last/dim" + std::to_string(dim_);
  }
  std::string name() const override { return "fake-guard"; }
  int calls() const { return calls_; }

 private:
  int dim_;
  int kill_on_call_;
  int calls_ = 0;
};

std::vector<Example> MakeExamples(int n) {
  std::vector<Example> out;
  for (int i = 0; i < n; ++i) {
    Example e;
    e.id = "ex-" + std::to_string(i);
    e.prompt = "prompt number " + std::to_string(i);
    if (i % 3 == 0) e.response = "response " + std::to_string(i * 7);
    e.unsafe = i % 2;
    e.file = "mem.jsonl";
    e.line = i + 1;
    out.push_back(e);
  }
  return out;
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ScoringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("sr_scoring_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  ScoreOptions Options() const {
    ScoreOptions o;
    o.batch_size = 4;
    o.dataset_files = {"mem.jsonl"};
    o.progress = false;
    return o;
  }
  void ExpectSameOutput(const fs::path& a, const fs::path& b) {
    for (const char* f : {kScoresFile, kFeaturesFile, kMetaFile}) {
      ASSERT_TRUE(fs::exists(a / f)) << f;
      ASSERT_TRUE(fs::exists(b / f)) << f;
      EXPECT_EQ(Slurp(a / f), Slurp(b / f)) << f;
    }
    EXPECT_FALSE(fs::exists(b / kPartialFeaturesFile));
  }
  fs::path root_;
};

TEST_F(ScoringTest, WritesScoresFeaturesAndMeta) {
  const auto examples = MakeExamples(10);
  FakeGuard guard(6);
  auto summary = ScoreDataset(guard, examples, (root_ / "out").string(), Options());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->scored, 10);
  EXPECT_EQ(guard.calls(), 1 + 3);  // content-free input + ceil(10 / 4) batches

  auto scores = ReadScoreFile((root_ / "out" / kScoresFile).string());
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ(scores->size(), 10u);
  FakeGuard reference(6);
  for (size_t i = 0; i < examples.size(); ++i) {
    const GuardVerdict v = reference.Classify({RequestFor(examples[i], true)}).value()[0];
    EXPECT_EQ((*scores)[i].id, examples[i].id);
    EXPECT_EQ((*scores)[i].p_unsafe, v.p_unsafe);  // float -> JSON -> double is exact
    EXPECT_EQ((*scores)[i].logit_unsafe, v.logit_unsafe);
    EXPECT_EQ((*scores)[i].n_tokens, v.n_tokens);
    EXPECT_EQ((*scores)[i].latency_ms, v.timings.forward_ms);
  }

  // Read back through the router's reader: the format both sides agree on.
  auto table = ReadFeatureFile((root_ / "out" / kFeaturesFile).string());
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->dim, 6);
  EXPECT_EQ(table->fingerprint, guard.fingerprint());
  ASSERT_EQ(table->ids.size(), 10u);
  for (size_t i = 0; i < examples.size(); ++i) {
    EXPECT_EQ(table->ids[i], examples[i].id);
    const GuardVerdict v = reference.Classify({RequestFor(examples[i], true)}).value()[0];
    for (int k = 0; k < 6; ++k)
      EXPECT_EQ(table->features[i * 6 + k], v.feature[k]) << i << "," << k;
  }

  auto meta = ReadScoreMeta((root_ / "out" / kMetaFile).string());
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->guard_name, "fake-guard");
  EXPECT_EQ(meta->fingerprint, guard.fingerprint());
  ASSERT_TRUE(meta->content_free.has_value());
  Example blank;
  blank.prompt = " ";
  EXPECT_EQ(meta->content_free->p_unsafe,
            reference.Classify({RequestFor(blank, false)}).value()[0].p_unsafe);
  EXPECT_EQ(meta->dataset_files, std::vector<std::string>{"mem.jsonl"});
}

TEST_F(ScoringTest, KilledRunResumesByteIdenticalWithoutRework) {
  const auto examples = MakeExamples(23);
  FakeGuard clean_guard(5);
  ASSERT_TRUE(ScoreDataset(clean_guard, examples, (root_ / "clean").string(), Options()).ok());

  const std::string out = (root_ / "resumed").string();
  // A child process is SIGKILLed on its 4th Classify call: the content-free
  // call and batches 1-2 (8 examples) are on disk, batch 3 never returns.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FakeGuard dying(5, /*kill_on_call=*/4);
    (void)ScoreDataset(dying, examples, out, Options());
    ::_exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_FALSE(fs::exists(fs::path(out) / kFeaturesFile));

  // Simulate a kill in the middle of the next batch's writes too: half a
  // feature row and half a score line.
  {
    std::ofstream raw(fs::path(out) / kPartialFeaturesFile, std::ios::binary | std::ios::app);
    const float junk[3] = {1, 2, 3};
    raw.write(reinterpret_cast<const char*>(junk), sizeof(junk));
    std::ofstream scores(fs::path(out) / kScoresFile, std::ios::binary | std::ios::app);
    scores << R"({"id":"ex-8","p_uns)";
  }

  FakeGuard resumed_guard(5);
  auto summary = ScoreDataset(resumed_guard, examples, out, Options());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->resumed, 8);
  EXPECT_EQ(summary->scored, 15);
  // No rework: 4 batches for the remaining 15 examples, no second content-free call.
  EXPECT_EQ(resumed_guard.calls(), 4);
  ExpectSameOutput(root_ / "clean", out);

  // A finished directory is left alone.
  FakeGuard idle(5);
  auto again = ScoreDataset(idle, examples, out, Options());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(idle.calls(), 0);
  ExpectSameOutput(root_ / "clean", out);
}

TEST_F(ScoringTest, ScoreRowsBeyondTheFeatureRowsAreRedone) {
  const auto examples = MakeExamples(9);
  FakeGuard clean_guard(3);
  ASSERT_TRUE(ScoreDataset(clean_guard, examples, (root_ / "clean").string(), Options()).ok());
  const fs::path out = root_ / "partial";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FakeGuard dying(3, /*kill_on_call=*/4);  // 2 batches = 8 examples on disk
    (void)ScoreDataset(dying, examples, out.string(), Options());
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  // Lose the last feature row (as if the disk dropped it): 7 rows remain.
  fs::resize_file(out / kPartialFeaturesFile, 7 * 3 * sizeof(float));
  FakeGuard resumed(3);
  auto summary = ScoreDataset(resumed, examples, out.string(), Options());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->resumed, 7);
  ExpectSameOutput(root_ / "clean", out);
}

TEST_F(ScoringTest, RefusesToResumeAnotherGuardOrDataset) {
  const auto examples = MakeExamples(5);
  FakeGuard guard(4);
  const std::string out = (root_ / "out").string();
  ASSERT_TRUE(ScoreDataset(guard, examples, out, Options()).ok());
  FakeGuard other(8);
  auto wrong_guard = ScoreDataset(other, examples, out, Options());
  ASSERT_FALSE(wrong_guard.ok());
  EXPECT_THAT(wrong_guard.status().message(), HasSubstr("meta.json: field 'fingerprint'"));
  auto other_data = MakeExamples(6);
  auto wrong_data = ScoreDataset(guard, other_data, out, Options());
  ASSERT_FALSE(wrong_data.ok());
  EXPECT_THAT(wrong_data.status().message(), HasSubstr("meta.json: field 'n_examples'"));
}

TEST_F(ScoringTest, GuardErrorsNameTheBatch) {
  class FailingGuard : public FakeGuard {
   public:
    FailingGuard() : FakeGuard(2) {}
    absl::StatusOr<std::vector<GuardVerdict>> Classify(
        const std::vector<GuardRequest>& r) override {
      if (r.size() > 1) return absl::InvalidArgumentError("request 1: too many tokens");
      return FakeGuard::Classify(r);
    }
  } guard;
  auto s = ScoreDataset(guard, MakeExamples(5), (root_ / "out").string(), Options());
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(),
              HasSubstr("examples 0..3 (first id 'ex-0', mem.jsonl:1): request 1: too many"));
}

}  // namespace
}  // namespace saferoute::eval
