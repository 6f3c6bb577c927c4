#include "guard/template_text.h"

#include "util/utf8.h"

namespace saferoute {

bool IsPythonSpace(char32_t c) {
  // str.isspace(): bidirectional class WS, B or S, or category Zs.
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string_view PythonStrip(std::string_view text) {
  size_t pos = 0;
  size_t first = text.size();  // start of the first non-space character
  size_t last_end = 0;         // end of the last non-space character
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t c = DecodeUtf8At(text, pos);
    if (!IsPythonSpace(c)) {
      if (first == text.size()) first = start;
      last_end = pos;
    }
  }
  if (first == text.size()) return {};
  return text.substr(first, last_end - first);
}

std::vector<std::string_view> SplitOn(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

}  // namespace saferoute
