// Parity of the BPE tokenizer with HF `tokenizers` on the golden fixture, plus
// loader validation on hostile tokenizer.json variants.
#include "tokenizer/bpe_tokenizer.h"

#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "util/test_jsonl.h"

namespace saferoute {
namespace {

using Json = nlohmann::json;

const std::string kShared = SAFEROUTE_SHARED_DIR;
const std::string kLlama3Path = kShared + "/tokenizers/llama3/tokenizer.json";

const BpeTokenizer& Llama3() {
  static const BpeTokenizer* tok = [] {
    auto t = BpeTokenizer::Load(kLlama3Path);
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      std::abort();
    }
    return t->release();
  }();
  return *tok;
}

TEST(BpeTokenizer, LoadsLlama3) {
  const BpeTokenizer& tok = Llama3();
  EXPECT_EQ(tok.vocab_size(), 128256);
  EXPECT_EQ(tok.num_merges(), 280147);
  EXPECT_EQ(tok.SpecialTokenId("<|eot_id|>"), 128009);
  EXPECT_EQ(tok.SpecialTokenId("<|begin_of_text|>"), 128000);
  EXPECT_EQ(tok.TokenIdOfBytes("\n\n"), 271);
  EXPECT_EQ(tok.TokenIdOfBytes("safe"), 19193);
  EXPECT_EQ(tok.TokenIdOfBytes("unsafe"), 39257);
  EXPECT_TRUE(tok.pre_tokenizer().uses_fast_path());
}

TEST(BpeTokenizer, KnownEncodings) {
  const BpeTokenizer& tok = Llama3();
  EXPECT_EQ(*tok.Encode("Hello world"), (std::vector<int32_t>{9906, 1917}));
  // ignore_merges: a pre-token that is a vocab entry is one id even though
  // merges cannot reach it.
  EXPECT_EQ(*tok.Encode(" Việt"), (std::vector<int32_t>{101798}));
  // Special-token strings in plain text are text.
  auto ids = *tok.Encode("<|eot_id|>");
  EXPECT_GT(ids.size(), 1u);
  for (int32_t id : ids) EXPECT_LT(id, 128000);
  EXPECT_EQ(*tok.EncodeParsingSpecials("x<|eot_id|>y"), (std::vector<int32_t>{87, 128009, 88}));
}

TEST(BpeTokenizer, GoldenPublicFixture) {
  const BpeTokenizer& tok = Llama3();
  const auto rows = ReadJsonl(kShared + "/fixtures/tokenizer/llama3_golden_public.jsonl");
  ASSERT_GT(rows.size(), 600u);
  int checked = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string text = rows[i]["text"].get<std::string>();
    const auto expected = rows[i]["ids"].get<std::vector<int32_t>>();
    const bool special = rows[i].value("special", false);
    auto ids = special ? tok.EncodeParsingSpecials(text) : tok.Encode(text);
    ASSERT_TRUE(ids.ok()) << "row " << i << ": " << ids.status();
    EXPECT_EQ(*ids, expected) << "row " << i << " text " << Json(text).dump();
    auto decoded = tok.Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, text) << "row " << i;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(rows.size()));
}

TEST(BpeTokenizer, PcrePathMatchesGoldenToo) {
  // The same fixture through the pure PCRE2 pre-tokenizer.
  auto tok = BpeTokenizer::Load(kLlama3Path, {.fast_pretokenizer = false});
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_FALSE((*tok)->pre_tokenizer().uses_fast_path());
  const auto rows = ReadJsonl(kShared + "/fixtures/tokenizer/llama3_golden_public.jsonl");
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].value("special", false)) continue;
    auto ids = (*tok)->Encode(rows[i]["text"].get<std::string>());
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, rows[i]["ids"].get<std::vector<int32_t>>()) << "row " << i;
  }
}

}  // namespace
}  // namespace saferoute
