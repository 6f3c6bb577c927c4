// A loaded model: config + typed weight views + the storage behind them.
#ifndef SAFEROUTE_MODEL_WEIGHTS_H_
#define SAFEROUTE_MODEL_WEIGHTS_H_

#include <memory>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "io/tensor.h"
#include "model/config.h"
#include "util/status.h"

namespace saferoute {

// Weights of one decoder layer. Shapes as in HF (Linear stores [out, in]):
//   attn_norm [H]; wq [nH*d, H]; wk, wv [nKV*d, H]; wo [H, nH*d];
//   q_norm, k_norm [d] (Qwen3 only, else empty); ffn_norm [H];
//   w_gate, w_up [I, H]; w_down [H, I].
struct LayerWeights {
  TensorView attn_norm, wq, wk, wv, wo, q_norm, k_norm, ffn_norm, w_gate, w_up, w_down;
};

struct ModelWeights {
  TensorView token_embd;  // [V, H]
  std::vector<LayerWeights> layers;
  TensorView output_norm;  // [H]
  TensorView lm_head;      // [V, H]; same data as token_embd when tied
  // How wq / wk rows pair up within a head for RoPE: kHalves is HF's order;
  // llama GGUFs keep the file's permuted order (kAdjacent), which RoPE then
  // rotates as ggml does, instead of an un-permuted copy of Q/K in memory.
  cpu::RopePairing rope_pairing = cpu::RopePairing::kHalves;
};

// Owns whatever keeps the tensor data alive (memory-mapped shards or owned
// buffers). Immutable after construction; safe to share across threads.
class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const ModelWeights& weights() const = 0;
  // Stable identity of the checkpoint: a hash of config.json and every
  // tensor's name, dtype, shape and bytes sampled across the data.
  virtual const std::string& fingerprint() const = 0;
  // Bytes of weight data (what "resident memory ≤ 1.3× weights" refers to).
  virtual size_t weight_bytes() const = 0;
  // An engine packed [data, data + n) of a weight into its own copy and will
  // not read it again: a memory-mapped model drops those pages from its
  // mapping (MADV_DONTNEED: they leave the resident set but stay in the page
  // cache, so the next start reads them from memory, not disk; a later read
  // faults them back in). Memory the model owns stays as it is.
  virtual void ReleaseWeightPages(const std::byte* data, size_t n) const = 0;
};

// Loads a model from `path`: a Hugging Face model directory (config.json plus
// model.safetensors or the shards listed in model.safetensors.index.json), or
// a GGUF file (recognised by its magic, not its name; model/gguf_model.h).
// Memory-mapped, never copied. Every error names the file and tensor.
absl::StatusOr<std::shared_ptr<const Model>> LoadModel(const std::string& path);

// The config of the model at `path` (directory: its config.json; GGUF file:
// its metadata) without loading the weights.
absl::StatusOr<ModelConfig> LoadModelConfigAt(const std::string& path);

// Where the model at `path` keeps its tokenizer: a GGUF file holds its own
// (tokenizer.ggml.* keys, read by LoadTokenizer), a directory its
// tokenizer.json.
std::string ModelTokenizerPath(const std::string& path);

// The file that describes the model at `path`, for messages: the GGUF file
// itself, or the directory's config.json.
std::string ModelConfigSource(const std::string& path);

// A model with random weights of the given shape, held in memory (bench,
// tests, stand-in guards). Deterministic for a seed. dtype: kF32 or kBF16.
absl::StatusOr<std::shared_ptr<const Model>> MakeRandomModel(const ModelConfig& config, DType dtype,
                                                             uint64_t seed);

// Writes `model` as a Hugging Face directory (config.json + model.safetensors)
// that LoadModel reads back; used to make stand-in guards on disk.
absl::Status WriteModelDirectory(const Model& model, const std::string& dir);

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_WEIGHTS_H_
