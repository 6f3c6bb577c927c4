// Hard labels (paper Eq. 1): t = 1 iff the large guard is right and the small
// guard is wrong. A guard predicts unsafe iff p_unsafe > 0.5 (strict).
#ifndef SAFEROUTE_EVAL_LABELS_H_
#define SAFEROUTE_EVAL_LABELS_H_

#include <string>
#include <vector>

#include "eval/dataset.h"
#include "eval/score_file.h"
#include "util/status.h"

namespace saferoute::eval {

// The guard decision threshold δ of the paper (prediction: p > δ).
inline constexpr double kGuardThreshold = 0.5;
inline bool PredictUnsafe(double p_unsafe) { return p_unsafe > kGuardThreshold; }

struct HardLabel {
  std::string id;
  bool t = false;
  bool small_pred = false;
  bool large_pred = false;
  bool gold = false;
};

// Returns `scores` reordered to follow `examples`. Every example must have
// exactly one score row and every row must belong to an example: an id
// missing on either side is an error naming `scores_path` (never a silent drop).
absl::StatusOr<std::vector<ScoreRecord>> AlignScores(const std::vector<Example>& examples,
                                                     std::vector<ScoreRecord> scores,
                                                     const std::string& scores_path);

// Eq. 1 for aligned inputs (same length and order as `examples`).
std::vector<HardLabel> ComputeHardLabels(const std::vector<Example>& examples,
                                         const std::vector<ScoreRecord>& small,
                                         const std::vector<ScoreRecord>& large);

// Writes {"id","t","small_pred","large_pred","gold"} per line, atomically
// (io/safetensors.h WriteFileAtomically).
absl::Status WriteHardLabels(const std::string& path, const std::vector<HardLabel>& labels);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_LABELS_H_
