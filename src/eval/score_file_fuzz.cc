// libFuzzer target (DEVELOPERS.md, "Fuzzing"): score files as `label` and
// `eval` read them — scores.jsonl and its meta.json.
// Input: one selector byte (bit 0: meta.json, else scores.jsonl), then the
// file's text.
// Invariants beyond "no crash":
//  - scores: ids non-empty and unique, every number finite, probabilities in
//    [0, 1], counts and latencies non-negative, the token count equal to the
//    file's integer; each record written back (ScoreRecordToJson) reads back
//    identical;
//  - meta: every number that is kept is finite and equal to what the file
//    says (no silent narrowing), p_unsafe strictly inside (0, 1).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "eval/csv.h"
#include "eval/score_file.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {
namespace {

using nlohmann::json;

bool Probability(double p) { return std::isfinite(p) && p >= 0 && p <= 1; }

void CheckScores(std::string_view text) {
  absl::StatusOr<std::vector<ScoreRecord>> records = ParseScoreFile(text, "fuzz/scores.jsonl");
  if (!records.ok()) return;
  SR_CHECK(!records->empty());
  std::set<std::string> ids;
  for (const ScoreRecord& r : *records) {
    SR_CHECK(!r.id.empty() && ids.insert(r.id).second);
    SR_CHECK(Probability(r.p_unsafe) && Probability(r.p_safe) && Probability(r.p_unsafe_full) &&
             Probability(r.p_safe_full));
    SR_CHECK(std::isfinite(r.logit_safe) && std::isfinite(r.logit_unsafe));
    SR_CHECK(r.n_tokens >= 0 && std::isfinite(r.latency_ms) && r.latency_ms >= 0);
    absl::StatusOr<ScoreRecord> again = ParseScoreLine(ScoreRecordToJson(r), "round-trip", 1);
    SR_CHECK(again.ok());
    SR_CHECK(again->id == r.id && again->p_unsafe == r.p_unsafe && again->p_safe == r.p_safe &&
             again->p_unsafe_full == r.p_unsafe_full && again->p_safe_full == r.p_safe_full &&
             again->logit_safe == r.logit_safe && again->logit_unsafe == r.logit_unsafe &&
             again->n_tokens == r.n_tokens && again->latency_ms == r.latency_ms);
  }
  // The token count as the file wrote it (records are in file order).
  size_t index = 0;
  SR_CHECK(ForEachJsonlRow(text, [&](int, std::string_view row) {
             const json j = json::parse(row);
             const auto it = j.find("n_tokens");
             if (it != j.end() && it->is_number_integer()) {
               SR_CHECK(it->is_number_unsigned()
                            ? it->get<uint64_t>() ==
                                  static_cast<uint64_t>((*records)[index].n_tokens)
                            : it->get<int64_t>() == (*records)[index].n_tokens);
             }
             ++index;
             return absl::OkStatus();
           }).ok());
}

void CheckMeta(std::string_view text) {
  absl::StatusOr<ScoreMeta> meta = ParseScoreMeta(text, "fuzz/meta.json");
  if (!meta.ok()) return;
  const json j = json::parse(text);  // the parser accepted it, so it is JSON
  SR_CHECK(j.at("guard").get<std::string>() == meta->guard_name);
  if (j.contains("feature_dim")) SR_CHECK(j["feature_dim"].get<int64_t>() == meta->feature_dim);
  SR_CHECK(meta->feature_dim >= 0);
  if (meta->content_free) {
    SR_CHECK(meta->content_free->p_unsafe > 0 && meta->content_free->p_unsafe < 1);
    SR_CHECK(std::isfinite(meta->content_free->logit_safe) &&
             std::isfinite(meta->content_free->logit_unsafe));
  }
  if (meta->n_params) SR_CHECK(std::isfinite(*meta->n_params) && *meta->n_params > 0);
}

}  // namespace
}  // namespace saferoute::eval

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    saferoute::eval::CheckMeta(text);
  } else {
    saferoute::eval::CheckScores(text);
  }
  return 0;
}
