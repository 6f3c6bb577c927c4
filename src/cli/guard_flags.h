// Flags that open an in-process guard, shared by `score` and `fit`.
#ifndef SAFEROUTE_CLI_GUARD_FLAGS_H_
#define SAFEROUTE_CLI_GUARD_FLAGS_H_

#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "guard/local_guard.h"
#include "model/config.h"

namespace saferoute::cli {

struct GuardFlags {
  std::string model_dir;
  std::string format;              // "" = guessed from the model's shape
  std::string precision = "bf16";  // fp32 (parity) | bf16 (fast)
  int threads = 0;
  int batch = 8;
};

// Declares --<prefix>model, --<prefix>format, ... on `cmd` (prefix "" for
// `score`, "small-"/"large-" for `fit`). `model_required` makes the model flag required.
void AddGuardFlags(CLI::App& cmd, GuardFlags& flags, const std::string& prefix,
                   const std::string& what, bool model_required);

// "fp32" (parity path) or "bf16" (fast path); anything else is an error.
absl::StatusOr<Precision> ParsePrecision(const std::string& name);

absl::StatusOr<LocalGuardOptions> ToLocalGuardOptions(const GuardFlags& flags);

// Parameters a token passes through (all decoder-layer weights plus the LM
// head), so FLOPs per token ≈ 2 × this; what eval's cost-in-FLOPs column uses.
int64_t ComputeParamsPerToken(const ModelConfig& config);

}  // namespace saferoute::cli

#endif  // SAFEROUTE_CLI_GUARD_FLAGS_H_
