// A small RFC 4180 CSV reader. None of our dependencies ships a CSV parser,
// so this one is written here and tested on its own (csv_test.cc).
//
// Accepted: comma separators; records ended by LF or CRLF; fields quoted with
// '"', where '""' inside quotes is a literal quote and quoted fields may hold
// commas and line breaks; an optional UTF-8 byte-order mark; a missing final
// line break. Rejected, with the line number: an unterminated quote, text
// after a closing quote, a bare quote inside an unquoted field, invalid UTF-8.
#ifndef SAFEROUTE_EVAL_CSV_H_
#define SAFEROUTE_EVAL_CSV_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "util/status.h"

namespace saferoute::eval {

struct CsvRecord {
  std::vector<std::string> fields;
  int line = 0;  // 1-based line on which the record starts
};

// Parses `text` (the whole file). `origin` names the file in error messages.
// Blank lines (no characters at all) are skipped.
absl::StatusOr<std::vector<CsvRecord>> ParseCsv(std::string_view text, std::string_view origin);

// True iff `text` holds only ASCII whitespace (blank lines in JSONL files).
bool IsBlank(std::string_view text);

// Calls fn(line, row) for every non-blank line of JSONL text: `line` is
// 1-based and counts blank lines (for error messages), `row` excludes the
// '\n'; a last line without '\n' counts. Returns fn's first error.
absl::Status ForEachJsonlRow(std::string_view text,
                             absl::FunctionRef<absl::Status(int line, std::string_view row)> fn);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_CSV_H_
