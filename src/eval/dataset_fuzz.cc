// libFuzzer target (DEVELOPERS.md, "Fuzzing"): dataset files (JSONL and CSV)
// as `eval`, `score`, `fit` and `augment` read them.
// Input: one selector byte (bit 0: CSV, else JSONL; bit 1: a custom field
// mapping with generated ids, else the bench shape), then the file's text.
// Invariants beyond "no crash": every example has a non-empty id, UTF-8
// text, a response that is absent or non-empty, and a line inside the file,
// lines increasing; and the examples written back as JSONL and as CSV (in the
// same mapping) read back to the same ids, texts, responses and labels.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "eval/dataset.h"
#include "nlohmann/json.hpp"
#include "util/utf8.h"

namespace saferoute::eval {
namespace {

constexpr char kPath[] = "fuzz/data.jsonl";  // the stem ("data") makes generated ids

std::string Quote(std::string_view field) {
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string WriteJsonl(const std::vector<Example>& examples, const FieldMapping& m) {
  std::string out;
  for (const Example& ex : examples) {
    nlohmann::json row = {{m.text_field, ex.prompt}, {m.label_field, ex.unsafe}};
    if (!m.id_field.empty()) row[m.id_field] = ex.id;
    row[m.response_field] = ex.response ? nlohmann::json(*ex.response) : nlohmann::json(nullptr);
    out += row.dump() + "\n";
  }
  return out;
}

std::string WriteCsv(const std::vector<Example>& examples, const FieldMapping& m) {
  std::string out;
  if (!m.id_field.empty()) out += Quote(m.id_field) + ",";
  out += Quote(m.text_field) + "," + Quote(m.response_field) + "," + Quote(m.label_field) + "\n";
  for (const Example& ex : examples) {
    if (!m.id_field.empty()) out += Quote(ex.id) + ",";
    out += Quote(ex.prompt) + "," + Quote(ex.response.value_or("")) + "," +
           (ex.unsafe ? "unsafe" : "safe") + "\n";
  }
  return out;
}

void CheckSame(const std::vector<Example>& a, const std::vector<Example>& b) {
  SR_CHECK(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SR_CHECK(a[i].id == b[i].id && a[i].prompt == b[i].prompt && a[i].response == b[i].response &&
             a[i].unsafe == b[i].unsafe);
  }
}

void Check(std::string_view text, DatasetFormat format, const FieldMapping& mapping) {
  absl::StatusOr<std::vector<Example>> examples = ParseDataset(text, kPath, format, mapping);
  if (!examples.ok()) return;
  SR_CHECK(!examples->empty());
  const int lines = 1 + static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  int previous_line = 0;
  for (const Example& ex : *examples) {
    SR_CHECK(!ex.id.empty() && FindInvalidUtf8(ex.id) == std::string_view::npos);
    SR_CHECK(FindInvalidUtf8(ex.prompt) == std::string_view::npos);
    SR_CHECK(!ex.response ||
             (!ex.response->empty() && FindInvalidUtf8(*ex.response) == std::string_view::npos));
    SR_CHECK(ex.file == kPath && ex.line > previous_line && ex.line <= lines);
    previous_line = ex.line;
  }
  for (DatasetFormat written : {DatasetFormat::kJsonl, DatasetFormat::kCsv}) {
    const std::string again_text = written == DatasetFormat::kCsv ? WriteCsv(*examples, mapping)
                                                                  : WriteJsonl(*examples, mapping);
    absl::StatusOr<std::vector<Example>> again = ParseDataset(again_text, kPath, written, mapping);
    SR_CHECK(again.ok());
    CheckSame(*examples, *again);
  }
}

}  // namespace
}  // namespace saferoute::eval

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using saferoute::eval::DatasetFormat;
  using saferoute::eval::FieldMapping;
  if (size == 0) return 0;
  const DatasetFormat format = (data[0] & 1) ? DatasetFormat::kCsv : DatasetFormat::kJsonl;
  const FieldMapping custom{
      .id_field = "", .text_field = "text", .response_field = "answer", .label_field = "label"};
  const FieldMapping mapping = (data[0] & 2) ? custom : FieldMapping{};
  saferoute::eval::Check(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1),
                         format, mapping);
  return 0;
}
