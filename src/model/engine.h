// The inference engine: batched prefill, prefix cache, short greedy decode.
//
// Contract between model/ and its users (guard/, cli inspect/bench). The CPU
// implementation is in model/engine.cc; a CUDA backend later implements the
// same class behind EngineOptions::backend.
//
// Thread safety: an Engine runs one call at a time (calls are serialised
// internally with a mutex); use several Engines over one Model for
// concurrency. A PrefixCache is immutable once made and may be shared.
#ifndef SAFEROUTE_MODEL_ENGINE_H_
#define SAFEROUTE_MODEL_ENGINE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/weights.h"
#include "util/status.h"

namespace saferoute {

enum class Precision {
  kFp32,  // fp32 activations and accumulation (bf16 weights widened per tile): parity path
  kBf16,  // bf16 activations into bf16 GEMMs with fp32 accumulation: fast path.
          // GEMM inputs, q/k/v, attention probabilities/outputs and the final
          // norm are rounded to bf16; the residual stream stays fp32. On CPUs
          // without a oneDNN bf16 matmul (AVX2) the GEMM runs as fp32 on the
          // bf16-rounded inputs: the same numbers (bf16*bf16 is exact in fp32).
          // Error vs fp32 HF on the fixtures: parity_test.cc kBf16*Tol.
};

struct EngineOptions {
  Precision precision = Precision::kBf16;
  int num_threads = 0;        // 0: all cores
  int64_t max_tokens = 8192;  // longest sequence (prefix + tokens) accepted
};

// Keys/values of a token prefix shared by many requests (a guard's policy
// text), computed once. Opaque; made by Engine::ComputePrefix.
class PrefixCache;

// Which last-position logits to return.
enum class LogitsMode { kNone, kSelected, kFull };

struct SequenceRequest {
  std::span<const int32_t> tokens;            // tokens after the prefix (>= 1)
  std::shared_ptr<const PrefixCache> prefix;  // optional; positions continue after it
  LogitsMode logits = LogitsMode::kSelected;
  std::span<const int32_t> logit_ids;  // for kSelected
  bool all_hidden = false;  // return the final hidden state of every position, not just the last
  bool layer_taps = false;  // return the residual stream after every layer (all positions);
                            // layers[k] = HF hidden_states[k+1] for k < L-1; layers[L-1]
                            // is the pre-norm output of the last layer (HF exposes only
                            // its norm, which is `hidden`)
};

struct SequenceResult {
  std::vector<float> last_hidden;  // [H] final norm output at the last position (router feature)
  std::vector<float> logits;       // [n_ids] or [V] at the last position
  std::vector<float> hidden;       // [T, H] if all_hidden (tokens after the prefix)
  std::vector<std::vector<float>> layers;  // [L][T*H] if layer_taps
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::shared_ptr<const Model> model,
                                                        const EngineOptions& options);
  ~Engine();

  // Batched prefill of sequences of different lengths. Result i belongs to
  // request i; batched results equal one-at-a-time results.
  absl::StatusOr<std::vector<SequenceResult>> Prefill(std::span<const SequenceRequest> requests);

  // Computes the KV cache of `tokens` once for reuse as a prefix. The cache is
  // tied to this engine's Model and precision; requests with a prefix from
  // another model or precision are refused (InvalidArgument).
  absl::StatusOr<std::shared_ptr<const PrefixCache>> ComputePrefix(std::span<const int32_t> tokens);

  // Greedy decode: feeds `tokens` (after the optional prefix) and generates up
  // to `max_new_tokens`, stopping after the first id in `stop_ids` (included).
  absl::StatusOr<std::vector<int32_t>> GreedyDecode(std::span<const int32_t> tokens,
                                                    std::shared_ptr<const PrefixCache> prefix,
                                                    int max_new_tokens,
                                                    std::span<const int32_t> stop_ids);

  const Model& model() const;
  const EngineOptions& options() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_ENGINE_H_
