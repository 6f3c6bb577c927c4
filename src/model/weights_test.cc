// LoadModel on the shared fixtures (real HF-written checkpoints), on
// hand-made corrupt checkpoints, and random-model round trips.
#include "model/weights.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/safetensors.h"
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
    if (c.tie_word_embeddings) EXPECT_EQ(w.lm_head.data, w.token_embd.data);
    else EXPECT_NE(w.lm_head.data, w.token_embd.data);
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
  const std::string embed =
      RawTensorBytes(kShardedGuard / "model-00001-of-00002.safetensors", "model.embed_tokens.weight");
  ASSERT_EQ(embed.size(), w.token_embd.nbytes);
  EXPECT_EQ(std::memcmp(embed.data(), w.token_embd.data, embed.size()), 0);
  const std::string down = RawTensorBytes(kShardedGuard / "model-00002-of-00002.safetensors",
                                          "model.layers.1.mlp.down_proj.weight");
  ASSERT_EQ(down.size(), w.layers[1].w_down.nbytes);
  EXPECT_EQ(std::memcmp(down.data(), w.layers[1].w_down.data, down.size()), 0);
  // weight_bytes counts the tied head once: embed + 2 layers + norm.
  size_t sum = w.token_embd.nbytes + w.output_norm.nbytes;
  for (const LayerWeights& l : w.layers) {
    for (const TensorView* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate,
                                &l.w_up, &l.w_down}) {
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
  struct Range { uintptr_t lo, hi; std::string path; };
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

}  // namespace
}  // namespace saferoute
