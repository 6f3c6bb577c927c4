// LoadModel on the shared fixtures (real HF-written checkpoints), on
// hand-made corrupt checkpoints, and random-model round trips.
#include "model/weights.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "cpu/testing/available_paths.h"
#include "io/safetensors.h"
#include "model/engine.h"
#include "model/gguf_model.h"
#include "nlohmann/json.hpp"

namespace saferoute {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kShared = SAFEROUTE_SHARED_DIR;
const fs::path kModels = kShared / "fixtures" / "models";
const fs::path kShardedGuard = kShared / "fixtures" / "guard" / "llama_guard_tiny_fullvocab_bf16";

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

float ElementAsFloat(const TensorView& t, int64_t i) {
  if (t.dtype == DType::kF32) {
    float f;
    std::memcpy(&f, t.data + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, t.data + 2 * i, 2);
  EXPECT_EQ(t.dtype, DType::kBF16);
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Independent of io/: reads a tensor's raw bytes from a safetensors file with
// plain offsets (u64 header length, JSON header, data_offsets).
std::string RawTensorBytes(const fs::path& file, const std::string& name) {
  std::ifstream in(file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  const json h = json::parse(header);
  const uint64_t b = h[name]["data_offsets"][0], e = h[name]["data_offsets"][1];
  std::string bytes(e - b, '\0');
  in.seekg(static_cast<std::streamoff>(8 + n + b));
  in.read(bytes.data(), static_cast<std::streamsize>(e - b));
  return bytes;
}

// A fresh temp directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            absl::StrCat("saferoute_weights_test_", ::getpid(), "_", counter_++);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

TEST(LoadModelTest, EveryFixtureModelLoadsAndEmbeddingsMatchReference) {
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(kModels)) {
    SCOPED_TRACE(entry.path().string());
    ++cases;
    auto model = LoadModel(entry.path().string());
    ASSERT_TRUE(model.ok()) << model.status();
    const ModelConfig& c = (*model)->config();
    const ModelWeights& w = (*model)->weights();
    ASSERT_EQ(w.layers.size(), static_cast<size_t>(c.num_layers));
    EXPECT_EQ(w.token_embd.shape, (std::vector<int64_t>{c.vocab_size, c.hidden_size}));
    EXPECT_EQ(w.lm_head.shape, w.token_embd.shape);
    if (c.tie_word_embeddings) {
      EXPECT_EQ(w.lm_head.data, w.token_embd.data);
    } else {
      EXPECT_NE(w.lm_head.data, w.token_embd.data);
    }
    const bool qwen = c.architecture == Architecture::kQwen3;
    for (const LayerWeights& l : w.layers) {
      EXPECT_EQ(l.q_norm.empty(), !qwen);
      EXPECT_EQ(l.k_norm.empty(), !qwen);
      EXPECT_EQ(l.wq.shape, (std::vector<int64_t>{c.num_heads * c.head_dim, c.hidden_size}));
      EXPECT_EQ(l.w_down.shape, (std::vector<int64_t>{c.hidden_size, c.intermediate_size}));
    }
    EXPECT_GT((*model)->weight_bytes(), 0u);
    EXPECT_EQ((*model)->fingerprint().size(), 16u);

    // The HF reference's embed_i rows are the embedding rows of the input ids.
    const json inputs = json::parse(ReadText(entry.path() / "inputs.json"));
    auto expected = SafetensorsFile::Open((entry.path() / "expected.safetensors").string());
    ASSERT_TRUE(expected.ok()) << expected.status();
    for (size_t s = 0; s < inputs["sequences"].size(); ++s) {
      const TensorView* embed = (*expected)->Find(absl::StrCat("embed_", s));
      ASSERT_NE(embed, nullptr);
      const auto& ids = inputs["sequences"][s];
      for (size_t t = 0; t < ids.size(); ++t) {
        const int64_t id = ids[t].get<int64_t>();
        for (int64_t k = 0; k < c.hidden_size; ++k) {
          ASSERT_EQ(ElementAsFloat(w.token_embd, id * c.hidden_size + k),
                    ElementAsFloat(*embed, static_cast<int64_t>(t) * c.hidden_size + k))
              << "sequence " << s << " position " << t << " dim " << k;
        }
      }
    }
  }
  EXPECT_EQ(cases, 5);
}

TEST(LoadModelTest, FixtureConfigsParseAsTheyAre) {
  auto plain = LoadModel((kModels / "llama_plain_rope_f32").string());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->config().rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ((*plain)->config().num_kv_heads, 4);
  auto qwen = LoadModel((kModels / "qwen3_like_bf16").string());
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_EQ((*qwen)->config().head_dim, 32);  // != hidden / heads = 16
  EXPECT_TRUE((*qwen)->config().tie_word_embeddings);
  auto big = LoadModel((kModels / "llama_guard_8b_like_bf16").string());
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ((*big)->config().rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ((*big)->config().rope_scaling.factor, 8.0);
}

TEST(LoadModelTest, ShardedGuardLoadsWithValuesFromTheRightShard) {
  auto model = LoadModel(kShardedGuard.string());
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelWeights& w = (*model)->weights();
  EXPECT_EQ((*model)->config().vocab_size, 128256);
  EXPECT_EQ((*model)->config().eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(w.lm_head.data, w.token_embd.data);  // tied
  const std::string embed = RawTensorBytes(kShardedGuard / "model-00001-of-00002.safetensors",
                                           "model.embed_tokens.weight");
  ASSERT_EQ(embed.size(), w.token_embd.nbytes);
  EXPECT_EQ(std::memcmp(embed.data(), w.token_embd.data, embed.size()), 0);
  const std::string down = RawTensorBytes(kShardedGuard / "model-00002-of-00002.safetensors",
                                          "model.layers.1.mlp.down_proj.weight");
  ASSERT_EQ(down.size(), w.layers[1].w_down.nbytes);
  EXPECT_EQ(std::memcmp(down.data(), w.layers[1].w_down.data, down.size()), 0);
  // weight_bytes counts the tied head once: embed + 2 layers + norm.
  size_t sum = w.token_embd.nbytes + w.output_norm.nbytes;
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* t :
         {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
      sum += t->nbytes;
    }
  }
  EXPECT_EQ((*model)->weight_bytes(), sum);
}

// LoadModel must not copy: every view lies in a file-backed mapping of the
// checkpoint (checked against the kernel's own list, /proc/self/maps).
TEST(LoadModelTest, WeightsAreMemoryMappedNotCopied) {
  auto model = LoadModel(kShardedGuard.string());
  ASSERT_TRUE(model.ok()) << model.status();
  std::ifstream maps("/proc/self/maps");
  ASSERT_TRUE(maps.good());
  struct Range {
    uintptr_t lo, hi;
    std::string path;
  };
  std::vector<Range> ranges;
  for (std::string line; std::getline(maps, line);) {
    Range r;
    std::istringstream in(line);
    std::string span, perms, offset, dev, inode;
    in >> span >> perms >> offset >> dev >> inode;
    std::getline(in >> std::ws, r.path);
    r.lo = std::stoull(span.substr(0, span.find('-')), nullptr, 16);
    r.hi = std::stoull(span.substr(span.find('-') + 1), nullptr, 16);
    ranges.push_back(r);
  }
  auto file_of = [&](const void* p) -> std::string {
    for (const Range& r : ranges) {
      if (reinterpret_cast<uintptr_t>(p) >= r.lo && reinterpret_cast<uintptr_t>(p) < r.hi) {
        return r.path;
      }
    }
    return "";
  };
  const ModelWeights& w = (*model)->weights();
  EXPECT_TRUE(Contains(file_of(w.token_embd.data), "model-00001-of-00002.safetensors"));
  EXPECT_TRUE(Contains(file_of(w.layers[0].wq.data), "model-00002-of-00002.safetensors"));
  EXPECT_TRUE(Contains(file_of(w.output_norm.data), "model-00002-of-00002.safetensors"));
}

// --- Random models and hand-made corrupt checkpoints -------------------------

ModelConfig TinyConfig() {
  auto c = NamedModelConfig("tiny");
  SR_CHECK(c.ok());
  return *c;
}

std::shared_ptr<const Model> Random(const ModelConfig& config, DType dtype, uint64_t seed) {
  auto model = MakeRandomModel(config, dtype, seed);
  SR_CHECK(model.ok());
  return *model;
}

// Every tensor of the model in name-table order, via the public weights.
std::vector<const TensorView*> AllViews(const Model& model) {
  const ModelWeights& w = model.weights();
  std::vector<const TensorView*> out = {&w.token_embd, &w.output_norm, &w.lm_head};
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.q_norm, &l.k_norm,
                                &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
      out.push_back(t);
    }
  }
  return out;
}

void ExpectSameWeights(const Model& a, const Model& b) {
  const auto va = AllViews(a), vb = AllViews(b);
  ASSERT_EQ(va.size(), vb.size());
  for (size_t i = 0; i < va.size(); ++i) {
    ASSERT_EQ(va[i]->empty(), vb[i]->empty()) << va[i]->name;
    if (va[i]->empty()) continue;
    EXPECT_EQ(va[i]->name, vb[i]->name);
    EXPECT_EQ(va[i]->dtype, vb[i]->dtype) << va[i]->name;
    EXPECT_EQ(va[i]->shape, vb[i]->shape) << va[i]->name;
    ASSERT_EQ(va[i]->nbytes, vb[i]->nbytes) << va[i]->name;
    EXPECT_EQ(std::memcmp(va[i]->data, vb[i]->data, va[i]->nbytes), 0) << va[i]->name;
  }
}

TEST(RandomModelTest, IsDeterministicAndSeedDependent) {
  const ModelConfig config = TinyConfig();
  auto a = Random(config, DType::kBF16, 7), b = Random(config, DType::kBF16, 7);
  ExpectSameWeights(*a, *b);
  EXPECT_EQ(a->fingerprint(), b->fingerprint());
  auto c = Random(config, DType::kBF16, 8);
  EXPECT_NE(a->fingerprint(), c->fingerprint());
  EXPECT_NE(std::memcmp(a->weights().layers[0].wq.data, c->weights().layers[0].wq.data,
                        a->weights().layers[0].wq.nbytes),
            0);
  // f32 and bf16 of one seed draw the same values (bf16 = f32 rounded).
  auto f = Random(config, DType::kF32, 7);
  const TensorView& wf = f->weights().layers[1].w_up;
  const TensorView& wb = a->weights().layers[1].w_up;
  for (int64_t i = 0; i < wf.numel(); ++i) {
    // Round-to-nearest to 8 significant bits: error <= half an ulp = |v| * 2^-8.
    const float v = ElementAsFloat(wf, i);
    ASSERT_LE(std::abs(ElementAsFloat(wb, i) - v), std::abs(v) * 0x1p-8f) << i;
  }
}

TEST(RandomModelTest, ValuesHaveTheDocumentedScale) {
  auto model = Random(TinyConfig(), DType::kF32, 1);
  const ModelWeights& w = model->weights();
  double sum = 0, sum_sq = 0;
  const TensorView& wq = w.layers[0].wq;
  for (int64_t i = 0; i < wq.numel(); ++i) {
    const double v = ElementAsFloat(wq, i);
    sum += v;
    sum_sq += v * v;
  }
  const double n = static_cast<double>(wq.numel());
  EXPECT_NEAR(sum / n, 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(sum_sq / n), 0.02, 0.002);
  for (int64_t i = 0; i < w.output_norm.numel(); ++i) {
    EXPECT_NEAR(ElementAsFloat(w.output_norm, i), 1.0f, 0.1f);
  }
  EXPECT_TRUE(w.layers[0].q_norm.empty());  // Llama
  auto qwen_config = NamedModelConfig("qwen3guard-0.6b");
  ASSERT_TRUE(qwen_config.ok());
  qwen_config->num_layers = 1;
  qwen_config->vocab_size = 256;
  qwen_config->bos_token_id = 1;  // the real ids lie outside the shrunken vocabulary
  qwen_config->eos_token_ids = {2};
  auto qwen = Random(*qwen_config, DType::kBF16, 1);
  EXPECT_EQ(qwen->weights().layers[0].q_norm.shape, std::vector<int64_t>{128});
  EXPECT_EQ(qwen->weights().lm_head.data, qwen->weights().token_embd.data);  // tied
}

TEST(RandomModelTest, WriteThenLoadRoundTrips) {
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    TempDir dir;
    auto model = Random(TinyConfig(), dtype, 42);
    ASSERT_TRUE(WriteModelDirectory(*model, dir.path().string()).ok());
    auto loaded = LoadModel(dir.path().string());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ExpectSameWeights(*model, **loaded);
    EXPECT_EQ((*loaded)->fingerprint(), model->fingerprint());
    EXPECT_EQ((*loaded)->weight_bytes(), model->weight_bytes());
    EXPECT_EQ((*loaded)->config().num_layers, 2);
    EXPECT_EQ((*loaded)->config().torch_dtype, dtype == DType::kBF16 ? "bfloat16" : "float32");
  }
}

// Resident bytes of the mapping holding `p` (/proc/self/smaps), -1 if none.
long MappingRssKb(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  bool ours = false;
  for (std::string line; std::getline(smaps, line);) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) ours = lo <= at && at < hi;
    if (ours && line.rfind("Rss:", 0) == 0) return std::stol(line.substr(4));
  }
  return -1;
}

