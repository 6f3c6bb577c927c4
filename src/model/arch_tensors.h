// The tensor-name tables: for each architecture, which tensors a checkpoint
// holds (their Hugging Face and GGUF names), their shapes as a function of the
// config, and the ModelWeights slot each one fills. Loading (safetensors and
// GGUF), random models and writing all go through this one table, so they
// cannot disagree.
#ifndef SAFEROUTE_MODEL_ARCH_TENSORS_H_
#define SAFEROUTE_MODEL_ARCH_TENSORS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace saferoute {

struct TensorSpec {
  std::string name;            // HF name, e.g. "model.layers.3.mlp.up_proj.weight"
  std::string gguf_name;       // GGUF name, e.g. "blk.3.ffn_up.weight"
  std::vector<int64_t> shape;  // exact shape the config implies
  bool is_norm = false;        // 1-D RMSNorm gain (random models init it near 1)
  int layer = -1;              // decoder layer, or -1 for a global tensor
  TensorView ModelWeights::*global_slot = nullptr;  // when layer == -1
  TensorView LayerWeights::*layer_slot = nullptr;   // when layer >= 0
};

// Every tensor the config requires, in a fixed order (embeddings, layers in
// order, final norm, lm_head). lm_head is listed only when untied; a tied
// model's lm_head slot is the embedding (see LoadModel).
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

// The slot a spec fills. `weights.layers` must have config.num_layers entries.
TensorView& SlotOf(ModelWeights& weights, const TensorSpec& spec);
const TensorView& SlotOf(const ModelWeights& weights, const TensorSpec& spec);

// Tensors some writers add that carry no weights (recomputable RoPE buffers):
// "*.rotary_emb.inv_freq". Loading skips them.
bool IsHarmlessExtraTensor(std::string_view name);

// If `name` is "model.layers.<i>.<...>" (HF) or "blk.<i>.<...>" (GGUF),
// returns i (>= 0), else -1.
int64_t LayerIndexOf(std::string_view name);

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_ARCH_TENSORS_H_
