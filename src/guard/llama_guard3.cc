// Llama Guard 3 (1B and 8B layouts): the one file that knows its template,
// its tokens and its output. Rendering is byte-exact with the Hugging Face
// chat templates of Llama-Guard-3-1B and -8B (docs: guard-models.md §1.3):
//   8B: a leading " " before <|begin_of_text|>, categories S1-S14 by default,
//       "...violated categories.<|eot_id|>";
//   1B: categories S1-S13 by default, "...violated categories. <|eot_id|>".
// Both end at "<|start_header_id|>assistant<|end_header_id|>" (no "\n\n");
// the model then writes "\n\n" (the verdict lead), "safe" or "unsafe", and
// for unsafe a line of category codes "S1,S10", then <|eot_id|> (§1.5).
//
// Ids are built, never parsed from text: template specials are inserted by id
// and each text segment between them is encoded as plain text, so user text
// containing "<|eot_id|>" stays text (the one deliberate divergence from HF's
// apply_chat_template, which parses specials inside user content).
#include <algorithm>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "guard/guard_format.h"
#include "guard/template_text.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

constexpr std::string_view kBeginOfText = "<|begin_of_text|>";
constexpr std::string_view kStartHeader = "<|start_header_id|>";
constexpr std::string_view kEndHeader = "<|end_header_id|>";
constexpr std::string_view kEndOfTurn = "<|eot_id|>";

// What the model writes before its verdict, and its two verdict words.
constexpr std::string_view kVerdictLead = "\n\n";
constexpr std::string_view kSafe = "safe";
constexpr std::string_view kUnsafe = "unsafe";

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

// The template's category names (short forms, not the model card's).
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

// Category code -> OpenAI omni-moderation keys (the /v1/moderations view;
// src/server/README.md, "Llama Guard S-codes → OpenAI categories"). Codes without a counterpart
// (S5 Defamation, S6 Specialized Advice, S7 Privacy, S8 Intellectual
// Property, S13 Elections) map to none: their verdicts still flag.
std::vector<std::string> LlamaGuard3ModerationKeys(std::string_view code) {
  static const auto* map = new std::map<std::string, std::vector<std::string>, std::less<>>{
      {"S1", {"violence", "illicit/violent"}},  // Violent Crimes
      {"S2", {"illicit"}},                      // Non-Violent Crimes
      {"S3", {"sexual", "illicit/violent"}},    // Sex-Related Crimes
      {"S4", {"sexual/minors"}},                // Child Sexual Exploitation
      {"S9", {"illicit/violent"}},              // Indiscriminate Weapons
      {"S10", {"hate"}},                        // Hate
      {"S11", {"self-harm"}},                   // Suicide & Self-Harm
      {"S12", {"sexual"}},                      // Sexual Content
      {"S14", {"illicit"}},                     // Code Interpreter Abuse
  };
  auto it = map->find(code);
  return it == map->end() ? std::vector<std::string>{} : it->second;
}

enum class Layout { k1B, k8B };

