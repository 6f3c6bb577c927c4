#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <queue>
#include <sstream>

#include "absl/container/inlined_vector.h"
#include "nlohmann/json.hpp"
#include "tokenizer/utf8.h"

namespace saferoute {
namespace {

using Json = nlohmann::json;

// Largest id accepted from a file: bounds the id -> token table a hostile
// file can make us allocate.
constexpr int64_t kMaxTokenId = (1 << 24) - 1;
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

// Decodes a byte-level vocabulary string (e.g. "Ġthe") to raw bytes.
absl::StatusOr<std::string> ByteLevelToBytes(std::string_view symbol) {
  SR_RETURN_IF_ERROR(ValidateUtf8(symbol, "entry"));
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

std::string Quote(std::string_view s) {
  std::string out = Json(std::string(s)).dump(-1, ' ', true, Json::error_handler_t::replace);
  if (out.size() > 80) out = out.substr(0, 77) + "...";
  return out;
}

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

}  // namespace

char32_t ByteToUnicode(uint8_t b) { return GetByteMap().byte_to_cp[b]; }

int UnicodeToByte(char32_t cp) {
  if (cp >= GetByteMap().cp_to_byte.size()) return -1;
  return GetByteMap().cp_to_byte[cp];
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
    std::string_view json_text, std::string_view source_name, const TokenizerOptions& options) {
  const absl::string_view source = AbslView(source_name);
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not valid JSON: ", std::string(e.what())));
  }
  if (!root.is_object()) return FieldError(source, "(root)", "must be a JSON object");
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer());

