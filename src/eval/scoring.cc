#include "eval/scoring.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "eval/progress.h"
#include "eval/score_file.h"
#include "io/safetensors.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {
namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

constexpr int kMetaVersion = 1;

// FNV-1a 64 over the ids (each followed by '\n'): pins the dataset and its
// order, so a resume can not silently continue a different dataset.
std::string IdsDigest(const std::vector<Example>& examples) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const Example& ex : examples) {
    for (unsigned char c : ex.id) h = (h ^ c) * 0x100000001b3ULL;
    h = (h ^ '\n') * 0x100000001b3ULL;
  }
  return absl::StrFormat("%016x", h);
}

absl::Status Errno(const std::string& path, const char* what) {
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", std::strerror(errno)));
}

// An append-only file whose every Append is durable when it returns.
class DurableAppender {
 public:
  ~DurableAppender() {
    if (fd_ >= 0) ::close(fd_);
  }
  absl::Status Open(const std::string& path, uint64_t keep_bytes) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return Errno(path, "cannot open for writing");
    if (::ftruncate(fd_, static_cast<off_t>(keep_bytes)) != 0)
      return Errno(path, "truncate failed");
    if (::lseek(fd_, 0, SEEK_END) < 0) return Errno(path, "seek failed");
    return absl::OkStatus();
  }
  absl::Status Append(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return Errno(path_, "write failed");
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    if (::fsync(fd_) != 0) return Errno(path_, "fsync failed");
    return absl::OkStatus();
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// How much of an earlier run's output is valid.
struct ResumePoint {
  int64_t rows = 0;          // examples fully written
  uint64_t score_bytes = 0;  // scores.jsonl length covering `rows`
};

absl::StatusOr<ResumePoint> FindResumePoint(const std::vector<Example>& examples,
                                            const std::string& scores_path,
                                            const std::string& features_path, int dim) {
  ResumePoint point;
  std::vector<uint64_t> line_ends;  // byte offset after each complete, valid line
  if (fs::exists(scores_path)) {
    SR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(scores_path));
    size_t start = 0;
    int line = 0;
    while (start < text.size()) {
      const size_t end = text.find('\n', start);
      if (end == std::string::npos) break;  // torn last line from a kill: dropped
      ++line;
      SR_ASSIGN_OR_RETURN(
          ScoreRecord r,
          ParseScoreLine(std::string_view(text).substr(start, end - start), scores_path, line));
      if (static_cast<size_t>(line) > examples.size() || r.id != examples[line - 1].id) {
        return absl::FailedPreconditionError(
            absl::StrFormat("%s:%d: id '%s' is not example %d of the dataset ('%s'): this "
                            "directory holds another run's scores",
                            scores_path, line, r.id, line,
                            static_cast<size_t>(line) <= examples.size() ? examples[line - 1].id
                                                                         : "<past the end>"));
      }
      line_ends.push_back(end + 1);
      start = end + 1;
    }
  }
  int64_t rows = static_cast<int64_t>(line_ends.size());
  if (dim > 0) {
    const uint64_t feature_bytes = fs::exists(features_path) ? fs::file_size(features_path) : 0;
    rows = std::min<int64_t>(
        rows, static_cast<int64_t>(feature_bytes / (static_cast<uint64_t>(dim) * sizeof(float))));
  }
  point.rows = rows;
  point.score_bytes = rows == 0 ? 0 : line_ends[rows - 1];
  return point;
}

ordered_json MakeMeta(const Guard& guard, const std::vector<Example>& examples,
                      const ScoreOptions& options, const ordered_json& content_free,
                      bool complete) {
  ordered_json meta;
  meta["format"] = "saferoute-scores";
  meta["version"] = kMetaVersion;
  meta["guard"] = guard.name();
  meta["fingerprint"] = guard.fingerprint();
  meta["feature_dim"] = guard.feature_dim();
  meta["dataset_files"] = options.dataset_files;
  meta["n_examples"] = examples.size();
  meta["ids_fnv1a64"] = IdsDigest(examples);
  meta["content_free"] = content_free;
  meta["n_params"] =
      options.n_params.has_value() ? ordered_json(*options.n_params) : ordered_json();
  meta["complete"] = complete;
  return meta;
}

