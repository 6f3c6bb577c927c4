// LoadModel: binds a Hugging Face checkpoint's tensors to ModelWeights slots,
// checking them against config.json through the architecture's name table.
//
// Policy for tensors the table does not list (decided here, once):
//  - "*.rotary_emb.inv_freq" (old writers saved RoPE buffers): ignored, we
//    recompute RoPE from the config.
//  - "lm_head.weight" in a tied model: ignored, the embedding is the head.
//    This is what HF does (tie_weights() points lm_head at embed_tokens).
//  - "model.layers.<i>..." with i >= num_hidden_layers: error, the config and
//    the weights disagree about the depth.
//  - anything else (biases, other architectures' tensors): error. Ignoring an
//    unknown tensor could silently compute a different model.
// Each tensor may be F32, BF16 or F16 independently (mixed files are fine).
// Tensor data must be aligned to its element size so kernels may load it as
// typed data; HF writers guarantee this (8-byte header padding, dtype order).
#include "model/weights.h"

#include <filesystem>
#include <set>

#include "io/safetensors.h"
#include "model/arch_tensors.h"
#include "model/checkpoint_model.h"
#include "model/gguf_model.h"

namespace saferoute {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

// FNV-1a, 64-bit (offset basis and prime from the FNV reference).
class Fnv1a64 {
 public:
  void Bytes(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      hash_ ^= p[i];
      hash_ *= 0x100000001b3ull;
    }
  }
  void U64(uint64_t v) {
    uint8_t le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(v >> (8 * i));
    Bytes(le, 8);
  }
  void Str(std::string_view s) {
    U64(s.size());
    Bytes(s.data(), s.size());
  }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

size_t CountWeightBytes(const ModelConfig& config, const ModelWeights& weights) {
  size_t total = 0;
  for (const TensorSpec& spec : ExpectedTensors(config)) total += SlotOf(weights, spec).nbytes;
  return total;
}

}  // namespace

std::string ComputeFingerprint(const ModelConfig& config, const ModelWeights& weights) {
  Fnv1a64 h;
  ModelConfig canonical = config;
  canonical.torch_dtype.clear();
  h.Str(ModelConfigToJson(canonical));
  constexpr size_t kWholeLimit = 4096, kSamples = 32, kSampleBytes = 64;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    const TensorView& t = SlotOf(weights, spec);
    h.Str(spec.name);
    h.Str(DTypeName(t.dtype));
    h.U64(t.shape.size());
    for (int64_t d : t.shape) h.U64(static_cast<uint64_t>(d));
    h.U64(t.nbytes);
    // Q/K kept in GGUF row order are read in HF order: the identity is the
    // model's, whichever order it was loaded in.
    const bool reorder = RowsInGgufQkOrder(weights, spec);
    std::byte sample[kWholeLimit];
    auto hash_range = [&](size_t offset, size_t n) {
      if (reorder) {
        CopyInHfRowOrder(t, config.head_dim, offset, n, sample);
        h.Bytes(sample, n);
      } else {
        h.Bytes(t.data + offset, n);
      }
    };
    if (t.nbytes <= kWholeLimit) {
      hash_range(0, t.nbytes);
    } else {
      const size_t stride = (t.nbytes - kSampleBytes) / (kSamples - 1);
      for (size_t i = 0; i < kSamples; ++i) {
        const size_t offset = i + 1 == kSamples ? t.nbytes - kSampleBytes : i * stride;
        hash_range(offset, kSampleBytes);
      }
    }
  }
  return absl::StrFormat("%016x", h.value());
}

CheckpointModel::CheckpointModel(ModelConfig config, ModelWeights weights,
                                 std::shared_ptr<const void> storage,
                                 std::vector<const MappedFile*> mappings)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      storage_(std::move(storage)),
      mappings_(std::move(mappings)) {
  fingerprint_ = ComputeFingerprint(config_, weights_);
  weight_bytes_ = CountWeightBytes(config_, weights_);
}

void CheckpointModel::ReleaseWeightPages(const std::byte* data, size_t n) const {
  for (const MappedFile* mapping : mappings_) {
    if (mapping->Contains(data, n)) {
      mapping->Advise(AccessHint::kDontNeed, static_cast<size_t>(data - mapping->data()), n);
      return;
    }
  }
}

