#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>

#include "util/utf8.h"

namespace saferoute {
namespace {

// ASCII character classes with the meaning PCRE2 gives \p{L}, \p{N} and \s
// (UCP) on code points below 0x80.
inline bool IsAsciiLetter(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
inline bool IsAsciiDigit(unsigned char c) { return c >= '0' && c <= '9'; }
inline bool IsAsciiSpace(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
inline bool IsNewline(unsigned char c) { return c == '\r' || c == '\n'; }
// [^\s\p{L}\p{N}] restricted to ASCII.
inline bool IsAsciiSymbol(unsigned char c) {
  return c < 0x80 && !IsAsciiSpace(c) && !IsAsciiLetter(c) && !IsAsciiDigit(c);
}

// `pattern` with \s and \S as the Unicode White_Space property. With UCP,
// PCRE2's \s also matches U+180E (Mongolian vowel separator, whitespace
// before Unicode 6.3); HF tokenizers' and llama.cpp's \s do not, and a
// tokenizer must split as they do. \p{White_Space} is valid inside and
// outside a character class. Other escapes (\\s is a backslash and an 's')
// are copied as they are.
std::string WithUnicodeWhiteSpace(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out.push_back(pattern[i]);
      continue;
    }
    const char escaped = pattern[++i];
    if (escaped == 's') {
      out += "\\p{White_Space}";
    } else if (escaped == 'S') {
      out += "\\P{White_Space}";
    } else {
      out.push_back('\\');
      out.push_back(escaped);
    }
  }
  return out;
}

std::string PcreErrorMessage(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return absl::StrCat("PCRE2 error ", code);
  }
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

size_t Llama3AsciiMatchEnd(std::string_view text, size_t pos, int max_digits) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  constexpr size_t kUndecided = 0;
  const unsigned char c = s[pos];
  if (c >= 0x80) return kUndecided;
  // The alternatives are tried in order; the first that matches wins.
  // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c == '\'' && pos + 1 < n) {
    const unsigned char c1 = s[pos + 1];
    if (c1 >= 0x80) return kUndecided;  // caseless UCP: 's' also matches U+017F
    const unsigned char l1 = c1 | 0x20;
    if (IsAsciiLetter(c1) && (l1 == 's' || l1 == 't' || l1 == 'm' || l1 == 'd')) return pos + 2;
    if (IsAsciiLetter(c1) && (l1 == 'r' || l1 == 'v' || l1 == 'l') && pos + 2 < n) {
      const unsigned char c2 = s[pos + 2];
      if (c2 >= 0x80) return kUndecided;
      const unsigned char l2 = c2 | 0x20;
      if (IsAsciiLetter(c2) &&
          ((l1 == 'r' && l2 == 'e') || (l1 == 'v' && l2 == 'e') || (l1 == 'l' && l2 == 'l'))) {
        return pos + 3;
      }
    }
  }
  // 2. [^\r\n\p{L}\p{N}]?\p{L}+
  size_t letters_from = n;  // start of the \p{L}+ run, if alternative 2 applies
  if (IsAsciiLetter(c)) {
    letters_from = pos;
  } else if (!IsNewline(c) && !IsAsciiDigit(c) && pos + 1 < n) {
    const unsigned char c1 = s[pos + 1];
    if (c1 >= 0x80) return kUndecided;  // might be a letter
    if (IsAsciiLetter(c1)) letters_from = pos + 1;
  }
  if (letters_from < n) {
    size_t end = letters_from + 1;
    while (end < n && IsAsciiLetter(s[end])) ++end;
    if (end < n && s[end] >= 0x80) return kUndecided;  // the run might go on
    return end;
  }
  // 3. \p{N}{1,3} (Llama 3) or \p{N} (Qwen2)
  if (IsAsciiDigit(c)) {
    const size_t longest = pos + max_digits;
    size_t end = pos + 1;
    while (end < n && end < longest && IsAsciiDigit(s[end])) ++end;
    if (end < longest && end < n && s[end] >= 0x80) return kUndecided;  // might be \p{N}
    return end;
  }
  // 4. ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  size_t symbols_from = n;
  if (IsAsciiSymbol(c)) {
    symbols_from = pos;
  } else if (c == ' ' && pos + 1 < n) {
    const unsigned char c1 = s[pos + 1];
    if (c1 >= 0x80) return kUndecided;
    if (IsAsciiSymbol(c1)) symbols_from = pos + 1;
  }
  if (symbols_from < n) {
    size_t end = symbols_from + 1;
    while (end < n && IsAsciiSymbol(s[end])) ++end;
    if (end < n && s[end] >= 0x80) return kUndecided;  // might be a symbol too
    while (end < n && IsNewline(s[end])) ++end;
    return end;
  }
  // 5-7. c is whitespace here. Find the whitespace run [pos, run_end).
  SR_CHECK(IsAsciiSpace(c));
  size_t run_end = pos + 1;
  size_t last_newline = IsNewline(c) ? pos : n;
  while (run_end < n && IsAsciiSpace(s[run_end])) {
    if (IsNewline(s[run_end])) last_newline = run_end;
    ++run_end;
  }
  if (run_end < n && s[run_end] >= 0x80) return kUndecided;  // might be Unicode whitespace
  // 5. \s*[\r\n]+ : backtracking ends the match just after the run's last CR/LF.
  if (last_newline < n) return last_newline + 1;
  // 6. \s+(?!\S) : the whole run at the end of text, else all but its last char.
  if (run_end == n) return run_end;
  if (run_end - pos >= 2) return run_end - 1;
  // 7. \s+
  return run_end;
}