// Checks an existing meta.json describes this guard and dataset; returns its
// content-free score (computed once, on the first run).
absl::StatusOr<ordered_json> CheckExistingMeta(const std::string& path,
                                               const ordered_json& expected) {
  SR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  ordered_json meta;
  try {
    meta = ordered_json::parse(text);
  } catch (const ordered_json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": invalid JSON: ", e.what()));
  }
  for (const char* key :
       {"format", "version", "fingerprint", "feature_dim", "n_examples", "ids_fnv1a64"}) {
    if (!meta.contains(key) || meta[key] != expected[key]) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s: field '%s' is %s, this run has %s: the directory holds another guard's or dataset's "
          "scores "
          "(use a fresh output directory)",
          path, key, meta.contains(key) ? meta[key].dump() : "missing", expected[key].dump()));
    }
  }
  if (!meta.contains("content_free") || !meta["content_free"].is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": missing object 'content_free'"));
  }
  return meta["content_free"];
}

absl::Status CheckVerdict(const GuardVerdict& v, int dim, const Example& ex) {
  auto where = [&] {
    return absl::StrFormat("guard verdict for id '%s' (%s:%d)", ex.id, ex.file, ex.line);
  };
  for (float p : {v.p_unsafe, v.p_unsafe_full, v.p_safe_full}) {
    if (!(p >= 0.0f && p <= 1.0f))
      return absl::InternalError(absl::StrCat(where(), ": probability ", p, " is not in [0, 1]"));
  }
  if (!std::isfinite(v.logit_safe) || !std::isfinite(v.logit_unsafe)) {
    return absl::InternalError(absl::StrCat(where(), ": non-finite logits"));
  }
  if (static_cast<int>(v.feature.size()) != dim) {
    return absl::InternalError(
        absl::StrFormat("%s: feature has %d values, the guard's feature_dim is %d", where(),
                        v.feature.size(), dim));
  }
  for (float f : v.feature) {
    if (!std::isfinite(f))
      return absl::InternalError(absl::StrCat(where(), ": non-finite feature value"));
  }
  return absl::OkStatus();
}

ScoreRecord ToRecord(const Example& ex, const GuardVerdict& v) {
  ScoreRecord r;
  r.id = ex.id;
  r.p_unsafe = v.p_unsafe;
  r.p_safe = 1.0f - v.p_unsafe;
  r.p_unsafe_full = v.p_unsafe_full;
  r.p_safe_full = v.p_safe_full;
  r.logit_safe = v.logit_safe;
  r.logit_unsafe = v.logit_unsafe;
  r.n_tokens = v.n_tokens;
  r.latency_ms = v.timings.tokenize_ms + v.timings.forward_ms + v.timings.decode_ms;
  return r;
}

absl::Status WriteFeatures(const std::string& out_path, const std::string& raw_path,
                           const std::vector<Example>& examples, int dim,
                           const std::string& fingerprint, const std::string& guard_name) {
  SR_ASSIGN_OR_RETURN(std::string raw, ReadFileToString(raw_path));
  const uint64_t expected = static_cast<uint64_t>(examples.size()) * dim * sizeof(float);
  if (raw.size() != expected) {
    return absl::DataLossError(absl::StrFormat("%s: %d bytes, expected %d ([%d, %d] f32)", raw_path,
                                               raw.size(), expected, examples.size(), dim));
  }
  nlohmann::json ids = nlohmann::json::array();
  for (const Example& ex : examples) ids.push_back(ex.id);
  const std::vector<TensorToWrite> tensors = {
      {.name = "features",
       .dtype = DType::kF32,
       .shape = {static_cast<int64_t>(examples.size()), dim},
       .data = raw.data(),
       .nbytes = raw.size()}};
  return WriteSafetensors(
      out_path, tensors,
      {{"ids", ids.dump()}, {"fingerprint", fingerprint}, {"guard", guard_name}});
}

}  // namespace

GuardRequest RequestFor(const Example& example, bool want_feature) {
  GuardRequest request;
  request.prompt = example.prompt;
  request.response = example.response;
  request.want_feature = want_feature;
  return request;
}

