#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <queue>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "util/utf8.h"

namespace saferoute {
namespace {

// Pieces up to this many bytes use the quadratic scan (fast for short
// words); longer ones the O(n log n) priority-queue merge.
constexpr size_t kScanMergeMaxBytes = 64;

struct ByteMap {
  std::array<char32_t, 256> byte_to_cp{};
  // Code points 0..(256+68) cover every mapped value.
  std::array<int16_t, 512> cp_to_byte{};
  ByteMap() {
    cp_to_byte.fill(-1);
    int next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      byte_to_cp[b] = printable ? b : next_extra++;
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& GetByteMap() {
  static const ByteMap* map = new ByteMap();
  return *map;
}

absl::Status SpecError(const TokenizerSpec& spec, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(spec.source, ": ", field, ": ", what));
}

// "tokenizer.ggml.tokens[17]".
std::string Entry(std::string_view key, size_t index) {
  return absl::StrCat(AbslView(key), "[", index, "]");
}

bool IsSpecial(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUserDefined ||
         type == TokenType::kUnknown;
}

}  // namespace

char32_t ByteToUnicode(uint8_t b) { return GetByteMap().byte_to_cp[b]; }

int UnicodeToByte(char32_t cp) {
  if (cp >= GetByteMap().cp_to_byte.size()) return -1;
  return GetByteMap().cp_to_byte[cp];
}

absl::StatusOr<std::string> ByteLevelToBytes(std::string_view symbol) {
  SR_RETURN_IF_ERROR(ValidateUtf8(symbol, "symbol"));
  std::string bytes;
  bytes.reserve(symbol.size());
  size_t pos = 0;
  while (pos < symbol.size()) {
    const char32_t cp = DecodeUtf8At(symbol, pos);
    const int b = UnicodeToByte(cp);
    if (b < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("character U+%04X is not a byte-level symbol", static_cast<int>(cp)));
    }
    bytes.push_back(static_cast<char>(b));
  }
  return bytes;
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Load(const std::string& path,
                                                                 const TokenizerOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open tokenizer file"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return FromJson(buffer.str(), path, options);
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJson(
    std::string_view json_text, std::string_view source, const TokenizerOptions& options) {
  SR_ASSIGN_OR_RETURN(TokenizerSpec spec, TokenizerSpecFromJson(json_text, source));
  return FromSpec(spec, options);
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromSpec(
    const TokenizerSpec& spec, const TokenizerOptions& options) {
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer());
  SR_RETURN_IF_ERROR(tok->AddTokens(spec));
  SR_RETURN_IF_ERROR(tok->AddMerges(spec));
  SR_RETURN_IF_ERROR(tok->SetSpecialIds(spec));
  SR_RETURN_IF_ERROR(tok->SetPreTokenizer(spec, options));
  return tok;
}

absl::Status BpeTokenizer::AddTokens(const TokenizerSpec& spec) {
  const size_t n = spec.tokens.size();
  if (n == 0) return SpecError(spec, spec.keys.tokens, "no tokens");
  if (n > static_cast<size_t>(kMaxVocabularySize)) {
    return SpecError(spec, spec.keys.tokens,
                     absl::StrCat(n, " tokens, more than the ", kMaxVocabularySize, " supported"));
  }
  if (spec.token_types.size() != n) {
    return SpecError(spec, spec.keys.token_types,
                     absl::StrCat(spec.token_types.size(), " entries for ", n, " tokens (",
                                  spec.keys.tokens, ")"));
  }
  id_to_bytes_.resize(n);
  token_types_.assign(n, TokenType::kUnused);
  bytes_to_id_.reserve(n);
  // Token strings are unique (llama.cpp maps text -> id over all of them).
  absl::flat_hash_map<std::string_view, int32_t> first_id_of;
  first_id_of.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const TokenType type = spec.token_types[i];
    const auto type_number = static_cast<int32_t>(type);
    const std::string& token = spec.tokens[i];
    if (type_number < kMinTokenType || type_number > kMaxTokenType) {
      return SpecError(spec, Entry(spec.keys.token_types, i),
                       absl::StrCat("type ", type_number, " is not a token type (", kMinTokenType,
                                    "..", kMaxTokenType, ")"));
    }
    if (type == TokenType::kUnused) continue;
    const std::string field = absl::StrCat(Entry(spec.keys.tokens, i), " ", QuoteForError(token));
    if (type == TokenType::kByte) {
      return absl::UnimplementedError(absl::StrCat(
          spec.source, ": ", field,
          ": byte tokens (type 6) belong to SentencePiece vocabularies, not byte-level BPE"));
    }
    if (token.empty()) return SpecError(spec, Entry(spec.keys.tokens, i), "empty token");
    if (auto [it, inserted] = first_id_of.emplace(token, id); !inserted) {
      return SpecError(spec, field, absl::StrCat("the same string as token ", it->second));
    }
    if (type == TokenType::kNormal) {
      absl::StatusOr<std::string> bytes = ByteLevelToBytes(token);
      if (!bytes.ok()) return SpecError(spec, field, bytes.status().message());
      // Byte-level decoding is one-to-one, so distinct strings give distinct bytes.
      SR_CHECK(bytes_to_id_.emplace(*bytes, id).second);
      id_to_bytes_[i] = std::move(*bytes);
    } else {
      SR_CHECK(IsSpecial(type));
      if (absl::Status s = ValidateUtf8(token, "content"); !s.ok()) {
        return SpecError(spec, Entry(spec.keys.tokens, i), s.message());
      }
      special_to_id_.emplace(token, id);
      id_to_bytes_[i] = token;
      specials_by_length_.push_back(token);
    }
    token_types_[i] = type;
  }
  // A vocabulary may lack some bytes (SmolLM2 has no token for 21 of them,
  // 0x04 and 0xF1 among them): those bytes are dropped from the text, as
  // llama.cpp and HF tokenizers drop them.
  for (int b = 0; b < 256; ++b) {
    auto it = bytes_to_id_.find(std::string(1, static_cast<char>(b)));
    byte_token_id_[b] = it == bytes_to_id_.end() ? kNoTokenId : it->second;
    if (it == bytes_to_id_.end()) bytes_without_token_.push_back(static_cast<uint8_t>(b));
  }
  std::sort(specials_by_length_.begin(), specials_by_length_.end(),
            [](const std::string& a, const std::string& b) {
              return a.size() != b.size() ? a.size() > b.size() : a < b;
            });
  return absl::OkStatus();
}

absl::Status BpeTokenizer::AddMerges(const TokenizerSpec& spec) {
  if (spec.merges.size() > static_cast<size_t>(kMaxMerges)) {
    return SpecError(
        spec, spec.keys.merges,
        absl::StrCat(spec.merges.size(), " merges, more than the ", kMaxMerges, " supported"));
  }
  merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const std::string& merge = spec.merges[rank];
    const std::string field = Entry(spec.keys.merges, rank);
    const size_t space = merge.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == merge.size() ||
        merge.find(' ', space + 1) != std::string::npos) {
      return SpecError(
          spec, field,
          absl::StrCat(QuoteForError(merge), " must be two symbols separated by one space"));
    }
    const std::string_view left = std::string_view(merge).substr(0, space);
    const std::string_view right = std::string_view(merge).substr(space + 1);
    absl::StatusOr<std::string> left_bytes = ByteLevelToBytes(left);
    absl::StatusOr<std::string> right_bytes = ByteLevelToBytes(right);
    if (!left_bytes.ok() || !right_bytes.ok()) {
      return SpecError(
          spec, field,
          absl::StrCat(QuoteForError(merge), ": ",
                       (left_bytes.ok() ? right_bytes : left_bytes).status().message()));
    }
    // Merges combine normal tokens into a normal token: a special is never
    // reached from text.
    auto l = bytes_to_id_.find(*left_bytes);
    auto r = bytes_to_id_.find(*right_bytes);
    auto m = bytes_to_id_.find(*left_bytes + *right_bytes);
    if (l == bytes_to_id_.end() || r == bytes_to_id_.end() || m == bytes_to_id_.end()) {
      const absl::string_view missing = l == bytes_to_id_.end()   ? "the left symbol"
                                        : r == bytes_to_id_.end() ? "the right symbol"
                                                                  : "the merged symbol";
      return SpecError(spec, field,
                       absl::StrCat(QuoteForError(merge), ": ", missing, " is not a normal token"));
    }
    // A repeated pair keeps its first (lowest) rank.
    merges_.emplace(PairKey(l->second, r->second), Merge{static_cast<int32_t>(rank), m->second});
  }
  num_merges_ = static_cast<int64_t>(spec.merges.size());
  return absl::OkStatus();
}

