// A byte-level BPE vocabulary as plain data: what a tokenizer.json and the
// `tokenizer.ggml.*` keys of a GGUF file both describe. BpeTokenizer::FromSpec
// validates a spec (it comes from a file: hostile input) and builds the
// tokenizer; TokenizerSpecFromJson and TokenizerSpecFromGguf make one.
#ifndef SAFEROUTE_TOKENIZER_TOKENIZER_SPEC_H_
#define SAFEROUTE_TOKENIZER_TOKENIZER_SPEC_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace saferoute {

// Token types, numbered as GGUF's `tokenizer.ggml.token_type` (llama.cpp's
// llama_token_type).
enum class TokenType : int32_t {
  // A byte-level symbol ("Ġthe"); the only kind text can turn into.
  kNormal = 1,
  // The next three are specials: stored as their content ("<|eot_id|>"),
  // inserted by id only, never produced by Encode (see bpe_tokenizer.h).
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  // A placeholder for an id without a token ("[PAD123]"): neither produced
  // nor decodable.
  kUnused = 5,
  // SentencePiece's byte tokens ("<0x0A>"): refused in a byte-level vocabulary.
  kByte = 6,
};
inline constexpr int32_t kMinTokenType = 1;
inline constexpr int32_t kMaxTokenType = 6;

inline constexpr int32_t kNoTokenId = -1;

// Ids named by `tokenizer.ggml.<name>_token_id`; kNoTokenId where absent.
struct SpecialTokenIds {
  int32_t bos = kNoTokenId;
  int32_t eos = kNoTokenId;
  int32_t eot = kNoTokenId;
  int32_t eom = kNoTokenId;
  int32_t unk = kNoTokenId;
  int32_t sep = kNoTokenId;
  int32_t pad = kNoTokenId;
  int32_t mask = kNoTokenId;
};

// The GGUF key of each special id (llama.cpp's spelling, "seperator" included).
struct SpecialTokenKey {
  std::string_view gguf_key;
  int32_t SpecialTokenIds::*id;
};
inline constexpr SpecialTokenKey kSpecialTokenKeys[] = {
    {"tokenizer.ggml.bos_token_id", &SpecialTokenIds::bos},
    {"tokenizer.ggml.eos_token_id", &SpecialTokenIds::eos},
    {"tokenizer.ggml.eot_token_id", &SpecialTokenIds::eot},
    {"tokenizer.ggml.eom_token_id", &SpecialTokenIds::eom},
    {"tokenizer.ggml.unknown_token_id", &SpecialTokenIds::unk},
    {"tokenizer.ggml.seperator_token_id", &SpecialTokenIds::sep},
    {"tokenizer.ggml.padding_token_id", &SpecialTokenIds::pad},
    {"tokenizer.ggml.mask_token_id", &SpecialTokenIds::mask},
};

// How errors name the parts of a spec: the keys of the file it came from.
struct TokenizerSpecKeys {
  std::string tokens = "tokenizer.ggml.tokens";
  std::string token_types = "tokenizer.ggml.token_type";
  std::string merges = "tokenizer.ggml.merges";
  std::string pre_tokenizer = "tokenizer.ggml.pre";
};

struct TokenizerSpec {
  // The file, first word of every error ("x.gguf", ".../tokenizer.json").
  std::string source;
  TokenizerSpecKeys keys;

  // id -> token [n]: normal tokens as byte-level symbols, specials as their
  // content, unused ids as anything ("" included).
  std::vector<std::string> tokens;
  std::vector<TokenType> token_types;  // [n]
  // "left right" (byte-level symbols, one space), in rank order.
  std::vector<std::string> merges;

  // The pre-tokenizer: a name (`tokenizer.ggml.pre`: llama-bpe, qwen2,
  // smollm; it fixes the split regexes and ignore_merges as llama.cpp does),
  // or, with an empty name, the regexes (each applied to the pieces of the
  // one before) and ignore_merges stated by the file (tokenizer.json).
  std::string pre_tokenizer;
  std::vector<std::string> split_patterns;
  bool ignore_merges = false;

  SpecialTokenIds special_ids;
  // What the model expects in front of / after a whole input (GGUF
  // `tokenizer.ggml.add_bos_token` / `add_eos_token`). Encode never adds them.
  bool add_bos_token = false;
  bool add_eos_token = false;
};

// Bounds that keep a hostile file from making us allocate without limit.
// Largest number of tokens (the id -> token table is sized by it).
inline constexpr int64_t kMaxVocabularySize = int64_t{1} << 24;
// Largest number of merges (Llama 3 has 280,147).
inline constexpr int64_t kMaxMerges = int64_t{1} << 24;

// The spec of a tokenizer.json (Hugging Face `tokenizers`): model.vocab and
// added_tokens (special -> kControl, others -> kUserDefined; ids without a
// token -> kUnused), model.merges, and the pre_tokenizer steps Split
// (Isolated), Digits and ByteLevel as split patterns. Features it cannot
// express (normalizers, other models or steps) are refused by name. Errors
// name `source` and the field ("tokenizer.json: model.merges[17]: ...").
absl::StatusOr<TokenizerSpec> TokenizerSpecFromJson(std::string_view json_text,
                                                    std::string_view source);

}  // namespace saferoute

#endif  // SAFEROUTE_TOKENIZER_TOKENIZER_SPEC_H_
