#include "guard/policy_file.h"

#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "guard/template_text.h"
#include "nlohmann/json.hpp"
#include "util/utf8.h"

namespace saferoute {

absl::StatusOr<Policy> ParsePolicyCategories(std::string_view content,
                                             std::string_view source_name) {
  const absl::string_view source = AbslView(source_name);
  SR_RETURN_IF_ERROR(ValidateUtf8(content, source_name));
  Policy policy;
  const std::string_view trimmed = PythonStrip(content);
  if (!trimmed.empty() && trimmed.front() == '{') {
    nlohmann::ordered_json json;
    try {
      json = nlohmann::ordered_json::parse(content);
    } catch (const nlohmann::ordered_json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": not valid JSON: ", std::string(e.what())));
    }
    for (const auto& [key, value] : json.items()) {
      if (!value.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": category \"", key, "\": the name must be a string"));
      }
      policy.categories.emplace_back(key, value.get<std::string>());
    }
  } else {
    size_t line_number = 0;
    size_t start = 0;
    while (start < content.size()) {
      size_t end = content.find('\n', start);
      if (end == std::string_view::npos) end = content.size();
      std::string_view line = content.substr(start, end - start);
      start = end + 1;
      ++line_number;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      const std::string_view stripped = PythonStrip(line);
      if (stripped.empty() || stripped.front() == '#') continue;
      const size_t colon = stripped.find(':');
      if (colon == std::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ":", line_number, ": expected \"KEY: NAME\""));
      }
      const std::string_view key = PythonStrip(stripped.substr(0, colon));
      const std::string_view name = PythonStrip(stripped.substr(colon + 1));
      if (key.empty() || name.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ":", line_number, ": empty key or name in \"KEY: NAME\""));
      }
      policy.categories.emplace_back(std::string(key), std::string(name));
    }
  }
  if (policy.categories.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no categories"));
  }
  // Same checks as rendering (duplicates, line breaks), reported with the file.
  absl::flat_hash_set<std::string> seen;
  for (const auto& [key, name] : policy.categories) {
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": category \"", key, "\" is listed twice"));
    }
    if (name.find_first_of("\r\n") != std::string::npos ||
        key.find_first_of("\r\n") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": category \"", key, "\" contains a line break"));
    }
    if (PythonStrip(key).empty() || PythonStrip(name).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": category \"", key, "\": empty key or name"));
    }
  }
  return policy;
}

absl::StatusOr<Policy> LoadPolicyCategories(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open categories file"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return ParsePolicyCategories(buffer.str(), path);
}

}  // namespace saferoute
