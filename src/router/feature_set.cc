#include "router/feature_set.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "io/safetensors.h"
#include "nlohmann/json.hpp"

namespace saferoute {
namespace {

using nlohmann::json;

// A label field that is true/false or 0/1.
std::optional<uint8_t> AsBinary(const json& v) {
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x == 0 || x == 1) return static_cast<uint8_t>(x);
  }
  return std::nullopt;
}

// The feature set in a parsed safetensors file.
absl::StatusOr<FeatureSet> FeaturesFromTensors(const std::vector<TensorView>& tensors,
                                               const std::map<std::string, std::string>& metadata,
                                               const std::string& path) {
  const auto found = std::find_if(tensors.begin(), tensors.end(),
                                  [](const TensorView& t) { return t.name == "features"; });
  if (found == tensors.end())
    return absl::InvalidArgumentError(absl::StrCat(path, ": no tensor 'features'"));
  const TensorView* view = &*found;
  if (view->dtype != DType::kF32 || view->shape.size() != 2 || view->shape[1] <= 0 ||
      view->shape[1] > (int64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor 'features' must be F32 [N, D] with 0 < D <= 2^20"));
  }
  auto ids_it = metadata.find("ids");
  if (ids_it == metadata.end())
    return absl::InvalidArgumentError(absl::StrCat(path, ": metadata 'ids' missing"));
  const json ids = json::parse(ids_it->second, nullptr, /*allow_exceptions=*/false);
  if (ids.is_discarded() || !ids.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": metadata 'ids' is not a JSON array"));
  }
  FeatureSet set;
  const int64_t rows = view->shape[0];
  if (static_cast<int64_t>(ids.size()) != rows) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": metadata 'ids' has ", ids.size(),
                                                   " entries, tensor 'features' has ", rows,
                                                   " rows"));
  }
  std::unordered_map<std::string, int64_t> seen;
  for (int64_t i = 0; i < rows; ++i) {
    if (!ids[i].is_string())
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": metadata 'ids' entry ", i, " is not a string"));
    std::string id = ids[i].get<std::string>();
    if (auto [it, inserted] = seen.emplace(id, i); !inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": id '", id, "' appears at rows ", it->second, " and ", i));
    }
    set.ids.push_back(std::move(id));
  }
  auto fp = metadata.find("fingerprint");
  if (fp == metadata.end())
    return absl::InvalidArgumentError(absl::StrCat(path, ": metadata 'fingerprint' missing"));
  set.fingerprint = fp->second;
  set.dim = static_cast<int>(view->shape[1]);
  set.features.resize(view->nbytes / sizeof(float));
  std::memcpy(set.features.data(), view->data, view->nbytes);
  for (size_t i = 0; i < set.features.size(); ++i) {
    if (!std::isfinite(set.features[i])) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": features row ", i / set.dim, " ('",
                                                     set.ids[i / set.dim], "') is not finite"));
    }
  }
  return set;
}

}  // namespace

absl::StatusOr<FeatureSet> ReadFeatureFile(const std::string& path) {
  SR_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  return FeaturesFromTensors(file->tensors(), file->metadata(), path);
}

absl::StatusOr<FeatureSet> ParseFeatureFile(std::span<const std::byte> image,
                                            const std::string& source) {
  SR_ASSIGN_OR_RETURN(SafetensorsContents contents, ParseSafetensors(image, source));
  return FeaturesFromTensors(contents.tensors, contents.metadata, source);
}

absl::Status WriteFeatureFile(const std::string& path, const FeatureSet& set) {
  if (set.dim <= 0 || set.features.size() != set.ids.size() * static_cast<size_t>(set.dim)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": features do not match ids x dim"));
  }
  const TensorToWrite tensor{.name = "features",
                             .dtype = DType::kF32,
                             .shape = {set.rows(), set.dim},
                             .data = set.features.data(),
                             .nbytes = set.features.size() * sizeof(float)};
  const std::map<std::string, std::string> metadata = {
      {"ids", json(set.ids).dump(-1, ' ', false, json::error_handler_t::replace)},
      {"fingerprint", set.fingerprint}};
  return WriteSafetensors(path, std::span(&tensor, 1), metadata);
}

absl::StatusOr<RouterLabels> ReadLabelsFor(const std::string& path,
                                           const std::vector<std::string>& ids) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open label file"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ParseLabelsFor(text.str(), path, ids);
}

absl::StatusOr<RouterLabels> ParseLabelsFor(std::string_view text, const std::string& path,
                                            const std::vector<std::string>& ids) {
  std::unordered_map<std::string, size_t> row_of;
  for (size_t i = 0; i < ids.size(); ++i) row_of.emplace(ids[i], i);

  RouterLabels labels;
  labels.t.assign(ids.size(), 0);
  labels.small_pred.assign(ids.size(), 0);
  labels.large_pred.assign(ids.size(), 0);
  labels.gold.assign(ids.size(), 0);
  std::vector<int64_t> line_of_row(ids.size(), 0);  // 0: no label yet
  int64_t with_outcomes = 0, lines = 0;
  size_t start = 0;  // of the next line
  for (int64_t line_no = 1; start < text.size(); ++line_no) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // blank line
    ++lines;
    auto bad = [&](std::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": ", std::string(what)));
    };
    const json obj = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (obj.is_discarded() || !obj.is_object()) return bad("not a JSON object");
    auto id_it = obj.find("id");
    if (id_it == obj.end() || !id_it->is_string()) return bad("field 'id' missing or not a string");
    const std::string id = id_it->get<std::string>();
    auto row = row_of.find(id);
    if (row == row_of.end()) return bad(absl::StrCat("id '", id, "' is not in the feature file"));
    if (line_of_row[row->second] != 0) {
      return bad(absl::StrCat("id '", id, "' already labelled on line ", line_of_row[row->second]));
    }
    line_of_row[row->second] = line_no;
    auto t_it = obj.find("t");
    std::optional<uint8_t> t = t_it == obj.end() ? std::nullopt : AsBinary(*t_it);
    if (!t) return bad("field 't' missing or not 0/1");
    labels.t[row->second] = *t;
    int present = 0;
    for (auto [name, out] :
         {std::pair{"small_pred", &labels.small_pred}, std::pair{"large_pred", &labels.large_pred},
          std::pair{"gold", &labels.gold}}) {
      auto it = obj.find(name);
      if (it == obj.end()) continue;
      std::optional<uint8_t> v = AsBinary(*it);
      if (!v) return bad(absl::StrCat("field '", name, "' is not true/false or 0/1"));
      (*out)[row->second] = *v;
      ++present;
    }
    if (present != 0 && present != 3)
      return bad("has some but not all of small_pred, large_pred, gold");
    with_outcomes += present == 3;
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (line_of_row[i] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": no label for id '", ids[i], "' (feature row ", i, ")"));
    }
  }
  if (with_outcomes != 0 && with_outcomes != lines) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", with_outcomes, " of ", lines,
                     " lines have small_pred/large_pred/gold; need all or none"));
  }
  labels.has_outcomes = with_outcomes > 0;
  return labels;
}

}  // namespace saferoute
