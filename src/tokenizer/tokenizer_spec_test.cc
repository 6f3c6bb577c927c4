// BpeTokenizer::FromSpec: the Llama 3 vocabulary given as a GGUF-style spec
// (named pre-tokenizer, token types) against the HF golden fixture, and
// every kind of damage to a spec refused with the key and entry named.
#include "tokenizer/tokenizer_spec.h"

#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_tokenizer.h"
#include "util/test_jsonl.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

using Json = nlohmann::json;
const std::string kShared = SAFEROUTE_SHARED_DIR;
const std::string kLlama3Path = kShared + "/tokenizers/llama3/tokenizer.json";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The Llama 3 tokenizer.json as llama.cpp's converter puts it in a GGUF:
// the pre-tokenizer by name instead of the regex, BOS id and add_bos_token.
TokenizerSpec Llama3GgufStyleSpec() {
  auto spec = TokenizerSpecFromJson(ReadFile(kLlama3Path), kLlama3Path);
  EXPECT_TRUE(spec.ok()) << spec.status();
  spec->split_patterns.clear();
  spec->ignore_merges = false;  // the name decides
  spec->pre_tokenizer = "llama-bpe";
  spec->special_ids.bos = 128000;
  spec->special_ids.eos = 128009;
  spec->add_bos_token = true;
  return *spec;
}

TEST(TokenizerSpec, JsonSpecOfLlama3) {
  auto spec = TokenizerSpecFromJson(ReadFile(kLlama3Path), "llama3.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->tokens.size(), 128256u);
  EXPECT_EQ(spec->merges.size(), 280147u);
  EXPECT_EQ(spec->tokens[9906], "Hello");
  EXPECT_EQ(spec->tokens[128009], "<|eot_id|>");
  EXPECT_EQ(spec->token_types[9906], TokenType::kNormal);
  EXPECT_EQ(spec->token_types[128009], TokenType::kControl);
  EXPECT_TRUE(spec->ignore_merges);
  EXPECT_EQ(spec->split_patterns, (std::vector<std::string>{std::string(kLlama3SplitPattern)}));
  EXPECT_TRUE(spec->pre_tokenizer.empty());
}

TEST(TokenizerSpec, NamedLlamaBpeEqualsTokenizerJsonOnGoldenFixture) {
  auto tok = BpeTokenizer::FromSpec(Llama3GgufStyleSpec());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->pre_tokenizer_name(), "llama-bpe");
  EXPECT_TRUE((*tok)->ignore_merges());
  EXPECT_TRUE((*tok)->pre_tokenizer().uses_fast_path());
  EXPECT_TRUE((*tok)->add_bos_token());
  EXPECT_EQ((*tok)->special_ids().bos, 128000);
  EXPECT_EQ((*tok)->token_type(128000), TokenType::kControl);
  EXPECT_EQ((*tok)->token_type(9906), TokenType::kNormal);
  const auto rows = ReadJsonl(kShared + "/fixtures/tokenizer/llama3_golden_public.jsonl");
  ASSERT_GT(rows.size(), 600u);
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string text = rows[i]["text"].get<std::string>();
    const bool special = rows[i].value("special", false);
    auto ids = special ? (*tok)->EncodeParsingSpecials(text) : (*tok)->Encode(text);
    ASSERT_TRUE(ids.ok()) << "row " << i << ": " << ids.status();
    EXPECT_EQ(*ids, rows[i]["ids"].get<std::vector<int32_t>>()) << "row " << i;
  }
}

// --- a small spec and its damage ---------------------------------------------

// All 256 bytes (id = byte), "he" 256, "ll" 257, "hell" 258, two specials and
// an unused id.
TokenizerSpec SmallSpec() {
  TokenizerSpec spec;
  spec.source = "small.gguf";
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    AppendUtf8(ByteToUnicode(static_cast<uint8_t>(b)), symbol);
    spec.tokens.push_back(symbol);
  }
  spec.tokens.insert(spec.tokens.end(), {"he", "ll", "hell", "<|bos|>", "<tool>", "[PAD261]"});
  spec.token_types.assign(spec.tokens.size(), TokenType::kNormal);
  spec.token_types[259] = TokenType::kControl;
  spec.token_types[260] = TokenType::kUserDefined;
  spec.token_types[261] = TokenType::kUnused;
  spec.merges = {"h e", "l l", "he ll"};
  spec.pre_tokenizer = "smollm";
  spec.special_ids.bos = 259;
  spec.add_bos_token = true;
  return spec;
}