absl::Status BpeTokenizer::SetSpecialIds(const TokenizerSpec& spec) {
  for (const SpecialTokenKey& key : kSpecialTokenKeys) {
    const int32_t id = spec.special_ids.*key.id;
    if (id == kNoTokenId) continue;
    if (id < 0 || id >= vocab_size()) {
      return SpecError(spec, AbslView(key.gguf_key),
                       absl::StrCat("id ", id, " is out of range [0, ", vocab_size(), ")"));
    }
    if (token_types_[id] == TokenType::kUnused) {
      return SpecError(spec, AbslView(key.gguf_key),
                       absl::StrCat("id ", id, " is an unused token"));
    }
  }
  if (spec.add_bos_token && spec.special_ids.bos == kNoTokenId) {
    return SpecError(spec, "tokenizer.ggml.add_bos_token",
                     "true, but there is no tokenizer.ggml.bos_token_id");
  }
  if (spec.add_eos_token && spec.special_ids.eos == kNoTokenId) {
    return SpecError(spec, "tokenizer.ggml.add_eos_token",
                     "true, but there is no tokenizer.ggml.eos_token_id");
  }
  special_ids_ = spec.special_ids;
  add_bos_token_ = spec.add_bos_token;
  add_eos_token_ = spec.add_eos_token;
  return absl::OkStatus();
}

