#include "model/arch_tensors.h"

#include <charconv>
#include <span>

#include "util/status.h"

namespace saferoute {
namespace {

using ShapeFn = std::vector<int64_t> (*)(const ModelConfig&);

struct LayerTensor {
  const char* suffix;       // after "model.layers.<i>."
  const char* gguf_suffix;  // after "blk.<i>."
  TensorView LayerWeights::*slot;
  ShapeFn shape;
  bool is_norm;
};

// Linear layers are stored [out, in] (y = x W^T).
constexpr LayerTensor kLlamaLayerTensors[] = {
    {"input_layernorm.weight", "attn_norm.weight", &LayerWeights::attn_norm,
     [](const ModelConfig& c) { return std::vector<int64_t>{c.hidden_size}; }, true},
    {"self_attn.q_proj.weight", "attn_q.weight", &LayerWeights::wq,
     [](const ModelConfig& c) {
       return std::vector<int64_t>{c.num_heads * c.head_dim, c.hidden_size};
     },
     false},
    {"self_attn.k_proj.weight", "attn_k.weight", &LayerWeights::wk,
     [](const ModelConfig& c) {
       return std::vector<int64_t>{c.num_kv_heads * c.head_dim, c.hidden_size};
     },
     false},
    {"self_attn.v_proj.weight", "attn_v.weight", &LayerWeights::wv,
     [](const ModelConfig& c) {
       return std::vector<int64_t>{c.num_kv_heads * c.head_dim, c.hidden_size};
     },
     false},
    {"self_attn.o_proj.weight", "attn_output.weight", &LayerWeights::wo,
     [](const ModelConfig& c) {
       return std::vector<int64_t>{c.hidden_size, c.num_heads * c.head_dim};
     },
     false},
    {"post_attention_layernorm.weight", "ffn_norm.weight", &LayerWeights::ffn_norm,
     [](const ModelConfig& c) { return std::vector<int64_t>{c.hidden_size}; }, true},
    {"mlp.gate_proj.weight", "ffn_gate.weight", &LayerWeights::w_gate,
     [](const ModelConfig& c) {
       return std::vector<int64_t>{c.intermediate_size, c.hidden_size};
     },
     false},
    {"mlp.up_proj.weight", "ffn_up.weight", &LayerWeights::w_up,
     [](const ModelConfig& c) {
       return std::vector<int64_t>{c.intermediate_size, c.hidden_size};
     },
     false},
    {"mlp.down_proj.weight", "ffn_down.weight", &LayerWeights::w_down,
     [](const ModelConfig& c) {
       return std::vector<int64_t>{c.hidden_size, c.intermediate_size};
     },
     false},
};

// Qwen3 = Llama + per-head RMSNorm on q and k (over head_dim) before RoPE.
constexpr LayerTensor kQwen3ExtraLayerTensors[] = {
    {"self_attn.q_norm.weight", "attn_q_norm.weight", &LayerWeights::q_norm,
     [](const ModelConfig& c) { return std::vector<int64_t>{c.head_dim}; }, true},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", &LayerWeights::k_norm,
     [](const ModelConfig& c) { return std::vector<int64_t>{c.head_dim}; }, true},
};

void AddLayerTensors(const ModelConfig& config, int layer, std::span<const LayerTensor> table,
                     std::vector<TensorSpec>* specs) {
  for (const LayerTensor& t : table) {
    specs->push_back({.name = absl::StrCat("model.layers.", layer, ".", t.suffix),
                      .gguf_name = absl::StrCat("blk.", layer, ".", t.gguf_suffix),
                      .shape = t.shape(config),
                      .is_norm = t.is_norm,
                      .layer = layer,
                      .layer_slot = t.slot});
  }
}

}  // namespace

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config) {
  std::vector<TensorSpec> specs;
  const int64_t V = config.vocab_size, H = config.hidden_size;
  specs.push_back({.name = "model.embed_tokens.weight",
                   .gguf_name = "token_embd.weight",
                   .shape = {V, H},
                   .global_slot = &ModelWeights::token_embd});
  for (int layer = 0; layer < config.num_layers; ++layer) {
    AddLayerTensors(config, layer, kLlamaLayerTensors, &specs);
    if (config.architecture == Architecture::kQwen3) {
      AddLayerTensors(config, layer, kQwen3ExtraLayerTensors, &specs);
    }
  }
  specs.push_back({.name = "model.norm.weight",
                   .gguf_name = "output_norm.weight",
                   .shape = {H},
                   .is_norm = true,
                   .global_slot = &ModelWeights::output_norm});
  if (!config.tie_word_embeddings) {
    specs.push_back({.name = "lm_head.weight",
                     .gguf_name = "output.weight",
                     .shape = {V, H},
                     .global_slot = &ModelWeights::lm_head});
  }
  return specs;
}

TensorView& SlotOf(ModelWeights& weights, const TensorSpec& spec) {
  if (spec.layer < 0) return weights.*spec.global_slot;
  SR_CHECK(static_cast<size_t>(spec.layer) < weights.layers.size());
  return weights.layers[spec.layer].*spec.layer_slot;
}

const TensorView& SlotOf(const ModelWeights& weights, const TensorSpec& spec) {
  return SlotOf(const_cast<ModelWeights&>(weights), spec);
}

bool IsHarmlessExtraTensor(std::string_view name) { return name.ends_with(".rotary_emb.inv_freq"); }

int64_t LayerIndexOf(std::string_view name) {
  constexpr std::string_view kHfPrefix = "model.layers.", kGgufPrefix = "blk.";
  if (name.starts_with(kHfPrefix)) {
    name.remove_prefix(kHfPrefix.size());
  } else if (name.starts_with(kGgufPrefix)) {
    name.remove_prefix(kGgufPrefix.size());
  } else {
    return -1;
  }
  int64_t index = -1;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), index);
  if (ec != std::errc() || end == name.data() || end == name.data() + name.size() || *end != '.') {
    return -1;
  }
  return index;
}

}  // namespace saferoute
