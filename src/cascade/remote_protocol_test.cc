// Wire-format tests: request bodies as vLLM / llama.cpp document them, and
// parsers against the documented response shapes (guard-models.md §6) and
// against garbage. The verdict tokens are the Llama Guard 3 format's, opened
// on the real Llama 3 tokenizer; the bodies take their ids from it.
#include "cascade/remote_protocol.h"

#include <cmath>
#include <random>

#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "util/utf8.h"

namespace saferoute {
namespace {

using json = nlohmann::json;

std::span<const VerdictToken> Tokens() {
  static const GuardFormat* format = [] {
    auto tok =
        BpeTokenizer::Load(std::string(SAFEROUTE_SHARED_DIR) + "/tokenizers/llama3/tokenizer.json");
    if (!tok.ok()) {
      ADD_FAILURE() << tok.status();
      std::abort();
    }
    auto f = OpenGuardFormat("llama-guard-3-8b", std::move(*tok));
    if (!f.ok()) {
      ADD_FAILURE() << f.status();
      std::abort();
    }
    return f->release();
  }();
  return format->verdict_tokens();
}

// Verdict ids come from the format (on the real tokenizer); the bodies below
// write them as {SAFE} / {UNSAFE}.
int32_t IdOf(std::string_view label) {
  for (const VerdictToken& token : Tokens()) {
    if (token.label == label) return token.id;
  }
  ADD_FAILURE() << "no verdict token " << label;
  return -1;
}

std::string Ids(std::string body) {
  return absl::StrReplaceAll(
      body, {{"{SAFE}", absl::StrCat(IdOf("safe"))}, {"{UNSAFE}", absl::StrCat(IdOf("unsafe"))}});
}

const std::vector<int32_t> kIds = {7, 1, 2, 3, 4, 5, 1, 6, 3, 4};  // any prompt ids

// Two-way p(unsafe) written the textbook way, independent of the parser's
// 1 / (1 + e^(ls - lu)) form.
double TwoWay(double lu, double ls) { return std::exp(lu) / (std::exp(lu) + std::exp(ls)); }

TEST(RemoteProtocolTest, VllmRequestBodyIsTheDocumentedShape) {
  RemoteGuardOptions options;
  options.model = "meta-llama/Llama-Guard-3-8B";
  json body = json::parse(BuildVllmRequestBody(options, RemoteQuery{&kIds, 1}));
  EXPECT_EQ(body["model"], "meta-llama/Llama-Guard-3-8B");
  EXPECT_EQ(body["prompt"].get<std::vector<int32_t>>(), kIds);
  EXPECT_EQ(body["max_tokens"], 1);
  EXPECT_EQ(body["temperature"], 0);
  EXPECT_EQ(body["logprobs"], 20);
  EXPECT_EQ(body["return_tokens_as_token_ids"], true);
  options.vllm_return_token_ids = false;
  body = json::parse(BuildVllmRequestBody(options, RemoteQuery{&kIds, 12}));
  EXPECT_FALSE(body.contains("return_tokens_as_token_ids"));
  EXPECT_EQ(body["max_tokens"], 12);
}

TEST(RemoteProtocolTest, LlamaCppRequestBodyIsTheDocumentedShape) {
  RemoteGuardOptions options;
  options.kind = RemoteKind::kLlamaCpp;
  options.top_logprobs = 10;
  json body = json::parse(BuildLlamaCppRequestBody(options, RemoteQuery{&kIds, 1}));
  EXPECT_EQ(body["prompt"].get<std::vector<int32_t>>(), kIds);
  EXPECT_EQ(body["n_predict"], 1);
  EXPECT_EQ(body["n_probs"], 10);
  EXPECT_EQ(body["temperature"], 0);
  EXPECT_EQ(body["cache_prompt"], false);
  EXPECT_FALSE(body.contains("model"));
}

TEST(RemoteProtocolTest, VllmTextKeys) {
  // The example response of guard-models.md §6.1, plus filler tokens.
  const std::string body = R"({"id":"cmpl-1","object":"text_completion","choices":[{"index":0,
    "text":"unsafe","logprobs":{"tokens":["unsafe"],"token_logprobs":[-0.02],
    "top_logprobs":[{"unsafe":-0.02,"safe":-3.9,"Unsafe":-6.5,"\n":-8.0}],"text_offset":[0]},
    "finish_reason":"length"}]})";
  absl::StatusOr<RemoteScore> score = ParseVllmResponse(Ids(body), Tokens());
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_DOUBLE_EQ(score->logprobs[1], -0.02);
  EXPECT_DOUBLE_EQ(score->logprobs[0], -3.9);
  EXPECT_EQ(score->bounded, (std::vector<bool>{false, false}));
  EXPECT_EQ(score->text, "unsafe");
  EXPECT_TRUE(score->generated_ids.empty());  // text tokens carry no ids
  GuardVerdict verdict;
  FillVerdictFromScore(*score, Tokens(), verdict);
  EXPECT_NEAR(verdict.p_unsafe, TwoWay(-0.02, -3.9), 1e-6);
  EXPECT_TRUE(verdict.unsafe);
  EXPECT_NEAR(verdict.p_unsafe_full, std::exp(-0.02), 1e-6);
  EXPECT_NEAR(verdict.p_safe_full, std::exp(-3.9), 1e-6);
}

