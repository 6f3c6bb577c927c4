// tokenizer.json (Hugging Face `tokenizers`) -> TokenizerSpec.
#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_spec.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view source, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", what));
}

// Requires `value` to be null/absent or `expected`; anything else is a
// feature we do not implement, refused by name rather than ignored.
absl::Status RequireNullOr(const Json& object, const char* key, const Json& expected,
                           absl::string_view source, absl::string_view prefix) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null() || *it == expected) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(source, ": ", prefix, key, " = ", it->dump(),
                                               " is not supported (expected ", expected.dump(),
                                               " or null)"));
}

// An integer id in [0, kMaxVocabularySize).
bool IsTokenId(const Json& value) {
  return value.is_number_integer() && value.get<int64_t>() >= 0 &&
         value.get<int64_t>() < kMaxVocabularySize;
}

std::string IdRange() { return absl::StrCat("[0, ", kMaxVocabularySize - 1, "]"); }

// model.vocab and added_tokens -> spec.tokens / token_types. Ids without a
// token become kUnused placeholders.
absl::Status ReadTokens(const Json& root, const Json& model, TokenizerSpec& spec) {
  const std::string& source = spec.source;
  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object() || vocab_it->empty()) {
    return FieldError(source, "model.vocab", "missing, empty or not an object");
  }
  auto added_it = root.find("added_tokens");
  if (added_it != root.end() && !added_it->is_null() && !added_it->is_array()) {
    return FieldError(source, "added_tokens", "must be an array");
  }
  const bool has_added = added_it != root.end() && added_it->is_array();
  int64_t max_id = -1;
  for (const auto& [key, value] : vocab_it->items()) {
    if (!IsTokenId(value)) {
      return FieldError(source, absl::StrCat("model.vocab[", QuoteForError(key), "]"),
                        absl::StrCat("id must be an integer in ", IdRange()));
    }
    max_id = std::max(max_id, value.get<int64_t>());
  }
  for (size_t i = 0; has_added && i < added_it->size(); ++i) {
    const Json& entry = (*added_it)[i];
    const std::string field = absl::StrCat("added_tokens[", i, "]");
    if (!entry.is_object()) return FieldError(source, field, "must be an object");
    auto id = entry.find("id");
    if (id == entry.end() || !IsTokenId(*id)) {
      return FieldError(source, field + ".id", absl::StrCat("must be an integer in ", IdRange()));
    }
    max_id = std::max(max_id, id->get<int64_t>());
  }
  spec.tokens.assign(max_id + 1, std::string());
  spec.token_types.assign(max_id + 1, TokenType::kUnused);
  for (const auto& [key, value] : vocab_it->items()) {
    const auto id = value.get<int32_t>();
    if (spec.token_types[id] != TokenType::kUnused) {
      return FieldError(source, absl::StrCat("model.vocab[", QuoteForError(key), "]"),
                        absl::StrCat("id ", id, " is used twice"));
    }
    spec.tokens[id] = key;
    spec.token_types[id] = TokenType::kNormal;
  }
  // Added tokens are specials, by content. One may repeat a vocab entry of
  // the same id (SmolLM2 lists its specials in both places).
  absl::flat_hash_set<std::string_view> added_contents;
  for (size_t i = 0; has_added && i < added_it->size(); ++i) {
    const Json& entry = (*added_it)[i];
    const std::string field = absl::StrCat("added_tokens[", i, "]");
    auto content = entry.find("content");
    if (content == entry.end() || !content->is_string() ||
        content->get_ref<const std::string&>().empty()) {
      return FieldError(source, field + ".content", "must be a non-empty string");
    }
    const std::string& text = content->get_ref<const std::string&>();
    if (!added_contents.insert(text).second) {
      return FieldError(source, field, absl::StrCat(QuoteForError(text), " is listed twice"));
    }
    const auto id = entry["id"].get<int32_t>();
    if (spec.token_types[id] == TokenType::kNormal) {
      absl::StatusOr<std::string> vocab_bytes = ByteLevelToBytes(spec.tokens[id]);
      if (!vocab_bytes.ok() || *vocab_bytes != text) {
        return FieldError(source, field,
                          absl::StrCat("id ", id, " is already the vocab token ",
                                       QuoteForError(spec.tokens[id])));
      }
    } else if (spec.token_types[id] != TokenType::kUnused) {
      return FieldError(source, field, absl::StrCat("id ", id, " is listed twice"));
    }
    const auto special = entry.find("special");
    const bool is_special = special != entry.end() && special->is_boolean() && special->get<bool>();
    spec.tokens[id] = text;
    spec.token_types[id] = is_special ? TokenType::kControl : TokenType::kUserDefined;
  }
  return absl::OkStatus();
}

