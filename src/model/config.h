// Model hyper-parameters, parsed from a Hugging Face config.json.
#ifndef SAFEROUTE_MODEL_CONFIG_H_
#define SAFEROUTE_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace saferoute {

enum class Architecture { kLlama, kQwen3 };  // LlamaForCausalLM, Qwen3ForCausalLM

// Bounds that no real decoder-only checkpoint of interest exceeds; anything
// larger is a corrupt or hostile config (and would make size math overflow).
// Every config source (config.json, GGUF metadata) checks against these.
namespace model_limits {
inline constexpr int64_t kMaxHiddenSize = 65536;
inline constexpr int64_t kMaxLayers = 1024;
inline constexpr int64_t kMaxVocab = int64_t{1} << 22;
inline constexpr int64_t kMaxHeadDim = 1024;
inline constexpr int64_t kMaxHeads = 1024;
inline constexpr int64_t kMaxIntermediate = int64_t{1} << 20;
inline constexpr int64_t kMaxPositions = int64_t{1} << 24;
}  // namespace model_limits

struct RopeScaling {
  // kLlama3: HF's llama3 rope_scaling (factor, low/high_freq_factor,
  // original_max_position_embeddings). kFreqFactors: llama.cpp's form of the
  // same thing in GGUF files (tensor rope_freqs.weight, ggml's freq_factors):
  // one divisor per frequency, inv_freq[j] = base^(-2j/d) / freq_factors[j].
  enum class Type { kNone, kLlama3, kFreqFactors };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  std::vector<float> freq_factors;  // [head_dim / 2] when kFreqFactors
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string architecture_name;  // as in config.json, e.g. "LlamaForCausalLM"
  int64_t hidden_size = 0;        // H
  int64_t num_layers = 0;         // L
  int64_t num_heads = 0;          // nH
  int64_t num_kv_heads = 0;       // nKV
  int64_t head_dim = 0;           // d (explicit in Qwen3; hidden/heads when absent)
  int64_t intermediate_size = 0;  // I
  int64_t vocab_size = 0;         // V
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  std::string torch_dtype;  // informational
};

// Parses and validates config.json text. `source` names the file in errors.
// Unknown architectures and RoPE types are refused by name; sizes must be
// positive, bounded and consistent (heads divide, head_dim set).
// rope_scaling {"rope_type": "freq_factors", "factors": [...]} (not an HF
// type: what ModelConfigToJson writes for RopeScaling::Type::kFreqFactors)
// is read back too.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);
// The config of a config.json file, or of a .gguf file (its metadata; see
// model/gguf_model.h): the file's first bytes decide.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// Serialises to config.json text (HF keys) that ParseModelConfig reads back.
std::string ModelConfigToJson(const ModelConfig& config);

// Shapes of real guard models: "llama-guard-3-1b", "llama-guard-3-8b",
// "qwen3guard-0.6b", ... Unknown names are an error listing the known ones.
absl::StatusOr<ModelConfig> NamedModelConfig(std::string_view name);
std::vector<std::string> NamedModelConfigNames();

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_CONFIG_H_
