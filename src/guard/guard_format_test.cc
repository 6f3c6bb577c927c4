// What every guard does with a format, independent of the family: request
// validation, Python strip() semantics, and the verdict score against a
// plain full-vocabulary softmax written out here.
#include "guard/guard_format.h"

#include <cmath>
#include <limits>
#include <random>

#include "gtest/gtest.h"
#include "guard/template_text.h"

namespace saferoute {
namespace {

TEST(TemplateText, PythonStripIsUnicodeAware) {
  EXPECT_EQ(PythonStrip("  a b \n"), "a b");
  EXPECT_EQ(PythonStrip("\u00a0\u2003x\u3000\u2029"), "x");
  EXPECT_EQ(PythonStrip("\x1c\x1f\u0085x\u0085"), "x");      // isspace() includes these
  EXPECT_EQ(PythonStrip("\u200bx\u200b"), "\u200bx\u200b");  // zero-width space is not
  EXPECT_EQ(PythonStrip(" \t\r\n"), "");
  EXPECT_EQ(PythonStrip(""), "");
  EXPECT_EQ(SplitOn("a,,b", ','), (std::vector<std::string_view>{"a", "", "b"}));
}

TEST(GuardFormat, RequestTurnsValidation) {
  GuardRequest request;
  request.prompt = "p";
  request.response = "r";
  auto turns = RequestTurns(request);
  ASSERT_TRUE(turns.ok());
  ASSERT_EQ(turns->size(), 2u);
  EXPECT_EQ((*turns)[1].role, Turn::Role::kAssistant);

  GuardRequest both = request;
  both.conversation = {{Turn::Role::kUser, "x"}};
  EXPECT_FALSE(RequestTurns(both).ok());

  GuardRequest bad_order;
  bad_order.conversation = {{Turn::Role::kUser, "x"}, {Turn::Role::kUser, "y"}};
  EXPECT_NE(RequestTurns(bad_order).status().message().find("turn 1"), std::string::npos);

  GuardRequest bad_utf8;
  bad_utf8.prompt = std::string("ok \xED\xA0\x80 lone surrogate");
  auto status = RequestTurns(bad_utf8).status();
  EXPECT_NE(status.message().find("byte offset 3"), std::string::npos) << status;
  EXPECT_NE(status.message().find("turn 0"), std::string::npos) << status;
}

// Reference: softmax over the whole vocabulary, then sums of the classes.
struct Reference {
  double p_unsafe_two_way, p_unsafe_full, p_safe_full;
};
Reference ReferenceScore(const std::vector<double>& vocab_logits,
                         const std::vector<VerdictToken>& tokens) {
  double denominator = 0;
  for (double l : vocab_logits) denominator += std::exp(l);
  double safe = 0, unsafe = 0;
  for (const VerdictToken& t : tokens) {
    (t.unsafe ? unsafe : safe) += std::exp(vocab_logits[t.id]) / denominator;
  }
  return {unsafe / (safe + unsafe), unsafe, safe};
}

TEST(GuardFormat, ScoreVerdictMatchesAFullSoftmaxForTwoAndThreeWayFormats) {
  const std::vector<VerdictToken> two_way = {
      {.label = "safe", .id = 3, .text = "safe", .unsafe = false},
      {.label = "unsafe", .id = 7, .text = "unsafe", .unsafe = true}};
  const std::vector<VerdictToken> three_way = {
      {.label = "safe", .id = 1, .text = "safe", .unsafe = false},
      {.label = "unsafe", .id = 4, .text = "unsafe", .unsafe = true},
      {.label = "controversial", .id = 9, .text = "controversial", .unsafe = true}};
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0, 3);
  for (const auto* tokens : {&two_way, &three_way}) {
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<double> vocab(16);
      for (double& l : vocab) l = normal(rng);
      double lse = 0;
      for (double l : vocab) lse += std::exp(l);
      lse = std::log(lse);
      std::vector<double> logits;
      for (const VerdictToken& t : *tokens) logits.push_back(vocab[t.id]);
      GuardVerdict v;
      ScoreVerdict(*tokens, logits, lse, v);
      const Reference want = ReferenceScore(vocab, *tokens);
      EXPECT_NEAR(v.p_unsafe, want.p_unsafe_two_way, 1e-6);
      EXPECT_NEAR(v.p_unsafe_full, want.p_unsafe_full, 1e-6);
      EXPECT_NEAR(v.p_safe_full, want.p_safe_full, 1e-6);
      // Log-probabilities (normalizer 0) give the same two-way score.
      std::vector<double> logprobs;
      for (double l : logits) logprobs.push_back(l - lse);
      GuardVerdict from_logprobs;
      ScoreVerdict(*tokens, logprobs, 0, from_logprobs);
      EXPECT_NEAR(from_logprobs.p_unsafe, v.p_unsafe, 1e-6);
      EXPECT_NEAR(from_logprobs.p_unsafe_full, v.p_unsafe_full, 1e-6);
    }
  }
  // One impossible group: exactly 0 or 1, never NaN.
  const double inf = std::numeric_limits<double>::infinity();
  GuardVerdict v;
  ScoreVerdict(two_way, std::vector<double>{-inf, -0.5}, 0, v);
  EXPECT_EQ(v.p_unsafe, 1.0f);
  ScoreVerdict(two_way, std::vector<double>{-0.5, -inf}, 0, v);
  EXPECT_EQ(v.p_unsafe, 0.0f);
  EXPECT_EQ(v.p_unsafe_full, 0.0f);
}

}  // namespace
}  // namespace saferoute
