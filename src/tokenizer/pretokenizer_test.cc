// The Llama 3 ASCII fast path against the PCRE2 path (differential, many
// random strings), the merge algorithms against each other, UTF-8 checks.
#include "tokenizer/pretokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tokenizer/bpe_tokenizer.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

std::vector<std::string> Pieces(const RegexSplitter& splitter, std::string_view text) {
  std::vector<std::string> pieces;
  absl::Status status =
      splitter.Split(text, [&](std::string_view piece) { pieces.emplace_back(piece); });
  EXPECT_TRUE(status.ok()) << status;
  return pieces;
}

// Characters chosen to exercise every alternative and every place where the
// fast path must hand over to PCRE2: ASCII classes, contractions, caseless
// Unicode folds (U+017F long s, U+212A Kelvin), non-ASCII letters/digits/
// spaces/symbols, CJK, emoji, combining marks.
const std::vector<std::string> kAlphabet = {
    "a",      "Z",      "q",      "s",      "t",      "e",   "l",   "v",      "r",      "m",
    "d",      "S",      "L",      "0",      "7",      "9",   " ",   " ",      "  ",     "\t",
    "\n",     "\r",     "\r\n",   "\v",     "\f",     "'",   "'",   "\"",     ".",      ",",
    "!",      "?",      "(",      ")",      "<",      ">",   "|",   "-",      "_",      "#",
    "$",      "\x01",   "\x1f",   "\x7f",   "é",      "ß",   "ſ",   "\u212a", "Ж",      "ж",
    "α",      "中",     "文",     "日本",   "١",      "½",   "Ⅻ",   "²",      "\u00a0", "\u3000",
    "\u2003", "\u0085", "\u2028", "\u200b", "\u180e", "€",   "—",   "…",      "😀",      "👍🏽",
    "\u0301", "ก",      "\u05d0", "'s",     "'T",     "'re", "'VE", "'ll",    "'D",     "'m",
    " 's",    "123",    "4567",   "don't",
};

std::string RandomText(std::mt19937& rng, int max_parts) {
  std::uniform_int_distribution<int> count(0, max_parts);
  std::uniform_int_distribution<size_t> pick(0, kAlphabet.size() - 1);
  std::string text;
  for (int i = count(rng); i > 0; --i) text += kAlphabet[pick(rng)];
  return text;
}

TEST(Pretokenizer, FastPathEqualsPcreOnRandomStrings) {
  auto fast = RegexSplitter::Create(kLlama3SplitPattern, true, "test");
  auto pcre = RegexSplitter::Create(kLlama3SplitPattern, false, "test");
  ASSERT_TRUE(fast.ok() && pcre.ok());
  ASSERT_TRUE((*fast)->uses_fast_path());
  std::mt19937 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    const std::string text = RandomText(rng, 24);
    ASSERT_EQ(Pieces(**fast, text), Pieces(**pcre, text)) << "text: " << text;
  }
}

TEST(Pretokenizer, Qwen2FastPathEqualsPcreOnRandomStrings) {
  auto fast = RegexSplitter::Create(kQwen2SplitPattern, true, "test");
  auto pcre = RegexSplitter::Create(kQwen2SplitPattern, false, "test");
  ASSERT_TRUE(fast.ok() && pcre.ok());
  ASSERT_TRUE((*fast)->uses_fast_path());
  std::mt19937 rng(54321);
  for (int i = 0; i < 20000; ++i) {
    const std::string text = RandomText(rng, 24);
    ASSERT_EQ(Pieces(**fast, text), Pieces(**pcre, text)) << "text: " << text;
  }
}

