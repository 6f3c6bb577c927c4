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
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cpu/dispatch.h"
#include "model/weights.h"
#include "util/status.h"

namespace saferoute {

// What the user asks for: auto | fp32 | bf16 | int8 (cpu/dispatch.h). The
// engine runs it on the GEMM path the CPU offers (Engine::path()):
//   fp32: fp32 activations and accumulation, weights widened per panel: the
//         parity path (parity_test.cc kFp32*Tol against HF fp32).
//   bf16: GEMM inputs, q/k/v, attention probabilities/outputs and the final
//         norm rounded to bf16, weights in bf16, fp32 accumulation; the
//         residual stream stays fp32. bf16-native (oneDNN bf16 matmul) where
//         the CPU has bf16 units, else bf16-widened (the same products in fp32
//         sgemm: bf16*bf16 is exact in fp32). Error vs HF fp32: kBf16*Tol;
//         native vs widened: kNativeBf16*Tol (accumulation order only).
//   int8: weights and GEMM inputs int8 in blocks of 32 along K, each with a
//         scale (weights: f16 times one power of two per matrix, as Q8_0's
//         f16, a Q8_0 GGUF weight used as stored; activations: f32), exact
//         s32 block sums, everything else fp32 (cpu/q8_gemm.h); the LM head's
//         full-vocabulary logits on bf16 (cpu::HeadPath). Error: kInt8*Tol.
//   int8-a16: the same int8 weights; GEMM inputs as 16-bit integers in
//         blocks of 32 (an activation's step 1/16383 of its block's largest),
//         so only the weights' rounding is left; the LM head too. Q/K/V
//         stay bf16 (bf16 weights and inputs, cpu::AttentionInputPath)
//         unless the checkpoint holds them quantized, then they are used as
//         stored. Error: kInt8A16*Tol.
//   auto: the fastest path documented as guard-safe on this CPU (ChoosePath).
using Precision = cpu::Precision;

struct EngineOptions {
  Precision precision = Precision::kAuto;
  int num_threads = 0;        // 0: all cores
  int64_t max_tokens = 8192;  // longest sequence (prefix + tokens) accepted
  // Tests and benchmarks: run this GEMM path (it must compute `precision`'s
  // numbers and be available here), e.g. bf16-widened on a CPU with bf16 units.
  std::optional<cpu::GemmPath> force_path;
};

// Keys/values of a token prefix shared by many requests (a guard's policy
// text), computed once. Opaque; made by Engine::ComputePrefix.
class PrefixCache;

// Keys/values of one sequence after its prefix, kept by a prefill for a
// greedy decode to continue (SequenceRequest::decode_tokens). Opaque.
class SequenceCache;

// Which last-position logits to return.
enum class LogitsMode { kNone, kSelected, kFull };

struct SequenceRequest {
  std::span<const int32_t> tokens;            // tokens after the prefix (>= 1)
  std::shared_ptr<const PrefixCache> prefix;  // optional; positions continue after it
  LogitsMode logits = LogitsMode::kSelected;
  std::span<const int32_t> logit_ids;  // for kSelected
  // With kSelected: also the log-sum-exp of the full-vocabulary logits at the
  // last position (what a full softmax probability of a selected id needs:
  // p = exp(logit - log_sum_exp)), without returning the [V] logits. Costs one
  // pass over the LM head for all such requests of the call together.
  bool log_sum_exp = false;
  // > 0: keep this sequence's keys/values in SequenceResult::cache for
  // ContinueGreedyDecode to generate up to this many tokens without a second
  // prefill. Only the sequence's own positions are kept; the prefix stays
  // shared, by reference. The first token is the argmax of the
  // full-vocabulary logits at the last position (from the log-sum-exp pass).
  int decode_tokens = 0;
  bool all_hidden = false;  // return the final hidden state of every position, not just the last
  bool layer_taps = false;  // return the residual stream after every layer (all positions);
                            // layers[k] = HF hidden_states[k+1] for k < L-1; layers[L-1]
                            // is the pre-norm output of the last layer (HF exposes only
                            // its norm, which is `hidden`)
};

struct SequenceResult {
  std::vector<float> last_hidden;  // [H] final norm output at the last position (router feature)
  std::vector<float> logits;       // [n_ids] or [V] at the last position
  float log_sum_exp = 0;           // if requested: log(sum_i exp(logit_i)) over the vocabulary
  std::vector<float> hidden;       // [T, H] if all_hidden (tokens after the prefix)
  std::vector<std::vector<float>> layers;  // [L][T*H] if layer_taps
  // With decode_tokens: the kept keys/values (L * n_kv_heads * head_dim * 2
  // floats per position). Reset it to release them when no decode follows.
  std::shared_ptr<SequenceCache> cache;
};

// The path an engine runs on, for reports and metrics labels.
struct EngineCompute {
  std::string path;  // "fp32", "bf16-widened", "bf16-native", "int8", "int8-a16"
  std::string impl;  // "oneDNN brg:avx512_core_bf16", "oneDNN sgemm on widened weight panels"
  std::string isa;   // oneDNN's effective ISA, e.g. "avx512_core_bf16"
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
  // A prefill with decode_tokens, then ContinueGreedyDecode.
  absl::StatusOr<std::vector<int32_t>> GreedyDecode(std::span<const int32_t> tokens,
                                                    std::shared_ptr<const PrefixCache> prefix,
                                                    int max_new_tokens,
                                                    std::span<const int32_t> stop_ids);

  // Greedy decode of many sequences at once, each continuing the prefill
  // that kept its cache (SequenceRequest::decode_tokens). Result i belongs to
  // caches[i]: the argmax at its prompt's last position (no forward pass
  // needed), then one token per step, each step one forward pass over every
  // sequence still running (ragged lengths). A sequence stops after the first
  // id in `stop_ids` (included) or at its decode_tokens. Batched results
  // equal one-at-a-time results, and each equals GreedyDecode of its prompt.
  // A cache is decoded once; errors name its index ("sequence i").
  absl::StatusOr<std::vector<std::vector<int32_t>>> ContinueGreedyDecode(
      std::span<const std::shared_ptr<SequenceCache>> caches, std::span<const int32_t> stop_ids);
  // Forward passes ContinueGreedyDecode has run (steps, not sequences).
  int64_t decode_steps() const;

  const Model& model() const;
  const EngineOptions& options() const;
  // The GEMM path this engine runs (options().precision resolved on this CPU)
  // and a one-line description of it with the oneDNN implementation and ISA.
  cpu::GemmPath path() const;
  std::string path_description() const;
  EngineCompute compute() const;
  // Bytes of weights this engine holds itself (packed copies; 0 on the
  // widened paths, which read the checkpoint's memory).
  size_t packed_weight_bytes() const;
  // Bytes a kept cache (SequenceRequest::decode_tokens) takes per position.
  int64_t kept_kv_bytes_per_position() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_ENGINE_H_
