// Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json
// (Llama 3; other byte-level BPE vocabularies with the same structure, e.g.
// GPT-2 style files, load too).
//
// Security rule: Encode() treats special-token strings in the text as plain
// text, always. Template renderers build ids by concatenating special ids
// (SpecialTokenId) with plain-text encodings of each text segment, so user
// text can never inject "<|eot_id|>" and break out of a prompt template.
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
#include "util/status.h"

namespace saferoute {

struct TokenizerOptions {
  // Use the hand-written ASCII scanner for the Llama 3 split pattern (the
  // PCRE2 path gives identical pieces; off only for differential tests).
  bool fast_pretokenizer = true;
};

class BpeTokenizer {
 public:
  // Reads and validates tokenizer.json. Errors name the file and the field or
  // entry (e.g. "tokenizer.json: model.merges[17]: ...").
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Load(const std::string& path,
                                                            const TokenizerOptions& options = {});
  // Same from JSON text; `source` names it in errors.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(
      std::string_view json_text, std::string_view source, const TokenizerOptions& options = {});

  // Encodes plain text (no BOS; special-token strings are ordinary text).
  // Invalid UTF-8 is an error naming the byte offset.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;
  // Appends the encoding of `text` to `ids` (nothing is appended on error).
  absl::Status EncodeAppend(std::string_view text, std::vector<int32_t>& ids) const;

  // HF parity mode: added-token strings in `text` become their ids (leftmost,
  // longest first), the text between them is encoded as by Encode(). Never
  // use it on user input.
  absl::StatusOr<std::vector<int32_t>> EncodeParsingSpecials(std::string_view text) const;

  // Id of an added/special token by its exact content ("<|eot_id|>").
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
  const RegexSplitter& splitter() const { return *splitter_; }

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

  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;    // ordinary vocab, raw bytes
  absl::flat_hash_map<std::string, int32_t> special_to_id_;  // added tokens by content
  std::vector<std::string> id_to_bytes_;                     // [vocab_size]
  std::vector<bool> id_present_;                             // [vocab_size]
  int32_t byte_token_id_[256] = {};                          // id of each single byte
  absl::flat_hash_map<uint64_t, Merge> merges_;              // (left, right) -> merge
  int64_t num_merges_ = 0;
  bool ignore_merges_ = false;
  std::unique_ptr<RegexSplitter> splitter_;
  std::vector<std::string> specials_by_length_;  // longest first, for parsing
};

// GPT-2 bytes_to_unicode: the code point that stands for byte `b` in
// byte-level vocabularies (printable Latin-1 bytes map to themselves, the
// other 68 to U+0100 onwards in byte order).
char32_t ByteToUnicode(uint8_t b);
// The inverse; -1 for a code point that stands for no byte.
int UnicodeToByte(char32_t code_point);

}  // namespace saferoute

#endif  // SAFEROUTE_TOKENIZER_BPE_TOKENIZER_H_
