#include "eval/labels.h"

#include "eval/score_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace saferoute::eval {
namespace {

using ::testing::HasSubstr;

Example Ex(std::string id, bool unsafe) {
  Example e;
  e.id = std::move(id);
  e.unsafe = unsafe;
  e.file = "data.jsonl";
  e.line = 1;
  return e;
}
ScoreRecord Score(std::string id, double p) {
  ScoreRecord s;
  s.id = std::move(id);
  s.p_unsafe = p;
  return s;
}

TEST(HardLabelTest, EquationOneEveryCase) {
  // gold, small p, large p -> t
  const std::vector<Example> ex = {Ex("both_right", true), Ex("hard_fn", true),
                                   Ex("hard_fp", false),   Ex("large_wrong", false),
                                   Ex("both_wrong", true), Ex("tie_at_half", true)};
  const std::vector<ScoreRecord> small = {Score("both_right", 0.9), Score("hard_fn", 0.2),
                                          Score("hard_fp", 0.7),    Score("large_wrong", 0.1),
                                          Score("both_wrong", 0.4), Score("tie_at_half", 0.5)};
  const std::vector<ScoreRecord> large = {Score("both_right", 0.8), Score("hard_fn", 0.6),
                                          Score("hard_fp", 0.3),    Score("large_wrong", 0.9),
                                          Score("both_wrong", 0.1), Score("tie_at_half", 0.51)};
  const auto labels = ComputeHardLabels(ex, small, large);
  ASSERT_EQ(labels.size(), 6u);
  const std::vector<bool> t = {false, true, true, false, false, true};
  for (size_t i = 0; i < t.size(); ++i) EXPECT_EQ(labels[i].t, t[i]) << labels[i].id;
  // p = 0.5 is safe (strict threshold), so the small guard is wrong on an unsafe input.
  EXPECT_FALSE(labels[5].small_pred);
  EXPECT_TRUE(labels[5].large_pred);
}

TEST(AlignScoresTest, ReordersToDatasetOrder) {
  const std::vector<Example> ex = {Ex("a", true), Ex("b", false)};
  auto aligned = AlignScores(ex, {Score("b", 0.1), Score("a", 0.9)}, "s/scores.jsonl");
  ASSERT_TRUE(aligned.ok()) << aligned.status();
  EXPECT_EQ((*aligned)[0].id, "a");
  EXPECT_EQ((*aligned)[1].id, "b");
}

TEST(AlignScoresTest, MissingAndExtraIdsAreErrors) {
  const std::vector<Example> ex = {Ex("a", true), Ex("b", false)};
  auto missing = AlignScores(ex, {Score("a", 0.9)}, "s/scores.jsonl");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(),
              HasSubstr("s/scores.jsonl: has no score for id 'b' (data.jsonl:1)"));
  auto extra =
      AlignScores(ex, {Score("a", 0.9), Score("b", 0.1), Score("c", 0.3)}, "s/scores.jsonl");
  ASSERT_FALSE(extra.ok());
  EXPECT_THAT(extra.status().message(),
              HasSubstr("s/scores.jsonl:3: id 'c' is not in the dataset files"));
  auto dup = AlignScores(ex, {Score("a", 0.9), Score("a", 0.1)}, "s/scores.jsonl");
  EXPECT_THAT(dup.status().message(), HasSubstr("duplicate id 'a'"));
}

TEST(ScoreFileTest, RoundTripAndHostileRows) {
  ScoreRecord r;
  r.id = "x-1";
  r.p_unsafe = 0.25f;
  r.p_safe = 0.75;
  r.logit_safe = 1.5;
  r.logit_unsafe = -0.5;
  r.n_tokens = 42;
  r.latency_ms = 3.25;
  auto back = ParseScoreLine(ScoreRecordToJson(r), "s.jsonl", 1);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, "x-1");
  EXPECT_EQ(back->p_unsafe, r.p_unsafe);
  EXPECT_EQ(back->n_tokens, 42);
  EXPECT_EQ(back->latency_ms, 3.25);

  struct Case {
    std::string row, expected;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"id":"a","p_unsafe":1.5})", "s.jsonl:7: field 'p_unsafe' = 1.5 is outside [0, 1]"},
           {R"({"id":"a","p_unsafe":null})",
            "s.jsonl:7: field 'p_unsafe' is not a finite number (null)"},
           {R"({"id":"a","p_unsafe":NaN})", "s.jsonl:7: invalid JSON"},
           {R"({"p_unsafe":0.5})", "s.jsonl:7: missing or non-string field 'id'"},
           {R"({"id":"a"})", "s.jsonl:7: missing field 'p_unsafe'"},
           {R"({"id":"a","p_unsafe":0.5,"n_tokens":-3})",
            "s.jsonl:7: field 'n_tokens' is not a non-negative"},
           {R"({"id":"a","p_unsafe":0.5,"latency_ms":-1})",
            "s.jsonl:7: field 'latency_ms' is negative"},
           // Past 2^53 (and past int64: an undefined cast before, found by
           // score_file_fuzz).
           {R"({"id":"a","p_unsafe":0.5,"n_tokens":9007199254740994})",
            "s.jsonl:7: field 'n_tokens' is not a non-negative integer (at most 2^53)"},
           {R"({"id":"a","p_unsafe":0.5,"n_tokens":922337203685477580742})",
            "s.jsonl:7: field 'n_tokens' is not a non-negative integer (at most 2^53)"},
           {R"({"id":"a","p_unsafe":0.5,"n_tokens":1e300})",
            "s.jsonl:7: field 'n_tokens' is not a non-negative integer (at most 2^53)"},
           {R"({"id":"a","p_unsafe":0.5,"n_tokens":2.5})",
            "s.jsonl:7: field 'n_tokens' is not a non-negative integer (at most 2^53)"},
       }) {
    auto parsed = ParseScoreLine(c.row, "s.jsonl", 7);
    ASSERT_FALSE(parsed.ok()) << c.row;
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.expected)) << c.row;
  }
  auto largest =
      ParseScoreLine(R"({"id":"a","p_unsafe":0.5,"n_tokens":9007199254740992})", "s.jsonl", 7);
  ASSERT_TRUE(largest.ok()) << largest.status();
  EXPECT_EQ(largest->n_tokens, int64_t{1} << 53);
}

// meta.json's feature_dim is an int: a larger value is refused, not cut (an
// old score_file_fuzz finding).
TEST(ScoreFileTest, MetaFeatureDimMustFitAnInt) {
  auto with_dim = [](const std::string& d) {
    return ParseScoreMeta(R"({"guard":"tiny","feature_dim":)" + d + "}", "meta.json");
  };
  auto largest = with_dim("2147483647");
  ASSERT_TRUE(largest.ok()) << largest.status();
  EXPECT_EQ(largest->feature_dim, 2147483647);
  for (const char* bad : {"2147483648", "690071992547409934", "-3"}) {
    auto parsed = with_dim(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_THAT(parsed.status().message(),
                HasSubstr("feature_dim' is not a non-negative integer (at most 2147483647)"))
        << bad;
  }
}

}  // namespace
}  // namespace saferoute::eval
