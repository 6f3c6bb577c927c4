// Score files written by `saferoute score` (see scoring.h) and read by
// `label` and `eval`:
//   out_dir/scores.jsonl  one row per example, in dataset order:
//     {"id","p_unsafe","p_safe","p_unsafe_full","p_safe_full","logit_safe",
//      "logit_unsafe","n_tokens","latency_ms"}
//   out_dir/meta.json     guard name, fingerprint, dataset files, feature_dim,
//                         content-free score (calibration), optional n_params
//   out_dir/features.safetensors  "features" [N, H] F32; metadata "ids" (JSON
//                         array, same order), "fingerprint"
#ifndef SAFEROUTE_EVAL_SCORE_FILE_H_
#define SAFEROUTE_EVAL_SCORE_FILE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace saferoute::eval {

struct ScoreRecord {
  std::string id;
  double p_unsafe = 0;       // two-way softmax over {safe, unsafe}
  double p_safe = 0;         // 1 - p_unsafe, from the same two logits
  double p_unsafe_full = 0;  // full-vocabulary softmax
  double p_safe_full = 0;
  double logit_safe = 0;
  double logit_unsafe = 0;
  int64_t n_tokens = 0;
  double latency_ms = 0;  // the guard's own tokenize + forward + decode time
};

// One line of scores.jsonl, without the trailing newline.
std::string ScoreRecordToJson(const ScoreRecord& record);

// Parses one line; `path`/`line` only name the place in errors. Rejects
// missing fields, NaN/inf, probabilities outside [0, 1], negative counts.
absl::StatusOr<ScoreRecord> ParseScoreLine(std::string_view text, const std::string& path,
                                           int line);

// Reads a whole scores.jsonl. Empty file, a bad row or a duplicate id is an
// error naming path:line.
absl::StatusOr<std::vector<ScoreRecord>> ReadScoreFile(const std::string& path);
// ReadScoreFile on the file's contents.
absl::StatusOr<std::vector<ScoreRecord>> ParseScoreFile(std::string_view text,
                                                        const std::string& path);

// The content-free input's score (a single-space prompt): contextual calibration.
struct ContentFreeScore {
  double p_unsafe = 0;
  double logit_safe = 0;
  double logit_unsafe = 0;
};

// What eval needs from meta.json (everything optional but the guard name).
struct ScoreMeta {
  std::string guard_name;
  std::string fingerprint;
  int feature_dim = 0;
  std::optional<ContentFreeScore> content_free;
  std::optional<double> n_params;  // for FLOPs (2 * params * tokens)
  std::vector<std::string> dataset_files;
};

absl::StatusOr<ScoreMeta> ReadScoreMeta(const std::string& meta_path);
// ReadScoreMeta on the file's contents.
absl::StatusOr<ScoreMeta> ParseScoreMeta(std::string_view text, const std::string& meta_path);

// meta.json next to a scores.jsonl ("dir/scores.jsonl" -> "dir/meta.json").
std::string MetaPathForScores(const std::string& scores_path);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_SCORE_FILE_H_
