#include "eval/dataset.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "eval/csv.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {
namespace {

using nlohmann::json;

absl::Status RowError(const std::string& path, int line, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s", path, line, what));
}

std::string FileStem(const std::string& path) {
  return std::filesystem::path(path).stem().string();
}

absl::StatusOr<bool> ParseLabelJson(const json& value) {
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_number_integer() || value.is_number_unsigned()) {
    const int64_t v = value.get<int64_t>();
    if (v == 0 || v == 1) return v == 1;
    return absl::InvalidArgumentError(absl::StrCat("label ", v, " is neither 0 nor 1"));
  }
  if (value.is_number_float()) {
    const double v = value.get<double>();
    if (v == 0.0 || v == 1.0) return v == 1.0;
    return absl::InvalidArgumentError(absl::StrCat("label ", value.dump(), " is neither 0 nor 1"));
  }
  if (value.is_string()) return ParseLabelText(value.get<std::string>());
  return absl::InvalidArgumentError(
      absl::StrCat("label ", value.dump(), " is not a boolean, 0/1, or \"safe\"/\"unsafe\""));
}

absl::StatusOr<std::vector<Example>> LoadJsonl(const std::string& path, std::string_view text,
                                               const FieldMapping& m) {
  std::vector<Example> out;
  int64_t row_index = 0;
  SR_RETURN_IF_ERROR(ForEachJsonlRow(text, [&](int line, std::string_view row) -> absl::Status {
    json obj;
    try {
      obj = json::parse(row);
    } catch (const json::exception& e) {
      // nlohmann reports invalid UTF-8 inside strings as a parse error too.
      return RowError(path, line, absl::StrCat("invalid JSON: ", e.what()));
    }
    if (!obj.is_object()) return RowError(path, line, "expected a JSON object");
    Example ex;
    ex.file = path;
    ex.line = line;
    if (m.id_field.empty()) {
      ex.id = absl::StrCat(FileStem(path), "-", row_index);
    } else {
      auto it = obj.find(m.id_field);
      if (it == obj.end())
        return RowError(path, line, absl::StrCat("missing id field '", m.id_field, "'"));
      if (it->is_string()) {
        ex.id = it->get<std::string>();
      } else if (it->is_number_integer() || it->is_number_unsigned()) {
        ex.id = it->dump();
      } else {
        return RowError(path, line,
                        absl::StrCat("id field '", m.id_field, "' is not a string or integer"));
      }
      if (ex.id.empty())
        return RowError(path, line, absl::StrCat("id field '", m.id_field, "' is empty"));
    }
    auto text_it = obj.find(m.text_field);
    if (text_it == obj.end())
      return RowError(path, line, absl::StrCat("missing text field '", m.text_field, "'"));
    if (!text_it->is_string())
      return RowError(path, line, absl::StrCat("text field '", m.text_field, "' is not a string"));
    ex.prompt = text_it->get<std::string>();
    if (auto r = obj.find(m.response_field); r != obj.end() && !r->is_null()) {
      if (!r->is_string()) {
        return RowError(
            path, line,
            absl::StrCat("response field '", m.response_field, "' is not a string or null"));
      }
      if (!r->get_ref<const std::string&>().empty()) ex.response = r->get<std::string>();
    }
    auto label_it = obj.find(m.label_field);
    if (label_it == obj.end())
      return RowError(path, line, absl::StrCat("missing label field '", m.label_field, "'"));
    absl::StatusOr<bool> label = ParseLabelJson(*label_it);
    if (!label.ok()) {
      return RowError(path, line,
                      absl::StrCat("field '", m.label_field, "': ", label.status().message()));
    }
    ex.unsafe = *label;
    out.push_back(std::move(ex));
    ++row_index;
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<Example>> LoadCsv(const std::string& path, std::string_view text,
                                             const FieldMapping& m) {
  SR_ASSIGN_OR_RETURN(std::vector<CsvRecord> records, ParseCsv(text, path));
  if (records.empty())
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty CSV file (no header)"));
  const CsvRecord& header = records[0];
  auto column = [&](const std::string& name) -> int {
    for (size_t c = 0; c < header.fields.size(); ++c) {
      if (header.fields[c] == name) return static_cast<int>(c);
    }
    return -1;
  };
  const int id_col = m.id_field.empty() ? -1 : column(m.id_field);
  const int text_col = column(m.text_field);
  const int response_col = column(m.response_field);
  const int label_col = column(m.label_field);
  auto missing = [&](const std::string& what, const std::string& name) {
    return RowError(path, header.line, absl::StrFormat("header has no %s column '%s'", what, name));
  };
  if (!m.id_field.empty() && id_col < 0) return missing("id", m.id_field);
  if (text_col < 0) return missing("text", m.text_field);
  if (label_col < 0) return missing("label", m.label_field);
  std::vector<Example> out;
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& rec = records[r];
    if (rec.fields.size() != header.fields.size()) {
      return RowError(path, rec.line,
                      absl::StrFormat("record has %d fields, the header has %d", rec.fields.size(),
                                      header.fields.size()));
    }
    Example ex;
    ex.file = path;
    ex.line = rec.line;
    ex.id = id_col < 0 ? absl::StrCat(FileStem(path), "-", r - 1) : rec.fields[id_col];
    if (ex.id.empty())
      return RowError(path, rec.line, absl::StrCat("empty id in column '", m.id_field, "'"));
    ex.prompt = rec.fields[text_col];
    if (response_col >= 0 && !rec.fields[response_col].empty())
      ex.response = rec.fields[response_col];
    absl::StatusOr<bool> label = ParseLabelText(rec.fields[label_col]);
    if (!label.ok()) {
      return RowError(path, rec.line,
                      absl::StrCat("column '", m.label_field, "': ", label.status().message()));
    }
    ex.unsafe = *label;
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace

absl::StatusOr<bool> ParseLabelText(std::string_view text) {
  const std::string lower = absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(absl::string_view(text.data(), text.size())));
  if (lower == "true" || lower == "1" || lower == "unsafe") return true;
  if (lower == "false" || lower == "0" || lower == "safe") return false;
  return absl::InvalidArgumentError(
      absl::StrCat("label \"", std::string(text), "\" is not one of true/false, 1/0, safe/unsafe"));
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return buffer.str();
}

absl::StatusOr<std::vector<Example>> ParseDataset(std::string_view text, const std::string& path,
                                                  DatasetFormat format,
                                                  const FieldMapping& mapping) {
  if (mapping.text_field.empty() || mapping.label_field.empty()) {
    return absl::InvalidArgumentError(
        "dataset field mapping: text and label field names must be set");
  }
  SR_ASSIGN_OR_RETURN(std::vector<Example> examples, format == DatasetFormat::kCsv
                                                         ? LoadCsv(path, text, mapping)
                                                         : LoadJsonl(path, text, mapping));
  if (examples.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no examples"));
  return examples;
}

absl::StatusOr<std::vector<Example>> LoadDatasetFile(const std::string& path,
                                                     const FieldMapping& mapping) {
  SR_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const bool is_csv = std::filesystem::path(path).extension() == ".csv";
  return ParseDataset(text, path, is_csv ? DatasetFormat::kCsv : DatasetFormat::kJsonl, mapping);
}

absl::StatusOr<std::vector<Example>> LoadDatasets(const std::vector<std::string>& paths,
                                                  const FieldMapping& mapping) {
  if (paths.empty()) return absl::InvalidArgumentError("no dataset files given");
  std::vector<Example> all;
  std::unordered_map<std::string, size_t> first_seen;  // id -> index in `all`
  for (const std::string& path : paths) {
    SR_ASSIGN_OR_RETURN(std::vector<Example> examples, LoadDatasetFile(path, mapping));
    for (Example& ex : examples) {
      auto [it, inserted] = first_seen.emplace(ex.id, all.size());
      if (!inserted) {
        const Example& first = all[it->second];
        return RowError(
            path, ex.line,
            absl::StrFormat("duplicate id '%s' (first at %s:%d)", ex.id, first.file, first.line));
      }
      all.push_back(std::move(ex));
    }
  }
  return all;
}

}  // namespace saferoute::eval
