// Text semantics that chat templates share: Jinja's `trim` (Python
// str.strip()), and a line splitter for parsing guard outputs.
#ifndef SAFEROUTE_GUARD_TEMPLATE_TEXT_H_
#define SAFEROUTE_GUARD_TEMPLATE_TEXT_H_

#include <string_view>
#include <vector>

namespace saferoute {

// Python str.strip() (= Jinja `trim`): removes leading and trailing
// characters for which str.isspace() is true. Input must be valid UTF-8.
std::string_view PythonStrip(std::string_view text);
bool IsPythonSpace(char32_t code_point);

// Splits on every `separator` (empty parts kept: "a,,b" has three).
std::vector<std::string_view> SplitOn(std::string_view text, char separator);

}  // namespace saferoute

#endif  // SAFEROUTE_GUARD_TEMPLATE_TEXT_H_