TEST(Pretokenizer, NamedPreTokenizers) {
  using V = std::vector<std::string>;
  auto pieces = [](std::string_view name, std::string_view text) {
    const NamedPreTokenizer* named = FindNamedPreTokenizer(name);
    EXPECT_NE(named, nullptr) << name;
    if (named == nullptr) return V{};
    auto pre = PreTokenizer::Create(named->patterns, true, "test");
    EXPECT_TRUE(pre.ok()) << pre.status();
    V out;
    EXPECT_TRUE((*pre)->Split(text, [&](std::string_view p) { out.emplace_back(p); }).ok());
    return out;
  };
  // llama-bpe: up to three digits together.
  EXPECT_EQ(pieces("llama-bpe", "x 12345"), (V{"x", " ", "123", "45"}));
  EXPECT_TRUE(FindNamedPreTokenizer("llama-bpe")->ignore_merges);
  // qwen2: one digit at a time, else as Llama 3.
  EXPECT_EQ(pieces("qwen2", "x 123 I'll"), (V{"x", " ", "1", "2", "3", " I", "'ll"}));
  EXPECT_FALSE(FindNamedPreTokenizer("qwen2")->ignore_merges);
  // smollm: digits alone (\p{N}: Arabic-Indic and superscript digits too),
  // then GPT-2 on each piece: " 2" is no longer one piece, and the spaces
  // before a digit end a piece (\s+(?!\S) sees the end of the piece).
  EXPECT_EQ(pieces("smollm", "a 12"), (V{"a", " ", "1", "2"}));
  EXPECT_EQ(pieces("smollm", "x  \u0661\u00b2y"), (V{"x", "  ", "\u0661", "\u00b2", "y"}));
  EXPECT_EQ(pieces("smollm", "I'll  go"), (V{"I", "'ll", " ", " go"}));
  EXPECT_FALSE(FindNamedPreTokenizer("smollm")->ignore_merges);
  EXPECT_EQ(FindNamedPreTokenizer("gpt-2"), nullptr);
  EXPECT_EQ(KnownPreTokenizerNames(), "llama-bpe, qwen2, smollm");
}

TEST(Pretokenizer, SequenceSplitsEveryPieceAgain) {
  // The second stage sees each piece of the first on its own: "ab" and "cd"
  // are split apart by the first stage, so "bc" never forms.
  const std::vector<std::string> patterns = {"[|]", "bc|[a-z]"};
  auto pre = PreTokenizer::Create(patterns, true, "test");
  ASSERT_TRUE(pre.ok()) << pre.status();
  std::vector<std::string> out;
  ASSERT_TRUE((*pre)->Split("ab|cd bcd", [&](std::string_view p) { out.emplace_back(p); }).ok());
  EXPECT_EQ(out, (std::vector<std::string>{"a", "b", "|", "c", "d", " ", "bc", "d"}));
  EXPECT_FALSE(PreTokenizer::Create({}, true, "test").ok());
  auto bad = PreTokenizer::Create(std::vector<std::string>{"a", "("}, true, "tok.gguf");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tok.gguf"), std::string::npos) << bad.status();
}

TEST(Pretokenizer, KnownSplits) {
  auto splitter = *RegexSplitter::Create(kLlama3SplitPattern, true, "test");
  using V = std::vector<std::string>;
  EXPECT_EQ(Pieces(*splitter, "a  b"), (V{"a", " ", " b"}));
  EXPECT_EQ(Pieces(*splitter, "12345"), (V{"123", "45"}));
  EXPECT_EQ(Pieces(*splitter, "I'll go."), (V{"I", "'ll", " go", "."}));
  EXPECT_EQ(Pieces(*splitter, "x.\n\ny"), (V{"x", ".\n\n", "y"}));
  EXPECT_EQ(Pieces(*splitter, "  \n  x"), (V{"  \n", " ", " x"}));
  EXPECT_EQ(Pieces(*splitter, "end  "), (V{"end", "  "}));
  EXPECT_EQ(Pieces(*splitter, " Việt"), (V{" Việt"}));
  // U+180E is no whitespace (Unicode White_Space, as in HF tokenizers and
  // llama.cpp; PCRE2's own \s would take it): " \u180e" is a space and a
  // symbol, one piece.
  EXPECT_EQ(Pieces(*splitter, "a \u180e"), (V{"a", " \u180e"}));
  auto gpt2 = *RegexSplitter::Create(kGpt2SplitPattern, true, "test");
  EXPECT_EQ(Pieces(*gpt2, "a  \u180e"), (V{"a", " ", " \u180e"}));
  // \s in a class and \S become the property too; escaped backslashes stay.
  auto classes = *RegexSplitter::Create(R"([^\s]+|\S|\\s)", false, "test");
  EXPECT_EQ(Pieces(*classes, "ab\u180e \\s"), (V{"ab\u180e", " ", "\\s"}));
}

