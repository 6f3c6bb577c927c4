// Policy category files for `saferoute render/classify --categories FILE`
// (and anyone else who takes a custom category list).
//
// Two formats, told apart by the first non-blank character:
//  - JSON: an object {"S1": "Phishing.", "S2": "Medical advice."}; the file's
//    key order is the order in the prompt.
//  - Lines: one "KEY: NAME" per line ("S1: Phishing."); blank lines and lines
//    starting with '#' are skipped.
// Names are used verbatim (the default list's names end with a period; write
// it if you want it). Errors name the file and the line or key.
#ifndef SAFEROUTE_GUARD_POLICY_FILE_H_
#define SAFEROUTE_GUARD_POLICY_FILE_H_

#include <string>
#include <string_view>

#include "guard/guard.h"
#include "util/status.h"

namespace saferoute {

absl::StatusOr<Policy> ParsePolicyCategories(std::string_view content, std::string_view source);
absl::StatusOr<Policy> LoadPolicyCategories(const std::string& path);

}  // namespace saferoute

#endif  // SAFEROUTE_GUARD_POLICY_FILE_H_
