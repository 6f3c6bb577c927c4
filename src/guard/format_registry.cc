// The registry of guard formats. Adding a family: its file defines
// `<Family>Formats()`, declared and listed below (one line each).
#include "guard/guard_format.h"
#include "util/utf8.h"

namespace saferoute {

std::span<const GuardFormatEntry> LlamaGuard3Formats();  // guard/llama_guard3.cc

namespace {

using FamilyFormats = std::span<const GuardFormatEntry> (*)();
constexpr FamilyFormats kFamilies[] = {
    LlamaGuard3Formats,
};

}  // namespace

std::span<const GuardFormatEntry> GuardFormatEntries() {
  static const std::vector<GuardFormatEntry>* entries = [] {
    auto* all = new std::vector<GuardFormatEntry>;
    for (FamilyFormats family : kFamilies) {
      for (const GuardFormatEntry& entry : family()) all->push_back(entry);
    }
    return all;
  }();
  return *entries;
}

std::string GuardFormatNameList() {
  std::string names;
  for (const GuardFormatEntry& entry : GuardFormatEntries()) {
    absl::StrAppend(&names, names.empty() ? "" : " | ", AbslView(entry.name));
  }
  return names;
}

absl::StatusOr<std::unique_ptr<GuardFormat>> OpenGuardFormat(
    std::string_view name, std::shared_ptr<const BpeTokenizer> tokenizer) {
  SR_CHECK(tokenizer != nullptr);
  for (const GuardFormatEntry& entry : GuardFormatEntries()) {
    if (entry.name == name) return entry.open(std::move(tokenizer));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown guard format '", AbslView(name),
                                                 "' (known: ", GuardFormatNameList(), ")"));
}

std::vector<std::string> ModerationKeys(std::string_view format_name, std::string_view code) {
  for (const GuardFormatEntry& entry : GuardFormatEntries()) {
    if (entry.name == format_name) return entry.moderation_keys(code);
  }
  return {};
}

absl::StatusOr<std::string> GuessFormat(const ModelConfig& config, std::string_view where) {
  std::vector<std::string_view> matches;
  for (const GuardFormatEntry& entry : GuardFormatEntries()) {
    if (entry.matches_shape(config)) matches.push_back(entry.name);
  }
  if (matches.size() == 1) return std::string(matches[0]);
  return absl::InvalidArgumentError(
      absl::StrCat(AbslView(where), ": cannot tell the guard format from the shape (",
                   config.architecture_name, ", ", config.num_layers, " layers, hidden ",
                   config.hidden_size, "); give the format (", GuardFormatNameList(), ")"));
}

}  // namespace saferoute
