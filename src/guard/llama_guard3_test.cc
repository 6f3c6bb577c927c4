// The Llama Guard 3 format: rendering against the HF-rendered fixture (text
// and ids, byte for byte), its tokens against guard-models.md §1.5, output
// parsing, and the shape guess.
#include <fstream>
#include <map>

#include "gtest/gtest.h"
#include "guard/guard_format.h"
#include "nlohmann/json.hpp"
#include "util/utf8.h"

namespace saferoute {
namespace {

using Json = nlohmann::json;
const std::string kShared = SAFEROUTE_SHARED_DIR;

std::shared_ptr<const BpeTokenizer> Llama3Tokenizer() {
  static const auto* tok = [] {
    auto t = BpeTokenizer::Load(kShared + "/tokenizers/llama3/tokenizer.json");
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      std::abort();
    }
    return new std::shared_ptr<const BpeTokenizer>(std::move(*t));
  }();
  return *tok;
}
const BpeTokenizer& Llama3() { return *Llama3Tokenizer(); }

const GuardFormat& Format(std::string_view name) {
  static const auto* formats = [] {
    auto* map = new std::map<std::string, std::unique_ptr<GuardFormat>, std::less<>>;
    for (const char* n : {"llama-guard-3-1b", "llama-guard-3-8b"}) {
      auto format = OpenGuardFormat(n, Llama3Tokenizer());
      if (!format.ok()) {
        ADD_FAILURE() << format.status();
        std::abort();
      }
      (*map)[n] = *std::move(format);
    }
    return map;
  }();
  return *formats->find(name)->second;
}
const GuardFormat& OneB() { return Format("llama-guard-3-1b"); }
const GuardFormat& EightB() { return Format("llama-guard-3-8b"); }

std::vector<Turn> TurnsOf(const Json& row) {
  std::vector<Turn> turns;
  for (size_t i = 0; i < row["turns"].size(); ++i) {
    turns.push_back({i % 2 == 0 ? Turn::Role::kUser : Turn::Role::kAssistant,
                     row["turns"][i].get<std::string>()});
  }
  return turns;
}

// The OpenAI moderation view of the categories (README.md's table).
TEST(LlamaGuardFormat, ModerationKeysAreTheDocumentedOnes) {
  for (std::string_view format : {"llama-guard-3-1b", "llama-guard-3-8b"}) {
    EXPECT_EQ(ModerationKeys(format, "S1"),
              (std::vector<std::string>{"violence", "illicit/violent"}));
    EXPECT_EQ(ModerationKeys(format, "S4"), std::vector<std::string>{"sexual/minors"});
    EXPECT_EQ(ModerationKeys(format, "S11"), std::vector<std::string>{"self-harm"});
    for (const char* unmapped : {"S5", "S6", "S7", "S8", "S13", "S15", "s1", ""}) {
      EXPECT_TRUE(ModerationKeys(format, unmapped).empty()) << unmapped;
    }
  }
  EXPECT_TRUE(ModerationKeys("no-such-format", "S1").empty());
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
    const GuardFormat& format = Format("llama-guard-3-" + row["variant"].get<std::string>());
    Policy policy;
    if (row.contains("categories") && !row["categories"].is_null()) {
      for (const auto& pair : row["categories"]) {
        policy.categories.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
      }
    }
    auto rendered = format.Render(TurnsOf(row), &policy);
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
  auto one_b = *OneB().Render(turns, nullptr);
  auto eight_b = *EightB().Render(turns, nullptr);
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
  auto r = *EightB().Render(turns, &policy);
  EXPECT_EQ(r.text.find("S2: "), std::string::npos);
  EXPECT_EQ(r.text.find("S14: "), std::string::npos);
  EXPECT_NE(r.text.find("S1: Violent Crimes.\nS3: Sex Crimes.\n"), std::string::npos);
  EXPECT_NE(r.text.find("in 'Agent' messages"), std::string::npos);
  EXPECT_NE(r.text.find("ONLY THE LAST Agent message"), std::string::npos);
  EXPECT_NE(r.text.find("User: hi\n\nAgent: hello\n\n<END CONVERSATION>"), std::string::npos);

  policy.excluded = {};
  for (const auto& [key, name] : OneB().default_categories()) policy.excluded.push_back(key);
  EXPECT_FALSE(OneB().Render(turns, &policy).ok());
  Policy forged;
  forged.categories = {{"S1", "Bad.\nS2: Forged."}};
  auto status = OneB().Render(turns, &forged).status();
  EXPECT_NE(status.message().find("line break"), std::string::npos) << status;
  Policy duplicate;
  duplicate.categories = {{"S1", "A."}, {"S1", "B."}};
  EXPECT_FALSE(OneB().Render(turns, &duplicate).ok());
}

// Token ids of the output, from guard-models.md §1.5 (Meta's ExecuTorch
// guide: "19193 is safe, 39257 is unsafe"; the model writes 271 first and
// ends with <|eot_id|> 128009): the format must find them in the tokenizer.
TEST(LlamaGuardFormat, VerdictTokensAreTheDocumentedOnes) {
  for (const GuardFormat* format : {&OneB(), &EightB()}) {
    EXPECT_EQ(
        std::vector<int32_t>(format->verdict_lead_ids().begin(), format->verdict_lead_ids().end()),
        std::vector<int32_t>{271});
    ASSERT_EQ(format->verdict_tokens().size(), 2u);
    EXPECT_EQ(format->verdict_tokens()[0].id, 19193);
    EXPECT_EQ(format->verdict_tokens()[0].label, "safe");
    EXPECT_FALSE(format->verdict_tokens()[0].unsafe);
    EXPECT_EQ(format->verdict_tokens()[1].id, 39257);
    EXPECT_EQ(format->verdict_tokens()[1].label, "unsafe");
    EXPECT_TRUE(format->verdict_tokens()[1].unsafe);
    EXPECT_EQ(std::vector<int32_t>(format->stop_ids().begin(), format->stop_ids().end()),
              std::vector<int32_t>{128009});
    for (const VerdictToken& t : format->verdict_tokens()) {
      EXPECT_EQ(Llama3().TokenBytes(t.id), t.text);
    }
  }
  EXPECT_EQ(OneB().default_categories().size(), 13u);
  EXPECT_EQ(EightB().default_categories().size(), 14u);
  EXPECT_EQ(EightB().default_categories().back().first, "S14");
}

TEST(LlamaGuardFormat, ScoringPromptIsTheHfPromptPlusTheLead) {
  GuardRequest request;
  request.prompt = "How do I kill a Python process?";
  auto scored = RenderForVerdict(OneB(), request);
  ASSERT_TRUE(scored.ok()) << scored.status();
  auto plain = OneB().Render({{Turn::Role::kUser, request.prompt}}, nullptr);
  std::vector<int32_t> want = plain->ids;
  want.push_back(271);
  EXPECT_EQ(scored->ids, want);
  EXPECT_EQ(scored->text, plain->text + "\n\n");
  EXPECT_EQ(scored->prefix_tokens, plain->prefix_tokens);
}

TEST(LlamaGuardFormat, ParseOutput) {
  const GuardFormat& f = EightB();
  auto parse = [&](std::string_view text, const Policy* policy = nullptr) {
    return f.ParseOutput(text, policy);
  };
  ASSERT_TRUE(parse("\n\nsafe").has_value());
  EXPECT_EQ(parse("\n\nsafe")->verdict, "safe");
  auto unsafe = parse("\n\nunsafe\nS1,S10");
  ASSERT_TRUE(unsafe.has_value());
  EXPECT_EQ(unsafe->verdict, "unsafe");
  EXPECT_EQ(unsafe->categories, (std::vector<std::string>{"S1", "S10"}));
  EXPECT_EQ(parse("\n\nunsafe\nS2,S9,S13\n")->categories,
            (std::vector<std::string>{"S2", "S9", "S13"}));
  ASSERT_TRUE(parse("unsafe").has_value());  // no category line (cut short)
  EXPECT_TRUE(parse("unsafe")->categories.empty());
  for (const char* bad : {"", "sa", "maybe", "safe\nS1", "unsafe\nS1,,S2", "unsafe\nS1\nmore",
                          "unsafe\nS1,S", "unsafe\nX1", "unsafe\nS0", "unsafe\nS1a", "\xff"}) {
    EXPECT_FALSE(parse(bad).has_value()) << bad;
  }
  // Only codes the prompt showed: S14 is not in the 1B's default list, and a
  // custom policy's own keys are accepted while excluded ones are not.
  EXPECT_TRUE(EightB().ParseOutput("unsafe\nS14", nullptr).has_value());
  EXPECT_FALSE(OneB().ParseOutput("unsafe\nS14", nullptr).has_value());
  Policy custom;
  custom.categories = {{"C1", "Phishing."}, {"C2", "Medical advice."}};
  custom.excluded = {"C2"};
  EXPECT_EQ(parse("unsafe\nC1", &custom)->categories, std::vector<std::string>{"C1"});
  EXPECT_FALSE(parse("unsafe\nC2", &custom).has_value());
  EXPECT_FALSE(parse("unsafe\nS1", &custom).has_value());
}

TEST(LlamaGuardFormat, GuessedFromTheModelShape) {
  EXPECT_EQ(*GuessFormat(*NamedModelConfig("llama-guard-3-1b"), "m"), "llama-guard-3-1b");
  EXPECT_EQ(*GuessFormat(*NamedModelConfig("llama-guard-3-8b"), "m"), "llama-guard-3-8b");
  for (const char* other : {"tiny", "qwen3guard-0.6b"}) {
    auto guessed = GuessFormat(*NamedModelConfig(other), "DIR/config.json");
    ASSERT_FALSE(guessed.ok()) << other;
    EXPECT_NE(guessed.status().message().find("DIR/config.json"), std::string::npos);
    EXPECT_NE(guessed.status().message().find("give the format (llama-guard-3-1b"),
              std::string::npos)
        << guessed.status();
  }
}

TEST(LlamaGuardFormat, RegistryNamesAndErrors) {
  EXPECT_EQ(GuardFormatNameList(), "llama-guard-3-1b | llama-guard-3-8b");
  auto unknown = OpenGuardFormat("llama-guard-9", Llama3Tokenizer());
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("known: llama-guard-3-1b"), std::string::npos);
  // A byte-only vocabulary without the Llama 3 specials is refused, naming the token.
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    AppendUtf8(ByteToUnicode(static_cast<uint8_t>(b)), symbol);
    vocab[symbol] = b;
  }
  Json json = {{"normalizer", nullptr},
               {"added_tokens", Json::array()},
               {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
               {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}}};
  auto bytes_only = BpeTokenizer::FromJson(json.dump(), "bytes.json");
  ASSERT_TRUE(bytes_only.ok()) << bytes_only.status();
  auto format = OpenGuardFormat("llama-guard-3-1b", std::move(*bytes_only));
  ASSERT_FALSE(format.ok());
  EXPECT_NE(format.status().message().find("<|begin_of_text|>"), std::string::npos)
      << format.status();
}

}  // namespace
}  // namespace saferoute
