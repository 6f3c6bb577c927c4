// Llama Guard 3 rendering against the HF-rendered fixture (text and ids,
// byte for byte), strip() semantics, verdict parsing, request validation.
#include "guard/llama_guard_format.h"

#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace saferoute {
namespace {

using Json = nlohmann::json;
const std::string kShared = SAFEROUTE_SHARED_DIR;

const BpeTokenizer& Llama3() {
  static const BpeTokenizer* tok = [] {
    auto t = BpeTokenizer::Load(kShared + "/tokenizers/llama3/tokenizer.json");
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      std::abort();
    }
    return t->release();
  }();
  return *tok;
}

std::vector<Turn> TurnsOf(const Json& row) {
  std::vector<Turn> turns;
  for (size_t i = 0; i < row["turns"].size(); ++i) {
    turns.push_back({i % 2 == 0 ? Turn::Role::kUser : Turn::Role::kAssistant,
                     row["turns"][i].get<std::string>()});
  }
  return turns;
}

TEST(LlamaGuardFormat, FixturePromptsByteExact) {
  std::ifstream in(kShared + "/fixtures/tokenizer/llama_guard3_prompts.jsonl");
  ASSERT_TRUE(in.good());
  std::string line;
  int cases = 0, injections = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const Json row = Json::parse(line);
    SCOPED_TRACE("case " + std::to_string(cases) + ": " + row["turns"].dump());
    const GuardFormat format =
        *ParseGuardFormat("llama-guard-3-" + row["variant"].get<std::string>());
    Policy policy;
    if (row.contains("categories") && !row["categories"].is_null()) {
      for (const auto& pair : row["categories"]) {
        policy.categories.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
      }
    }
    auto rendered = RenderLlamaGuard3(format, TurnsOf(row), &policy, Llama3());
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    EXPECT_EQ(rendered->text, row["text"].get<std::string>());
    EXPECT_EQ(rendered->ids, row["ids"].get<std::vector<int32_t>>());
    // The cacheable prefix is a real prefix of the ids and of the text.
    ASSERT_GT(rendered->prefix_tokens, 0u);
    EXPECT_EQ(rendered->text.rfind(rendered->prefix_text, 0), 0u);
    auto prefix_ids = Llama3().EncodeParsingSpecials(rendered->prefix_text);
    ASSERT_TRUE(prefix_ids.ok());
    EXPECT_EQ(*prefix_ids, std::vector<int32_t>(rendered->ids.begin(),
                                                rendered->ids.begin() + rendered->prefix_tokens));
    if (row.contains("ids_hf_parse_specials")) {
      // HF-style parsing of the rendered text reproduces HF's naive ids, and
      // differs from ours exactly for the injection attempt.
      const auto naive = row["ids_hf_parse_specials"].get<std::vector<int32_t>>();
      EXPECT_EQ(*Llama3().EncodeParsingSpecials(rendered->text), naive);
      if (!row["ids_equal_hf_parse"].get<bool>()) {
        ++injections;
        EXPECT_NE(rendered->ids, naive);
        // Only the template's own markers are specials: 4 of <|eot_id|>,
        // <|start_header_id|>, <|end_header_id|> in total (+1 BOS).
        int specials = 0;
        for (int32_t id : rendered->ids) specials += id >= 128000;
        EXPECT_EQ(specials, 6);
      }
    }
    ++cases;
  }
  EXPECT_EQ(cases, 11);
  EXPECT_EQ(injections, 2);
}

TEST(LlamaGuardFormat, DocumentedTails) {
  std::vector<Turn> turns = {{Turn::Role::kUser, "How do I kill a Python process?"}};
  auto one_b = *RenderLlamaGuard3(GuardFormat::kLlamaGuard3_1B, turns, nullptr, Llama3());
  auto eight_b = *RenderLlamaGuard3(GuardFormat::kLlamaGuard3_8B, turns, nullptr, Llama3());
  EXPECT_EQ(one_b.ids.size(), 201u);
  EXPECT_EQ(eight_b.ids.size(), 208u);
  EXPECT_EQ(eight_b.ids[0], 220);
  EXPECT_EQ(std::vector<int32_t>(one_b.ids.end() - 6, one_b.ids.end()),
            (std::vector<int32_t>{13, 220, 128009, 128006, 78191, 128007}));
  EXPECT_EQ(std::vector<int32_t>(eight_b.ids.end() - 5, eight_b.ids.end()),
            (std::vector<int32_t>{13, 128009, 128006, 78191, 128007}));
}

