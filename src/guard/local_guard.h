// A guard model run in-process by the engine: render its format's prompt
// (guard/guard_format.h), prefill (policy prefix cached), read the verdict
// logits; optionally decode the categories.
#ifndef SAFEROUTE_GUARD_LOCAL_GUARD_H_
#define SAFEROUTE_GUARD_LOCAL_GUARD_H_

#include <cstdint>
#include <memory>
#include <string>

#include "guard/guard.h"
#include "model/engine.h"

namespace saferoute {

struct LocalGuardOptions {
  std::string model_dir;       // HF directory (config.json, *.safetensors, tokenizer.json)
                               // or a .gguf file (holds its tokenizer)
  std::string format;          // a registered guard format (guard_format.h); "" = GuessFormat
  std::string tokenizer_path;  // "" = the model's (ModelTokenizerPath); tokenizer.json or .gguf
  EngineOptions engine;
  double threshold = 0.5;       // unsafe iff p_unsafe > threshold
  int max_input_tokens = 4096;  // longer inputs are an error naming the limit
  int max_decode_tokens = 12;   // greedy decode for categories
  int max_batch = 16;           // sequences per forward pass
  // Keys/values a batch's classification pass may keep for the category
  // decode of its unsafe verdicts (fp32: 64 KiB per token on the 1B shape,
  // 256 KiB on the 8B). Requests past it that turn out unsafe are prefilled
  // again for their decode, in groups within it (a request larger than it
  // alone).
  int64_t max_kept_kv_bytes = int64_t{1} << 30;
};

absl::StatusOr<std::unique_ptr<Guard>> OpenLocalGuard(const LocalGuardOptions& options);

}  // namespace saferoute

#endif  // SAFEROUTE_GUARD_LOCAL_GUARD_H_
