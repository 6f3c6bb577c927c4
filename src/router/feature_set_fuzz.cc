// libFuzzer target (DEVELOPERS.md, "Fuzzing"): the inputs of `saferoute
// train` / `calibrate` — feature files (safetensors) and hard-label JSONL.
// Input: one selector byte (bit 0: a label file for the ids "a", "b", "c";
// else a feature file), then the file.
// Invariants beyond "no crash":
//  - features: ids unique, N x D finite values taken from the file, and the
//    set written back (WriteFeatureFile) reads back identical;
//  - labels: one 0/1 label per id, outcomes all present or all absent, and
//    the labels written back as JSONL read back identical.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "router/feature_set.h"
#include "util/fuzz_scratch.h"

namespace saferoute {
namespace {

const std::string& ScratchPath() {
  static const std::string path = FuzzScratchPath("feature_set_fuzz.safetensors");
  return path;
}

void CheckFeatures(std::span<const std::byte> image) {
  absl::StatusOr<FeatureSet> set = ParseFeatureFile(image, "fuzz.features");
  if (!set.ok()) return;
  SR_CHECK(set->dim > 0);
  SR_CHECK(set->features.size() == set->ids.size() * static_cast<size_t>(set->dim));
  SR_CHECK(set->features.size() * sizeof(float) <= image.size());
  SR_CHECK(std::set<std::string>(set->ids.begin(), set->ids.end()).size() == set->ids.size());
  for (float v : set->features) SR_CHECK(std::isfinite(v));
  SR_CHECK(WriteFeatureFile(ScratchPath(), *set).ok());
  absl::StatusOr<FeatureSet> again = ReadFeatureFile(ScratchPath());
  std::filesystem::remove(ScratchPath());
  SR_CHECK(again.ok());
  SR_CHECK(again->ids == set->ids && again->dim == set->dim && again->features == set->features &&
           again->fingerprint == set->fingerprint);
}

void CheckLabels(std::string_view text) {
  const std::vector<std::string> ids = {"a", "b", "c"};
  absl::StatusOr<RouterLabels> labels = ParseLabelsFor(text, "fuzz.jsonl", ids);
  if (!labels.ok()) return;
  for (const std::vector<uint8_t>* column :
       {&labels->t, &labels->small_pred, &labels->large_pred, &labels->gold}) {
    SR_CHECK(column->size() == ids.size());
    for (uint8_t v : *column) SR_CHECK(v <= 1);
  }
  std::string written;
  for (size_t i = 0; i < ids.size(); ++i) {
    nlohmann::json row = {{"id", ids[i]}, {"t", labels->t[i]}};
    if (labels->has_outcomes) {
      row["small_pred"] = labels->small_pred[i] == 1;
      row["large_pred"] = labels->large_pred[i];
      row["gold"] = labels->gold[i] == 1;
    }
    written += row.dump() + "\n";
  }
  absl::StatusOr<RouterLabels> again = ParseLabelsFor(written, "round-trip.jsonl", ids);
  SR_CHECK(again.ok());
  SR_CHECK(again->t == labels->t && again->has_outcomes == labels->has_outcomes);
  if (labels->has_outcomes) {
    SR_CHECK(again->small_pred == labels->small_pred && again->large_pred == labels->large_pred &&
             again->gold == labels->gold);
  }
}

}  // namespace
}  // namespace saferoute

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) {
    saferoute::CheckLabels(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  } else {
    saferoute::CheckFeatures(std::span(reinterpret_cast<const std::byte*>(data) + 1, size - 1));
  }
  return 0;
}
