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

struct RopeScaling {
  enum class Type { kNone, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
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
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// Serialises to config.json text (HF keys) that ParseModelConfig reads back.
std::string ModelConfigToJson(const ModelConfig& config);

// Shapes of real guard models: "llama-guard-3-1b", "llama-guard-3-8b",
// "qwen3guard-0.6b", ... Unknown names are an error listing the known ones.
absl::StatusOr<ModelConfig> NamedModelConfig(std::string_view name);
std::vector<std::string> NamedModelConfigNames();

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_CONFIG_H_
