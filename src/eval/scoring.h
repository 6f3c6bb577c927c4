// The scoring pipeline: runs a Guard over a dataset and writes the score
// files of score_file.h into an output directory, resumably.
//
// Crash safety: each batch appends its feature rows (features.partial.f32,
// raw f32 [rows, H]) and then its score rows (scores.jsonl), each followed by
// fsync. A restart reads both, drops any torn tail (a line without '\n', a
// partial feature row, rows beyond the shorter of the two), truncates the
// files there and continues with the next example, so no example is scored
// twice and the final files are byte-identical to an uninterrupted run.
// features.safetensors is written atomically once everything is scored.
// meta.json pins the guard fingerprint and the dataset's ids: resuming into a
// directory made by another guard or another dataset is an error.
#ifndef SAFEROUTE_EVAL_SCORING_H_
#define SAFEROUTE_EVAL_SCORING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/dataset.h"
#include "guard/guard.h"
#include "util/status.h"

namespace saferoute::eval {

inline constexpr char kScoresFile[] = "scores.jsonl";
inline constexpr char kFeaturesFile[] = "features.safetensors";
inline constexpr char kPartialFeaturesFile[] = "features.partial.f32";
inline constexpr char kMetaFile[] = "meta.json";

struct ScoreOptions {
  int batch_size = 16;                     // examples per Guard::Classify call
  std::vector<std::string> dataset_files;  // provenance, recorded in meta.json
  std::optional<double> n_params;          // the guard's parameter count, for FLOPs
  bool progress = true;                    // progress on stderr
};

struct ScoreSummary {
  int64_t total = 0;
  int64_t resumed = 0;  // already scored by an earlier run
  int64_t scored = 0;   // scored by this call
};

absl::StatusOr<ScoreSummary> ScoreDataset(Guard& guard, const std::vector<Example>& examples,
                                          const std::string& out_dir,
                                          const ScoreOptions& options = {});

// The request a dataset example becomes: prompt classification, or response
// classification when the example has a response.
GuardRequest RequestFor(const Example& example, bool want_feature);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_SCORING_H_
