// The pre-tokenizer of a byte-level BPE tokenizer: splits text into pieces
// with one or more regexes, each applied to every piece of the one before
// (tokenizer.json's `Sequence` of `Split`/`Digits`/`ByteLevel` steps, or
// llama.cpp's list of regexes for a `tokenizer.ggml.pre` name). Every regex
// isolates: each match is a piece and so is each stretch between matches.
//
// A regex is compiled with PCRE2 (UTF + UCP, JIT) exactly as stated. For the
// Llama 3 pattern and its one-digit Qwen2 variant a hand-written scanner
// decides every match that lies entirely in ASCII and hands anything else
// back to PCRE2; pretokenizer_test.cc checks the two paths agree on many
// strings.
#ifndef SAFEROUTE_TOKENIZER_PRETOKENIZER_H_
#define SAFEROUTE_TOKENIZER_PRETOKENIZER_H_

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "util/status.h"

namespace saferoute {

// The Llama 3 (tiktoken cl100k-style) split pattern, as in tokenizer.json.
inline constexpr std::string_view kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Qwen2 / Qwen3: the Llama 3 pattern with single digits (\p{N} for \p{N}{1,3}).
inline constexpr std::string_view kQwen2SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The GPT-2 pattern that a ByteLevel pre-tokenizer with use_regex=true applies.
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// tokenizer.json's Digits pre-tokenizer: individual_digits true / false.
// (HF tests char::is_numeric, i.e. general categories Nd, Nl, No: \p{N}.)
inline constexpr std::string_view kDigitsIndividualPattern = R"(\p{N})";
inline constexpr std::string_view kDigitsGroupedPattern = R"(\p{N}+)";

class RegexSplitter {
 public:
  // Compiles `pattern`. `fast_path`: use the ASCII scanner when the pattern
  // is exactly kLlama3SplitPattern or kQwen2SplitPattern (ignored otherwise).
  // Errors name `source`.
  static absl::StatusOr<std::unique_ptr<RegexSplitter>> Create(std::string_view pattern,
                                                               bool fast_path,
                                                               std::string_view source);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Calls `emit` with each piece in order; the pieces concatenate to `text`.
  // Precondition: `text` is valid UTF-8 (the caller validates). Thread-safe.
  absl::Status Split(std::string_view text,
                     absl::FunctionRef<void(std::string_view piece)> emit) const;

  const std::string& pattern() const { return pattern_; }
  bool uses_fast_path() const { return fast_path_max_digits_ > 0; }

 private:
  RegexSplitter() = default;
  struct Pcre;
  std::unique_ptr<Pcre> pcre_;
  std::string pattern_;
  // The longest digit run of the fast path's pattern (3: Llama 3, 1: Qwen2);
  // 0 when PCRE2 alone splits.
  int fast_path_max_digits_ = 0;
};

// The end of the match of the Llama 3 pattern (max_digits = 3) or of the
// Qwen2 pattern (max_digits = 1) that starts at `pos`, decided from ASCII
// characters only; 0 when the decision needs a non-ASCII character (then
// PCRE2 decides). Exposed for the differential test.
size_t Llama3AsciiMatchEnd(std::string_view text, size_t pos, int max_digits = 3);

// A sequence of RegexSplitters: the first splits the text, each next one
// splits every piece of the one before (as HF's Sequence pre-tokenizer and
// llama.cpp's unicode_regex_split do).
class PreTokenizer {
 public:
  // At least one pattern. Errors name `source`.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(std::span<const std::string> patterns,
                                                              bool fast_path,
                                                              std::string_view source);

  // As RegexSplitter::Split; the pieces concatenate to `text`.
  absl::Status Split(std::string_view text,
                     absl::FunctionRef<void(std::string_view piece)> emit) const;

  const std::vector<std::unique_ptr<RegexSplitter>>& stages() const { return stages_; }
  // True if every stage that can have the ASCII fast path has it.
  bool uses_fast_path() const;

 private:
  PreTokenizer() = default;
  absl::Status SplitStage(size_t stage, std::string_view text,
                          absl::FunctionRef<void(std::string_view)> emit) const;
  std::vector<std::unique_ptr<RegexSplitter>> stages_;
};

// A pre-tokenizer known by name: llama.cpp's `tokenizer.ggml.pre` values, with
// the split regexes and the ignore_merges flag llama.cpp gives each (src/
// llama-vocab.cpp of llama.cpp c392e509; HF's tokenizer.json of the same
// models states the same rules).
struct NamedPreTokenizer {
  std::string_view name;
  std::vector<std::string> patterns;  // applied in order
  bool ignore_merges = false;
  // llama.cpp's add_bos when the file has no tokenizer.ggml.add_bos_token.
  bool add_bos_by_default = false;
};
// nullptr for a name not known here.
const NamedPreTokenizer* FindNamedPreTokenizer(std::string_view name);
// The known names, comma-separated, for error messages.
std::string KnownPreTokenizerNames();

}  // namespace saferoute

#endif  // SAFEROUTE_TOKENIZER_PRETOKENIZER_H_
