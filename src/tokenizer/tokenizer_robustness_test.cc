// Bounded fuzzing of the tokenizer on hostile input (runs in CI, a few
// seconds): random bytes, random Unicode, 1 MB inputs, malformed UTF-8 and
// lone surrogates never crash; valid text round-trips; invalid text gets an
// error naming the byte offset; tokenizer.json damage gets a named error.
#include <chrono>
#include <random>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_tokenizer.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

using Json = nlohmann::json;
const std::string kTokenizerPath =
    std::string(SAFEROUTE_SHARED_DIR) + "/tokenizers/llama3/tokenizer.json";

const BpeTokenizer& Llama3() {
  static const BpeTokenizer* tok = [] {
    auto t = BpeTokenizer::Load(kTokenizerPath);
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      std::abort();
    }
    return t->release();
  }();
  return *tok;
}

void ExpectRoundTripOrOffsetError(const std::string& text) {
  auto ids = Llama3().Encode(text);
  const size_t bad = FindInvalidUtf8(text);
  if (bad == std::string::npos) {
    ASSERT_TRUE(ids.ok()) << ids.status();
    auto decoded = Llama3().Decode(*ids);
    ASSERT_TRUE(decoded.ok());
    ASSERT_EQ(*decoded, text);
  } else {
    ASSERT_FALSE(ids.ok());
    ASSERT_NE(ids.status().message().find("byte offset " + std::to_string(bad)), std::string::npos)
        << ids.status();
  }
}

TEST(TokenizerFuzz, RandomBytes) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 64);
  for (int i = 0; i < 20000; ++i) {
    std::string text;
    for (int k = len(rng); k > 0; --k) text.push_back(static_cast<char>(byte(rng)));
    ExpectRoundTripOrOffsetError(text);
  }
}

TEST(TokenizerFuzz, RandomUnicode) {
  std::mt19937 rng(2);
  // Mostly BMP and astral scalar values, some ASCII; surrogates skipped.
  std::uniform_int_distribution<uint32_t> cp(0, 0x10FFFF), ascii(0, 127), len(0, 40);
  for (int i = 0; i < 5000; ++i) {
    std::string text;
    for (int k = len(rng); k > 0; --k) {
      char32_t c = (k % 3 == 0) ? ascii(rng) : cp(rng);
      if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;
      AppendUtf8(c, text);
    }
    ExpectRoundTripOrOffsetError(text);
  }
}

TEST(TokenizerFuzz, LoneSurrogatesAndSpecialsAsText) {
  ExpectRoundTripOrOffsetError("abc\xED\xA0\x80xyz");           // CESU-8 high surrogate
  ExpectRoundTripOrOffsetError("\xED\xB0\x80");                 // low surrogate
  ExpectRoundTripOrOffsetError("\xF0\x9F\x98");                 // truncated emoji
  ExpectRoundTripOrOffsetError("<|eot_id|><|begin_of_text|>");  // plain text, round-trips
  std::vector<int32_t> ids = {1, 2, 3};
  EXPECT_FALSE(Llama3().EncodeAppend("x\xC3", ids).ok());
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 3}));  // nothing appended on error
  EXPECT_FALSE(Llama3().Decode(std::vector<int32_t>{5, -1}).ok());
  EXPECT_FALSE(Llama3().Decode(std::vector<int32_t>{128256}).ok());
}