TEST(TokenizerSpec, SmallSpecBuilds) {
  auto tok = BpeTokenizer::FromSpec(SmallSpec());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 262);
  EXPECT_EQ(*(*tok)->Encode("hello 12"),
            (std::vector<int32_t>{258, 'o', ' ', '1', '2'}));  // smollm: digits alone
  // Specials, control and user-defined alike, are text to Encode.
  EXPECT_EQ((*tok)->Encode("<tool>")->size(), 6u);
  EXPECT_EQ(*(*tok)->EncodeParsingSpecials("he<tool><|bos|>"),
            (std::vector<int32_t>{256, 260, 259}));
  EXPECT_EQ((*tok)->SpecialTokenId("<tool>"), 260);
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{259, 256}), "<|bos|>he");
  // An unused id is no token: not decodable, not found as a special.
  EXPECT_FALSE((*tok)->Decode(std::vector<int32_t>{261}).ok());
  EXPECT_EQ((*tok)->SpecialTokenId("[PAD261]"), std::nullopt);
  EXPECT_EQ((*tok)->token_type(261), TokenType::kUnused);
}

TEST(TokenizerSpec, BytesWithoutTokenAreDroppedAndKeepNeighboursApart) {
  // As llama.cpp (and HF) do with SmolLM2, which lacks 21 bytes: the byte
  // stays a symbol that no merge names, then is left out.
  TokenizerSpec spec = SmallSpec();
  spec.token_types['A'] = TokenType::kUnused;
  spec.token_types[0xF1] = TokenType::kUnused;
  auto tok = BpeTokenizer::FromSpec(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->bytes_without_token(), (std::vector<uint8_t>{'A', 0xF1}));
  EXPECT_EQ(*(*tok)->Encode("hAe"), (std::vector<int32_t>{'h', 'e'}));  // not "he"
  EXPECT_EQ(*(*tok)->Encode("A"), (std::vector<int32_t>{}));
  std::string long_piece(100, 'l');  // the priority-queue merge path
  long_piece[50] = 'A';
  auto ids = (*tok)->Encode(long_piece);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), 50u);  // 25 + 24 "ll" and one "l"
  EXPECT_EQ(*(*tok)->Decode(*ids), std::string(99, 'l'));
  // U+50000 is F1 90 80 80: the lead byte goes, the continuation bytes stay.
  EXPECT_EQ(*(*tok)->Encode("\xF1\x90\x80\x80"), (std::vector<int32_t>{0x90, 0x80, 0x80}));
  auto all = BpeTokenizer::FromSpec(SmallSpec());
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE((*all)->bytes_without_token().empty());
}

