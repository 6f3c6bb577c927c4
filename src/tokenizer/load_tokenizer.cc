#include "tokenizer/load_tokenizer.h"

#include <limits>

#include "tokenizer/pretokenizer.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

// What each other tokenizer.ggml.model value of llama.cpp is, for the refusal.
std::string_view ModelKind(std::string_view model) {
  if (model == "llama") return " (SentencePiece)";
  if (model == "bert") return " (WordPiece)";
  if (model == "t5") return " (Unigram)";
  if (model == "rwkv" || model == "plamo2") return " (its own tokenizer)";
  if (model == "none" || model == "no_vocab") return " (no vocabulary)";
  return "";
}

// Copies a string array of at most `limit` entries.
absl::StatusOr<std::vector<std::string>> CopyStrings(const GgufMetadata& metadata,
                                                     std::string_view key, int64_t limit) {
  SR_ASSIGN_OR_RETURN(std::span<const std::string_view> views, metadata.GetStringArray(key));
  if (views.size() > static_cast<size_t>(limit)) {
    return metadata.KeyError(
        key, absl::StrCat(views.size(), " entries, more than the ", limit, " supported"));
  }
  return std::vector<std::string>(views.begin(), views.end());
}

absl::StatusOr<std::vector<TokenType>> ReadTokenTypes(const GgufMetadata& metadata,
                                                      size_t num_tokens) {
  constexpr std::string_view kKey = "tokenizer.ggml.token_type";
  // Without types every token is normal (llama.cpp's default too).
  if (!metadata.Contains(kKey)) return std::vector<TokenType>(num_tokens, TokenType::kNormal);
  SR_ASSIGN_OR_RETURN(std::vector<int64_t> values, metadata.GetIntArray(kKey));
  std::vector<TokenType> types(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    // Range 1..6 is FromSpec's check; here only what fits the enum.
    if (values[i] < std::numeric_limits<int32_t>::min() ||
        values[i] > std::numeric_limits<int32_t>::max()) {
      return metadata.KeyError(
          kKey, absl::StrCat("element ", i, " = ", values[i], " is not a token type (1..6)"));
    }
    types[i] = static_cast<TokenType>(values[i]);
  }
  return types;
}

}  // namespace

absl::StatusOr<TokenizerSpec> TokenizerSpecFromGguf(const GgufMetadata& metadata) {
  TokenizerSpec spec;
  spec.source = metadata.source();
  SR_ASSIGN_OR_RETURN(std::string_view model, metadata.GetString("tokenizer.ggml.model"));
  if (model != "gpt2") {
    return absl::UnimplementedError(absl::StrCat(
        metadata.source(), ": tokenizer.ggml.model: ", QuoteForError(model),
        AbslView(ModelKind(model)), " is not supported: only \"gpt2\" (byte-level BPE)"));
  }
  if (!metadata.Contains(spec.keys.pre_tokenizer)) {
    return absl::InvalidArgumentError(
        absl::StrCat(metadata.source(), ": ", spec.keys.pre_tokenizer,
                     ": missing (supported: ", KnownPreTokenizerNames(), ")"));
  }
  SR_ASSIGN_OR_RETURN(std::string_view pre, metadata.GetString(spec.keys.pre_tokenizer));
  spec.pre_tokenizer = std::string(pre);
  SR_ASSIGN_OR_RETURN(spec.tokens, CopyStrings(metadata, spec.keys.tokens, kMaxVocabularySize));
  SR_ASSIGN_OR_RETURN(spec.token_types, ReadTokenTypes(metadata, spec.tokens.size()));
  SR_ASSIGN_OR_RETURN(spec.merges, CopyStrings(metadata, spec.keys.merges, kMaxMerges));
  for (const SpecialTokenKey& key : kSpecialTokenKeys) {
    SR_ASSIGN_OR_RETURN(int64_t id,
                        metadata.GetInt(key.gguf_key, 0, std::numeric_limits<int32_t>::max(),
                                        /*fallback=*/kNoTokenId));
    spec.special_ids.*key.id = static_cast<int32_t>(id);
  }
  const NamedPreTokenizer* named = FindNamedPreTokenizer(pre);
  SR_ASSIGN_OR_RETURN(spec.add_bos_token,
                      metadata.GetBool("tokenizer.ggml.add_bos_token",
                                       named != nullptr && named->add_bos_by_default));
  SR_ASSIGN_OR_RETURN(spec.add_eos_token, metadata.GetBool("tokenizer.ggml.add_eos_token", false));
  return spec;
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> LoadTokenizer(const std::string& path,
                                                            const TokenizerOptions& options) {
  if (!HasGgufMagic(path)) return BpeTokenizer::Load(path, options);
  SR_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  SR_ASSIGN_OR_RETURN(TokenizerSpec spec, TokenizerSpecFromGguf(file->metadata()));
  return BpeTokenizer::FromSpec(spec, options);
}

}  // namespace saferoute
