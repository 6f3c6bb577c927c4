// Router training/calibration inputs on disk.
//
// Feature file (written by `saferoute score`, eval/score_file.h, and by
// WriteFeatureFile): safetensors with
//   tensor "features"  F32 [N, D]: the small guard's last-token hidden states
//   __metadata__ "ids":         JSON array of N unique strings, row order
//   __metadata__ "fingerprint": guard model + layer that made the features
//
// Label file (written by `saferoute label`, eval/labels.h): JSONL, one object
// per line: {"id": string, "t": 0|1} and optionally "small_pred",
// "large_pred", "gold" (true/false or 0/1: the guards' unsafe verdicts and the
// gold label), which calibration uses for the safety-F1 column.
// Every feature id needs exactly one label line and every label line a
// feature row: a mismatch is an error naming the id, never a silent drop.
#ifndef SAFEROUTE_ROUTER_FEATURE_SET_H_
#define SAFEROUTE_ROUTER_FEATURE_SET_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace saferoute {

struct FeatureSet {
  std::vector<std::string> ids;  // [N]
  int dim = 0;                   // D
  std::vector<float> features;   // [N, D] row-major
  std::string fingerprint;
  int64_t rows() const { return static_cast<int64_t>(ids.size()); }
};

absl::StatusOr<FeatureSet> ReadFeatureFile(const std::string& path);
// ReadFeatureFile on a safetensors image in memory; `source` names it in errors.
absl::StatusOr<FeatureSet> ParseFeatureFile(std::span<const std::byte> image,
                                            const std::string& source);
absl::Status WriteFeatureFile(const std::string& path, const FeatureSet& set);

// Labels aligned to a FeatureSet's rows.
struct RouterLabels {
  std::vector<uint8_t> t;  // [N] hard labels
  // Present only if every line has small_pred, large_pred and gold.
  bool has_outcomes = false;
  std::vector<uint8_t> small_pred, large_pred, gold;  // [N] each when has_outcomes
};

// Reads the JSONL label file and orders it like `ids`.
absl::StatusOr<RouterLabels> ReadLabelsFor(const std::string& path,
                                           const std::vector<std::string>& ids);
// ReadLabelsFor on the file's text; `source` names it in errors.
absl::StatusOr<RouterLabels> ParseLabelsFor(std::string_view text, const std::string& source,
                                            const std::vector<std::string>& ids);

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_FEATURE_SET_H_