// model.merges: "a b" strings (older files) or ["a", "b"] pairs; rank = index.
absl::Status ReadMerges(const Json& model, TokenizerSpec& spec) {
  auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array()) {
    return FieldError(spec.source, "model.merges", "missing or not an array");
  }
  if (merges_it->size() > static_cast<size_t>(kMaxMerges)) {
    return FieldError(
        spec.source, "model.merges",
        absl::StrCat(merges_it->size(), " merges, more than the ", kMaxMerges, " supported"));
  }
  spec.merges.reserve(merges_it->size());
  for (size_t rank = 0; rank < merges_it->size(); ++rank) {
    const Json& entry = (*merges_it)[rank];
    if (entry.is_string()) {
      spec.merges.push_back(entry.get<std::string>());
      continue;
    }
    const bool is_pair =
        entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string();
    const auto has_space = [](const Json& s) {
      return s.get_ref<const std::string&>().find(' ') != std::string::npos;
    };
    if (!is_pair || has_space(entry[0]) || has_space(entry[1])) {
      return FieldError(spec.source, absl::StrCat("model.merges[", rank, "]"),
                        "must be \"a b\" or [\"a\", \"b\"] (byte-level symbols, no spaces)");
    }
    spec.merges.push_back(absl::StrCat(entry[0].get_ref<const std::string&>(), " ",
                                       entry[1].get_ref<const std::string&>()));
  }
  return absl::OkStatus();
}

