// The dataset field-mapping flags shared by every command that reads datasets
// (score, label, eval, augment): one declaration, one help text.
#ifndef SAFEROUTE_CLI_DATASET_FLAGS_H_
#define SAFEROUTE_CLI_DATASET_FLAGS_H_

#include "CLI/CLI.hpp"
#include "eval/dataset.h"

namespace saferoute::cli {

inline void AddFieldMappingFlags(CLI::App& cmd, eval::FieldMapping& m) {
  cmd.add_option("--id-field", m.id_field, "id field/column (empty: <file stem>-<row>)")
      ->capture_default_str();
  cmd.add_option("--text-field", m.text_field, "prompt field/column")->capture_default_str();
  cmd.add_option("--response-field", m.response_field,
                 "response field/column (missing/null/empty: none)")
      ->capture_default_str();
  cmd.add_option("--label-field", m.label_field, "gold label field/column (bool, 0/1, safe/unsafe)")
      ->capture_default_str();
}

}  // namespace saferoute::cli

#endif  // SAFEROUTE_CLI_DATASET_FLAGS_H_
