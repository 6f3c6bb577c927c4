// Labelled safety datasets: the JSONL shape of ../shared/bench
//   {"id": "...", "prompt": "...", "response": null | "...", "unsafe": true}
// plus CSV and JSONL files with other column names (FieldMapping).
//
// A row with a response is a response-classification example (the label
// judges the response); without one it is prompt classification.
// Every file is hostile input: a missing field, a label that is not a
// boolean, a duplicate id, an empty file, invalid JSON or UTF-8 is an error
// that names file:line.
#ifndef SAFEROUTE_EVAL_DATASET_H_
#define SAFEROUTE_EVAL_DATASET_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace saferoute::eval {

struct Example {
  std::string id;
  std::string prompt;
  std::optional<std::string> response;  // absent: prompt classification
  bool unsafe = false;                  // gold label
  std::string file;                     // where it came from, for messages
  int line = 0;
};

// Which field/column holds what. The defaults are the bench JSONL shape.
struct FieldMapping {
  std::string id_field = "id";  // empty: ids are "<file stem>-<row index>" (0-based)
  std::string text_field = "prompt";
  std::string response_field = "response";  // optional in the file: missing/null/"" = none
  std::string label_field = "unsafe";
};

enum class DatasetFormat { kJsonl, kCsv };

// Format by extension: ".csv" is CSV with a header row; anything else
// (".jsonl", ".json") is one JSON object per line. Blank lines are skipped.
absl::StatusOr<std::vector<Example>> LoadDatasetFile(const std::string& path,
                                                     const FieldMapping& mapping = {});

// LoadDatasetFile on a file's contents: `path` names it in errors and gives
// the stem of generated ids.
absl::StatusOr<std::vector<Example>> ParseDataset(std::string_view text, const std::string& path,
                                                  DatasetFormat format,
                                                  const FieldMapping& mapping = {});

// Loads and concatenates several files in order; ids must be unique across
// all of them.
absl::StatusOr<std::vector<Example>> LoadDatasets(const std::vector<std::string>& paths,
                                                  const FieldMapping& mapping = {});

// Parses a label written as true/false, 1/0, "true"/"false", "1"/"0" or
// "safe"/"unsafe" (strings case-insensitive). Returns unsafe == true.
absl::StatusOr<bool> ParseLabelText(std::string_view text);

// Reads a whole file; the error names the path.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_DATASET_H_