TEST(Pretokenizer, BadPatternIsAnError) {
  auto bad = RegexSplitter::Create("(unclosed", true, "tok.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tok.json"), std::string::npos);
}

TEST(Pretokenizer, IsolatedKeepsGapsAndSkipsEmptyMatches) {
  // A pattern that does not cover everything: the gaps are pieces too, and
  // an empty match isolates nothing.
  auto splitter = *RegexSplitter::Create("\\d*", false, "test");
  using V = std::vector<std::string>;
  EXPECT_EQ(Pieces(*splitter, "ab12c3"), (V{"ab", "12", "c", "3"}));
  EXPECT_EQ(Pieces(*splitter, "é"), (V{"é"}));
}

TEST(Utf8, RejectsMalformedSequencesWithOffset) {
  struct Case {
    std::string bytes;
    size_t offset;
  };
  const Case cases[] = {
      {"ok\xED\xA0\x80", 2},     // CESU-8/WTF-8 lone high surrogate U+D800
      {"\xED\xBF\xBF", 0},       // lone low surrogate U+DFFF
      {"a\xC0\xAF", 1},          // overlong '/'
      {"ab\xE0\x80\xAF", 2},     // overlong 3-byte
      {"\xF0\x80\x80\xAF", 0},   // overlong 4-byte
      {"x\xF4\x90\x80\x80", 1},  // above U+10FFFF
      {"\xF5\x80\x80\x80", 0},
      {"abc\xE2\x82", 3},   // truncated
      {"\x80", 0},          // stray continuation
      {"12345678\xFF", 8},  // after the 8-byte ASCII fast path
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FindInvalidUtf8(c.bytes), c.offset);
    auto status = ValidateUtf8(c.bytes, "input");
    EXPECT_NE(status.message().find("byte offset " + std::to_string(c.offset)), std::string::npos)
        << status;
  }
  EXPECT_TRUE(ValidateUtf8("héllo 中文 😀 \xF4\x8F\xBF\xBF \xED\x9F\xBF").ok());
}

TEST(Utf8, DecodeAppendRoundTrip) {
  for (char32_t cp :
       {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    AppendUtf8(cp, s);
    ASSERT_TRUE(ValidateUtf8(s).ok());
    size_t pos = 0;
    EXPECT_EQ(DecodeUtf8At(s, pos), cp);
    EXPECT_EQ(pos, s.size());
  }
}

TEST(ByteLevel, Gpt2Mapping) {
  EXPECT_EQ(ByteToUnicode(' '), 0x120u);   // Ġ
  EXPECT_EQ(ByteToUnicode('\n'), 0x10Au);  // Ċ
  EXPECT_EQ(ByteToUnicode('A'), 'A');
  EXPECT_EQ(ByteToUnicode(0xAD), 0x143u);  // the last unprintable Latin-1 byte
  for (int b = 0; b < 256; ++b) EXPECT_EQ(UnicodeToByte(ByteToUnicode(b)), b);
  EXPECT_EQ(UnicodeToByte(0x20), -1);  // a raw space stands for no byte
}

TEST(Bpe, ScanAndHeapMergesAgree) {
  auto tok =
      BpeTokenizer::Load(std::string(SAFEROUTE_SHARED_DIR) + "/tokenizers/llama3/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 3000; ++i) {
    std::string piece;
    if (i % 3 == 0) {
      // Raw random bytes (BPE itself works on any bytes).
      for (int k = byte(rng) % 40 + 2; k > 0; --k) piece.push_back(static_cast<char>(byte(rng)));
    } else {
      // Word-like pieces, which exercise long merge chains.
      std::string text = RandomText(rng, 30);
      for (char c : text) {
        if (c != ' ') piece.push_back(c);
      }
      if (i % 3 == 2) piece = piece + piece + piece;
    }
    if (piece.size() < 2) continue;
    std::vector<int32_t> scan, heap;
    (*tok)->MergeByScan(piece, scan);
    (*tok)->MergeByHeap(piece, heap);
    ASSERT_EQ(scan, heap) << "piece of " << piece.size() << " bytes";
    auto decoded = (*tok)->Decode(heap);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, piece);
  }
}

}  // namespace
}  // namespace saferoute
