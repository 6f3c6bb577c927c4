// GGUF models: config from metadata, tensors bound through the one name
// table (arch_tensors.h), llama Q/K rows put back in HF order.
#include "model/gguf_model.h"

#include <cmath>
#include <cstring>
#include <new>
#include <set>

#include "absl/strings/str_join.h"
#include "cpu/dequantize.h"
#include "io/gguf_writer.h"
#include "model/arch_tensors.h"
#include "model/checkpoint_model.h"

namespace saferoute {
namespace {

struct GgufArchitecture {
  const char* gguf_name;  // general.architecture
  const char* hf_name;    // ModelConfig::architecture_name
  Architecture architecture;
  bool permuted_qk;  // llama.cpp's converter permutes attn_q / attn_k rows
};
constexpr GgufArchitecture kGgufArchitectures[] = {
    {"llama", "LlamaForCausalLM", Architecture::kLlama, true},
    {"qwen3", "Qwen3ForCausalLM", Architecture::kQwen3, false},
};

const GgufArchitecture* FindArchitecture(Architecture architecture) {
  for (const GgufArchitecture& a : kGgufArchitectures) {
    if (a.architecture == architecture) return &a;
  }
  return nullptr;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Metadata reads for one architecture: "ARCH.<suffix>" keys.
class ArchKeys {
 public:
  ArchKeys(const GgufMetadata& m, std::string arch) : m_(m), arch_(std::move(arch)) {}
  std::string Key(std::string_view suffix) const {
    return absl::StrCat(arch_, ".", AbslView(suffix));
  }
  absl::StatusOr<int64_t> Int(std::string_view suffix, int64_t lo, int64_t hi,
                              std::optional<int64_t> fallback = std::nullopt) const {
    return m_.GetInt(Key(suffix), lo, hi, fallback);
  }
  absl::StatusOr<double> Float(std::string_view suffix, std::optional<double> fallback) const {
    return m_.GetFloat(Key(suffix), fallback);
  }
  absl::Status Error(std::string_view suffix, std::string_view what) const {
    return m_.KeyError(Key(suffix), what);
  }
  bool Has(std::string_view suffix) const { return m_.Contains(Key(suffix)); }

 private:
  const GgufMetadata& m_;
  std::string arch_;
};

// Features the engine does not implement: accepted only with their no-op
// values, refused by key otherwise (never silently computed wrong).
absl::Status CheckUnsupportedFeatures(const ArchKeys& keys, const GgufMetadata& m) {
  if (keys.Has("rope.scaling.type")) {
    SR_ASSIGN_OR_RETURN(std::string_view type, m.GetString(keys.Key("rope.scaling.type")));
    // llama.cpp's default type is "linear", a no-op with factor 0 or 1.
    if (type != "none" && type != "linear") {
      return keys.Error("rope.scaling.type",
                        absl::StrCat("'", AbslView(type),
                                     "' RoPE scaling is not supported (only none; Llama 3 "
                                     "scaling comes as the rope_freqs tensor)"));
    }
  }
  for (const char* factor : {"rope.scaling.factor", "rope.scale_linear"}) {
    if (!keys.Has(factor)) continue;
    SR_ASSIGN_OR_RETURN(double f, keys.Float(factor, std::nullopt));
    if (f != 0.0 && f != 1.0) {
      return keys.Error(factor,
                        absl::StrCat("linear RoPE scaling factor ", f, " is not supported"));
    }
  }
  if (keys.Has("rope.scaling.attn_factor")) {
    SR_ASSIGN_OR_RETURN(double f, keys.Float("rope.scaling.attn_factor", std::nullopt));
    if (f != 1.0)
      return keys.Error("rope.scaling.attn_factor", "values other than 1 are not supported");
  }
  SR_ASSIGN_OR_RETURN(int64_t experts, keys.Int("expert_count", 0, INT32_MAX, 0));
  if (experts != 0)
    return keys.Error("expert_count", "mixture-of-experts models are not supported");
  return absl::OkStatus();
}

// tokenizer.ggml.* special ids: bos, and the ids that end a turn (eos, eot,
// eom) as the stop ids (HF configs list them all as eos_token_id).
absl::Status ReadSpecialIds(const GgufMetadata& m, ModelConfig* c) {
  const int64_t top = c->vocab_size - 1;
  if (m.Contains("tokenizer.ggml.bos_token_id")) {
    SR_ASSIGN_OR_RETURN(int64_t bos, m.GetInt("tokenizer.ggml.bos_token_id", 0, top));
    c->bos_token_id = static_cast<int32_t>(bos);
  }
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    if (!m.Contains(key)) continue;
    SR_ASSIGN_OR_RETURN(int64_t id, m.GetInt(key, 0, top));
    if (std::find(c->eos_token_ids.begin(), c->eos_token_ids.end(), id) == c->eos_token_ids.end()) {
      c->eos_token_ids.push_back(static_cast<int32_t>(id));
    }
  }
  return absl::OkStatus();
}

// rope_freqs.weight: [head_dim / 2] fp32 divisors of the RoPE frequencies
// (llama.cpp's freq_factors; the converter writes them for Llama 3 scaling).
absl::Status ReadRopeFactors(const GgufFile& file, ModelConfig* c) {
  const GgufTensorInfo* info = file.FindTensor("rope_freqs.weight");
  if (info == nullptr) return absl::OkStatus();
  SR_ASSIGN_OR_RETURN(TensorView t, file.Tensor("rope_freqs.weight"));
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": tensor 'rope_freqs.weight': ", parts...));
  };
  if (t.shape != std::vector<int64_t>{c->head_dim / 2}) {
    return error("shape ", ShapeText(t.shape), " is not [head_dim / 2] = [", c->head_dim / 2, "]");
  }
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
    return error("dtype ", AbslView(DTypeName(t.dtype)), " (expected F32)");
  }
  std::vector<float> factors(static_cast<size_t>(c->head_dim / 2));
  cpu::DequantizeToF32(t.dtype, t.data, static_cast<int64_t>(factors.size()), factors.data());
  for (size_t j = 0; j < factors.size(); ++j) {
    if (!(std::isfinite(factors[j]) && factors[j] > 0)) {
      return error("factor ", j, " = ", factors[j], " is not a positive finite number");
    }
  }
  c->rope_scaling = {.type = RopeScaling::Type::kFreqFactors, .freq_factors = std::move(factors)};
  return absl::OkStatus();
}