struct RegexSplitter::Pcre {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Pcre() {
    if (code != nullptr) pcre2_code_free(code);
  }
};

RegexSplitter::~RegexSplitter() = default;

absl::StatusOr<std::unique_ptr<RegexSplitter>> RegexSplitter::Create(std::string_view pattern,
                                                                     bool fast_path,
                                                                     std::string_view source) {
  std::unique_ptr<RegexSplitter> splitter(new RegexSplitter());
  splitter->pattern_ = std::string(pattern);
  splitter->pcre_ = std::make_unique<Pcre>();
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  const std::string compiled = WithUnicodeWhiteSpace(pattern);
  splitter->pcre_->code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(compiled.data()), compiled.size(),
                    PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (splitter->pcre_->code == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: pre_tokenizer Split pattern does not compile at offset %d of %s: %s", AbslView(source),
        error_offset, QuoteForError(compiled), PcreErrorMessage(error_code)));
  }
  // JIT is an optimisation; the interpreter gives the same matches.
  splitter->pcre_->jit = pcre2_jit_compile(splitter->pcre_->code, PCRE2_JIT_COMPLETE) == 0;
  if (fast_path && pattern == kLlama3SplitPattern) splitter->fast_path_max_digits_ = 3;
  if (fast_path && pattern == kQwen2SplitPattern) splitter->fast_path_max_digits_ = 1;
  return splitter;
}