TEST(TokenizerFuzz, OneMegabyteInputs) {
  const size_t kMiB = 1 << 20;
  std::mt19937 rng(3);
  std::vector<std::string> inputs;
  inputs.push_back(std::string(kMiB, 'a'));  // one 1 MB pre-token: heap merge path
  // Shorter single-piece runs of the other classes (each is one BPE piece,
  // like the 'a' run; 256 KiB keeps the test fast).
  inputs.push_back(std::string(kMiB / 4, ' '));
  inputs.push_back(std::string(kMiB / 4, '\n'));
  inputs.push_back(std::string(kMiB / 4, '!'));
  std::string digits;
  while (digits.size() < kMiB) digits += "0123456789";
  inputs.push_back(digits);
  std::string unicode_spaces;
  while (unicode_spaces.size() < kMiB) unicode_spaces += "\u3000";
  inputs.push_back(unicode_spaces + "x");  // PCRE2 path, long backtracking run
  std::string mixed;
  const char* words[] = {"the ", "Việt ", "中文", "  ", "\n", "don't ", "12345", "😀", "!!", "é"};
  while (mixed.size() < kMiB) mixed += words[rng() % 10];
  inputs.push_back(mixed);
  for (const std::string& text : inputs) {
    const auto start = std::chrono::steady_clock::now();
    ExpectRoundTripOrOffsetError(text);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Not a benchmark: a guard against quadratic blow-ups (which take hours
    // on 1 MB), loose enough for a loaded 2-core CI machine.
    EXPECT_LT(seconds, 20.0)
        << "input of " << text.size() << " bytes starting with "
        << Json(text.substr(0, 8)).dump(-1, ' ', true, Json::error_handler_t::replace);
  }
  std::string invalid = mixed;
  invalid[invalid.size() / 2] = '\xFF';
  ExpectRoundTripOrOffsetError(invalid);
}

// --- hostile tokenizer.json --------------------------------------------------

std::string LoadError(const Json& json) {
  auto tok = BpeTokenizer::FromJson(json.dump(), "bad.json");
  return tok.ok() ? "" : std::string(tok.status().message());
}

// A small valid byte-level tokenizer: all 256 bytes plus a few merges.
Json SmallTokenizer() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    AppendUtf8(ByteToUnicode(static_cast<uint8_t>(b)), symbol);
    vocab[symbol] = b;
  }
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["o\xc4\xa0"] = 259;  // "oĠ"
  vocab["12"] = 260;
  // The Llama 3 layout, with a tiny vocabulary.
  Json json = {{"normalizer", nullptr}, {"added_tokens", Json::array()}};
  json["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       Json::array({{{"type", "Split"},
                     {"pattern", {{"Regex", std::string(kLlama3SplitPattern)}}},
                     {"behavior", "Isolated"},
                     {"invert", false}},
                    {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  json["model"] = {{"type", "BPE"}, {"ignore_merges", true}, {"byte_fallback", false}};
  json["model"]["vocab"] = vocab;
  json["model"]["merges"] = Json::array({"h e", Json::array({"l", "l"}), "he ll", "1 2"});
  json["added_tokens"] = Json::array({{{"id", 300}, {"content", "<|x|>"}, {"special", true}}});
  return json;
}