// Bytes of [data, data + n) in the page cache (mincore on a file mapping
// reports page-cache residency, whether or not the mapping holds the page).
size_t PageCachedBytes(const std::byte* data, size_t n) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t last = reinterpret_cast<uintptr_t>(data) + n;
  std::vector<unsigned char> in_core((last - first + page - 1) / page);
  if (::mincore(reinterpret_cast<void*>(first), last - first, in_core.data()) != 0) return 0;
  size_t cached = 0;
  for (unsigned char c : in_core) cached += (c & 1) * page;
  return cached;
}

// An engine on a packed path gives the checkpoint's pages it packed back:
// the mapping's resident size falls by about the packed weights, and the
// pages stay in the page cache, so the next start reads memory, not disk
// (MADV_PAGEOUT, used before, evicted them: an 8B Q8_0 then took 31 s to
// start instead of 19 s on this machine).
TEST(LoadModelTest, AnEnginePackingTheWeightsLeavesThemInThePageCache) {
  const std::vector<cpu::GemmPath> packed =
      cpu::testing::AvailablePaths({cpu::GemmPath::kBf16Native, cpu::GemmPath::kInt8});
  if (packed.empty()) GTEST_SKIP() << "no packed GEMM path (bf16-native, int8) on this CPU";
  ModelConfig config = TinyConfig();
  config.hidden_size = 512;
  config.num_heads = 8;
  config.num_kv_heads = 4;
  config.head_dim = 64;
  config.intermediate_size = 1536;
  config.vocab_size = 1024;
  TempDir dir;
  const std::string gguf = (dir.path() / "model.gguf").string();
  ASSERT_TRUE(WriteModelGguf(*Random(config, DType::kBF16, 5), gguf).ok());
  auto model = LoadModel(gguf);
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelWeights& w = (*model)->weights();
  size_t layer_bytes = 0;
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      layer_bytes += t->nbytes;
    }
  }
  const std::byte* wq = w.layers[0].wq.data;
  const long before = MappingRssKb(wq);

  EngineOptions options;
  options.precision = cpu::PathPrecision(packed[0]);
  options.force_path = packed[0];
  options.num_threads = 1;
  options.max_tokens = 16;
  auto engine = Engine::Create(*model, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const long after = MappingRssKb(wq);
  std::printf(
      "path %s: mapping Rss %ld kB before the engine, %ld kB after (layer weights %zu kB)\n",
      cpu::GemmPathName(packed[0]), before, after, layer_bytes / 1024);
  // Packing read every layer weight through the mapping; they are not
  // resident in it any more (what stays: the embedding rows and norms).
  EXPECT_LE(after * 1024, static_cast<long>((*model)->weight_bytes() - layer_bytes * 9 / 10));
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* t : {&l.wq, &l.w_up, &l.w_down}) {
      EXPECT_GE(PageCachedBytes(t->data, t->nbytes), t->nbytes * 9 / 10) << t->name;
    }
  }
}

