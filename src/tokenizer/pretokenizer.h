// The pre-tokenizer of a byte-level BPE tokenizer: splits text into pieces
// with the `Split` regex of tokenizer.json (behaviour "Isolated": every match
// is a piece and so is every stretch between matches).
//
// The regex is compiled with PCRE2 (UTF + UCP, JIT) exactly as the file
// states it. For the Llama 3 pattern a hand-written scanner decides every
// match that lies entirely in ASCII and hands anything else back to PCRE2;
// pretokenizer_test.cc checks the two paths agree on many strings.
#ifndef SAFEROUTE_TOKENIZER_PRETOKENIZER_H_
#define SAFEROUTE_TOKENIZER_PRETOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "util/status.h"

namespace saferoute {

// The Llama 3 (tiktoken cl100k-style) split pattern, as in tokenizer.json.
inline constexpr std::string_view kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The GPT-2 pattern that a ByteLevel pre-tokenizer with use_regex=true applies.
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class RegexSplitter {
 public:
  // Compiles `pattern`. `fast_path`: use the ASCII scanner when the pattern
  // is exactly kLlama3SplitPattern (ignored otherwise). Errors name `source`.
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
  bool uses_fast_path() const { return llama3_fast_path_; }

 private:
  RegexSplitter() = default;
  struct Pcre;
  std::unique_ptr<Pcre> pcre_;
  std::string pattern_;
  bool llama3_fast_path_ = false;
};

// The end of the Llama 3 pattern's match that starts at `pos`, decided from
// ASCII characters only; 0 when the decision needs a non-ASCII character
// (then PCRE2 decides). Exposed for the differential test.
size_t Llama3AsciiMatchEnd(std::string_view text, size_t pos);

}  // namespace saferoute

#endif  // SAFEROUTE_TOKENIZER_PRETOKENIZER_H_
