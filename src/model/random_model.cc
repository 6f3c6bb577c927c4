// MakeRandomModel (deterministic random weights held in memory) and
// WriteModelDirectory (a Model as an HF directory LoadModel reads back).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <new>
#include <thread>

#include "io/safetensors.h"
#include "model/arch_tensors.h"
#include "model/checkpoint_model.h"
#include "model/gguf_model.h"
#include "model/weights.h"

namespace saferoute {
namespace {

// SplitMix64 finaliser: a counter-based generator, so element i of tensor t
// has a value that depends only on (seed, t, i) — any thread may compute any
// range and the result is the same for every thread count.
uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1) from the top 24 bits (exact in float).
float UniformSigned(uint64_t bits) {
  return static_cast<float>(bits >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

// float -> bf16 with round-to-nearest-even (values here are finite).
uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// 64-byte aligned, uninitialised (filled right after allocation).
struct AlignedFree {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
};
using AlignedBuffer = std::unique_ptr<std::byte[], AlignedFree>;

struct OwnedTensors {
  std::vector<AlignedBuffer> buffers;
};

// Linear weights ~ U(-a, a) with std 0.02 (HF initializer_range); RMSNorm
// gains ~ 1 +- 0.1 so activations stay O(1) through the layers.
constexpr float kWeightStd = 0.02f;
constexpr float kNormSpread = 0.1f;

struct FillJob {
  std::byte* data;
  DType dtype;
  bool is_norm;
  uint64_t stream;     // per-tensor key
  int64_t begin, end;  // element range
};

void RunFill(const FillJob& job) {
  // SplitMix64 in counter mode: element i of a stream is Mix64(stream + i * gamma).
  constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ull;
  const float scale =
      job.is_norm ? kNormSpread : kWeightStd * std::sqrt(3.0f);  // U(-a,a): std a/sqrt3
  const float center = job.is_norm ? 1.0f : 0.0f;
  // Separate typed loops so the compiler can vectorise the generator.
  if (job.dtype == DType::kBF16) {
    auto* out = reinterpret_cast<uint16_t*>(job.data);  // 64-byte aligned buffer
    for (int64_t i = job.begin; i < job.end; ++i) {
      out[i] = FloatToBf16(center + scale * UniformSigned(Mix64(job.stream + i * kGamma)));
    }
  } else {
    auto* out = reinterpret_cast<float*>(job.data);
    for (int64_t i = job.begin; i < job.end; ++i) {
      out[i] = center + scale * UniformSigned(Mix64(job.stream + i * kGamma));
    }
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Model>> MakeRandomModel(const ModelConfig& config, DType dtype,
                                                             uint64_t seed) {
  if (dtype != DType::kF32 && dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MakeRandomModel: dtype ", std::string(DTypeName(dtype)), " not supported (F32 or BF16)"));
  }
  // Validate the shape the same way a config.json is validated.
  SR_RETURN_IF_ERROR(ParseModelConfig(ModelConfigToJson(config), "random model config").status());

  auto owned = std::make_shared<OwnedTensors>();
  ModelWeights weights;
  weights.layers.resize(static_cast<size_t>(config.num_layers));
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  std::vector<FillJob> jobs;
  constexpr int64_t kJobElements = int64_t{1} << 20;
  for (size_t t = 0; t < specs.size(); ++t) {
    const TensorSpec& spec = specs[t];
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;  // bounded by config validation
    const size_t nbytes = static_cast<size_t>(numel) * DTypeSize(dtype);
    auto* raw = static_cast<std::byte*>(
        ::operator new[](std::max<size_t>(nbytes, 1), std::align_val_t{64}, std::nothrow));
    if (raw == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("MakeRandomModel: cannot allocate ", nbytes,
                                                       " bytes for '", spec.name, "'"));
    }
    owned->buffers.emplace_back(raw);
    TensorView& view = SlotOf(weights, spec);
    view = {.name = spec.name, .dtype = dtype, .shape = spec.shape, .data = raw, .nbytes = nbytes};
    const uint64_t stream = Mix64(seed ^ Mix64(0x5afe0000ull + t));
    for (int64_t b = 0; b < numel; b += kJobElements) {
      jobs.push_back({raw, dtype, spec.is_norm, stream, b, std::min(numel, b + kJobElements)});
    }
  }
  // Fill in parallel: the 8B shape is 16 GB of bf16.
  const unsigned threads =
      std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), jobs.size()));
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t j; (j = next.fetch_add(1)) < jobs.size();) RunFill(jobs[j]);
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (std::thread& th : pool) th.join();

  if (config.tie_word_embeddings) weights.lm_head = weights.token_embd;
  ModelConfig stored = config;
  stored.torch_dtype = dtype == DType::kBF16 ? "bfloat16" : "float32";
  return std::make_shared<CheckpointModel>(std::move(stored), std::move(weights), std::move(owned));
}

absl::Status WriteModelDirectory(const Model& model, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  const ModelConfig& config = model.config();
  std::vector<TensorToWrite> tensors;
  std::vector<std::vector<std::byte>> reordered;  // Q/K of a llama GGUF, in HF row order
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    const TensorView& t = SlotOf(model.weights(), spec);
    if (t.empty() || t.shape != spec.shape) {
      return absl::FailedPreconditionError(
          absl::StrCat("WriteModelDirectory: tensor '", spec.name, "' missing or misshapen"));
    }
    const std::byte* data = t.data;
    if (RowsInGgufQkOrder(model.weights(), spec)) {
      std::vector<std::byte>& rows = reordered.emplace_back(t.nbytes);
      CopyInHfRowOrder(t, config.head_dim, 0, t.nbytes, rows.data());
      data = rows.data();
    }
    tensors.push_back(
        {.name = spec.name, .dtype = t.dtype, .shape = t.shape, .data = data, .nbytes = t.nbytes});
  }
  // Weights first, config last: a directory with a config.json is complete.
  SR_RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / "model.safetensors").string(), tensors,
                                      {{"format", "pt"}}));
  return WriteFileAtomically((fs::path(dir) / "config.json").string(), ModelConfigToJson(config));
}

}  // namespace saferoute
