#include "eval/labels.h"

#include <unordered_map>

#include "io/safetensors.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {

absl::StatusOr<std::vector<ScoreRecord>> AlignScores(const std::vector<Example>& examples,
                                                     std::vector<ScoreRecord> scores,
                                                     const std::string& scores_path) {
  std::unordered_map<std::string, size_t> by_id;  // id -> row in `scores`
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!by_id.emplace(scores[i].id, i).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: row %d: duplicate id '%s'", scores_path, i + 1, scores[i].id));
    }
  }
  std::vector<ScoreRecord> aligned;
  aligned.reserve(examples.size());
  std::vector<bool> used(scores.size(), false);
  for (const Example& ex : examples) {
    auto it = by_id.find(ex.id);
    if (it == by_id.end()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: has no score for id '%s' (%s:%d)",
                                                        scores_path, ex.id, ex.file, ex.line));
    }
    used[it->second] = true;
    aligned.push_back(scores[it->second]);
  }
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!used[i]) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s:%d: id '%s' is not in the dataset files (score file and data do not match)",
          scores_path, i + 1, scores[i].id));
    }
  }
  return aligned;
}

std::vector<HardLabel> ComputeHardLabels(const std::vector<Example>& examples,
                                         const std::vector<ScoreRecord>& small,
                                         const std::vector<ScoreRecord>& large) {
  SR_CHECK(small.size() == examples.size() && large.size() == examples.size());
  std::vector<HardLabel> labels;
  labels.reserve(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    SR_CHECK(small[i].id == examples[i].id && large[i].id == examples[i].id);
    HardLabel h;
    h.id = examples[i].id;
    h.gold = examples[i].unsafe;
    h.small_pred = PredictUnsafe(small[i].p_unsafe);
    h.large_pred = PredictUnsafe(large[i].p_unsafe);
    h.t = (h.large_pred == h.gold) && (h.small_pred != h.gold);
    labels.push_back(std::move(h));
  }
  return labels;
}

absl::Status WriteHardLabels(const std::string& path, const std::vector<HardLabel>& labels) {
  std::string out;
  for (const HardLabel& h : labels) {
    nlohmann::ordered_json j;
    j["id"] = h.id;
    j["t"] = h.t ? 1 : 0;
    j["small_pred"] = h.small_pred;
    j["large_pred"] = h.large_pred;
    j["gold"] = h.gold;
    out += j.dump();
    out += '\n';
  }
  return ::saferoute::WriteFileAtomically(path, out);
}

}  // namespace saferoute::eval
