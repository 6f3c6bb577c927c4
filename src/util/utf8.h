// UTF-8 validation and decoding. Text from outside (prompts, tokenizer files,
// configs, datasets) is hostile: every entry point validates before anything relies on
// well-formedness.
#ifndef SAFEROUTE_UTIL_UTF8_H_
#define SAFEROUTE_UTIL_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/status.h"

namespace saferoute {

// OK iff `text` is well-formed UTF-8 (RFC 3629): no overlong forms, no
// surrogates U+D800..U+DFFF (so CESU-8 / WTF-8 encoded lone surrogates are
// refused), nothing above U+10FFFF, no truncated sequences. The error names
// `what` (e.g. "text") and the byte offset of the first bad sequence.
absl::Status ValidateUtf8(std::string_view text, std::string_view what = "text");

// Byte offset of the first bad sequence, or npos if `text` is valid.
size_t FindInvalidUtf8(std::string_view text);

// Decodes the code point starting at text[pos] of *valid* UTF-8 and advances
// pos. Precondition (checked): pos < text.size().
char32_t DecodeUtf8At(std::string_view text, size_t& pos);

// Appends the UTF-8 encoding of a valid scalar value (not a surrogate).
void AppendUtf8(char32_t code_point, std::string& out);

// `s` as a JSON string literal for an error message: quoted, escaped,
// invalid UTF-8 replaced, cut to 80 characters.
std::string QuoteForError(std::string_view s);

}  // namespace saferoute

#endif  // SAFEROUTE_UTIL_UTF8_H_