struct GgufStorage {
  std::unique_ptr<GgufFile> file;
};

// HF's llama3 rope_scaling as the per-frequency divisors llama.cpp's
// converter writes (convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors:
// fp32 frequencies, the rest in double, fp32 result). One difference: the
// converter takes the original context length from a top-level
// "original_max_position_embeddings" (default 8192), not from rope_scaling;
// every Llama 3.x config has 8192 in both places.
std::vector<float> Llama3FreqFactors(const ModelConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  const int64_t d = c.head_dim;
  const double old_context = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  std::vector<float> factors(static_cast<size_t>(d / 2));
  for (int64_t j = 0; j < d / 2; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(d);
    const float freq = 1.0f / std::pow(static_cast<float>(c.rope_theta), exponent);
    const double wavelen = 2 * M_PI / freq;
    double factor = 1.0;
    if (wavelen > low_freq_wavelen) {
      factor = s.factor;
    } else if (!(wavelen < high_freq_wavelen)) {
      const double smooth =
          (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      factor = 1 / ((1 - smooth) / s.factor + smooth);
    }
    factors[j] = static_cast<float>(factor);
  }
  return factors;
}

bool IsHarmlessExtraGgufTensor(std::string_view name) {
  // Old conversions stored RoPE buffers per layer; we recompute RoPE.
  return name.ends_with(".attn_rot_embd");
}

}  // namespace

int64_t GgufToHfRow(int64_t row, int64_t head_dim) {
  const int64_t head = row / head_dim, r = row % head_dim;
  return head * head_dim + (r % 2) * (head_dim / 2) + r / 2;
}

int64_t HfToGgufRow(int64_t row, int64_t head_dim) {
  const int64_t head = row / head_dim, r = row % head_dim, half = head_dim / 2;
  return head * head_dim + 2 * (r % half) + r / half;
}

bool RowsInGgufQkOrder(const ModelWeights& weights, const TensorSpec& spec) {
  return weights.rope_pairing == cpu::RopePairing::kAdjacent &&
         (spec.layer_slot == &LayerWeights::wq || spec.layer_slot == &LayerWeights::wk);
}

