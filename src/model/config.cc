// config.json parsing and validation, and the named shapes of real guards.
#include "model/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/gguf.h"
#include "model/gguf_model.h"
#include "nlohmann/json.hpp"

namespace saferoute {
namespace {

using json = nlohmann::json;

using namespace model_limits;  // NOLINT: the bounds every field is checked against
constexpr uintmax_t kMaxConfigBytes = 1 << 20;

struct ArchitectureInfo {
  const char* name;        // "architectures"[0]
  const char* model_type;  // "model_type"
  Architecture architecture;
};
constexpr ArchitectureInfo kArchitectures[] = {
    {"LlamaForCausalLM", "llama", Architecture::kLlama},
    {"Qwen3ForCausalLM", "qwen3", Architecture::kQwen3},
};

std::string SupportedArchitectures() {
  std::string s;
  for (const auto& a : kArchitectures) absl::StrAppend(&s, s.empty() ? "" : ", ", a.name);
  return s;
}

// Typed, bounded field access; every error names the source and the field.
class Fields {
 public:
  Fields(const json& object, std::string source) : object_(object), source_(std::move(source)) {}

  absl::Status Error(std::string_view field, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": field '", std::string(field), "': ", std::string(what)));
  }
  const json* Get(const char* field) const {
    auto it = object_.find(field);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  // An integer in [lo, hi]; `fallback` if absent (nullopt: required).
  absl::StatusOr<int64_t> Int(const char* field, int64_t lo, int64_t hi,
                              std::optional<int64_t> fallback = std::nullopt) const {
    const json* v = Get(field);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error(field, "missing (required)");
    }
    return IntValue(field, *v, lo, hi);
  }
  absl::StatusOr<int64_t> IntValue(std::string_view field, const json& v, int64_t lo,
                                   int64_t hi) const {
    if (!v.is_number_integer()) {
      return Error(field, absl::StrCat("must be an integer, got ", v.dump()));
    }
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return Error(field,
                   absl::StrCat("value ", v.dump(), " is out of range [", lo, ", ", hi, "]"));
    }
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) {
      return Error(field, absl::StrCat("value ", x, " is out of range [", lo, ", ", hi, "]"));
    }
    return x;
  }
  // A finite number > lo (exclusive) when `positive`, else any finite value.
  absl::StatusOr<double> Number(const char* field, double fallback, bool positive) const {
    const json* v = Get(field);
    if (v == nullptr) return fallback;
    return NumberValue(field, *v, positive);
  }
  absl::StatusOr<double> NumberValue(std::string_view field, const json& v, bool positive) const {
    if (!v.is_number()) return Error(field, absl::StrCat("must be a number, got ", v.dump()));
    const double x = v.get<double>();
    if (!std::isfinite(x)) return Error(field, "must be finite");
    if (positive && !(x > 0)) return Error(field, absl::StrCat("must be > 0, got ", v.dump()));
    return x;
  }
  absl::StatusOr<bool> Bool(const char* field, bool fallback) const {
    const json* v = Get(field);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return Error(field, absl::StrCat("must be true/false, got ", v->dump()));
    return v->get<bool>();
  }
  absl::StatusOr<std::string> String(const char* field, std::string fallback) const {
    const json* v = Get(field);
    if (v == nullptr) return fallback;
    if (!v->is_string()) return Error(field, absl::StrCat("must be a string, got ", v->dump()));
    return v->get<std::string>();
  }

 private:
  const json& object_;
  std::string source_;
};