// Concatenates string-like parts (this absl's StrCat takes no std::string_view).
template <typename... Parts>
std::string Join(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
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

class LlamaGuard3Format final : public GuardFormat {
 public:
  static absl::StatusOr<std::unique_ptr<GuardFormat>> Open(
      Layout layout, std::shared_ptr<const BpeTokenizer> tokenizer);

  std::string_view name() const override {
    return layout_ == Layout::k1B ? "llama-guard-3-1b" : "llama-guard-3-8b";
  }
  const BpeTokenizer& tokenizer() const override { return *tokenizer_; }
  const std::vector<std::pair<std::string, std::string>>& default_categories() const override {
    return default_categories_;
  }
  absl::StatusOr<RenderedPrompt> Render(const std::vector<Turn>& turns,
                                        const Policy* policy) const override;
  std::span<const int32_t> verdict_lead_ids() const override { return lead_ids_; }
  std::span<const VerdictToken> verdict_tokens() const override { return verdict_tokens_; }
  std::span<const int32_t> stop_ids() const override { return stop_ids_; }
  std::optional<ParsedOutput> ParseOutput(std::string_view text,
                                          const Policy* policy) const override;

 private:
  // The category lines of the prompt ("S1: Violent Crimes.\n..."), and the
  // keys they show.
  absl::StatusOr<std::string> CategoryLines(const Policy* policy,
                                            absl::flat_hash_set<std::string>* shown) const;

  Layout layout_ = Layout::k1B;
  std::shared_ptr<const BpeTokenizer> tokenizer_;
  std::vector<std::pair<std::string, std::string>> default_categories_;
  int32_t bos_ = 0, start_header_ = 0, end_header_ = 0, eot_ = 0;
  std::vector<int32_t> lead_ids_;
  std::vector<VerdictToken> verdict_tokens_;
  std::vector<int32_t> stop_ids_;
};

absl::StatusOr<std::unique_ptr<GuardFormat>> LlamaGuard3Format::Open(
    Layout layout, std::shared_ptr<const BpeTokenizer> tokenizer) {
  auto format = std::unique_ptr<LlamaGuard3Format>(new LlamaGuard3Format);
  format->layout_ = layout;
  format->tokenizer_ = std::move(tokenizer);
  const BpeTokenizer& tok = *format->tokenizer_;
  // The 1B list is the 8B list without S14 (Code Interpreter Abuse).
  const size_t count = layout == Layout::k1B ? 13 : 14;
  for (size_t i = 0; i < count; ++i) {
    format->default_categories_.emplace_back(kCategories8B[i].first, kCategories8B[i].second);
  }
  auto special = [&](std::string_view content) -> absl::StatusOr<int32_t> {
    if (auto id = tok.SpecialTokenId(content)) return *id;
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(format->name()), ": the tokenizer has no special token \"",
                     AbslView(content), "\" (not a Llama 3 vocabulary?)"));
  };
  auto word = [&](std::string_view bytes) -> absl::StatusOr<int32_t> {
    if (auto id = tok.TokenIdOfBytes(bytes)) return *id;
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(format->name()), ": the tokenizer has no token for \"",
                     AbslView(bytes), "\" (not a Llama 3 vocabulary?)"));
  };
  SR_ASSIGN_OR_RETURN(format->bos_, special(kBeginOfText));
  SR_ASSIGN_OR_RETURN(format->start_header_, special(kStartHeader));
  SR_ASSIGN_OR_RETURN(format->end_header_, special(kEndHeader));
  SR_ASSIGN_OR_RETURN(format->eot_, special(kEndOfTurn));
  SR_ASSIGN_OR_RETURN(const int32_t lead, word(kVerdictLead));
  SR_ASSIGN_OR_RETURN(const int32_t safe, word(kSafe));
  SR_ASSIGN_OR_RETURN(const int32_t unsafe, word(kUnsafe));
  format->lead_ids_ = {lead};
  format->verdict_tokens_ = {
      {.label = std::string(kSafe), .id = safe, .text = std::string(kSafe), .unsafe = false},
      {.label = std::string(kUnsafe), .id = unsafe, .text = std::string(kUnsafe), .unsafe = true}};
  format->stop_ids_ = {format->eot_};
  return format;
}

absl::StatusOr<std::string> LlamaGuard3Format::CategoryLines(
    const Policy* policy, absl::flat_hash_set<std::string>* shown) const {
  const std::vector<std::pair<std::string, std::string>>& categories =
      policy != nullptr && !policy->categories.empty() ? policy->categories : default_categories_;
  absl::flat_hash_set<std::string> excluded;
  if (policy != nullptr) excluded.insert(policy->excluded.begin(), policy->excluded.end());
  absl::flat_hash_set<std::string> seen;
  std::string lines;
  for (size_t i = 0; i < categories.size(); ++i) {
    const auto& [key, name] = categories[i];
    SR_RETURN_IF_ERROR(ValidatePolicyText(key, absl::StrCat("policy category ", i, " key")));
    SR_RETURN_IF_ERROR(ValidatePolicyText(name, absl::StrCat("policy category '", key, "' name")));
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy category '", key, "' is listed twice"));
    }
    // Unknown excluded keys are ignored (one policy may go to both guards).
    if (excluded.contains(key)) continue;
    lines += Join(key, ": ", name, "\n");
    if (shown != nullptr) shown->insert(key);
  }
  if (lines.empty()) {
    return absl::InvalidArgumentError("policy excludes every category; nothing left to check");
  }
  return lines;
}