TEST(RemoteProtocolTest, VllmTokenIdKeys) {
  const std::string body = R"({"choices":[{"index":0,"text":"safe","logprobs":{
    "tokens":["token_id:{SAFE}"],"token_logprobs":[-0.1],
    "top_logprobs":[{"token_id:{SAFE}":-0.1,"token_id:{UNSAFE}":-2.4,"token_id:7":-5.0}]}}]})";
  absl::StatusOr<RemoteScore> score = ParseVllmResponse(Ids(body), Tokens());
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_DOUBLE_EQ(score->logprobs[0], -0.1);
  EXPECT_DOUBLE_EQ(score->logprobs[1], -2.4);
  EXPECT_EQ(score->generated_ids, std::vector<int32_t>({IdOf("safe")}));
  GuardVerdict verdict;
  FillVerdictFromScore(*score, Tokens(), verdict);
  EXPECT_NEAR(verdict.p_unsafe, TwoWay(-2.4, -0.1), 1e-6);
  EXPECT_FALSE(verdict.unsafe);
}

TEST(RemoteProtocolTest, MissingVerdictTokenIsBoundedBySmallestListed) {
  const std::string body = R"({"choices":[{"index":0,"text":"unsafe","logprobs":{
    "top_logprobs":[{"unsafe":-0.001,"Unsafe":-7.5,"\n":-9.25}]}}]})";
  absl::StatusOr<RemoteScore> score = ParseVllmResponse(Ids(body), Tokens());
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_TRUE(score->bounded[0]);
  EXPECT_FALSE(score->bounded[1]);
  EXPECT_DOUBLE_EQ(score->logprobs[0], -9.25);
  GuardVerdict verdict;
  FillVerdictFromScore(*score, Tokens(), verdict);
  EXPECT_NEAR(verdict.p_unsafe, TwoWay(-0.001, -9.25), 1e-6);
}

TEST(RemoteProtocolTest, VllmGarbageIsAClearErrorNamingTheField) {
  const std::span<const VerdictToken> tokens = Tokens();
  struct Case {
    const char* body;
    const char* expect_in_message;
  };
  const Case cases[] = {
      {"", "not valid JSON"},
      {"<html>502 Bad Gateway</html>", "not valid JSON"},
      {"[1,2]", "expected an object"},
      {R"({"choices":[]})", "'choices'"},
      {R"({"choices":[{"index":0,"text":"x","logprobs":null}]})", "choices[0].logprobs"},
      {R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[]}}]})", "top_logprobs"},
      {R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[null]}}]})", "top_logprobs[0]"},
      {R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"a":-1,"b":-2}]}}]})",
       "none of the verdict tokens 'safe' ({SAFE}), 'unsafe' ({UNSAFE})"},
      {R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"safe":"x","unsafe":-1}]}}]})",
       "expected a number"},
      {R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"safe":NaN,"unsafe":-1}]}}]})",
       "not valid JSON"},
      {R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"safe":-Infinity,"unsafe":-1}]}}]})",
       "not valid JSON"},
      {R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"safe":0.7,"unsafe":-1}]}}]})",
       "> 0"},
      {R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"safe":1e400,"unsafe":-1}]}}]})", ""},
      {R"({"object":"error","error":{"message":"model not loaded"}})", "model not loaded"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<RemoteScore> score = ParseVllmResponse(Ids(c.body), tokens);
    ASSERT_FALSE(score.ok()) << c.body;
    EXPECT_EQ(score.status().code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_NE(score.status().message().find(Ids(c.expect_in_message)), absl::string_view::npos)
        << c.body << " -> " << score.status();
  }
}