TEST(TokenizerJson, SmallTokenizerLoadsBothMergeForms) {
  auto tok = BpeTokenizer::FromJson(SmallTokenizer().dump(), "small.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 301);
  EXPECT_EQ(*(*tok)->Encode("hello"), (std::vector<int32_t>{258, 'o'}));
  EXPECT_EQ(*(*tok)->EncodeParsingSpecials("he<|x|>"), (std::vector<int32_t>{256, 300}));
  // GPT-2 layout: a lone ByteLevel pre-tokenizer with its built-in regex.
  Json gpt2 = SmallTokenizer();
  gpt2["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  gpt2["model"]["ignore_merges"] = false;
  auto gpt2_tok = BpeTokenizer::FromJson(gpt2.dump(), "gpt2.json");
  ASSERT_TRUE(gpt2_tok.ok()) << gpt2_tok.status();
  EXPECT_EQ(*(*gpt2_tok)->Encode("hell hello"), (std::vector<int32_t>{258, ' ', 258, 'o'}));
  EXPECT_EQ(*(*gpt2_tok)->Encode("he12"), (std::vector<int32_t>{256, 260}));
  // SmolLM2 layout: every digit alone, then the GPT-2 pattern.
  Json smollm = gpt2;
  smollm["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       Json::array({{{"type", "Digits"}, {"individual_digits", true}}, gpt2["pre_tokenizer"]})}};
  auto smollm_tok = BpeTokenizer::FromJson(smollm.dump(), "smollm.json");
  ASSERT_TRUE(smollm_tok.ok()) << smollm_tok.status();
  EXPECT_EQ(*(*smollm_tok)->Encode("he12 x"), (std::vector<int32_t>{256, '1', '2', ' ', 'x'}));
  // Digits without individual_digits keeps a run together.
  smollm["pre_tokenizer"]["pretokenizers"][0]["individual_digits"] = false;
  auto grouped_tok = BpeTokenizer::FromJson(smollm.dump(), "grouped.json");
  ASSERT_TRUE(grouped_tok.ok()) << grouped_tok.status();
  EXPECT_EQ(*(*grouped_tok)->Encode("he12 x"), (std::vector<int32_t>{256, 260, ' ', 'x'}));
}

TEST(TokenizerJson, DamageIsNamed) {
  struct Case {
    const char* expect;
    std::function<void(Json&)> damage;
  };
  const Case cases[] = {
      {"not valid JSON", nullptr},
      {"model.type", [](Json& j) { j["model"]["type"] = "WordPiece"; }},
      {"model.vocab", [](Json& j) { j["model"].erase("vocab"); }},
      {"model.vocab[\"he\"]", [](Json& j) { j["model"]["vocab"]["he"] = -4; }},
      {"id 1 is used twice", [](Json& j) { j["model"]["vocab"]["he"] = 1; }},
      {"model.vocab[400] \"a b\": character U+0020 is not a byte-level symbol",
       [](Json& j) { j["model"]["vocab"]["a b"] = 400; }},
      {"model.merges[1]", [](Json& j) { j["model"]["merges"][1] = "l l l"; }},
      {"model.merges[2]",
       [](Json& j) {
         j["model"]["merges"][2] = Json::array({"he", "zz"});
       }},
      {"model.merges[0]", [](Json& j) { j["model"]["merges"][0] = 5; }},
      {"model.byte_fallback", [](Json& j) { j["model"]["byte_fallback"] = true; }},
      {"normalizer",
       [](Json& j) {
         j["normalizer"] = {{"type", "NFC"}};
       }},
      {"added_tokens[0].id", [](Json& j) { j["added_tokens"][0]["id"] = 1LL << 40; }},
      {"added_tokens[0]", [](Json& j) { j["added_tokens"][0]["id"] = 65; }},
      {"Split pattern does not compile",
       [](Json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(["; }},
      {"behavior", [](Json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; }},
      {"pre_tokenizer", [](Json& j) { j["pre_tokenizer"] = nullptr; }},
      {"pretokenizers[2]: a \"Split\" step after ByteLevel is not supported",
       [](Json& j) {
         j["pre_tokenizer"]["pretokenizers"].push_back(j["pre_tokenizer"]["pretokenizers"][0]);
       }},
      {"pretokenizers[0].individual_digits: must be a boolean",
       [](Json& j) {
         j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Digits"}, {"individual_digits", 1}};
       }},
      {"pretokenizers[0].type \"Punctuation\" is not supported",
       [](Json& j) {
         j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Punctuation"}};
       }},
      {"model.merges[3]: must be \"a b\" or [\"a\", \"b\"]",
       [](Json& j) {
         j["model"]["merges"][3] = Json::array({"1 2", "x"});
       }},
      {"model.merges[3]: \"1 2\": the merged symbol is not a normal token",
       [](Json& j) { j["model"]["vocab"].erase("12"); }},
      {"added_tokens[1]: \"<|x|>\" is listed twice",
       [](Json& j) {
         j["added_tokens"].push_back({{"id", 301}, {"content", "<|x|>"}});
       }},
  };
  for (const Case& c : cases) {
    std::string error;
    if (c.damage == nullptr) {
      error = std::string(BpeTokenizer::FromJson("{\"model\": [", "bad.json").status().message());
    } else {
      Json json = SmallTokenizer();
      c.damage(json);
      error = LoadError(json);
    }
    EXPECT_NE(error.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "' in: " << error;
    EXPECT_NE(error.find(".json"), std::string::npos) << error;
  }
  EXPECT_NE(std::string(BpeTokenizer::Load("/nonexistent/tokenizer.json").status().message())
                .find("/nonexistent/tokenizer.json"),
            std::string::npos);
}

}  // namespace
}  // namespace saferoute