// Custom categories replace the list (as the 1B template's `categories`
// kwarg; the 8B renders the same structure with the given list).
absl::StatusOr<RenderedPrompt> LlamaGuard3Format::Render(const std::vector<Turn>& turns,
                                                         const Policy* policy) const {
  if (turns.empty()) return absl::InvalidArgumentError("conversation has no turns");
  SR_ASSIGN_OR_RETURN(const std::string category_lines, CategoryLines(policy, nullptr));
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
  conversation_body +=
      Join(kConversationEnd, judged, kInstructions, layout_ == Layout::k1B ? " " : "");
  const std::string body = prefix_body + conversation_body;

  const BpeTokenizer& tok = *tokenizer_;
  RenderedPrompt out;
  // The 8B HF template starts with a space before <|begin_of_text|>.
  const std::string_view lead = layout_ == Layout::k8B ? " " : "";
  SR_RETURN_IF_ERROR(tok.EncodeAppend(lead, out.ids));
  out.ids.push_back(bos_);
  out.ids.push_back(start_header_);
  SR_RETURN_IF_ERROR(tok.EncodeAppend("user", out.ids));
  out.ids.push_back(end_header_);
  const size_t body_start = out.ids.size();
  // The body is encoded as one segment, exactly as HF encodes the text
  // between two specials (pieces may not split where our parts meet).
  SR_RETURN_IF_ERROR(tok.EncodeAppend(body, out.ids));
  out.ids.push_back(eot_);
  out.ids.push_back(start_header_);
  SR_RETURN_IF_ERROR(tok.EncodeAppend("assistant", out.ids));
  out.ids.push_back(end_header_);

  out.text = Join(lead, kBeginOfText, kStartHeader, "user", kEndHeader, body, kEndOfTurn,
                  kStartHeader, "assistant", kEndHeader);
  out.prefix_text = Join(lead, kBeginOfText, kStartHeader, "user", kEndHeader, prefix_body);

  // The prefix is cacheable only if its own encoding is a prefix of the
  // full ids (true for byte-level BPE: ">\n\n" ends a pre-token before "User").
  SR_ASSIGN_OR_RETURN(std::vector<int32_t> prefix_body_ids, tok.Encode(prefix_body));
  const size_t prefix_len = body_start + prefix_body_ids.size();
  if (prefix_len < out.ids.size() &&
      std::equal(prefix_body_ids.begin(), prefix_body_ids.end(), out.ids.begin() + body_start)) {
    out.prefix_tokens = prefix_len;
  }
  return out;
}

// "safe", or "unsafe" with an optional line of codes "S1,S10", surrounding
// whitespace allowed (as in "\n\nunsafe\nS1" when the lead was generated).
// Each code must be one the prompt showed.
std::optional<ParsedOutput> LlamaGuard3Format::ParseOutput(std::string_view text,
                                                           const Policy* policy) const {
  if (FindInvalidUtf8(text) != std::string_view::npos) return std::nullopt;
  const std::vector<std::string_view> lines = SplitOn(PythonStrip(text), '\n');
  const std::string_view first = PythonStrip(lines[0]);
  ParsedOutput out;
  if (first == kSafe) {
    if (lines.size() != 1) return std::nullopt;
    out.verdict = std::string(kSafe);
    return out;
  }
  if (first != kUnsafe || lines.size() > 2) return std::nullopt;
  out.verdict = std::string(kUnsafe);
  if (lines.size() == 1) return out;  // no category line (e.g. cut short)
  absl::flat_hash_set<std::string> shown;
  if (!CategoryLines(policy, &shown).ok()) return std::nullopt;
  for (std::string_view item : SplitOn(lines[1], ',')) {
    const std::string_view code = PythonStrip(item);
    if (!shown.contains(AbslView(code))) return std::nullopt;
    out.categories.emplace_back(code);
  }
  return out;
}

// Llama-Guard-3-1B is Llama-3.2-1B shaped (16 layers, hidden 2048), -8B is
// Llama-3.1-8B shaped (32 layers, 4096).
bool Is1BShape(const ModelConfig& c) {
  return c.architecture == Architecture::kLlama && c.num_layers == 16 && c.hidden_size == 2048;
}
bool Is8BShape(const ModelConfig& c) {
  return c.architecture == Architecture::kLlama && c.num_layers == 32 && c.hidden_size == 4096;
}

}  // namespace

std::span<const GuardFormatEntry> LlamaGuard3Formats() {
  static const GuardFormatEntry kEntries[] = {
      {"llama-guard-3-1b", Is1BShape,
       [](std::shared_ptr<const BpeTokenizer> tok) {
         return LlamaGuard3Format::Open(Layout::k1B, std::move(tok));
       },
       LlamaGuard3ModerationKeys},
      {"llama-guard-3-8b", Is8BShape,
       [](std::shared_ptr<const BpeTokenizer> tok) {
         return LlamaGuard3Format::Open(Layout::k8B, std::move(tok));
       },
       LlamaGuard3ModerationKeys},
  };
  return kEntries;
}

}  // namespace saferoute
