// A guard model run in-process by the engine: render its format's prompt
// (guard/guard_format.h), prefill (policy prefix cached), read the verdict
// logits; optionally decode the categories.
#ifndef SAFEROUTE_GUARD_LOCAL_GUARD_H_
#define SAFEROUTE_GUARD_LOCAL_GUARD_H_

#include <memory>
#include <string>

#include "guard/guard.h"
#include "model/engine.h"

namespace saferoute {

struct LocalGuardOptions {
  std::string model_dir;       // HF directory: config.json, *.safetensors, tokenizer.json
  std::string format;          // a registered guard format (guard_format.h); "" = GuessFormat
  std::string tokenizer_path;  // "" = <model_dir>/tokenizer.json
  EngineOptions engine;
  double threshold = 0.5;       // unsafe iff p_unsafe > threshold
  int max_input_tokens = 4096;  // longer inputs are an error naming the limit
  int max_decode_tokens = 12;   // greedy decode for categories
  int max_batch = 16;           // sequences per forward pass
};

absl::StatusOr<std::unique_ptr<Guard>> OpenLocalGuard(const LocalGuardOptions& options);

}  // namespace saferoute

#endif  // SAFEROUTE_GUARD_LOCAL_GUARD_H_