  // --- normalizer: byte-level BPE files we support carry none.
  if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    return absl::UnimplementedError(
        absl::StrCat(source, ": normalizer ", it->dump().substr(0, 80),
                     " is not supported (only tokenizers without a normalizer, like Llama 3)"));
  }

  // --- model
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
    tok->ignore_merges_ = it->get<bool>();
  }

  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object() || vocab_it->empty()) {
    return FieldError(source, "model.vocab", "missing, empty or not an object");
  }
  int64_t max_id = -1;
  for (const auto& [key, value] : vocab_it->items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() > kMaxTokenId) {
      return FieldError(source, absl::StrCat("model.vocab[", Quote(key), "]"),
                        absl::StrCat("id must be an integer in [0, ", kMaxTokenId, "]"));
    }
    max_id = std::max(max_id, value.get<int64_t>());
  }
  // Added tokens may extend past the vocab.
  auto added_it = root.find("added_tokens");
  if (added_it != root.end() && !added_it->is_null() && !added_it->is_array()) {
    return FieldError(source, "added_tokens", "must be an array");
  }
  if (added_it != root.end() && added_it->is_array()) {
    for (size_t i = 0; i < added_it->size(); ++i) {
      const Json& entry = (*added_it)[i];
      const std::string field = absl::StrCat("added_tokens[", i, "]");
      if (!entry.is_object()) return FieldError(source, field, "must be an object");
      auto id = entry.find("id");
      if (id == entry.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
          id->get<int64_t>() > kMaxTokenId) {
        return FieldError(source, field + ".id",
                          absl::StrCat("must be an integer in [0, ", kMaxTokenId, "]"));
      }
      max_id = std::max(max_id, id->get<int64_t>());
    }
  }
  tok->id_to_bytes_.resize(max_id + 1);
  tok->id_present_.assign(max_id + 1, false);
  tok->bytes_to_id_.reserve(vocab_it->size());
  for (const auto& [key, value] : vocab_it->items()) {
    const std::string field = absl::StrCat("model.vocab[", Quote(key), "]");
    auto bytes = ByteLevelToBytes(key);
    if (!bytes.ok()) return FieldError(source, field, bytes.status().message());
    if (bytes->empty()) return FieldError(source, field, "empty token");
    const int32_t id = value.get<int32_t>();
    if (tok->id_present_[id]) {
      return FieldError(source, field, absl::StrCat("id ", id, " is used twice"));
    }
    if (!tok->bytes_to_id_.emplace(*bytes, id).second) {
      return FieldError(source, field, "two entries decode to the same bytes");
    }
    tok->id_to_bytes_[id] = std::move(*bytes);
    tok->id_present_[id] = true;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = tok->bytes_to_id_.find(std::string(1, static_cast<char>(b)));
    if (it == tok->bytes_to_id_.end()) {
      return FieldError(source, "model.vocab",
                        absl::StrFormat("no token for the single byte 0x%02X (byte-level BPE "
                                        "needs all 256)",
                                        b));
    }
    tok->byte_token_id_[b] = it->second;
  }

  // --- merges: "a b" strings (older files) or ["a", "b"] pairs; rank = index.
  auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array()) {
    return FieldError(source, "model.merges", "missing or not an array");
  }
  tok->merges_.reserve(merges_it->size());
  for (size_t rank = 0; rank < merges_it->size(); ++rank) {
    const Json& entry = (*merges_it)[rank];
    const std::string field = absl::StrCat("model.merges[", rank, "]");
    std::string left, right;
    if (entry.is_string()) {
      const std::string& s = entry.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return FieldError(source, field,
                          absl::StrCat(Quote(s), " must be two symbols separated by one space"));
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      return FieldError(source, field, "must be \"a b\" or [\"a\", \"b\"]");
    }
    auto left_bytes = ByteLevelToBytes(left);
    auto right_bytes = ByteLevelToBytes(right);
    if (!left_bytes.ok() || !right_bytes.ok()) {
      return FieldError(source, field,
                        (left_bytes.ok() ? right_bytes.status() : left_bytes.status()).message());
    }
    auto l = tok->bytes_to_id_.find(*left_bytes);
    auto r = tok->bytes_to_id_.find(*right_bytes);
    auto m = tok->bytes_to_id_.find(*left_bytes + *right_bytes);
    if (l == tok->bytes_to_id_.end() || r == tok->bytes_to_id_.end() ||
        m == tok->bytes_to_id_.end()) {
      return FieldError(source, field,
                        absl::StrCat(Quote(left), " + ", Quote(right),
                                     ": a part or the merged symbol is not in model.vocab"));
    }
    // A repeated pair keeps its first (lowest) rank.
    tok->merges_.emplace(PairKey(l->second, r->second),
                         Merge{static_cast<int32_t>(rank), m->second});
  }
  tok->num_merges_ = static_cast<int64_t>(merges_it->size());

  // --- added tokens (specials): matched by content, never inside Encode().
  if (added_it != root.end() && added_it->is_array()) {
    for (size_t i = 0; i < added_it->size(); ++i) {
      const Json& entry = (*added_it)[i];
      const std::string field = absl::StrCat("added_tokens[", i, "]");
      auto content = entry.find("content");
      if (content == entry.end() || !content->is_string() ||
          content->get_ref<const std::string&>().empty()) {
        return FieldError(source, field + ".content", "must be a non-empty string");
      }
      const std::string& text = content->get_ref<const std::string&>();
      if (absl::Status s = ValidateUtf8(text, "content"); !s.ok()) {
        return FieldError(source, field, s.message());
      }
      const int32_t id = entry["id"].get<int32_t>();
      if (tok->id_present_[id] && tok->id_to_bytes_[id] != text) {
        return FieldError(
            source, field,
            absl::StrCat("id ", id, " is already the vocab token ", Quote(tok->id_to_bytes_[id])));
      }
      if (!tok->special_to_id_.emplace(text, id).second) {
        return FieldError(source, field, absl::StrCat(Quote(text), " is listed twice"));
      }
      tok->id_to_bytes_[id] = text;
      tok->id_present_[id] = true;
      tok->specials_by_length_.push_back(text);
    }
  }
  std::sort(tok->specials_by_length_.begin(), tok->specials_by_length_.end(),
            [](const std::string& a, const std::string& b) {
              return a.size() != b.size() ? a.size() > b.size() : a < b;
            });

  // --- pre_tokenizer: Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)]
  // (Llama 3) or a lone ByteLevel(use_regex=true) (GPT-2 pattern).
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
  std::string pattern;
  bool byte_level_seen = false;
  for (const auto& [field, step] : steps) {
    if (!step->is_object()) return FieldError(source, field, "must be an object");
    const std::string type = step->value("type", "");
    if (type == "Split") {
      if (!pattern.empty() || byte_level_seen) {
        return absl::UnimplementedError(
            absl::StrCat(source, ": ", field, ": only one Split, before ByteLevel, is supported"));
      }
      auto pat = step->find("pattern");
      if (pat == step->end() || !pat->is_object() || !pat->contains("Regex") ||
          !(*pat)["Regex"].is_string()) {
        return FieldError(source, field + ".pattern", "must be {\"Regex\": \"...\"}");
      }
      pattern = (*pat)["Regex"].get<std::string>();
      if (pattern.empty()) return FieldError(source, field + ".pattern.Regex", "is empty");
      if (step->value("behavior", "") != "Isolated") {
        return absl::UnimplementedError(
            absl::StrCat(source, ": ", field, ".behavior: only \"Isolated\" is supported"));
      }
      SR_RETURN_IF_ERROR(RequireNullOr(*step, "invert", Json(false), source, field + "."));
    } else if (type == "ByteLevel") {
      SR_RETURN_IF_ERROR(
          RequireNullOr(*step, "add_prefix_space", Json(false), source, field + "."));
      byte_level_seen = true;
      if (step->value("use_regex", true)) {
        if (!pattern.empty()) {
          return absl::UnimplementedError(absl::StrCat(
              source, ": ", field, ": ByteLevel use_regex=true after a Split is not supported"));
        }
        pattern = std::string(kGpt2SplitPattern);
      }
    } else {
      return absl::UnimplementedError(
          absl::StrCat(source, ": ", field, ".type ", Quote(type), " is not supported"));
    }
  }
  if (!byte_level_seen || pattern.empty()) {
    return absl::UnimplementedError(absl::StrCat(
        source, ": pre_tokenizer: need a ByteLevel step and a split pattern (byte-level BPE)"));
  }
  auto splitter = RegexSplitter::Create(pattern, options.fast_pretokenizer, source_name);
  if (!splitter.ok()) return splitter.status();
  tok->splitter_ = std::move(*splitter);
  return tok;
}

void BpeTokenizer::EncodePiece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    ids.push_back(byte_token_id_[static_cast<unsigned char>(piece[0])]);
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
  ids.insert(ids.end(), symbols.begin(), symbols.end());
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
    // right neighbour changed. Ids only grow by merging, so comparing ids
    // identifies the pair exactly.
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
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

absl::Status BpeTokenizer::EncodeAppend(std::string_view text, std::vector<int32_t>& ids) const {
  SR_RETURN_IF_ERROR(ValidateUtf8(text, "text"));
  const size_t before = ids.size();
  absl::Status status =
      splitter_->Split(text, [&](std::string_view piece) { EncodePiece(piece, ids); });
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
      absl::StrCat("tokenizer has no special token ", Quote(content), " (added_tokens)"));
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
    if (id < 0 || id >= vocab_size() || !id_present_[id]) {
      return absl::InvalidArgumentError(absl::StrCat("decode: id ", id, " at position ", i,
                                                     " is not a token (vocab size ", vocab_size(),
                                                     ")"));
    }
    out += id_to_bytes_[id];
  }
  return out;
}

}  // namespace saferoute