void CopyInHfRowOrder(const TensorView& t, int64_t head_dim, uint64_t offset, uint64_t n,
                      std::byte* out) {
  const uint64_t row_bytes = t.nbytes / static_cast<uint64_t>(t.shape[0]);
  while (n > 0) {
    const uint64_t row = offset / row_bytes, within = offset % row_bytes;
    const uint64_t take = std::min(n, row_bytes - within);
    const auto from = static_cast<uint64_t>(HfToGgufRow(static_cast<int64_t>(row), head_dim));
    std::memcpy(out, t.data + from * row_bytes + within, take);
    out += take;
    offset += take;
    n -= take;
  }
}

absl::StatusOr<ModelConfig> GgufModelConfig(const GgufFile& file) {
  const GgufMetadata& m = file.metadata();
  SR_ASSIGN_OR_RETURN(std::string_view arch_name, m.GetString("general.architecture"));
  const GgufArchitecture* arch = nullptr;
  std::string supported;
  for (const GgufArchitecture& a : kGgufArchitectures) {
    if (arch_name == a.gguf_name) arch = &a;
    absl::StrAppend(&supported, supported.empty() ? "" : ", ", a.gguf_name);
  }
  if (arch == nullptr) {
    return m.KeyError("general.architecture",
                      absl::StrCat("unsupported architecture '", AbslView(arch_name),
                                   "' (supported: ", supported, ")"));
  }
  const ArchKeys keys(m, arch->gguf_name);
  namespace limits = model_limits;
  ModelConfig c;
  c.architecture = arch->architecture;
  c.architecture_name = arch->hf_name;
  SR_ASSIGN_OR_RETURN(c.max_position_embeddings,
                      keys.Int("context_length", 1, limits::kMaxPositions));
  SR_ASSIGN_OR_RETURN(c.hidden_size, keys.Int("embedding_length", 1, limits::kMaxHiddenSize));
  SR_ASSIGN_OR_RETURN(c.num_layers, keys.Int("block_count", 1, limits::kMaxLayers));
  SR_ASSIGN_OR_RETURN(c.intermediate_size,
                      keys.Int("feed_forward_length", 1, limits::kMaxIntermediate));
  SR_ASSIGN_OR_RETURN(c.num_heads, keys.Int("attention.head_count", 1, limits::kMaxHeads));
  SR_ASSIGN_OR_RETURN(c.num_kv_heads,
                      keys.Int("attention.head_count_kv", 1, limits::kMaxHeads, c.num_heads));
  if (c.num_heads % c.num_kv_heads != 0) {
    return keys.Error(
        "attention.head_count_kv",
        absl::StrCat(c.num_kv_heads, " does not divide attention.head_count ", c.num_heads));
  }
  std::optional<int64_t> default_head_dim;
  if (c.hidden_size % c.num_heads == 0) default_head_dim = c.hidden_size / c.num_heads;
  SR_ASSIGN_OR_RETURN(c.head_dim,
                      keys.Int("attention.key_length", 2, limits::kMaxHeadDim, default_head_dim));
  SR_ASSIGN_OR_RETURN(int64_t value_length,
                      keys.Int("attention.value_length", 1, limits::kMaxHeadDim, c.head_dim));
  if (value_length != c.head_dim) {
    return keys.Error("attention.value_length",
                      absl::StrCat(value_length, " differs from the key length ", c.head_dim,
                                   " (not supported)"));
  }
  SR_ASSIGN_OR_RETURN(int64_t rope_dims,
                      keys.Int("rope.dimension_count", 1, limits::kMaxHeadDim, c.head_dim));
  if (rope_dims != c.head_dim) {
    return keys.Error("rope.dimension_count",
                      absl::StrCat(rope_dims, " differs from the head size ", c.head_dim,
                                   " (partial rotary embeddings are not supported)"));
  }
  if (c.head_dim % 2 != 0) {
    return keys.Error("attention.key_length", absl::StrCat("head size ", c.head_dim, " is odd"));
  }
  SR_ASSIGN_OR_RETURN(c.rope_theta, keys.Float("rope.freq_base", 10000.0));
  if (!(c.rope_theta > 0)) return keys.Error("rope.freq_base", "must be > 0");
  SR_ASSIGN_OR_RETURN(c.rms_norm_eps, keys.Float("attention.layer_norm_rms_epsilon", std::nullopt));
  if (!(c.rms_norm_eps > 0)) return keys.Error("attention.layer_norm_rms_epsilon", "must be > 0");
  SR_RETURN_IF_ERROR(CheckUnsupportedFeatures(keys, m));

  // Vocabulary: the embedding's rows; ARCH.vocab_size, when written, agrees.
  SR_ASSIGN_OR_RETURN(TensorView embd, file.Tensor("token_embd.weight"));
  if (embd.shape.size() != 2 || embd.shape[1] != c.hidden_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.path(), ": tensor 'token_embd.weight': shape ", ShapeText(embd.shape),
                     " is not [vocab, ", keys.Key("embedding_length"), " = ", c.hidden_size, "]"));
  }
  c.vocab_size = embd.shape[0];
  if (c.vocab_size < 1 || c.vocab_size > limits::kMaxVocab) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": tensor 'token_embd.weight': ",
                                                   c.vocab_size, " rows is not a vocabulary size"));
  }
  if (keys.Has("vocab_size")) {
    SR_ASSIGN_OR_RETURN(int64_t v, keys.Int("vocab_size", 1, limits::kMaxVocab));
    if (v != c.vocab_size) {
      return keys.Error(
          "vocab_size",
          absl::StrCat(v, " disagrees with tensor 'token_embd.weight' (", c.vocab_size, " rows)"));
    }
  }
  // llama.cpp sizes token_embd by the vocabulary (n_vocab = the token count)
  // and refuses any other shape; so does this loader.
  if (m.Contains("tokenizer.ggml.tokens")) {
    SR_ASSIGN_OR_RETURN(std::span<const std::string_view> tokens,
                        m.GetStringArray("tokenizer.ggml.tokens"));
    if (static_cast<int64_t>(tokens.size()) != c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          m.source(), ": key 'tokenizer.ggml.tokens': ", tokens.size(),
          " tokens disagree with tensor 'token_embd.weight' (", c.vocab_size, " rows)"));
    }
  }
  c.tie_word_embeddings = file.FindTensor("output.weight") == nullptr;
  SR_RETURN_IF_ERROR(ReadSpecialIds(m, &c));
  SR_RETURN_IF_ERROR(ReadRopeFactors(file, &c));
  c.torch_dtype = "";  // a GGUF mixes types per tensor; DTypeName of each tells
  return c;
}

