// Models from GGUF files (llama.cpp's format): the config from the metadata,
// the tensors by their GGUF names (arch_tensors.h), memory-mapped.
//
// Metadata read (ARCH = general.architecture, "llama" or "qwen3"):
//   general.architecture                          required
//   ARCH.context_length, ARCH.embedding_length,
//   ARCH.block_count, ARCH.feed_forward_length,
//   ARCH.attention.head_count                     required (one value, not per-layer arrays)
//   ARCH.attention.head_count_kv                  default head_count
//   ARCH.attention.key_length / value_length      default embedding_length / head_count; equal
//   ARCH.rope.dimension_count                     default key_length; must equal it
//   ARCH.rope.freq_base                           default 10000 (llama.cpp's default)
//   ARCH.attention.layer_norm_rms_epsilon         required
//   ARCH.vocab_size                               optional; must equal token_embd's rows
//   ARCH.rope.scaling.type / .factor, ARCH.rope.scale_linear, ARCH.expert_count
//                                                 only their no-op values are accepted
//   tokenizer.ggml.bos_token_id, eos_token_id, eot_token_id, eom_token_id   optional
// Tensors: token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
// ffn_norm, ffn_gate, ffn_up, ffn_down} (+ attn_q_norm, attn_k_norm for
// qwen3), output_norm, output (absent = tied to token_embd, as llama.cpp
// does), rope_freqs (Llama 3 RoPE scaling: per-frequency divisors, see
// RopeScaling::Type::kFreqFactors).
//
// Q/K rows of `llama` GGUFs: llama.cpp's converter (convert_hf_to_gguf.py,
// LlamaModel.permute) reorders the rows of every head of attn_q/attn_k from
// HF's rotate-half layout [x_0..x_{d/2-1}, x_{d/2}..x_{d-1}] to ggml's
// interleaved pairs [x_0, x_{d/2}, x_1, x_{d/2+1}, ...]. LoadGgufModel keeps
// the file's order (ModelWeights::rope_pairing kAdjacent) and the forward
// pass rotates adjacent rows, as ggml does: q.k is the same, and no copy of
// attn_q / attn_k stays in memory (0.7 GB on an 8B Q8_0). Writers and the
// fingerprint read them in HF order (CopyInHfRowOrder). qwen3 GGUFs are not
// permuted (ggml runs them with NEOX rope).
#ifndef SAFEROUTE_MODEL_GGUF_MODEL_H_
#define SAFEROUTE_MODEL_GGUF_MODEL_H_

#include <memory>
#include <string>

#include "io/gguf.h"
#include "model/arch_tensors.h"
#include "model/weights.h"

namespace saferoute {

// The config of a GGUF model (metadata + the tensors that decide tying,
// vocabulary size and RoPE factors). Errors name the file and the key.
absl::StatusOr<ModelConfig> GgufModelConfig(const GgufFile& file);

// Loads a .gguf model: see the header comment. Every error names the file
// and the key or tensor.
absl::StatusOr<std::shared_ptr<const Model>> LoadGgufModel(const std::string& path);

// Writes `model` as a GGUF file the way llama.cpp's converter lays out a
// Hugging Face checkpoint (names, metadata keys, llama Q/K rows permuted, no
// output tensor when tied), tensors in their own dtypes. Tests and
// `make-model --gguf` use it; LoadGgufModel reads it back.
absl::Status WriteModelGguf(const Model& model, const std::string& path);

// Row `r` of a permuted (GGUF) attn_q/attn_k matrix holds HF row
// GgufToHfRow(r): within each head of `head_dim` rows, GGUF row 2j + s is
// HF row s * head_dim / 2 + j. HfToGgufRow is its inverse.
int64_t GgufToHfRow(int64_t row, int64_t head_dim);
int64_t HfToGgufRow(int64_t row, int64_t head_dim);

// A llama GGUF's wq / wk stay in the file's permuted row order
// (ModelWeights::rope_pairing kAdjacent). Whether `spec` is such a tensor in
// `weights`:
bool RowsInGgufQkOrder(const ModelWeights& weights, const TensorSpec& spec);
// Bytes [offset, offset + n) of `t` as they would be with its rows in HF
// order, `t` holding rows in GGUF Q/K order (heads of `head_dim` rows), into
// `out`. Writers and the fingerprint read Q/K through this, so a model's HF
// files and identity do not depend on the order it was loaded in.
void CopyInHfRowOrder(const TensorView& t, int64_t head_dim, uint64_t offset, uint64_t n,
                      std::byte* out);

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_GGUF_MODEL_H_