// rope_scaling (or transformers 5 "rope_parameters"): null, "default" and
// "llama3" are supported; every other type changes the math and is refused.
absl::StatusOr<RopeScaling> ParseRopeScaling(const json* value, const std::string& field,
                                             const std::string& source) {
  RopeScaling scaling;
  if (value == nullptr) return scaling;
  const std::string where = absl::StrCat(source, ": ", field);
  if (!value->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": must be an object or null"));
  }
  Fields f(*value, where);
  std::string type;
  if (f.Get("rope_type") != nullptr) {
    SR_ASSIGN_OR_RETURN(type, f.String("rope_type", ""));
  } else {
    SR_ASSIGN_OR_RETURN(type, f.String("type", ""));  // legacy key
  }
  if (type == "default" || (type.empty() && field == "rope_parameters")) return scaling;
  if (type == "freq_factors") {
    const json* factors = f.Get("factors");
    if (factors == nullptr || !factors->is_array() || factors->empty()) {
      return f.Error("factors", "must be a non-empty list of numbers (freq_factors RoPE)");
    }
    scaling.type = RopeScaling::Type::kFreqFactors;
    for (const json& v : *factors) {
      SR_ASSIGN_OR_RETURN(double x, f.NumberValue("factors", v, /*positive=*/true));
      scaling.freq_factors.push_back(static_cast<float>(x));
    }
    return scaling;
  }
  if (type != "llama3") {
    return absl::InvalidArgumentError(absl::StrCat(where, ": unsupported RoPE scaling type '", type,
                                                   "' (supported: none, default, llama3)"));
  }
  scaling.type = RopeScaling::Type::kLlama3;
  for (const char* key :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    if (f.Get(key) == nullptr) return f.Error(key, "missing (required for llama3 RoPE scaling)");
  }
  SR_ASSIGN_OR_RETURN(scaling.factor, f.Number("factor", 0, /*positive=*/true));
  SR_ASSIGN_OR_RETURN(scaling.low_freq_factor, f.Number("low_freq_factor", 0, true));
  SR_ASSIGN_OR_RETURN(scaling.high_freq_factor, f.Number("high_freq_factor", 0, true));
  SR_ASSIGN_OR_RETURN(scaling.original_max_position_embeddings,
                      f.Int("original_max_position_embeddings", 1, kMaxPositions));
  // HF divides by (high_freq_factor - low_freq_factor) when smoothing.
  if (!(scaling.high_freq_factor > scaling.low_freq_factor)) {
    return f.Error("high_freq_factor", "must be greater than low_freq_factor");
  }
  return scaling;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text,
                                             std::string_view source_view) {
  const std::string source(source_view);
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  Fields f(root, source);
  ModelConfig c;

  const json* archs = f.Get("architectures");
  if (archs == nullptr) return f.Error("architectures", "missing (required)");
  if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    return f.Error("architectures", "must be a non-empty list of names");
  }
  c.architecture_name = (*archs)[0].get<std::string>();
  const ArchitectureInfo* info = nullptr;
  for (const auto& a : kArchitectures) {
    if (c.architecture_name == a.name) info = &a;
  }
  if (info == nullptr) {
    return f.Error("architectures", absl::StrCat("unsupported architecture '", c.architecture_name,
                                                 "' (supported: ", SupportedArchitectures(), ")"));
  }
  c.architecture = info->architecture;
  SR_ASSIGN_OR_RETURN(std::string model_type, f.String("model_type", info->model_type));
  if (model_type != info->model_type) {
    return f.Error("model_type",
                   absl::StrCat("'", model_type, "' does not match architecture '",
                                c.architecture_name, "' (expected '", info->model_type, "')"));
  }

  SR_ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size", 1, kMaxHiddenSize));
  SR_ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers", 1, kMaxLayers));
  SR_ASSIGN_OR_RETURN(c.num_heads, f.Int("num_attention_heads", 1, kMaxHeads));
  // HF: absent num_key_value_heads means multi-head attention.
  SR_ASSIGN_OR_RETURN(c.num_kv_heads, f.Int("num_key_value_heads", 1, kMaxHeads, c.num_heads));
  SR_ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size", 1, kMaxIntermediate));
  SR_ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size", 1, kMaxVocab));
  SR_ASSIGN_OR_RETURN(c.max_position_embeddings,
                      f.Int("max_position_embeddings", 1, kMaxPositions));
  if (c.num_heads % c.num_kv_heads != 0) {
    return f.Error(
        "num_key_value_heads",
        absl::StrCat(c.num_kv_heads, " does not divide num_attention_heads ", c.num_heads));
  }
  if (f.Get("head_dim") != nullptr) {
    SR_ASSIGN_OR_RETURN(c.head_dim, f.Int("head_dim", 1, kMaxHeadDim));
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return f.Error("num_attention_heads",
                     absl::StrCat(c.num_heads, " does not divide hidden_size ", c.hidden_size,
                                  " and there is no head_dim"));
    }
    c.head_dim = c.hidden_size / c.num_heads;
    if (c.head_dim > kMaxHeadDim) return f.Error("head_dim", "hidden/heads exceeds 1024");
  }
  // RoPE rotates pairs of dimensions.
  if (c.head_dim % 2 != 0) return f.Error("head_dim", absl::StrCat(c.head_dim, " is odd"));

  SR_ASSIGN_OR_RETURN(c.rms_norm_eps, f.Number("rms_norm_eps", 1e-6, /*positive=*/true));
  SR_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  SR_ASSIGN_OR_RETURN(c.torch_dtype, f.String("torch_dtype", ""));
  if (c.torch_dtype.empty()) {  // transformers 5 spells it "dtype"
    SR_ASSIGN_OR_RETURN(c.torch_dtype, f.String("dtype", ""));
  }

  // RoPE: transformers 5 may write "rope_parameters" {rope_type, rope_theta, ...}
  // instead of rope_theta + rope_scaling; accept either, prefer rope_scaling.
  SR_ASSIGN_OR_RETURN(c.rope_theta, f.Number("rope_theta", 10000.0, /*positive=*/true));
  if (f.Get("rope_scaling") != nullptr || f.Get("rope_parameters") == nullptr) {
    SR_ASSIGN_OR_RETURN(c.rope_scaling,
                        ParseRopeScaling(f.Get("rope_scaling"), "rope_scaling", source));
  } else {
    const json* params = f.Get("rope_parameters");
    SR_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(params, "rope_parameters", source));
    if (f.Get("rope_theta") == nullptr && params->is_object()) {
      Fields p(*params, absl::StrCat(source, ": rope_parameters"));
      SR_ASSIGN_OR_RETURN(c.rope_theta, p.Number("rope_theta", 10000.0, true));
    }
  }

  if (c.rope_scaling.type == RopeScaling::Type::kFreqFactors &&
      c.rope_scaling.freq_factors.size() != static_cast<size_t>(c.head_dim / 2)) {
    return f.Error("rope_scaling",
                   absl::StrCat(c.rope_scaling.freq_factors.size(),
                                " factors, expected head_dim / 2 = ", c.head_dim / 2));
  }

  // Features the engine does not implement are refused by name rather than
  // silently computed wrong.
  SR_ASSIGN_OR_RETURN(std::string act, f.String("hidden_act", "silu"));
  if (act != "silu") {
    return f.Error("hidden_act", absl::StrCat("'", act, "' is not supported (only silu)"));
  }
  for (const char* flag : {"attention_bias", "mlp_bias", "use_sliding_window"}) {
    SR_ASSIGN_OR_RETURN(bool on, f.Bool(flag, false));
    if (on) return f.Error(flag, "true is not supported");
  }

  if (f.Get("bos_token_id") != nullptr) {
    SR_ASSIGN_OR_RETURN(int64_t bos, f.Int("bos_token_id", 0, c.vocab_size - 1));
    c.bos_token_id = static_cast<int32_t>(bos);
  }
  if (const json* eos = f.Get("eos_token_id")) {
    if (eos->is_array()) {
      for (const json& id : *eos) {
        SR_ASSIGN_OR_RETURN(int64_t v, f.IntValue("eos_token_id", id, 0, c.vocab_size - 1));
        c.eos_token_ids.push_back(static_cast<int32_t>(v));
      }
    } else {
      SR_ASSIGN_OR_RETURN(int64_t v, f.IntValue("eos_token_id", *eos, 0, c.vocab_size - 1));
      c.eos_token_ids.push_back(static_cast<int32_t>(v));
    }
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  if (HasGgufMagic(path)) {
    SR_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
    return GgufModelConfig(*file);
  }
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": cannot read: ", ec.message()));
  if (size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", size, " bytes is too large"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseModelConfig(text.str(), path);
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j = json::object();
  j["architectures"] = {c.architecture_name};
  for (const auto& a : kArchitectures) {
    if (a.architecture == c.architecture) {
      j["model_type"] = a.model_type;
      if (c.architecture_name.empty()) j["architectures"] = {a.name};
    }
  }
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["intermediate_size"] = c.intermediate_size;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == RopeScaling::Type::kLlama3) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling.factor},
        {"low_freq_factor", c.rope_scaling.low_freq_factor},
        {"high_freq_factor", c.rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  } else if (c.rope_scaling.type == RopeScaling::Type::kFreqFactors) {
    j["rope_scaling"] = {{"rope_type", "freq_factors"}, {"factors", c.rope_scaling.freq_factors}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else if (!c.eos_token_ids.empty()) {
    j["eos_token_id"] = c.eos_token_ids;
  }
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

namespace {

ModelConfig LlamaGuard3Base() {
  ModelConfig c;
  c.architecture = Architecture::kLlama;
  c.architecture_name = "LlamaForCausalLM";
  c.vocab_size = 128256;
  c.max_position_embeddings = 131072;
  c.rope_theta = 500000.0;
  c.rope_scaling = {.type = RopeScaling::Type::kLlama3,
                    .factor = 8.0,
                    .low_freq_factor = 1.0,
                    .high_freq_factor = 4.0,
                    .original_max_position_embeddings = 8192};
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = false;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  c.torch_dtype = "bfloat16";
  return c;
}

ModelConfig Qwen3GuardBase(int64_t hidden, int64_t layers, int64_t heads, int64_t intermediate,
                           bool tied) {
  ModelConfig c;
  c.architecture = Architecture::kQwen3;
  c.architecture_name = "Qwen3ForCausalLM";
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = 8;
  c.head_dim = 128;  // fixed in every Qwen3 size, not hidden/heads
  c.intermediate_size = intermediate;
  c.vocab_size = 151936;
  c.max_position_embeddings = 40960;
  c.rope_theta = 1e6;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 151643;
  c.eos_token_ids = {151645};
  c.torch_dtype = "bfloat16";
  return c;
}

}  // namespace

absl::StatusOr<ModelConfig> NamedModelConfig(std::string_view name) {
  // Shapes from shared/docs/guard-models.md §2.1, §2.2 and §5.1.
  if (name == "llama-guard-3-1b") {
    ModelConfig c = LlamaGuard3Base();
    c.hidden_size = 2048;
    c.num_layers = 16;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 64;
    c.intermediate_size = 8192;
    return c;
  }
  if (name == "llama-guard-3-8b") {
    // Whether the real LG3-8B config carries llama3 rope_scaling is settled
    // as unknown (guard-models.md §2.3). We pick llama3 factor 8 (the
    // Llama-3.1-8B base and the GPTQ re-export's line count); a downloaded
    // checkpoint's own config.json always overrides this shape.
    ModelConfig c = LlamaGuard3Base();
    c.hidden_size = 4096;
    c.num_layers = 32;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 128;
    c.intermediate_size = 14336;
    return c;
  }
  if (name == "qwen3guard-0.6b") return Qwen3GuardBase(1024, 28, 16, 3072, /*tied=*/true);
  if (name == "qwen3guard-4b") return Qwen3GuardBase(2560, 36, 32, 9728, /*tied=*/true);
  if (name == "qwen3guard-8b") return Qwen3GuardBase(4096, 36, 32, 12288, /*tied=*/false);
  if (name == "tiny") {
    // For tests: GQA 4:2, untied, llama3 RoPE; small enough to build in ms.
    ModelConfig c = LlamaGuard3Base();
    c.hidden_size = 64;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 128;
    c.vocab_size = 512;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
    return c;
  }
  std::string known;
  for (const std::string& n : NamedModelConfigNames())
    absl::StrAppend(&known, known.empty() ? "" : ", ", n);
  return absl::NotFoundError(
      absl::StrCat("unknown model shape '", std::string(name), "' (known: ", known, ")"));
}

std::vector<std::string> NamedModelConfigNames() {
  return {"llama-guard-3-1b", "llama-guard-3-8b", "qwen3guard-0.6b",
          "qwen3guard-4b",    "qwen3guard-8b",    "tiny"};
}

}  // namespace saferoute
