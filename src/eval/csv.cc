#include "eval/csv.h"

#include <algorithm>

#include "util/utf8.h"

namespace saferoute::eval {

bool IsBlank(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
  });
}

absl::Status ForEachJsonlRow(std::string_view text,
                             absl::FunctionRef<absl::Status(int line, std::string_view row)> fn) {
  size_t start = 0;
  int line = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view row = text.substr(start, end - start);
    start = end + 1;
    ++line;
    if (IsBlank(row)) continue;
    SR_RETURN_IF_ERROR(fn(line, row));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CsvRecord>> ParseCsv(std::string_view text, std::string_view origin) {
  if (const size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + bad, '\n'));
    return absl::InvalidArgumentError(
        absl::StrFormat("%s:%d: invalid UTF-8 (byte offset %d)", origin, line, bad));
  }
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);

  std::vector<CsvRecord> records;
  CsvRecord record;
  std::string field;
  int line = 1;
  size_t i = 0;
  const size_t n = text.size();
  bool record_has_content = false;  // distinguishes a blank line from a record of one empty field

  auto end_field = [&] {
    record.fields.push_back(std::move(field));
    field.clear();
  };
  auto end_record = [&] {
    if (record_has_content) {
      end_field();
      records.push_back(std::move(record));
    }
    record = CsvRecord{};
    field.clear();
    record_has_content = false;
  };

  while (i < n) {
    if (!record_has_content) record.line = line;
    const char c = text[i];
    if (c == '"') {
      if (!field.empty()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s:%d: quote inside an unquoted field (RFC 4180 requires the whole field quoted)",
            origin, line));
      }
      record_has_content = true;
      const int quote_line = line;
      ++i;
      bool closed = false;
      while (i < n) {
        if (text[i] == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        if (text[i] == '\n') ++line;
        field.push_back(text[i]);
        ++i;
      }
      if (!closed) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s:%d: quoted field is never closed (reached end of file)", origin, quote_line));
      }
      // After a closing quote only a separator or a record end may follow.
      if (i < n && text[i] != ',' && text[i] != '\n' &&
          !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') &&
          !(text[i] == '\r' && i + 1 == n)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s:%d: unexpected text after a closing quote", origin, line));
      }
      continue;
    }
    if (c == ',') {
      record_has_content = true;
      end_field();
      ++i;
      continue;
    }
    if (c == '\r' && (i + 1 == n || text[i + 1] == '\n')) {
      ++i;  // CR of a CRLF (or a final CR): the LF, if any, ends the record
      if (i == n) end_record();
      continue;
    }
    if (c == '\n') {
      end_record();
      ++line;
      ++i;
      continue;
    }
    record_has_content = true;
    field.push_back(c);
    ++i;
  }
  end_record();
  return records;
}

}  // namespace saferoute::eval