absl::StatusOr<std::shared_ptr<const Model>> LoadGgufModel(const std::string& path) {
  auto storage = std::make_shared<GgufStorage>();
  SR_ASSIGN_OR_RETURN(storage->file, GgufFile::Open(path));
  const GgufFile& file = *storage->file;
  SR_ASSIGN_OR_RETURN(ModelConfig config, GgufModelConfig(file));
  const GgufArchitecture* arch = FindArchitecture(config.architecture);
  SR_CHECK(arch != nullptr);

  ModelWeights weights;
  weights.layers.resize(static_cast<size_t>(config.num_layers));
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  std::set<std::string_view> expected;  // views into specs
  for (const TensorSpec& spec : specs) {
    expected.insert(spec.gguf_name);
    auto found = file.Tensor(spec.gguf_name);
    if (!found.ok()) {
      if (found.status().code() != absl::StatusCode::kNotFound) return found.status();
      return absl::NotFoundError(
          absl::StrCat(path, ": missing tensor '", spec.gguf_name, "' (the metadata says ",
                       arch->gguf_name, " with ", config.num_layers, " layers",
                       config.architecture == Architecture::kQwen3 ? ", q/k norms" : "", ")"));
    }
    TensorView t = std::move(*found);
    auto error = [&](auto&&... parts) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", spec.gguf_name, "': ", parts...));
    };
    if (t.shape != spec.shape) {
      return error("shape ", ShapeText(t.shape), " disagrees with the metadata (expected ",
                   ShapeText(spec.shape), " from embedding ", config.hidden_size, ", heads ",
                   config.num_heads, "/", config.num_kv_heads, ", head size ", config.head_dim,
                   ", feed-forward ", config.intermediate_size, ", vocab ", config.vocab_size, ")");
    }
    if (!cpu::CanDequantize(t.dtype)) {
      return error("type ", AbslView(DTypeName(t.dtype)), " cannot be read by this build");
    }
    if (!IsQuantized(t.dtype) && reinterpret_cast<uintptr_t>(t.data) % DTypeSize(t.dtype) != 0) {
      return error("data is not aligned to its ", DTypeSize(t.dtype), "-byte elements");
    }
    t.name = spec.name;  // the engine names tensors by their HF slot names
    SlotOf(weights, spec) = std::move(t);
  }
  for (const GgufTensorInfo& t : file.tensors()) {
    if (expected.contains(t.name) || t.name == "rope_freqs.weight" ||
        IsHarmlessExtraGgufTensor(t.name)) {
      continue;
    }
    const int64_t layer = LayerIndexOf(t.name);
    if (layer >= config.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", t.name, "': the metadata says ", config.num_layers, " layers (",
          arch->gguf_name, ".block_count) but the file has layer ", layer));
    }
    return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "': not part of ",
                                                   arch->gguf_name,
                                                   " as configured (unsupported feature?)"));
  }
  if (config.tie_word_embeddings) weights.lm_head = weights.token_embd;
  // attn_q / attn_k stay in the file's order (no copy): RoPE pairs their rows
  // as ggml does.
  if (arch->permuted_qk) weights.rope_pairing = cpu::RopePairing::kAdjacent;
  const MappedFile* mapping = &storage->file->mapping();
  return std::make_shared<CheckpointModel>(std::move(config), std::move(weights),
                                           std::move(storage), std::vector{mapping});
}