absl::Status BpeTokenizer::SetPreTokenizer(const TokenizerSpec& spec,
                                           const TokenizerOptions& options) {
  const std::vector<std::string>* patterns = &spec.split_patterns;
  ignore_merges_ = spec.ignore_merges;
  if (!spec.pre_tokenizer.empty()) {
    if (!spec.split_patterns.empty()) {
      return SpecError(spec, spec.keys.pre_tokenizer,
                       "both a pre-tokenizer name and split patterns given");
    }
    const NamedPreTokenizer* named = FindNamedPreTokenizer(spec.pre_tokenizer);
    if (named == nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          spec.source, ": ", spec.keys.pre_tokenizer, ": ", QuoteForError(spec.pre_tokenizer),
          " is not a supported pre-tokenizer (supported: ", KnownPreTokenizerNames(), ")"));
    }
    patterns = &named->patterns;
    ignore_merges_ = named->ignore_merges;
    pre_tokenizer_name_ = spec.pre_tokenizer;
  } else if (spec.split_patterns.empty()) {
    return SpecError(spec, spec.keys.pre_tokenizer, "missing (no name and no split patterns)");
  }
  SR_ASSIGN_OR_RETURN(pre_tokenizer_,
                      PreTokenizer::Create(*patterns, options.fast_pretokenizer, spec.source));
  return absl::OkStatus();
}

TokenType BpeTokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::kUnused;
  return token_types_[id];
}

