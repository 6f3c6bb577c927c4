// Byte-level BPE tokenizer (Llama 3, SmolLM2, Qwen3, GPT-2 style
// vocabularies), built from a TokenizerSpec: the vocabulary of a Hugging Face
// tokenizer.json or of a GGUF file (tokenizer/load_tokenizer.h loads either).
//
// Security rule: Encode() treats special-token strings in the text as plain
// text, always (specials: control, user-defined and unknown tokens). Template renderers build ids
// by concatenating special ids (SpecialTokenId) with plain-text encodings of each text segment, so
// user text can never inject "<|eot_id|>" and break out of a prompt template.
// EncodeParsingSpecials() mimics HF's tokenizer(text) for parity tests only.
//
// Thread safety: immutable after loading; every method is const and may be
// called from many threads at once.
#ifndef SAFEROUTE_TOKENIZER_BPE_TOKENIZER_H_
#define SAFEROUTE_TOKENIZER_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_spec.h"
#include "util/status.h"

namespace saferoute {

struct TokenizerOptions {
  // Use the hand-written ASCII scanner for the Llama 3 and Qwen2 split
  // patterns (the PCRE2 path gives identical pieces; off only for
  // differential tests).
  bool fast_pretokenizer = true;
};

class BpeTokenizer {
 public:
  // Validates `spec` and builds the tokenizer. Errors name spec.source and
  // the key and entry ("x.gguf: tokenizer.ggml.merges[17]: ..."). Refused:
  // wrong array lengths, unknown token types, byte tokens, empty or
  // duplicate tokens, normal tokens that are not byte-level symbols, a
  // missing single-byte token, merges of anything but two normal tokens
  // whose concatenation is a normal token, special ids out of range,
  // add_bos/eos_token without the id, unknown pre-tokenizer names.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromSpec(
      const TokenizerSpec& spec, const TokenizerOptions& options = {});

  // Reads and validates tokenizer.json (TokenizerSpecFromJson + FromSpec).
  // Errors name the file and the field or entry (e.g. "tokenizer.json:
  // model.merges[17]: ..."). A .gguf file: LoadTokenizer (load_tokenizer.h).
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Load(const std::string& path,
                                                            const TokenizerOptions& options = {});
  // Same from JSON text; `source` names it in errors.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(
      std::string_view json_text, std::string_view source, const TokenizerOptions& options = {});

  // Encodes plain text (no BOS; special-token strings are ordinary text).
  // Invalid UTF-8 is an error naming the byte offset. A byte that has no
  // token in the vocabulary (bytes_without_token()) is dropped, as llama.cpp
  // and HF tokenizers drop it; every other byte is encoded.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;
  // Appends the encoding of `text` to `ids` (nothing is appended on error).
  absl::Status EncodeAppend(std::string_view text, std::vector<int32_t>& ids) const;

  // HF parity mode: added-token strings in `text` become their ids (leftmost,
  // longest first), the text between them is encoded as by Encode(). Never
  // use it on user input.
  absl::StatusOr<std::vector<int32_t>> EncodeParsingSpecials(std::string_view text) const;

  // Id of a special token (control, user-defined, unknown; tokenizer.json's
  // added_tokens) by its exact content ("<|eot_id|>").
  std::optional<int32_t> SpecialTokenId(std::string_view content) const;
  absl::StatusOr<int32_t> RequireSpecialTokenId(std::string_view content) const;
  // Id of an ordinary vocabulary entry given as raw bytes ("safe", "\n\n").
  std::optional<int32_t> TokenIdOfBytes(std::string_view bytes) const;

  // Concatenated bytes of the tokens (specials as their content). The result
  // may be invalid UTF-8 if the ids split a character. Unknown ids are an
  // error naming the position and id.
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids) const;
  // Raw bytes of one token ("" for an id without a token).
  std::string_view TokenBytes(int32_t id) const;

  // One more than the largest id (vocabulary + added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_bytes_.size()); }
  int64_t num_merges() const { return num_merges_; }
  const PreTokenizer& pre_tokenizer() const { return *pre_tokenizer_; }
  // The pre-tokenizer's name when the spec named one ("smollm"), else "".
  const std::string& pre_tokenizer_name() const { return pre_tokenizer_name_; }
  bool ignore_merges() const { return ignore_merges_; }
  // kUnused for an id out of range.
  TokenType token_type(int32_t id) const;
  const SpecialTokenIds& special_ids() const { return special_ids_; }
  // Whether the model expects BOS in front of / EOS after a whole input;
  // when true, special_ids().bos / .eos is a token.
  bool add_bos_token() const { return add_bos_token_; }
  bool add_eos_token() const { return add_eos_token_; }
  // Bytes without a normal token of their own (empty for Llama 3; 21 bytes
  // for SmolLM2, e.g. 0x04), which Encode drops.
  const std::vector<uint8_t>& bytes_without_token() const { return bytes_without_token_; }

  // BPE of one pre-token (bytes), appended to `ids`; exposed for tests.
  // Applies ignore_merges (whole piece in vocab -> one id) when the file asks.
  void EncodePiece(std::string_view piece, std::vector<int32_t>& ids) const;
  // The two merge algorithms behind EncodePiece (quadratic scan for short
  // pieces, priority queue for long ones), exposed for the differential test.
  void MergeByScan(std::string_view piece, std::vector<int32_t>& ids) const;
  void MergeByHeap(std::string_view piece, std::vector<int32_t>& ids) const;

 private:
  BpeTokenizer() = default;
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const Merge* FindMerge(int32_t left, int32_t right) const {
    auto it = merges_.find(PairKey(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  }

  // Appends the merged symbols of a piece, without bytes that have no token.
  void AppendTokens(std::span<const int32_t> symbols, std::vector<int32_t>& ids) const;
  absl::Status AddTokens(const TokenizerSpec& spec);
  absl::Status AddMerges(const TokenizerSpec& spec);
  absl::Status SetSpecialIds(const TokenizerSpec& spec);
  absl::Status SetPreTokenizer(const TokenizerSpec& spec, const TokenizerOptions& options);

  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;    // normal tokens, raw bytes
  absl::flat_hash_map<std::string, int32_t> special_to_id_;  // specials by content
  std::vector<std::string> id_to_bytes_;                     // [vocab_size]
  std::vector<TokenType> token_types_;                       // [vocab_size]
  int32_t byte_token_id_[256] = {};  // id of each single byte, kNoTokenId if none
  std::vector<uint8_t> bytes_without_token_;
  absl::flat_hash_map<uint64_t, Merge> merges_;  // (left, right) -> merge
  int64_t num_merges_ = 0;
  bool ignore_merges_ = false;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::string pre_tokenizer_name_;
  std::vector<std::string> specials_by_length_;  // longest first, for parsing
  SpecialTokenIds special_ids_;
  bool add_bos_token_ = false;
  bool add_eos_token_ = false;
};

// GPT-2 bytes_to_unicode: the code point that stands for byte `b` in
// byte-level vocabularies (printable Latin-1 bytes map to themselves, the
// other 68 to U+0100 onwards in byte order).
char32_t ByteToUnicode(uint8_t b);
// The inverse; -1 for a code point that stands for no byte.
int UnicodeToByte(char32_t code_point);
// A byte-level symbol ("Ġthe") as the raw bytes it stands for (" the").
// Errors: invalid UTF-8, or a character that stands for no byte.
absl::StatusOr<std::string> ByteLevelToBytes(std::string_view symbol);

}  // namespace saferoute

#endif  // SAFEROUTE_TOKENIZER_BPE_TOKENIZER_H_
