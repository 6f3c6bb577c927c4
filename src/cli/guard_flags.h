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
  std::string precision = "auto";  // auto | fp32 (parity) | bf16 | int8
  int threads = 0;
  int batch = 8;
};

// Declares --<prefix>model, --<prefix>format, ... on `cmd` (prefix "" for
// `score`, "small-"/"large-" for `fit`). `model_required` makes the model flag required.
void AddGuardFlags(CLI::App& cmd, GuardFlags& flags, const std::string& prefix,
                   const std::string& what, bool model_required);

absl::StatusOr<LocalGuardOptions> ToLocalGuardOptions(const GuardFlags& flags);

// "int8 (oneDNN brg:avx512_core_vnni, isa avx512_core_bf16)", or "remote".
std::string DescribeCompute(const Guard& guard);

// Parameters a token passes through (all decoder-layer weights plus the LM
// head), so FLOPs per token ≈ 2 × this; what eval's cost-in-FLOPs column uses.
int64_t ComputeParamsPerToken(const ModelConfig& config);

}  // namespace saferoute::cli

#endif  // SAFEROUTE_CLI_GUARD_FLAGS_H_
