#include "eval/score_file.h"

#include <cmath>
#include <filesystem>
#include <limits>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "eval/csv.h"
#include "eval/dataset.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {
namespace {

using nlohmann::json;

absl::Status LineError(const std::string& path, int line, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s", path, line, what));
}

}  // namespace

std::string ScoreRecordToJson(const ScoreRecord& r) {
  // Ordered keys keep files diffable and byte-identical across runs.
  nlohmann::ordered_json j;
  j["id"] = r.id;
  j["p_unsafe"] = r.p_unsafe;
  j["p_safe"] = r.p_safe;
  j["p_unsafe_full"] = r.p_unsafe_full;
  j["p_safe_full"] = r.p_safe_full;
  j["logit_safe"] = r.logit_safe;
  j["logit_unsafe"] = r.logit_unsafe;
  j["n_tokens"] = r.n_tokens;
  j["latency_ms"] = r.latency_ms;
  return j.dump();
}

absl::StatusOr<ScoreRecord> ParseScoreLine(std::string_view text, const std::string& path,
                                           int line) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return LineError(path, line, absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!j.is_object()) return LineError(path, line, "expected a JSON object");
  ScoreRecord r;
  auto id = j.find("id");
  if (id == j.end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
    return LineError(path, line, "missing or non-string field 'id'");
  }
  r.id = id->get<std::string>();
  // NaN/inf cannot be written in JSON; nlohmann writes them as null, which
  // fails the number check below with the field named.
  auto number = [&](const char* field, bool probability, bool required,
                    double* out) -> absl::Status {
    auto it = j.find(field);
    if (it == j.end()) {
      if (!required) return absl::OkStatus();
      return LineError(path, line, absl::StrCat("missing field '", field, "'"));
    }
    if (!it->is_number()) {
      return LineError(
          path, line,
          absl::StrCat("field '", field, "' is not a finite number (", it->dump(), ")"));
    }
    const double v = it->get<double>();
    if (!std::isfinite(v))
      return LineError(path, line, absl::StrCat("field '", field, "' is not finite"));
    if (probability && (v < 0.0 || v > 1.0)) {
      return LineError(path, line, absl::StrCat("field '", field, "' = ", v, " is outside [0, 1]"));
    }
    *out = v;
    return absl::OkStatus();
  };
  SR_RETURN_IF_ERROR(number("p_unsafe", true, true, &r.p_unsafe));
  r.p_safe = 1.0 - r.p_unsafe;
  SR_RETURN_IF_ERROR(number("p_safe", true, false, &r.p_safe));
  SR_RETURN_IF_ERROR(number("p_unsafe_full", true, false, &r.p_unsafe_full));
  SR_RETURN_IF_ERROR(number("p_safe_full", true, false, &r.p_safe_full));
  SR_RETURN_IF_ERROR(number("logit_safe", false, false, &r.logit_safe));
  SR_RETURN_IF_ERROR(number("logit_unsafe", false, false, &r.logit_unsafe));
  double n_tokens = 0;
  SR_RETURN_IF_ERROR(number("n_tokens", false, false, &n_tokens));
  // Above 2^53 a double no longer holds every integer, and past int64 the
  // cast below would be undefined.
  constexpr double kMaxTokens = 9007199254740992.0;  // 2^53
  if (n_tokens < 0 || n_tokens != std::floor(n_tokens) || n_tokens > kMaxTokens) {
    return LineError(path, line, "field 'n_tokens' is not a non-negative integer (at most 2^53)");
  }
  r.n_tokens = static_cast<int64_t>(n_tokens);
  SR_RETURN_IF_ERROR(number("latency_ms", false, false, &r.latency_ms));
  if (r.latency_ms < 0) return LineError(path, line, "field 'latency_ms' is negative");
  return r;
}

absl::StatusOr<std::vector<ScoreRecord>> ReadScoreFile(const std::string& path) {
  SR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseScoreFile(text, path);
}

absl::StatusOr<std::vector<ScoreRecord>> ParseScoreFile(std::string_view text,
                                                        const std::string& path) {
  std::vector<ScoreRecord> records;
  std::unordered_map<std::string, int> seen;  // id -> line
  SR_RETURN_IF_ERROR(ForEachJsonlRow(text, [&](int line, std::string_view row) -> absl::Status {
    SR_ASSIGN_OR_RETURN(ScoreRecord r, ParseScoreLine(row, path, line));
    auto [it, inserted] = seen.emplace(r.id, line);
    if (!inserted) {
      return LineError(path, line,
                       absl::StrFormat("duplicate id '%s' (first at line %d)", r.id, it->second));
    }
    records.push_back(std::move(r));
    return absl::OkStatus();
  }));
  if (records.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no score rows"));
  return records;
}

std::string MetaPathForScores(const std::string& scores_path) {
  return (std::filesystem::path(scores_path).parent_path() / "meta.json").string();
}

absl::StatusOr<ScoreMeta> ReadScoreMeta(const std::string& meta_path) {
  SR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(meta_path));
  return ParseScoreMeta(text, meta_path);
}

absl::StatusOr<ScoreMeta> ParseScoreMeta(std::string_view text, const std::string& meta_path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(meta_path, ": invalid JSON: ", e.what()));
  }
  if (!j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(meta_path, ": expected a JSON object"));
  auto field_error = [&](const char* field, std::string_view what) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: field '%s' %s", meta_path, field, what));
  };
  ScoreMeta meta;
  try {
    if (!j.contains("guard") || !j["guard"].is_string())
      return field_error("guard", "missing or not a string");
    meta.guard_name = j["guard"].get<std::string>();
    if (j.contains("fingerprint")) {
      if (!j["fingerprint"].is_string()) return field_error("fingerprint", "is not a string");
      meta.fingerprint = j["fingerprint"].get<std::string>();
    }
    if (j.contains("feature_dim")) {
      // An int: larger values would be cut silently.
      if (!j["feature_dim"].is_number_integer() || j["feature_dim"].get<int64_t>() < 0 ||
          j["feature_dim"].get<int64_t>() > std::numeric_limits<int>::max()) {
        return field_error("feature_dim", "is not a non-negative integer (at most 2147483647)");
      }
      meta.feature_dim = j["feature_dim"].get<int>();
    }
    if (j.contains("content_free") && !j["content_free"].is_null()) {
      const json& cf = j["content_free"];
      ContentFreeScore s;
      for (auto [name, out] :
           {std::pair{"p_unsafe", &s.p_unsafe}, std::pair{"logit_safe", &s.logit_safe},
            std::pair{"logit_unsafe", &s.logit_unsafe}}) {
        if (!cf.is_object() || !cf.contains(name) || !cf[name].is_number()) {
          return field_error("content_free", absl::StrCat("has no numeric '", name, "'"));
        }
        *out = cf[name].get<double>();
      }
      if (!(s.p_unsafe > 0.0 && s.p_unsafe < 1.0)) {
        return field_error("content_free", "p_unsafe must lie strictly between 0 and 1");
      }
      meta.content_free = s;
    }
    if (j.contains("n_params") && !j["n_params"].is_null()) {
      if (!j["n_params"].is_number() || j["n_params"].get<double>() <= 0) {
        return field_error("n_params", "is not a positive number");
      }
      meta.n_params = j["n_params"].get<double>();
    }
    if (j.contains("dataset_files") && j["dataset_files"].is_array()) {
      for (const json& f : j["dataset_files"]) {
        if (f.is_string()) meta.dataset_files.push_back(f.get<std::string>());
      }
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(meta_path, ": ", e.what()));
  }
  return meta;
}

}  // namespace saferoute::eval