absl::StatusOr<ScoreSummary> ScoreDataset(Guard& guard, const std::vector<Example>& examples,
                                          const std::string& out_dir, const ScoreOptions& options) {
  if (examples.empty()) return absl::InvalidArgumentError("score: the dataset is empty");
  if (options.batch_size < 1)
    return absl::InvalidArgumentError("score: batch size must be at least 1");
  const int dim = guard.feature_dim();
  if (dim < 0) return absl::InternalError("score: guard reports a negative feature_dim");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat(out_dir, ": cannot create directory: ", ec.message()));
  const std::string scores_path = (fs::path(out_dir) / kScoresFile).string();
  const std::string raw_path = (fs::path(out_dir) / kPartialFeaturesFile).string();
  const std::string features_path = (fs::path(out_dir) / kFeaturesFile).string();
  const std::string meta_path = (fs::path(out_dir) / kMetaFile).string();

  ScoreSummary summary;
  summary.total = static_cast<int64_t>(examples.size());
  ordered_json expected_meta = MakeMeta(guard, examples, options, nullptr, false);
  ordered_json content_free;
  if (fs::exists(meta_path)) {
    SR_ASSIGN_OR_RETURN(content_free, CheckExistingMeta(meta_path, expected_meta));
    SR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(meta_path));
    const ordered_json meta = ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
    const bool complete = meta.is_object() && meta.contains("complete") &&
                          meta["complete"].is_boolean() && meta["complete"].get<bool>();
    if (complete && fs::exists(features_path) == (dim > 0)) {
      summary.resumed = summary.total;  // finished earlier: nothing to do
      return summary;
    }
  } else {
    // The content-free input of contextual calibration: a single space,
    // scored once per guard (Zhao et al. 2021; the paper's eval.py).
    GuardRequest blank;
    blank.prompt = " ";
    blank.want_feature = false;
    SR_ASSIGN_OR_RETURN(std::vector<GuardVerdict> v, guard.Classify({blank}));
    if (v.size() != 1)
      return absl::InternalError("score: guard returned no verdict for the content-free input");
    content_free = {{"prompt", " "},
                    {"p_unsafe", v[0].p_unsafe},
                    {"logit_safe", v[0].logit_safe},
                    {"logit_unsafe", v[0].logit_unsafe}};
    SR_RETURN_IF_ERROR(WriteFileAtomically(
        meta_path, MakeMeta(guard, examples, options, content_free, false).dump(2) + "\n"));
  }

  SR_ASSIGN_OR_RETURN(ResumePoint resume, FindResumePoint(examples, scores_path, raw_path, dim));
  summary.resumed = resume.rows;
  DurableAppender scores_out, features_out;
  SR_RETURN_IF_ERROR(scores_out.Open(scores_path, resume.score_bytes));
  if (dim > 0) {
    SR_RETURN_IF_ERROR(
        features_out.Open(raw_path, static_cast<uint64_t>(resume.rows) * dim * sizeof(float)));
  }

  Progress progress("score " + guard.name(), summary.total, resume.rows, options.progress);
  std::vector<GuardRequest> batch;
  for (int64_t begin = resume.rows; begin < summary.total; begin += options.batch_size) {
    const int64_t end = std::min<int64_t>(summary.total, begin + options.batch_size);
    batch.clear();
    for (int64_t i = begin; i < end; ++i) batch.push_back(RequestFor(examples[i], dim > 0));
    absl::StatusOr<std::vector<GuardVerdict>> verdicts = guard.Classify(batch);
    if (!verdicts.ok()) {
      return absl::Status(verdicts.status().code(),
                          absl::StrFormat("score: examples %d..%d (first id '%s', %s:%d): %s",
                                          begin, end - 1, examples[begin].id, examples[begin].file,
                                          examples[begin].line, verdicts.status().message()));
    }
    if (static_cast<int64_t>(verdicts->size()) != end - begin) {
      return absl::InternalError(absl::StrFormat(
          "score: guard returned %d verdicts for a batch of %d", verdicts->size(), end - begin));
    }
    std::string lines;
    std::vector<float> rows;  // [batch, dim]
    rows.reserve(static_cast<size_t>(end - begin) * dim);
    for (int64_t i = begin; i < end; ++i) {
      const GuardVerdict& v = (*verdicts)[i - begin];
      SR_RETURN_IF_ERROR(CheckVerdict(v, dim, examples[i]));
      rows.insert(rows.end(), v.feature.begin(), v.feature.end());
      lines += ScoreRecordToJson(ToRecord(examples[i], v));
      lines += '\n';
    }
    // Features first: a score row on disk always has its feature row.
    if (dim > 0) SR_RETURN_IF_ERROR(features_out.Append(rows.data(), rows.size() * sizeof(float)));
    SR_RETURN_IF_ERROR(scores_out.Append(lines.data(), lines.size()));
    summary.scored += end - begin;
    progress.Update(end);
  }
  progress.Finish();

  if (dim > 0) {
    SR_RETURN_IF_ERROR(
        WriteFeatures(features_path, raw_path, examples, dim, guard.fingerprint(), guard.name()));
  }
  SR_RETURN_IF_ERROR(WriteFileAtomically(
      meta_path, MakeMeta(guard, examples, options, content_free, true).dump(2) + "\n"));
  if (dim > 0) fs::remove(raw_path, ec);  // everything is in features.safetensors now
  return summary;
}

}  // namespace saferoute::eval
