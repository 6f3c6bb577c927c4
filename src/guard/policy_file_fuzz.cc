// libFuzzer target (DEVELOPERS.md, "Fuzzing"): policy category files
// (`--categories FILE`, JSON object or "KEY: NAME" lines).
// Invariants beyond "no crash": an accepted policy has categories, unique
// keys, keys and names that are not blank and hold no line break, valid
// UTF-8; written back as a JSON object it reads back identical, and so it
// does as "KEY: NAME" lines whenever lines can hold it (the line parser's own
// output always can).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "guard/policy_file.h"
#include "guard/template_text.h"
#include "nlohmann/json.hpp"
#include "util/utf8.h"

namespace saferoute {
namespace {

// True if "KEY: NAME" lines reproduce this category exactly: no ':' in the
// key, no '#' starting it, and nothing the line parser would strip: it strips
// what Python's str.strip() does (PythonStrip), which includes the ASCII
// separators 0x1c-0x1f (a JSON name "\u001dx" read back from a line was "x").
bool FitsLine(const std::string& key, const std::string& name) {
  auto bare = [](const std::string& s) { return !s.empty() && PythonStrip(s).size() == s.size(); };
  return bare(key) && bare(name) && key.find(':') == std::string::npos && key.front() != '#' &&
         key.front() != '{';
}

void CheckSame(const Policy& a, const absl::StatusOr<Policy>& b) {
  SR_CHECK(b.ok());
  SR_CHECK(a.categories == b->categories && b->excluded.empty());
}

void Check(std::string_view content) {
  absl::StatusOr<Policy> policy = ParsePolicyCategories(content, "fuzz.policy");
  if (!policy.ok()) return;
  SR_CHECK(FindInvalidUtf8(content) == std::string_view::npos);
  SR_CHECK(!policy->categories.empty() && policy->excluded.empty());
  absl::flat_hash_set<std::string> keys;
  bool all_fit_lines = true;
  nlohmann::ordered_json as_json = nlohmann::ordered_json::object();
  std::string as_lines;
  for (const auto& [key, name] : policy->categories) {
    SR_CHECK(keys.insert(key).second);
    // What the guard format checks when it renders the policy (an error
    // there would not name the file).
    SR_CHECK(key.find_first_of("\r\n") == std::string::npos &&
             name.find_first_of("\r\n") == std::string::npos);
    SR_CHECK(!PythonStrip(key).empty() && !PythonStrip(name).empty());
    as_json[key] = name;
    all_fit_lines = all_fit_lines && FitsLine(key, name);
    as_lines += key + ": " + name + "\n";
  }
  CheckSame(*policy, ParsePolicyCategories(as_json.dump(), "round-trip.json"));
  // Without any '{' the file was read as lines (conservative: whitespace
  // before a '{' may be Unicode).
  const bool from_lines = content.find('{') == std::string_view::npos;
  if (from_lines || all_fit_lines) {
    CheckSame(*policy, ParsePolicyCategories(as_lines, "round-trip.txt"));
  }
}

}  // namespace
}  // namespace saferoute

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  saferoute::Check(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