absl::Status WriteModelGguf(const Model& model, const std::string& path) {
  const ModelConfig& c = model.config();
  const GgufArchitecture* arch = FindArchitecture(c.architecture);
  SR_CHECK(arch != nullptr);
  GgufWriter w;
  const std::string a = arch->gguf_name;
  w.AddString("general.architecture", a);
  w.AddUint32(a + ".context_length", static_cast<uint32_t>(c.max_position_embeddings));
  w.AddUint32(a + ".embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.AddUint32(a + ".block_count", static_cast<uint32_t>(c.num_layers));
  w.AddUint32(a + ".feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.AddUint32(a + ".attention.head_count", static_cast<uint32_t>(c.num_heads));
  w.AddUint32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads));
  w.AddUint32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
  w.AddUint32(a + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
  w.AddUint32(a + ".rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  w.AddFloat32(a + ".rope.freq_base", static_cast<float>(c.rope_theta));
  w.AddFloat32(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.AddUint32(a + ".vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (c.bos_token_id >= 0) w.AddUint32("tokenizer.ggml.bos_token_id", c.bos_token_id);
  if (!c.eos_token_ids.empty()) w.AddUint32("tokenizer.ggml.eos_token_id", c.eos_token_ids[0]);
  std::vector<float> factors = c.rope_scaling.freq_factors;
  if (c.rope_scaling.type == RopeScaling::Type::kLlama3) factors = Llama3FreqFactors(c);
  if (!factors.empty()) {
    const int64_t shape[] = {static_cast<int64_t>(factors.size())};
    w.AddTensor("rope_freqs.weight", DType::kF32, shape, factors.data());
  }
  std::vector<std::vector<std::byte>> permuted;
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    const TensorView& t = SlotOf(model.weights(), spec);
    const std::byte* data = t.data;
    const bool hf_order_qk =
        (spec.layer_slot == &LayerWeights::wq || spec.layer_slot == &LayerWeights::wk) &&
        !RowsInGgufQkOrder(model.weights(), spec);
    if (arch->permuted_qk && hf_order_qk) {
      const uint64_t row_bytes = *RowBytes(t.dtype, t.shape[1]);
      std::vector<std::byte>& rows = permuted.emplace_back(t.nbytes);
      for (int64_t row = 0; row < t.shape[0]; ++row) {
        std::memcpy(rows.data() + row * row_bytes,
                    t.data + GgufToHfRow(row, c.head_dim) * row_bytes, row_bytes);
      }
      data = rows.data();
    }
    w.AddTensor(spec.gguf_name, t.dtype, t.shape, data);
  }
  return w.Write(path);
}

}  // namespace saferoute