absl::Status RegexSplitter::Split(std::string_view text,
                                  absl::FunctionRef<void(std::string_view)> emit) const {
  const size_t n = text.size();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* match_context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  auto cleanup = [&] {
    if (match_data != nullptr) pcre2_match_data_free(match_data);
    if (match_context != nullptr) pcre2_match_context_free(match_context);
    if (jit_stack != nullptr) pcre2_jit_stack_free(jit_stack);
  };
  size_t gap_start = 0;  // start of text not yet emitted
  size_t search_at = 0;  // where the next match is searched from
  absl::Status status;
  while (search_at < n) {
    if (fast_path_max_digits_ > 0 && search_at == gap_start) {
      const size_t end = Llama3AsciiMatchEnd(text, search_at, fast_path_max_digits_);
      if (end != 0) {
        emit(text.substr(search_at, end - search_at));
        gap_start = search_at = end;
        continue;
      }
    }
    if (match_data == nullptr) {
      match_data = pcre2_match_data_create_from_pattern(pcre_->code, nullptr);
      SR_CHECK(match_data != nullptr);
    }
    int rc = pcre_->jit
                 ? pcre2_jit_match(pcre_->code, subject, n, search_at, 0, match_data, match_context)
                 : pcre2_match(pcre_->code, subject, n, search_at, PCRE2_NO_UTF_CHECK, match_data,
                               match_context);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && jit_stack == nullptr) {
      // Very long runs can exceed the default 32 KiB JIT stack: retry with a
      // larger one (allocated only when needed).
      match_context = pcre2_match_context_create(nullptr);
      jit_stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
      SR_CHECK(match_context != nullptr && jit_stack != nullptr);
      pcre2_jit_stack_assign(match_context, nullptr, jit_stack);
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      status = absl::ResourceExhaustedError(absl::StrFormat(
          "pre-tokenizer regex failed at byte offset %d: %s", search_at, PcreErrorMessage(rc)));
      break;
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data);
    const size_t match_start = ovector[0], match_end = ovector[1];
    if (match_end == match_start) {
      // An empty match isolates nothing; search again one character later.
      size_t next = match_start + 1;
      while (next < n && (static_cast<unsigned char>(text[next]) & 0xC0) == 0x80) ++next;
      search_at = next;
      continue;
    }
    if (match_start > gap_start) emit(text.substr(gap_start, match_start - gap_start));
    emit(text.substr(match_start, match_end - match_start));
    gap_start = search_at = match_end;
  }
  if (status.ok() && gap_start < n) emit(text.substr(gap_start));
  cleanup();
  return status;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(
    std::span<const std::string> patterns, bool fast_path, std::string_view source) {
  if (patterns.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(source), ": pre-tokenizer: no split pattern"));
  }
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  for (const std::string& pattern : patterns) {
    SR_ASSIGN_OR_RETURN(std::unique_ptr<RegexSplitter> stage,
                        RegexSplitter::Create(pattern, fast_path, source));
    pre->stages_.push_back(std::move(stage));
  }
  return pre;
}

bool PreTokenizer::uses_fast_path() const {
  for (const auto& stage : stages_) {
    const std::string& p = stage->pattern();
    if ((p == kLlama3SplitPattern || p == kQwen2SplitPattern) && !stage->uses_fast_path()) {
      return false;
    }
  }
  return true;
}

absl::Status PreTokenizer::Split(std::string_view text,
                                 absl::FunctionRef<void(std::string_view)> emit) const {
  return SplitStage(0, text, emit);
}

absl::Status PreTokenizer::SplitStage(size_t stage, std::string_view text,
                                      absl::FunctionRef<void(std::string_view)> emit) const {
  if (stage + 1 == stages_.size()) return stages_[stage]->Split(text, emit);
  // Pieces of this stage go through the next one; its first error stops the
  // rest (Split cannot be interrupted, so later pieces are skipped).
  absl::Status inner;
  SR_RETURN_IF_ERROR(stages_[stage]->Split(text, [&](std::string_view piece) {
    if (inner.ok()) inner = SplitStage(stage + 1, piece, emit);
  }));
  return inner;
}

namespace {

const std::vector<NamedPreTokenizer>& NamedPreTokenizers() {
  static const auto* const kKnown = new std::vector<NamedPreTokenizer>{
      // Llama 3 (llama.cpp also reads the pieces that are whole tokens as
      // one id: HF's ignore_merges, set in Llama 3's tokenizer.json).
      {"llama-bpe",
       {std::string(kLlama3SplitPattern)},
       /*ignore_merges=*/true,
       /*add_bos_by_default=*/true},
      // Qwen2 / Qwen3 (their tokenizer.json adds an NFC normalizer that
      // llama.cpp does not apply; neither do we).
      {"qwen2", {std::string(kQwen2SplitPattern)}, false, false},
      // SmolLM / SmolLM2: every digit alone, then the GPT-2 pattern on each
      // piece (tokenizer.json: Sequence[Digits(individual_digits),
      // ByteLevel(use_regex)]).
      {"smollm",
       {std::string(kDigitsIndividualPattern), std::string(kGpt2SplitPattern)},
       false,
       false},
  };
  return *kKnown;
}

}  // namespace

const NamedPreTokenizer* FindNamedPreTokenizer(std::string_view name) {
  for (const NamedPreTokenizer& known : NamedPreTokenizers()) {
    if (known.name == name) return &known;
  }
  return nullptr;
}

std::string KnownPreTokenizerNames() {
  std::string names;
  for (const NamedPreTokenizer& known : NamedPreTokenizers()) {
    absl::StrAppend(&names, names.empty() ? "" : ", ", AbslView(known.name));
  }
  return names;
}

}  // namespace saferoute