TEST(RemoteProtocolTest, LlamaCppCurrentShapeMatchesById) {
  // guard-models.md §6.2 example; the ids decide, not the strings.
  const std::string body = R"({"content":"unsafe","tokens":[{UNSAFE}],"completion_probabilities":[
    {"id":{UNSAFE},"token":"unsafe","bytes":[117],"logprob":-0.02,"top_logprobs":[
      {"id":{UNSAFE},"token":"unsafe","bytes":[117],"logprob":-0.02},
      {"id":{SAFE},"token":"safe","bytes":[115],"logprob":-3.9},
      {"id":7,"token":"safe","bytes":[32],"logprob":-8.5}]}],"stop_type":"limit"})";
  absl::StatusOr<RemoteScore> score = ParseLlamaCppResponse(Ids(body), Tokens());
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_DOUBLE_EQ(score->logprobs[1], -0.02);
  EXPECT_DOUBLE_EQ(score->logprobs[0], -3.9);
  EXPECT_EQ(score->text, "unsafe");
  EXPECT_EQ(score->generated_ids, std::vector<int32_t>({IdOf("unsafe")}));
}

TEST(RemoteProtocolTest, LlamaCppPostSamplingProbs) {
  const std::string body = R"({"content":"safe","completion_probabilities":[{"id":{SAFE},
    "token":"safe","prob":0.75,"top_probs":[{"id":{SAFE},"token":"safe","prob":0.75},
    {"id":{UNSAFE},"token":"unsafe","prob":0.25}]}]})";
  absl::StatusOr<RemoteScore> score = ParseLlamaCppResponse(Ids(body), Tokens());
  ASSERT_TRUE(score.ok()) << score.status();
  GuardVerdict verdict;
  FillVerdictFromScore(*score, Tokens(), verdict);
  EXPECT_NEAR(verdict.p_unsafe, 0.25, 1e-6);
  EXPECT_NEAR(verdict.p_safe_full, 0.75, 1e-6);
}

TEST(RemoteProtocolTest, LlamaCppOldProbsShapes) {
  // Before ~Dec 2024: string tokens and probabilities, per position...
  const std::string nested = R"({"content":"unsafe","completion_probabilities":[{"content":"unsafe",
    "probs":[{"tok_str":"unsafe","prob":0.6},{"tok_str":"safe","prob":0.3},{"tok_str":"\n","prob":0.1}]}]})";
  absl::StatusOr<RemoteScore> score = ParseLlamaCppResponse(Ids(nested), Tokens());
  ASSERT_TRUE(score.ok()) << score.status();
  GuardVerdict verdict;
  FillVerdictFromScore(*score, Tokens(), verdict);
  EXPECT_NEAR(verdict.p_unsafe, 0.6 / 0.9, 1e-6);
  EXPECT_NEAR(verdict.p_unsafe_full, 0.6, 1e-6);
  // ...or as a top-level "probs" list (guard-models.md §6.2 wording).
  const std::string flat =
      R"({"content":"safe","probs":[{"tok_str":"safe","prob":0.9},{"tok_str":"unsafe","prob":0.05}]})";
  score = ParseLlamaCppResponse(Ids(flat), Tokens());
  ASSERT_TRUE(score.ok()) << score.status();
  FillVerdictFromScore(*score, Tokens(), verdict);
  EXPECT_NEAR(verdict.p_unsafe, 0.05 / 0.95, 1e-6);
  EXPECT_FALSE(verdict.unsafe);
}

TEST(RemoteProtocolTest, LlamaCppGarbage) {
  const char* bodies[] = {
      "null",
      R"({"content":"safe"})",
      R"({"completion_probabilities":[]})",
      R"({"completion_probabilities":[{"id":1}]})",
      R"({"completion_probabilities":[{"top_logprobs":[{"id":"x","logprob":-1}]}]})",
      R"({"completion_probabilities":[{"top_logprobs":[{"id":{SAFE}}]}]})",
      R"({"completion_probabilities":[{"top_logprobs":[{"logprob":-1}]}]})",
      R"({"completion_probabilities":[{"top_probs":[{"id":{SAFE},"prob":1.5}]}]})",
      R"({"completion_probabilities":[{"top_probs":[{"id":{SAFE},"prob":0},{"id":{UNSAFE},"prob":0}]}]})",
      R"({"completion_probabilities":[{"top_logprobs":[{"id":5,"logprob":-1}]}]})",
      R"({"completion_probabilities":[{"top_logprobs":[{"id":{SAFE},"logprob":-1}]}],"tokens":["a"]})",
  };
  for (const char* body : bodies) {
    absl::StatusOr<RemoteScore> score = ParseLlamaCppResponse(Ids(body), Tokens());
    EXPECT_FALSE(score.ok()) << body;
  }
}