// pre_tokenizer: a Sequence (or one step) of Split(Regex, Isolated) and
// Digits steps, then ByteLevel (with use_regex: the GPT-2 pattern). Llama 3:
// [Split(llama3), ByteLevel(use_regex=false)]; GPT-2: ByteLevel(use_regex);
// SmolLM2: [Digits(individual_digits), ByteLevel(use_regex)].
absl::Status ReadPreTokenizer(const Json& root, TokenizerSpec& spec) {
  const std::string& source = spec.source;
  auto pre_it = root.find("pre_tokenizer");
  if (pre_it == root.end() || !pre_it->is_object()) {
    return FieldError(source, "pre_tokenizer", "missing or not an object");
  }
  std::vector<std::pair<std::string, const Json*>> steps;  // (field path, step)
  if (pre_it->value("type", "") == "Sequence") {
    auto list = pre_it->find("pretokenizers");
    if (list == pre_it->end() || !list->is_array()) {
      return FieldError(source, "pre_tokenizer.pretokenizers", "missing or not an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      steps.emplace_back(absl::StrCat("pre_tokenizer.pretokenizers[", i, "]"), &(*list)[i]);
    }
  } else {
    steps.emplace_back("pre_tokenizer", &*pre_it);
  }
  bool byte_level_seen = false;
  for (const auto& [field, step] : steps) {
    if (!step->is_object()) return FieldError(source, field, "must be an object");
    const std::string type = step->value("type", "");
    if (byte_level_seen) {
      // After ByteLevel the text is byte-level symbols ("Ġ" for " "): a
      // later split would see other characters.
      return absl::UnimplementedError(absl::StrCat(source, ": ", field, ": a ", QuoteForError(type),
                                                   " step after ByteLevel is not supported"));
    }
    if (type == "Split") {
      auto pat = step->find("pattern");
      if (pat == step->end() || !pat->is_object() || !pat->contains("Regex") ||
          !(*pat)["Regex"].is_string()) {
        return FieldError(source, field + ".pattern", "must be {\"Regex\": \"...\"}");
      }
      std::string pattern = (*pat)["Regex"].get<std::string>();
      if (pattern.empty()) return FieldError(source, field + ".pattern.Regex", "is empty");
      if (step->value("behavior", "") != "Isolated") {
        return absl::UnimplementedError(
            absl::StrCat(source, ": ", field, ".behavior: only \"Isolated\" is supported"));
      }
      SR_RETURN_IF_ERROR(RequireNullOr(*step, "invert", Json(false), source, field + "."));
      spec.split_patterns.push_back(std::move(pattern));
    } else if (type == "Digits") {
      auto individual = step->find("individual_digits");
      if (individual != step->end() && !individual->is_boolean()) {
        return FieldError(source, field + ".individual_digits", "must be a boolean");
      }
      const bool one_by_one = individual != step->end() && individual->get<bool>();
      spec.split_patterns.emplace_back(one_by_one ? kDigitsIndividualPattern
                                                  : kDigitsGroupedPattern);
    } else if (type == "ByteLevel") {
      SR_RETURN_IF_ERROR(
          RequireNullOr(*step, "add_prefix_space", Json(false), source, field + "."));
      byte_level_seen = true;
      if (step->value("use_regex", true)) spec.split_patterns.emplace_back(kGpt2SplitPattern);
    } else {
      return absl::UnimplementedError(
          absl::StrCat(source, ": ", field, ".type ", QuoteForError(type), " is not supported"));
    }
  }
  if (!byte_level_seen || spec.split_patterns.empty()) {
    return absl::UnimplementedError(
        absl::StrCat(source,
                     ": pre_tokenizer: need a ByteLevel step (last) and a split pattern "
                     "(byte-level BPE)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerSpec> TokenizerSpecFromJson(std::string_view json_text,
                                                    std::string_view source_name) {
  const absl::string_view source = AbslView(source_name);
  TokenizerSpec spec;
  spec.source = std::string(source_name);
  spec.keys = {.tokens = "model.vocab",
               .token_types = "added_tokens",
               .merges = "model.merges",
               .pre_tokenizer = "pre_tokenizer"};
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not valid JSON: ", std::string(e.what())));
  }
  if (!root.is_object()) return FieldError(source, "(root)", "must be a JSON object");

  // Byte-level BPE files we support carry no normalizer.
  if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    return absl::UnimplementedError(
        absl::StrCat(source, ": normalizer ", it->dump().substr(0, 80),
                     " is not supported (only tokenizers without a normalizer, like Llama 3)"));
  }
  auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object()) {
    return FieldError(source, "model", "missing or not an object");
  }
  const Json& model = *model_it;
  if (auto it = model.find("type"); it == model.end() || *it != "BPE") {
    return FieldError(source, "model.type", "must be \"BPE\"");
  }
  SR_RETURN_IF_ERROR(RequireNullOr(model, "dropout", Json(), source, "model."));
  SR_RETURN_IF_ERROR(RequireNullOr(model, "byte_fallback", Json(false), source, "model."));
  SR_RETURN_IF_ERROR(RequireNullOr(model, "continuing_subword_prefix", Json(""), source, "model."));
  SR_RETURN_IF_ERROR(RequireNullOr(model, "end_of_word_suffix", Json(""), source, "model."));
  if (auto it = model.find("ignore_merges"); it != model.end() && !it->is_null()) {
    if (!it->is_boolean()) return FieldError(source, "model.ignore_merges", "must be a boolean");
    spec.ignore_merges = it->get<bool>();
  }
  SR_RETURN_IF_ERROR(ReadTokens(root, model, spec));
  SR_RETURN_IF_ERROR(ReadMerges(model, spec));
  SR_RETURN_IF_ERROR(ReadPreTokenizer(root, spec));
  return spec;
}

}  // namespace saferoute