// A tiny random checkpoint on disk, then one edit that makes it inconsistent.
class CorruptCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = Random(TinyConfig(), DType::kBF16, 3);
    ASSERT_TRUE(WriteModelDirectory(*model_, dir_.path().string()).ok());
  }
  fs::path File(const std::string& name) const { return dir_.path() / name; }

  void EditConfig(const std::function<void(json&)>& edit) {
    json config = json::parse(ReadText(File("config.json")));
    edit(config);
    WriteText(File("config.json"), config.dump());
  }
  // Rewrites model.safetensors after `edit` changes its tensor list.
  void EditTensors(const std::function<void(std::vector<TensorToWrite>&)>& edit) {
    auto file = SafetensorsFile::Open(File("model.safetensors").string());
    ASSERT_TRUE(file.ok()) << file.status();
    std::vector<TensorToWrite> tensors;
    for (const TensorView& t : (*file)->tensors()) {
      tensors.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
    }
    edit(tensors);
    ASSERT_TRUE(WriteSafetensors(File("model.safetensors").string(), tensors, {}).ok());
  }
  absl::Status Load() { return LoadModel(dir_.path().string()).status(); }
  ::testing::AssertionResult LoadFailsWith(const std::string& part) {
    const absl::Status status = Load();
    if (status.ok()) return ::testing::AssertionFailure() << "loaded; expected '" << part << "'";
    return Contains(std::string(status.message()), part);
  }

  TempDir dir_;
  std::shared_ptr<const Model> model_;
};