// Generated ids are token ids: one that does not fit (a 64-bit integer, a
// negative) is refused, not wrapped into another id.
TEST(RemoteProtocolTest, LlamaCppGeneratedIdsOutsideTheTokenRangeAreRefused) {
  for (const char* ids : {"[4294967296]", "[4294998489]", "[-1]", "[18446744073709551615]"}) {
    const std::string body = absl::StrCat(
        R"({"tokens":)", ids,
        R"(,"completion_probabilities":[{"top_logprobs":[{"id":{SAFE},"logprob":-1}]}]})");
    absl::StatusOr<RemoteScore> score = ParseLlamaCppResponse(Ids(body), Tokens());
    ASSERT_FALSE(score.ok()) << body << " -> ids "
                             << ::testing::PrintToString(score->generated_ids);
    EXPECT_NE(score.status().message().find("'tokens'"), absl::string_view::npos) << score.status();
  }
}

// A body that is not JSON is quoted in the error, which goes into logs and
// JSON responses: the quote is valid UTF-8 even when the body is not, or when
// its first 80 bytes end inside a character.
TEST(RemoteProtocolTest, ErrorQuotingABodyIsValidUtf8) {
  const std::string bodies[] = {"\xff\xfe<html>", std::string(79, 'x') + "\xc3\xa9 and more"};
  for (const std::string& body : bodies) {
    for (bool is_vllm : {true, false}) {
      absl::StatusOr<RemoteScore> score =
          is_vllm ? ParseVllmResponse(body, Tokens()) : ParseLlamaCppResponse(body, Tokens());
      ASSERT_FALSE(score.ok());
      const absl::string_view message = score.status().message();
      EXPECT_EQ(FindInvalidUtf8(std::string_view(message.data(), message.size())),
                std::string_view::npos)
          << score.status();
      EXPECT_NE(message.find("not valid JSON"), absl::string_view::npos) << score.status();
    }
  }
}

// Every prefix of a valid body, and random byte flips, must give an error or
// a well-formed score: never a crash, never a NaN.
TEST(RemoteProtocolTest, TruncatedAndCorruptedBodiesNeverCrash) {
  const std::string vllm = Ids(
      R"({"choices":[{"index":0,"text":"unsafe\nS1","logprobs":{"tokens":["token_id:{UNSAFE}"],"top_logprobs":[{"token_id:{UNSAFE}":-0.02,"token_id:{SAFE}":-3.9}]}}]})");
  const std::string llama = Ids(
      R"({"content":"unsafe","tokens":[{UNSAFE}],"completion_probabilities":[{"id":{UNSAFE},"logprob":-0.02,"top_logprobs":[{"id":{UNSAFE},"logprob":-0.02},{"id":{SAFE},"logprob":-3.9}]}]})");
  std::mt19937 rng(7);
  for (bool is_vllm : {true, false}) {
    const std::string& valid = is_vllm ? vllm : llama;
    auto parse = [&](const std::string& body) {
      return is_vllm ? ParseVllmResponse(body, Tokens()) : ParseLlamaCppResponse(body, Tokens());
    };
    ASSERT_TRUE(parse(valid).ok());
    for (size_t n = 0; n < valid.size(); ++n) EXPECT_FALSE(parse(valid.substr(0, n)).ok()) << n;
    for (int i = 0; i < 2000; ++i) {
      std::string body = valid;
      body[rng() % body.size()] = static_cast<char>(rng() % 256);
      absl::StatusOr<RemoteScore> score = parse(body);
      if (score.ok()) {
        GuardVerdict verdict;
        FillVerdictFromScore(*score, Tokens(), verdict);
        EXPECT_TRUE(std::isfinite(verdict.p_unsafe)) << body;
        EXPECT_GE(verdict.p_unsafe, 0.0f);
        EXPECT_LE(verdict.p_unsafe, 1.0f);
      }
    }
  }
}

}  // namespace
}  // namespace saferoute