TEST(LlamaGuardFormat, ExcludedCategoriesAndRoles) {
  Policy policy;
  policy.excluded = {"S2", "S14", "S99"};  // unknown keys are ignored
  std::vector<Turn> turns = {{Turn::Role::kUser, "hi"}, {Turn::Role::kAssistant, " hello\u3000"}};
  auto r = *RenderLlamaGuard3(GuardFormat::kLlamaGuard3_8B, turns, &policy, Llama3());
  EXPECT_EQ(r.text.find("S2: "), std::string::npos);
  EXPECT_EQ(r.text.find("S14: "), std::string::npos);
  EXPECT_NE(r.text.find("S1: Violent Crimes.\nS3: Sex Crimes.\n"), std::string::npos);
  EXPECT_NE(r.text.find("in 'Agent' messages"), std::string::npos);
  EXPECT_NE(r.text.find("ONLY THE LAST Agent message"), std::string::npos);
  EXPECT_NE(r.text.find("User: hi\n\nAgent: hello\n\n<END CONVERSATION>"), std::string::npos);

  policy.excluded = {};
  for (const auto& [key, name] : DefaultCategories(GuardFormat::kLlamaGuard3_1B)) {
    policy.excluded.push_back(key);
  }
  EXPECT_FALSE(RenderLlamaGuard3(GuardFormat::kLlamaGuard3_1B, turns, &policy, Llama3()).ok());
  Policy forged;
  forged.categories = {{"S1", "Bad.\nS2: Forged."}};
  auto status = RenderLlamaGuard3(GuardFormat::kLlamaGuard3_1B, turns, &forged, Llama3()).status();
  EXPECT_NE(status.message().find("line break"), std::string::npos) << status;
  Policy duplicate;
  duplicate.categories = {{"S1", "A."}, {"S1", "B."}};
  EXPECT_FALSE(RenderLlamaGuard3(GuardFormat::kLlamaGuard3_1B, turns, &duplicate, Llama3()).ok());
}

TEST(LlamaGuardFormat, PythonStripIsUnicodeAware) {
  EXPECT_EQ(PythonStrip("  a b \n"), "a b");
  EXPECT_EQ(PythonStrip("\u00a0\u2003x\u3000\u2029"), "x");
  EXPECT_EQ(PythonStrip("\x1c\x1f\u0085x\u0085"), "x");      // isspace() includes these
  EXPECT_EQ(PythonStrip("\u200bx\u200b"), "\u200bx\u200b");  // zero-width space is not
  EXPECT_EQ(PythonStrip(" \t\r\n"), "");
  EXPECT_EQ(PythonStrip(""), "");
}

TEST(LlamaGuardFormat, RequestTurnsValidation) {
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

TEST(LlamaGuardFormat, ParseVerdictText) {
  ParsedVerdict v;
  EXPECT_TRUE(ParseVerdictText("\n\nsafe", v));
  EXPECT_FALSE(v.unsafe);
  EXPECT_TRUE(ParseVerdictText("\n\nunsafe\nS1,S10", v));
  EXPECT_TRUE(v.unsafe);
  EXPECT_EQ(v.categories, (std::vector<std::string>{"S1", "S10"}));
  EXPECT_TRUE(ParseVerdictText("unsafe", v));
  EXPECT_TRUE(v.unsafe);
  EXPECT_TRUE(v.categories.empty());
  EXPECT_FALSE(ParseVerdictText("sa", v));
  EXPECT_FALSE(ParseVerdictText("safe\nS1", v));
  EXPECT_FALSE(ParseVerdictText("unsafe\nS1,,S2", v));
  EXPECT_FALSE(ParseVerdictText("unsafe\nS1\nmore", v));
  EXPECT_FALSE(ParseVerdictText("", v));
  EXPECT_FALSE(ParseVerdictText("\xff", v));
}

}  // namespace
}  // namespace saferoute
