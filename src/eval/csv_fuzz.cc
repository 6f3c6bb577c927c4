// libFuzzer target (DEVELOPERS.md, "Fuzzing"): the CSV reader and the JSONL
// line splitter under every dataset, score and label file.
// Invariants beyond "no crash":
//  - text that is not UTF-8 (util/utf8.h) is refused, naming the line of
//    the first bad byte;
//  - whatever ParseCsv accepts survives a round trip: the records written
//    back with every field quoted parse to the same fields;
//  - record lines increase and lie inside the text;
//  - ForEachJsonlRow hands over exactly the non-blank lines, in order.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "eval/csv.h"
#include "util/utf8.h"

namespace saferoute::eval {
namespace {

std::string QuoteAll(const std::vector<CsvRecord>& records) {
  std::string out;
  for (const CsvRecord& record : records) {
    for (size_t f = 0; f < record.fields.size(); ++f) {
      if (f > 0) out += ',';
      out += '"';
      for (char c : record.fields[f]) {
        if (c == '"') out += '"';
        out += c;
      }
      out += '"';
    }
    out += "\r\n";
  }
  return out;
}

void CheckCsv(std::string_view text) {
  const size_t bad = FindInvalidUtf8(text);
  absl::StatusOr<std::vector<CsvRecord>> records = ParseCsv(text, "fuzz.csv");
  if (bad != std::string_view::npos) {
    SR_CHECK(!records.ok());
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + bad, '\n'));
    SR_CHECK(absl::StrContains(records.status().message(),
                               absl::StrCat("fuzz.csv:", line, ": invalid UTF-8")));
  }
  if (!records.ok()) return;
  const int lines = 1 + static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  int previous_line = 0;
  for (const CsvRecord& record : *records) {
    SR_CHECK(!record.fields.empty());
    SR_CHECK(record.line > previous_line && record.line <= lines);
    previous_line = record.line;
  }
  absl::StatusOr<std::vector<CsvRecord>> again = ParseCsv(QuoteAll(*records), "round-trip.csv");
  SR_CHECK(again.ok());
  SR_CHECK(again->size() == records->size());
  for (size_t r = 0; r < records->size(); ++r) SR_CHECK((*again)[r].fields == (*records)[r].fields);
}

void CheckJsonlRows(std::string_view text) {
  // The reference split (absl): every '\n'-separated line, numbered from 1.
  std::vector<std::string_view> lines;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n'))
    lines.emplace_back(line.data(), line.size());
  size_t next = 0;  // index into `lines` of the first line not yet accounted for
  const absl::Status status = ForEachJsonlRow(text, [&](int line, std::string_view row) {
    SR_CHECK(line >= 1 && static_cast<size_t>(line) <= lines.size());
    const size_t index = static_cast<size_t>(line) - 1;
    SR_CHECK(index >= next);
    for (size_t skipped = next; skipped < index; ++skipped) SR_CHECK(IsBlank(lines[skipped]));
    SR_CHECK(row == lines[index] && !IsBlank(row));
    next = index + 1;
    return absl::OkStatus();
  });
  SR_CHECK(status.ok());
  for (size_t skipped = next; skipped < lines.size(); ++skipped) SR_CHECK(IsBlank(lines[skipped]));
}

}  // namespace
}  // namespace saferoute::eval

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  saferoute::eval::CheckCsv(text);
  saferoute::eval::CheckJsonlRows(text);
  return 0;
}