void BpeTokenizer::EncodePiece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    const int32_t id = byte_token_id_[static_cast<unsigned char>(piece[0])];
    if (id != kNoTokenId) ids.push_back(id);
    return;
  }
  if (ignore_merges_) {
    // A pre-token that is itself a token is emitted whole (HF ignore_merges,
    // tiktoken's first lookup); some tokens are unreachable by merges.
    auto it = bytes_to_id_.find(AbslView(piece));
    if (it != bytes_to_id_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  if (piece.size() <= kScanMergeMaxBytes) {
    MergeByScan(piece, ids);
  } else {
    MergeByHeap(piece, ids);
  }
}

void BpeTokenizer::MergeByScan(std::string_view piece, std::vector<int32_t>& ids) const {
  constexpr int32_t kNoMerge = std::numeric_limits<int32_t>::max();
  absl::InlinedVector<int32_t, kScanMergeMaxBytes> symbols;      // [n] token ids
  absl::InlinedVector<int32_t, kScanMergeMaxBytes> pair_rank;    // [n-1] rank of (i, i+1)
  absl::InlinedVector<int32_t, kScanMergeMaxBytes> pair_merged;  // [n-1] merged id
  for (unsigned char b : piece) symbols.push_back(byte_token_id_[b]);
  auto rate = [&](size_t i) {
    const Merge* m = FindMerge(symbols[i], symbols[i + 1]);
    pair_rank[i] = m ? m->rank : kNoMerge;
    pair_merged[i] = m ? m->merged_id : -1;
  };
  pair_rank.resize(symbols.size() - 1);
  pair_merged.resize(symbols.size() - 1);
  for (size_t i = 0; i + 1 < symbols.size(); ++i) rate(i);
  while (symbols.size() > 1) {
    // The lowest rank wins; among equal ranks the leftmost (as tiktoken/HF).
    size_t best = 0;
    for (size_t i = 1; i < pair_rank.size(); ++i) {
      if (pair_rank[i] < pair_rank[best]) best = i;
    }
    if (pair_rank[best] == kNoMerge) break;
    symbols[best] = pair_merged[best];
    symbols.erase(symbols.begin() + best + 1);
    pair_rank.erase(pair_rank.begin() + best);
    pair_merged.erase(pair_merged.begin() + best);
    if (best < pair_rank.size()) rate(best);
    if (best > 0) rate(best - 1);
  }
  AppendTokens(symbols, ids);
}

void BpeTokenizer::AppendTokens(std::span<const int32_t> symbols, std::vector<int32_t>& ids) const {
  if (bytes_without_token_.empty()) {
    ids.insert(ids.end(), symbols.begin(), symbols.end());
    return;
  }
  // A byte without a token stays a symbol of its own (no merge names it, so
  // it also keeps its neighbours apart, as in llama.cpp) and is dropped here.
  for (int32_t id : symbols) {
    if (id != kNoTokenId) ids.push_back(id);
  }
}

void BpeTokenizer::MergeByHeap(std::string_view piece, std::vector<int32_t>& ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev;  // -1 at the start
    int32_t next;  // -1 at the end
  };
  struct Candidate {
    int32_t rank;
    int32_t left;  // position of the left symbol
    int32_t left_id;
    int32_t right_id;
    int32_t merged_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  const int32_t n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_token_id_[static_cast<unsigned char>(piece[i])], i - 1,
                  i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    if (const Merge* m = FindMerge(symbols[left].id, symbols[right].id)) {
      queue.push({m->rank, left, symbols[left].id, symbols[right].id, m->merged_id});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  std::vector<bool> alive(n, true);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    // Stale entries: the left symbol was merged away or changed, or its
    // right neighbour changed. A symbol changes only by absorbing its right
    // neighbour, which makes its bytes longer, so it never has an earlier id
    // again: comparing ids identifies the pair exactly.
    if (!alive[c.left] || symbols[c.left].id != c.left_id) continue;
    const int32_t right = symbols[c.left].next;
    if (right < 0 || symbols[right].id != c.right_id) continue;
    symbols[c.left].id = c.merged_id;
    alive[right] = false;
    symbols[c.left].next = symbols[right].next;
    if (symbols[right].next >= 0) symbols[symbols[right].next].prev = c.left;
    if (symbols[c.left].prev >= 0) consider(symbols[c.left].prev);
    consider(c.left);
  }
  std::vector<int32_t> merged;
  for (int32_t i = 0; i >= 0; i = symbols[i].next) merged.push_back(symbols[i].id);
  AppendTokens(merged, ids);
}

absl::Status BpeTokenizer::EncodeAppend(std::string_view text, std::vector<int32_t>& ids) const {
  SR_RETURN_IF_ERROR(ValidateUtf8(text, "text"));
  const size_t before = ids.size();
  absl::Status status =
      pre_tokenizer_->Split(text, [&](std::string_view piece) { EncodePiece(piece, ids); });
  if (!status.ok()) ids.resize(before);
  return status;
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  SR_RETURN_IF_ERROR(EncodeAppend(text, ids));
  return ids;
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::EncodeParsingSpecials(
    std::string_view text) const {
  SR_RETURN_IF_ERROR(ValidateUtf8(text, "text"));
  std::vector<int32_t> ids;
  size_t segment_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const std::string* found = nullptr;
    for (const std::string& special : specials_by_length_) {  // longest first
      if (text.compare(pos, special.size(), special) == 0) {
        found = &special;
        break;
      }
    }
    if (found == nullptr) {
      ++pos;
      continue;
    }
    SR_RETURN_IF_ERROR(EncodeAppend(text.substr(segment_start, pos - segment_start), ids));
    ids.push_back(special_to_id_.at(*found));
    pos += found->size();
    segment_start = pos;
  }
  SR_RETURN_IF_ERROR(EncodeAppend(text.substr(segment_start), ids));
  return ids;
}

std::optional<int32_t> BpeTokenizer::SpecialTokenId(std::string_view content) const {
  auto it = special_to_id_.find(AbslView(content));
  if (it == special_to_id_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<int32_t> BpeTokenizer::RequireSpecialTokenId(std::string_view content) const {
  if (auto id = SpecialTokenId(content)) return *id;
  return absl::NotFoundError(
      absl::StrCat("tokenizer has no special token ", QuoteForError(content)));
}

std::optional<int32_t> BpeTokenizer::TokenIdOfBytes(std::string_view bytes) const {
  auto it = bytes_to_id_.find(AbslView(bytes));
  if (it == bytes_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string_view BpeTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return id_to_bytes_[id];
}

absl::StatusOr<std::string> BpeTokenizer::Decode(std::span<const int32_t> ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || token_types_[id] == TokenType::kUnused) {
      return absl::InvalidArgumentError(absl::StrCat("decode: id ", id, " at position ", i,
                                                     " is not a token (vocab size ", vocab_size(),
                                                     ")"));
    }
    out += id_to_bytes_[id];
  }
  return out;
}

}  // namespace saferoute
