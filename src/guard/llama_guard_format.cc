#include "guard/llama_guard_format.h"

#include "absl/container/flat_hash_set.h"
#include "tokenizer/utf8.h"

namespace saferoute {
namespace {

constexpr std::string_view kBeginOfText = "<|begin_of_text|>";
constexpr std::string_view kStartHeader = "<|start_header_id|>";
constexpr std::string_view kEndHeader = "<|end_header_id|>";
constexpr std::string_view kEndOfTurn = "<|eot_id|>";

// Template text, verbatim from the HF templates (including the "according
// our" grammar slip, which the model was trained on).
constexpr std::string_view kTaskBeforeRole = "\n\nTask: Check if there is unsafe content in '";
constexpr std::string_view kTaskAfterRole =
    "' messages in conversations according our safety policy with the below categories.\n\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n";
constexpr std::string_view kCategoriesEnd =
    "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n";
constexpr std::string_view kConversationEnd =
    "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST ";
constexpr std::string_view kInstructions =
    " message in the above conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories.";

const std::pair<const char*, const char*> kCategories8B[] = {
    {"S1", "Violent Crimes."},
    {"S2", "Non-Violent Crimes."},
    {"S3", "Sex Crimes."},
    {"S4", "Child Exploitation."},
    {"S5", "Defamation."},
    {"S6", "Specialized Advice."},
    {"S7", "Privacy."},
    {"S8", "Intellectual Property."},
    {"S9", "Indiscriminate Weapons."},
    {"S10", "Hate."},
    {"S11", "Self-Harm."},
    {"S12", "Sexual Content."},
    {"S13", "Elections."},
    {"S14", "Code Interpreter Abuse."},
};

// Concatenates string-like parts (this absl's StrCat takes no std::string_view).
template <typename... Parts>
std::string Join(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
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

std::string_view RoleLabel(Turn::Role role) { return role == Turn::Role::kUser ? "User" : "Agent"; }

absl::Status ValidatePolicyText(std::string_view text, std::string_view what) {
  SR_RETURN_IF_ERROR(ValidateUtf8(text, what));
  if (PythonStrip(text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(what), ": is empty"));
  }
  if (text.find_first_of("\r\n") != std::string_view::npos) {
    // A line break would forge extra category lines in the prompt.
    return absl::InvalidArgumentError(absl::StrCat(AbslView(what), ": contains a line break"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GuardFormat> ParseGuardFormat(std::string_view name) {
  if (name == "llama-guard-3-1b") return GuardFormat::kLlamaGuard3_1B;
  if (name == "llama-guard-3-8b") return GuardFormat::kLlamaGuard3_8B;
  return absl::InvalidArgumentError(absl::StrCat("unknown guard format '", AbslView(name),
                                                 "' (known: llama-guard-3-1b, llama-guard-3-8b)"));
}

std::string_view GuardFormatName(GuardFormat format) {
  return format == GuardFormat::kLlamaGuard3_1B ? "llama-guard-3-1b" : "llama-guard-3-8b";
}

std::vector<std::pair<std::string, std::string>> DefaultCategories(GuardFormat format) {
  // The 1B list is the 8B list without S14 (Code Interpreter Abuse).
  const size_t count = format == GuardFormat::kLlamaGuard3_1B ? 13 : 14;
  std::vector<std::pair<std::string, std::string>> list;
  for (size_t i = 0; i < count; ++i)
    list.emplace_back(kCategories8B[i].first, kCategories8B[i].second);
  return list;
}

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

absl::StatusOr<std::vector<Turn>> RequestTurns(const GuardRequest& request) {
  std::vector<Turn> turns;
  if (!request.conversation.empty()) {
    if (!request.prompt.empty() || request.response.has_value()) {
      return absl::InvalidArgumentError(
          "request gives both a conversation and a prompt/response; give one");
    }
    turns = request.conversation;
  } else {
    turns.push_back({Turn::Role::kUser, request.prompt});
    if (request.response.has_value()) turns.push_back({Turn::Role::kAssistant, *request.response});
  }
  for (size_t i = 0; i < turns.size(); ++i) {
    const Turn::Role expected = i % 2 == 0 ? Turn::Role::kUser : Turn::Role::kAssistant;
    if (turns[i].role != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "conversation turn ", i, ": roles must alternate user/assistant starting with user"));
    }
    SR_RETURN_IF_ERROR(ValidateUtf8(
        turns[i].content,
        absl::StrCat("conversation turn ", i, " (", AbslView(RoleLabel(turns[i].role)), ")")));
  }
  return turns;
}

absl::StatusOr<RenderedPrompt> RenderLlamaGuard3(GuardFormat format, const std::vector<Turn>& turns,
                                                 const Policy* policy,
                                                 const BpeTokenizer& tokenizer) {
  if (turns.empty()) return absl::InvalidArgumentError("conversation has no turns");
  // Category list.
  std::vector<std::pair<std::string, std::string>> categories =
      policy != nullptr && !policy->categories.empty() ? policy->categories
                                                       : DefaultCategories(format);
  absl::flat_hash_set<std::string> excluded;
  if (policy != nullptr) excluded.insert(policy->excluded.begin(), policy->excluded.end());
  absl::flat_hash_set<std::string> seen;
  std::string category_lines;
  for (size_t i = 0; i < categories.size(); ++i) {
    const auto& [key, name] = categories[i];
    SR_RETURN_IF_ERROR(ValidatePolicyText(key, absl::StrCat("policy category ", i, " key")));
    SR_RETURN_IF_ERROR(ValidatePolicyText(name, absl::StrCat("policy category '", key, "' name")));
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy category '", key, "' is listed twice"));
    }
    if (excluded.contains(key)) continue;
    category_lines += Join(key, ": ", name, "\n");
  }
  if (category_lines.empty()) {
    return absl::InvalidArgumentError("policy excludes every category; nothing left to check");
  }
  // The judged role is computed once from the number of turns (odd: the last
  // turn is the user's), as the templates do before their loop.
  const std::string_view judged = turns.size() % 2 == 1 ? "User" : "Agent";

  // The text between <|end_header_id|> and <|eot_id|>, in two parts: the
  // policy prefix (cacheable) and the conversation + instructions.
  std::string prefix_body =
      Join(kTaskBeforeRole, judged, kTaskAfterRole, category_lines, kCategoriesEnd);
  std::string conversation_body;
  for (const Turn& turn : turns) {
    SR_RETURN_IF_ERROR(ValidateUtf8(turn.content, "conversation turn"));
    conversation_body += Join(RoleLabel(turn.role), ": ", PythonStrip(turn.content), "\n\n");
  }
  conversation_body += Join(kConversationEnd, judged, kInstructions,
                            format == GuardFormat::kLlamaGuard3_1B ? " " : "");
  const std::string body = prefix_body + conversation_body;

  RenderedPrompt out;
  SR_ASSIGN_OR_RETURN(const int32_t bos, tokenizer.RequireSpecialTokenId(kBeginOfText));
  SR_ASSIGN_OR_RETURN(const int32_t start_header, tokenizer.RequireSpecialTokenId(kStartHeader));
  SR_ASSIGN_OR_RETURN(const int32_t end_header, tokenizer.RequireSpecialTokenId(kEndHeader));
  SR_ASSIGN_OR_RETURN(const int32_t eot, tokenizer.RequireSpecialTokenId(kEndOfTurn));
  // The 8B HF template starts with a space before <|begin_of_text|>.
  const std::string_view lead = format == GuardFormat::kLlamaGuard3_8B ? " " : "";
  SR_RETURN_IF_ERROR(tokenizer.EncodeAppend(lead, out.ids));
  out.ids.push_back(bos);
  out.ids.push_back(start_header);
  SR_RETURN_IF_ERROR(tokenizer.EncodeAppend("user", out.ids));
  out.ids.push_back(end_header);
  const size_t body_start = out.ids.size();
  // The body is encoded as one segment, exactly as HF encodes the text
  // between two specials (pieces may not split where our parts meet).
  SR_RETURN_IF_ERROR(tokenizer.EncodeAppend(body, out.ids));
  out.ids.push_back(eot);
  out.ids.push_back(start_header);
  SR_RETURN_IF_ERROR(tokenizer.EncodeAppend("assistant", out.ids));
  out.ids.push_back(end_header);

  out.text = Join(lead, kBeginOfText, kStartHeader, "user", kEndHeader, body, kEndOfTurn,
                  kStartHeader, "assistant", kEndHeader);
  out.prefix_text = Join(lead, kBeginOfText, kStartHeader, "user", kEndHeader, prefix_body);

  // The prefix is cacheable only if its own encoding is a prefix of the
  // full ids (true for byte-level BPE: ">\n\n" ends a pre-token before "User").
  SR_ASSIGN_OR_RETURN(std::vector<int32_t> prefix_body_ids, tokenizer.Encode(prefix_body));
  const size_t prefix_len = body_start + prefix_body_ids.size();
  if (prefix_len < out.ids.size() &&
      std::equal(prefix_body_ids.begin(), prefix_body_ids.end(), out.ids.begin() + body_start)) {
    out.prefix_tokens = prefix_len;
  }
  return out;
}

bool ParseVerdictText(std::string_view text, ParsedVerdict& out) {
  out = ParsedVerdict();
  if (FindInvalidUtf8(text) != std::string_view::npos) return false;
  const std::string_view stripped = PythonStrip(text);
  std::vector<std::string_view> lines = SplitOn(stripped, '\n');
  const std::string_view first = PythonStrip(lines[0]);
  if (first == "safe") return lines.size() == 1;
  if (first != "unsafe" || lines.size() > 2) return false;
  out.unsafe = true;
  if (lines.size() == 1) return true;
  for (std::string_view item : SplitOn(lines[1], ',')) {
    const std::string_view code = PythonStrip(item);
    if (code.empty() || code.find_first_of(" \t") != std::string_view::npos) {
      out.categories.clear();
      return false;
    }
    out.categories.emplace_back(code);
  }
  return true;
}

}  // namespace saferoute