TEST(TokenizerSpec, DamageIsNamed) {
  struct Case {
    const char* expect;
    std::function<void(TokenizerSpec&)> damage;
  };
  const Case cases[] = {
      {"tokenizer.ggml.tokens: no tokens",
       [](TokenizerSpec& s) {
         s.tokens.clear();
         s.token_types.clear();
       }},
      {"tokenizer.ggml.token_type: 261 entries for 262 tokens",
       [](TokenizerSpec& s) { s.token_types.pop_back(); }},
      {"tokenizer.ggml.token_type[7]: type 0 is not a token type (1..6)",
       [](TokenizerSpec& s) { s.token_types[7] = static_cast<TokenType>(0); }},
      {"tokenizer.ggml.token_type[7]: type 9 is not a token type",
       [](TokenizerSpec& s) { s.token_types[7] = static_cast<TokenType>(9); }},
      {"tokenizer.ggml.tokens[260] \"<tool>\": byte tokens (type 6) belong to SentencePiece",
       [](TokenizerSpec& s) { s.token_types[260] = TokenType::kByte; }},
      {"tokenizer.ggml.tokens[256]: empty token", [](TokenizerSpec& s) { s.tokens[256] = ""; }},
      {"tokenizer.ggml.tokens[257] \"he\": the same string as token 256",
       [](TokenizerSpec& s) { s.tokens[257] = "he"; }},
      {"tokenizer.ggml.tokens[260] \"<|bos|>\": the same string as token 259",
       [](TokenizerSpec& s) { s.tokens[260] = "<|bos|>"; }},
      {"tokenizer.ggml.tokens[257] \"a b\": character U+0020 is not a byte-level symbol",
       [](TokenizerSpec& s) { s.tokens[257] = "a b"; }},
      {"tokenizer.ggml.tokens[257] \"a\\ufffd\": symbol: invalid UTF-8 at byte offset 1",
       [](TokenizerSpec& s) { s.tokens[257] = "a\xff"; }},
      {"tokenizer.ggml.tokens[259]: content: invalid UTF-8 at byte offset 1",
       [](TokenizerSpec& s) { s.tokens[259] = "<\xc3|>"; }},
      {"tokenizer.ggml.merges[1]: \"l l l\" must be two symbols separated by one space",
       [](TokenizerSpec& s) { s.merges[1] = "l l l"; }},
      {"tokenizer.ggml.merges[1]: \" ll\" must be two symbols",
       [](TokenizerSpec& s) { s.merges[1] = " ll"; }},
      {"tokenizer.ggml.merges[0]: \"h\" must be two symbols",
       [](TokenizerSpec& s) { s.merges[0] = "h"; }},
      {"tokenizer.ggml.merges[2]: \"he zz\": the right symbol is not a normal token",
       [](TokenizerSpec& s) { s.merges[2] = "he zz"; }},
      {"tokenizer.ggml.merges[2]: \"zz ll\": the left symbol is not a normal token",
       [](TokenizerSpec& s) { s.merges[2] = "zz ll"; }},
      {"tokenizer.ggml.merges[2]: \"ll he\": the merged symbol is not a normal token",
       [](TokenizerSpec& s) { s.merges[2] = "ll he"; }},
      {"tokenizer.ggml.merges[2]: \"hel l\": the left symbol",  // "hel" is no token
       [](TokenizerSpec& s) { s.merges[2] = "hel l"; }},
      {"tokenizer.ggml.merges[0]: \"<tool> h\": the left symbol is not a normal token",
       [](TokenizerSpec& s) { s.merges[0] = "<tool> h"; }},           // a special in a merge
      {"tokenizer.ggml.merges[1]: \"l \\u0100\": the merged symbol",  // byte 0 is, "l\0" not
       [](TokenizerSpec& s) { s.merges[1] = "l \u0100"; }},
      {"tokenizer.ggml.bos_token_id: id 262 is out of range [0, 262)",
       [](TokenizerSpec& s) { s.special_ids.bos = 262; }},
      {"tokenizer.ggml.eos_token_id: id -5 is out of range",
       [](TokenizerSpec& s) { s.special_ids.eos = -5; }},
      {"tokenizer.ggml.padding_token_id: id 261 is an unused token",
       [](TokenizerSpec& s) { s.special_ids.pad = 261; }},
      {"tokenizer.ggml.add_bos_token: true, but there is no tokenizer.ggml.bos_token_id",
       [](TokenizerSpec& s) { s.special_ids.bos = kNoTokenId; }},
      {"tokenizer.ggml.add_eos_token: true, but there is no tokenizer.ggml.eos_token_id",
       [](TokenizerSpec& s) { s.add_eos_token = true; }},
      {"tokenizer.ggml.pre: \"gpt-2\" is not a supported pre-tokenizer (supported: llama-bpe, "
       "qwen2, smollm)",
       [](TokenizerSpec& s) { s.pre_tokenizer = "gpt-2"; }},
      {"tokenizer.ggml.pre: missing (no name and no split patterns)",
       [](TokenizerSpec& s) { s.pre_tokenizer.clear(); }},
      {"tokenizer.ggml.pre: both a pre-tokenizer name and split patterns given",
       [](TokenizerSpec& s) { s.split_patterns = {"x"}; }},
      {"small.gguf: pre_tokenizer Split pattern does not compile",
       [](TokenizerSpec& s) {
         s.pre_tokenizer.clear();
         s.split_patterns = {"(["};
       }},
  };
  for (const Case& c : cases) {
    TokenizerSpec spec = SmallSpec();
    c.damage(spec);
    auto tok = BpeTokenizer::FromSpec(spec);
    ASSERT_FALSE(tok.ok()) << "expected an error with '" << c.expect << "'";
    const std::string error(tok.status().message());
    EXPECT_NE(error.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "' in: " << error;
    EXPECT_EQ(error.rfind("small.gguf: ", 0), 0u) << error;
  }
}

TEST(TokenizerSpec, RepeatedMergeKeepsItsFirstRank) {
  TokenizerSpec spec = SmallSpec();
  spec.merges = {"l l", "h e", "he ll", "l l"};
  auto tok = BpeTokenizer::FromSpec(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->num_merges(), 4);
  EXPECT_EQ(*(*tok)->Encode("hell"), (std::vector<int32_t>{258}));
}

}  // namespace
}  // namespace saferoute