TEST_F(CorruptCheckpointTest, IntactCheckpointLoads) { EXPECT_TRUE(Load().ok()) << Load(); }

TEST_F(CorruptCheckpointTest, MissingTensor) {
  EditTensors([](auto& t) {
    std::erase_if(
        t, [](const TensorToWrite& x) { return x.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  EXPECT_TRUE(LoadFailsWith("missing tensor 'model.layers.1.mlp.up_proj.weight'"));
  EXPECT_TRUE(LoadFailsWith("with 2 layers"));
}

TEST_F(CorruptCheckpointTest, UntiedModelWithoutLmHead) {
  EditTensors([](auto& t) {
    std::erase_if(t, [](const TensorToWrite& x) { return x.name == "lm_head.weight"; });
  });
  EXPECT_TRUE(LoadFailsWith("missing tensor 'lm_head.weight'"));
  EXPECT_TRUE(LoadFailsWith("untied embeddings"));
}

TEST_F(CorruptCheckpointTest, ConfigSaysMoreLayersThanTheWeights) {
  EditConfig([](json& c) { c["num_hidden_layers"] = 3; });
  EXPECT_TRUE(LoadFailsWith("missing tensor 'model.layers.2."));
  EXPECT_TRUE(LoadFailsWith("says LlamaForCausalLM with 3 layers"));
}

TEST_F(CorruptCheckpointTest, ConfigSaysFewerLayersThanTheWeights) {
  EditConfig([](json& c) { c["num_hidden_layers"] = 1; });
  EXPECT_TRUE(LoadFailsWith("says 1 layers but the checkpoint has layer 1"));
}

TEST_F(CorruptCheckpointTest, ConfigDisagreesOnSizes) {
  EditConfig([](json& c) { c["intermediate_size"] = 256; });
  EXPECT_TRUE(LoadFailsWith(
      "tensor 'model.layers.0.mlp.gate_proj.weight': shape [128, 64] does not match"));
  EXPECT_TRUE(LoadFailsWith("(expected [256, 64]"));
  EditConfig([](json& c) {
    c["intermediate_size"] = 128;
    c["vocab_size"] = 1000;
  });
  EXPECT_TRUE(LoadFailsWith("tensor 'model.embed_tokens.weight': shape [512, 64] does not match"));
  EditConfig([](json& c) {
    c["vocab_size"] = 512;
    c["num_key_value_heads"] = 4;
  });
  EXPECT_TRUE(LoadFailsWith("tensor 'model.layers.0.self_attn.k_proj.weight': shape [32, 64]"));
}

TEST_F(CorruptCheckpointTest, ConfigRefusedBeforeWeightsAreRead) {
  EditConfig([](json& c) { c["architectures"] = {"GemmaForCausalLM"}; });
  EXPECT_TRUE(
      LoadFailsWith("config.json: field 'architectures': unsupported architecture "
                    "'GemmaForCausalLM'"));
  EditConfig([](json& c) {
    c["architectures"] = {"LlamaForCausalLM"};
    c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  });
  EXPECT_TRUE(LoadFailsWith("config.json: rope_scaling: unsupported RoPE scaling type 'yarn'"));
  EditConfig([](json& c) {
    c["rope_scaling"] = nullptr;
    c["hidden_size"] = -64;
  });
  EXPECT_TRUE(LoadFailsWith("field 'hidden_size': value -64 is out of range"));
  fs::remove(File("config.json"));
  EXPECT_TRUE(LoadFailsWith("config.json: cannot read"));
}

TEST_F(CorruptCheckpointTest, UnknownDtypeNamesFileAndTensor) {
  std::string bytes = ReadText(File("model.safetensors"));
  const size_t at = bytes.find("\"BF16\"");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 6, "\"I16X\"");  // same length: the header stays well-framed
  WriteText(File("model.safetensors"), bytes);
  EXPECT_TRUE(LoadFailsWith("model.safetensors: tensor '"));
  EXPECT_TRUE(LoadFailsWith("unknown dtype 'I16X'"));
}

TEST_F(CorruptCheckpointTest, TruncatedWeights) {
  const std::string bytes = ReadText(File("model.safetensors"));
  WriteText(File("model.safetensors"), bytes.substr(0, bytes.size() - 2));
  EXPECT_TRUE(LoadFailsWith("out of range"));
}

TEST_F(CorruptCheckpointTest, UnexpectedTensorIsAnError) {
  const float bias[64] = {};
  EditTensors([&](auto& t) {
    t.push_back({"model.layers.0.self_attn.q_proj.bias", DType::kF32, {64}, bias, sizeof(bias)});
  });
  EXPECT_TRUE(
      LoadFailsWith("tensor 'model.layers.0.self_attn.q_proj.bias': not part of LlamaForCausalLM"));
}

TEST_F(CorruptCheckpointTest, HarmlessExtrasAreIgnored) {
  const float inv_freq[8] = {};
  EditTensors([&](auto& t) {
    t.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq",
                 DType::kF32,
                 {8},
                 inv_freq,
                 sizeof(inv_freq)});
  });
  EXPECT_TRUE(Load().ok()) << Load();
}

TEST_F(CorruptCheckpointTest, TiedConfigIgnoresAStoredLmHeadLikeHf) {
  EditConfig([](json& c) { c["tie_word_embeddings"] = true; });
  auto model = LoadModel(dir_.path().string());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->weights().lm_head.data, (*model)->weights().token_embd.data);
  EXPECT_EQ((*model)->weight_bytes(), model_->weight_bytes() - model_->weights().lm_head.nbytes);
}

TEST_F(CorruptCheckpointTest, MixedDtypesAreAllowed) {
  auto f32 = Random(TinyConfig(), DType::kF32, 3);
  const TensorView& wq = f32->weights().layers[0].wq;
  EditTensors([&](auto& t) {
    for (TensorToWrite& x : t) {
      if (x.name == wq.name) x = {wq.name, wq.dtype, wq.shape, wq.data, wq.nbytes};
    }
  });
  auto model = LoadModel(dir_.path().string());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->weights().layers[0].wq.dtype, DType::kF32);
  EXPECT_EQ((*model)->weights().layers[0].wk.dtype, DType::kBF16);
}

}  // namespace
}  // namespace saferoute