namespace {

// config.json of a model directory; a regular file here is a GGUF without
// its magic (or something else entirely).
absl::StatusOr<std::string> ConfigJsonPath(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a GGUF file (no \"GGUF\" magic) and not a model directory"));
  }
  return (fs::path(path) / "config.json").string();
}

}  // namespace

absl::StatusOr<ModelConfig> LoadModelConfigAt(const std::string& path) {
  if (HasGgufMagic(path)) return LoadModelConfig(path);
  SR_ASSIGN_OR_RETURN(std::string config_path, ConfigJsonPath(path));
  return LoadModelConfig(config_path);
}

std::string ModelTokenizerPath(const std::string& path) {
  if (HasGgufMagic(path)) return path;
  return (std::filesystem::path(path) / "tokenizer.json").string();
}

std::string ModelConfigSource(const std::string& path) {
  if (HasGgufMagic(path)) return path;
  return (std::filesystem::path(path) / "config.json").string();
}

absl::StatusOr<std::shared_ptr<const Model>> LoadModel(const std::string& dir) {
  if (HasGgufMagic(dir)) return LoadGgufModel(dir);
  SR_RETURN_IF_ERROR(ConfigJsonPath(dir).status());
  namespace fs = std::filesystem;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  SR_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(config_path));
  SR_ASSIGN_OR_RETURN(std::unique_ptr<TensorStore> store_owner, TensorStore::Open(dir));
  std::shared_ptr<const TensorStore> store = std::move(store_owner);

  ModelWeights weights;
  weights.layers.resize(static_cast<size_t>(config.num_layers));
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  std::set<std::string_view> expected;
  for (const TensorSpec& spec : specs) {
    expected.insert(spec.name);
    const TensorView* t = store->Find(spec.name);
    if (t == nullptr) {
      return absl::NotFoundError(
          absl::StrCat(dir, ": missing tensor '", spec.name, "' (", config_path, " says ",
                       config.architecture_name, " with ", config.num_layers, " layers",
                       spec.name == "lm_head.weight" ? ", untied embeddings" : "", ")"));
    }
    auto error = [&](auto&&... parts) {
      return absl::InvalidArgumentError(
          absl::StrCat(store->FileOf(spec.name), ": tensor '", spec.name, "': ", parts...));
    };
    if (t->shape != spec.shape) {
      return error("shape ", ShapeText(t->shape), " does not match ", config_path, " (expected ",
                   ShapeText(spec.shape), " from hidden ", config.hidden_size, ", heads ",
                   config.num_heads, "/", config.num_kv_heads, ", head_dim ", config.head_dim,
                   ", intermediate ", config.intermediate_size, ", vocab ", config.vocab_size, ")");
    }
    if (reinterpret_cast<uintptr_t>(t->data) % DTypeSize(t->dtype) != 0) {
      return error("data is not aligned to its ", DTypeSize(t->dtype),
                   "-byte elements (re-save the file with safetensors)");
    }
    SlotOf(weights, spec) = *t;
  }
  for (const std::string& name : store->names()) {
    if (expected.contains(name) || IsHarmlessExtraTensor(name)) continue;
    if (name == "lm_head.weight" && config.tie_word_embeddings) continue;
    const int64_t layer = LayerIndexOf(name);
    if (layer >= config.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          store->FileOf(name), ": tensor '", name, "': ", config_path, " says ", config.num_layers,
          " layers but the checkpoint has layer ", layer, " (config disagrees with weights)"));
    }
    return absl::InvalidArgumentError(absl::StrCat(store->FileOf(name), ": tensor '", name,
                                                   "': not part of ", config.architecture_name,
                                                   " as configured (unsupported feature?)"));
  }
  if (config.tie_word_embeddings) weights.lm_head = weights.token_embd;
  std::vector<const MappedFile*> mappings;
  for (const auto& file : store->files()) mappings.push_back(&file->mapping());
  return std::make_shared<CheckpointModel>(std::move(config), std::move(weights), std::move(store),
                                           std::move(mappings));
}

}  // namespace saferoute
