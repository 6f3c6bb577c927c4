// libFuzzer target (DEVELOPERS.md, "Fuzzing"): a checkpoint's config.json.
// Invariants beyond "no crash": an accepted config has the shape the engine
// relies on (positive sizes, query heads a multiple of KV heads, even head
// dim, finite positive RoPE base and norm epsilon), and written back
// (ModelConfigToJson) it reads back to the same config.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using saferoute::ModelConfig;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ModelConfig> config = saferoute::ParseModelConfig(text, "fuzz/config.json");
  if (!config.ok()) return 0;
  const ModelConfig& c = *config;
  SR_CHECK(c.hidden_size > 0 && c.num_layers > 0 && c.intermediate_size > 0 && c.vocab_size > 0 &&
           c.max_position_embeddings > 0);
  SR_CHECK(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0);
  SR_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0);
  SR_CHECK(std::isfinite(c.rope_theta) && c.rope_theta > 0);
  SR_CHECK(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0);
  const std::string written = saferoute::ModelConfigToJson(c);
  absl::StatusOr<ModelConfig> again = saferoute::ParseModelConfig(written, "round-trip");
  SR_CHECK(again.ok());
  SR_CHECK(saferoute::ModelConfigToJson(*again) == written);
  return 0;
}
