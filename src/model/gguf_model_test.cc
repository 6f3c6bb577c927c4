// GGUF models: config from metadata, tensor binding through the name table,
// Q/K row order (kept as in the file, RoPE pairs adjacent rows), rope_freqs, quantized weights
// through the engine, and metadata that disagrees with the tensors (each refused with its own
// error).
//
// The real-model proof (a llama.cpp-converted SmolLM2 against an independent
// float64 forward and llama.cpp's own logits) is tests/e2e/test_smollm2_parity.py;
// these tests cover what a tiny model can, with files written here.
#include "model/gguf_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <variant>

#include "cpu/dequantize.h"
#include "io/gguf_writer.h"
#include "model/arch_tensors.h"
#include "model/checkpoint_model.h"
#include "model/engine.h"
#include "util/test_paths.h"
#include "util/test_status.h"

namespace saferoute {
namespace {

namespace fs = std::filesystem;

ModelConfig TinyLlama() {
  ModelConfig c = *NamedModelConfig("tiny");  // GQA 4:2, head 16, llama3 RoPE, untied
  return c;
}

ModelConfig TinyQwen3() {
  ModelConfig c = TinyLlama();
  c.architecture = Architecture::kQwen3;
  c.architecture_name = "Qwen3ForCausalLM";
  c.head_dim = 32;  // Qwen3's head size is not hidden / heads
  c.rope_scaling = {};
  c.rope_theta = 1e6;
  c.tie_word_embeddings = true;
  return c;
}

// A one-thread engine on `precision`.
std::unique_ptr<Engine> TestEngine(std::shared_ptr<const Model> model,
                                   Precision precision = Precision::kFp32) {
  EngineOptions options;
  options.precision = precision;
  options.num_threads = 1;
  options.max_tokens = 64;
  auto engine = Engine::Create(std::move(model), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

// Last-position logits of `ids` (empty if the engine could not be made).
std::vector<float> Logits(Engine* engine, const std::vector<int32_t>& ids) {
  if (engine == nullptr) return {};
  SequenceRequest request;
  request.tokens = ids;
  request.logits = LogitsMode::kFull;
  auto results = engine->Prefill({&request, 1});
  EXPECT_TRUE(results.ok()) << results.status();
  return results.ok() ? (*results)[0].logits : std::vector<float>{};
}

// The same on the fp32 path.
std::vector<float> Logits(std::shared_ptr<const Model> model, const std::vector<int32_t>& ids) {
  return Logits(TestEngine(std::move(model)).get(), ids);
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

const std::vector<int32_t> kIds = {1, 17, 200, 3, 511, 42, 9, 300};

TEST(GgufModelTest, PermutationMatchesTheConverter) {
  // convert_hf_to_gguf.py permute: w.reshape(n_head, 2, d/2, cols)
  // .swapaxes(1, 2): GGUF row h*d + 2j + s holds HF row h*d + s*d/2 + j.
  const std::vector<int64_t> expected = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
  for (int64_t row = 0; row < 16; ++row) EXPECT_EQ(GgufToHfRow(row, 8), expected[row]) << row;
}

TEST(GgufModelTest, LlamaRoundTripMatchesTheSafetensorsModel) {
  auto random = MakeRandomModel(TinyLlama(), DType::kF32, 7);
  ASSERT_TRUE(random.ok()) << random.status();
  const std::string dir = UniqueTestPath("hf"), path = UniqueTestPath("tiny.gguf");
  ASSERT_TRUE(WriteModelDirectory(**random, dir).ok());
  ASSERT_TRUE(WriteModelGguf(**random, path).ok());
  EXPECT_TRUE(HasGgufMagic(path));
  auto hf = LoadModel(dir);
  auto gguf = LoadModel(path);
  ASSERT_TRUE(hf.ok()) << hf.status();
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  const ModelConfig& a = (*hf)->config();
  const ModelConfig& b = (*gguf)->config();
  EXPECT_EQ(b.architecture, Architecture::kLlama);
  EXPECT_EQ(b.architecture_name, "LlamaForCausalLM");
  EXPECT_EQ(b.hidden_size, a.hidden_size);
  EXPECT_EQ(b.num_layers, a.num_layers);
  EXPECT_EQ(b.num_heads, a.num_heads);
  EXPECT_EQ(b.num_kv_heads, a.num_kv_heads);
  EXPECT_EQ(b.head_dim, a.head_dim);
  EXPECT_EQ(b.intermediate_size, a.intermediate_size);
  EXPECT_EQ(b.vocab_size, a.vocab_size);
  EXPECT_EQ(b.max_position_embeddings, a.max_position_embeddings);
  EXPECT_EQ(b.rope_theta, a.rope_theta);
  EXPECT_FLOAT_EQ(static_cast<float>(b.rms_norm_eps), static_cast<float>(a.rms_norm_eps));
  EXPECT_EQ(b.tie_word_embeddings, false);
  EXPECT_EQ(b.bos_token_id, a.bos_token_id);
  EXPECT_EQ(b.eos_token_ids, a.eos_token_ids);
  // llama3 rope_scaling travels as rope_freqs.weight, as llama.cpp writes it.
  ASSERT_EQ(b.rope_scaling.type, RopeScaling::Type::kFreqFactors);
  EXPECT_EQ(b.rope_scaling.freq_factors.size(), static_cast<size_t>(a.head_dim / 2));

  // Every tensor holds the same bytes; Q/K keep the file's row order (no
  // copy), which RoPE pairs as ggml does.
  EXPECT_EQ((*hf)->weights().rope_pairing, cpu::RopePairing::kHalves);
  EXPECT_EQ((*gguf)->weights().rope_pairing, cpu::RopePairing::kAdjacent);
  int reordered = 0;
  for (const TensorSpec& spec : ExpectedTensors(a)) {
    const TensorView& x = SlotOf((*hf)->weights(), spec);
    const TensorView& y = SlotOf((*gguf)->weights(), spec);
    ASSERT_EQ(x.shape, y.shape) << spec.name;
    ASSERT_EQ(x.nbytes, y.nbytes) << spec.name;
    EXPECT_EQ(y.name, spec.name);
    if (!RowsInGgufQkOrder((*gguf)->weights(), spec)) {
      EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0) << spec.name;
      continue;
    }
    ++reordered;
    const size_t row_bytes = x.nbytes / x.shape[0];
    for (int64_t row = 0; row < y.shape[0]; ++row) {
      ASSERT_EQ(std::memcmp(y.data + row * row_bytes,
                            x.data + GgufToHfRow(row, a.head_dim) * row_bytes, row_bytes),
                0)
          << spec.name << " row " << row;
      EXPECT_EQ(GgufToHfRow(HfToGgufRow(row, a.head_dim), a.head_dim), row);
    }
    // A range that starts and ends inside rows reads back in HF order.
    std::vector<std::byte> hf_order(x.nbytes);
    CopyInHfRowOrder(y, a.head_dim, 3, x.nbytes - 10, hf_order.data());
    EXPECT_EQ(std::memcmp(hf_order.data(), x.data + 3, x.nbytes - 10), 0) << spec.name;
  }
  EXPECT_EQ(reordered, 2 * a.num_layers);
  // The same model: logits differ only by the RoPE frequencies' rounding
  // (HF's llama3 formula vs the converter's divisors, both in fp32).
  EXPECT_LT(MaxAbsDiff(Logits(*hf, kIds), Logits(*gguf, kIds)), 1e-4);

  // Written back as an HF directory, the GGUF model has Q/K in HF order again,
  // the same identity, and the same logits.
  const std::string back = UniqueTestPath("hf-from-gguf");
  ASSERT_TRUE(WriteModelDirectory(**gguf, back).ok());
  auto reloaded = LoadModel(back);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ((*reloaded)->weights().rope_pairing, cpu::RopePairing::kHalves);
  for (const TensorSpec& spec : ExpectedTensors(a)) {
    const TensorView& x = SlotOf((*hf)->weights(), spec);
    const TensorView& z = SlotOf((*reloaded)->weights(), spec);
    ASSERT_EQ(x.nbytes, z.nbytes) << spec.name;
    EXPECT_EQ(std::memcmp(x.data, z.data, x.nbytes), 0) << spec.name;
  }
  EXPECT_EQ((*reloaded)->fingerprint(), (*gguf)->fingerprint());
  EXPECT_LT(MaxAbsDiff(Logits(*reloaded, kIds), Logits(*gguf, kIds)), 1e-5);
  fs::remove_all(back);
  fs::remove_all(dir);
  fs::remove(path);
}

TEST(GgufModelTest, Qwen3RoundTripIsNotPermutedAndTies) {
  auto random = MakeRandomModel(TinyQwen3(), DType::kBF16, 3);
  ASSERT_TRUE(random.ok()) << random.status();
  const std::string path = UniqueTestPath("qwen3.gguf");
  ASSERT_TRUE(WriteModelGguf(**random, path).ok());
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->FindTensor("output.weight"), nullptr);  // tied: no output tensor
  ASSERT_NE((*file)->FindTensor("blk.1.attn_k_norm.weight"), nullptr);
  auto gguf = LoadModel(path);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_EQ((*gguf)->config().architecture, Architecture::kQwen3);
  EXPECT_EQ((*gguf)->config().head_dim, 32);
  EXPECT_TRUE((*gguf)->config().tie_word_embeddings);
  EXPECT_EQ((*gguf)->weights().lm_head.data, (*gguf)->weights().token_embd.data);
  // Not permuted: attn_q holds the original rows.
  EXPECT_EQ((*gguf)->weights().rope_pairing, cpu::RopePairing::kHalves);
  const TensorView& wq = (*gguf)->weights().layers[0].wq;
  const TensorView& original = (*random)->weights().layers[0].wq;
  ASSERT_EQ(wq.nbytes, original.nbytes);
  EXPECT_EQ(std::memcmp(wq.data, original.data, wq.nbytes), 0);
  EXPECT_EQ(MaxAbsDiff(Logits(*random, kIds), Logits(*gguf, kIds)), 0.0f);
  fs::remove(path);
}

// ---- Quantized weights ----

// Random blocks of `dtype` whose f16 scales are replaced by small values, so a
// forward pass stays in a sane range.
std::vector<std::byte> RandomQuantized(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  const DTypeBlock block = BlockOf(dtype);
  std::vector<std::byte> data(*RowBytes(dtype, cols) * rows);
  for (std::byte& b : data) b = static_cast<std::byte>(rng());
  const uint16_t small = 0x1400;  // 2^-10 as an IEEE half
  const uint16_t tiny = 0x0800;   // 2^-13
  for (size_t at = 0; at < data.size(); at += block.bytes) {
    auto set = [&](size_t offset, uint16_t v) { std::memcpy(data.data() + at + offset, &v, 2); };
    switch (dtype) {
      case DType::kQ8_0:
      case DType::kQ4_0:
      case DType::kQ5_0:
        set(0, small);
        break;
      case DType::kQ4_1:
      case DType::kQ5_1:
        set(0, small);
        set(2, 0x9400);  // m = -2^-10
        break;
      case DType::kQ4_K:
      case DType::kQ5_K:
        set(0, tiny);
        set(2, tiny);
        break;
      case DType::kQ6_K:
        set(208, tiny);
        break;
      default:
        break;
    }
  }
  return data;
}

// `dtype` weights for every matrix of a random model (norms stay F32), and
// the same values dequantized into an F32 model: the two must compute the
// same logits.
struct QuantizedTwins {
  std::shared_ptr<const Model> quantized, dequantized;
};

QuantizedTwins MakeQuantizedTwins(const ModelConfig& config, DType dtype) {
  auto base = MakeRandomModel(config, DType::kF32, 11);
  EXPECT_TRUE(base.ok()) << base.status();
  struct Storage {
    std::vector<std::vector<std::byte>> buffers;
    std::shared_ptr<const Model> base;
  };
  auto q_storage = std::make_shared<Storage>(), f_storage = std::make_shared<Storage>();
  q_storage->base = f_storage->base = *base;
  ModelWeights qw = (*base)->weights(), fw = (*base)->weights();
  std::mt19937 rng(5);
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    if (spec.shape.size() != 2) continue;
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    std::vector<std::byte>& q =
        q_storage->buffers.emplace_back(RandomQuantized(dtype, rows, cols, rng));
    std::vector<std::byte>& f = f_storage->buffers.emplace_back(rows * cols * sizeof(float));
    cpu::DequantizeToF32(dtype, q.data(), rows * cols, reinterpret_cast<float*>(f.data()));
    TensorView& qt = SlotOf(qw, spec);
    qt.dtype = dtype;
    qt.data = q.data();
    qt.nbytes = q.size();
    TensorView& ft = SlotOf(fw, spec);
    ft.data = f.data();
  }
  if (config.tie_word_embeddings) {
    qw.lm_head = qw.token_embd;
    fw.lm_head = fw.token_embd;
  }
  return {std::make_shared<CheckpointModel>(config, std::move(qw), q_storage),
          std::make_shared<CheckpointModel>(config, std::move(fw), f_storage)};
}

class GgufQuantizedModelTest : public ::testing::TestWithParam<DType> {};

TEST_P(GgufQuantizedModelTest, LoadsAndComputesWhatItsDequantizedValuesCompute) {
  const DType dtype = GetParam();
  ModelConfig config = TinyLlama();
  config.rope_scaling = {};
  if (BlockOf(dtype).elements == 256) {  // K-quant rows are 256-element blocks
    config.hidden_size = 256;
    config.intermediate_size = 512;
    config.head_dim = 64;
  }
  const QuantizedTwins twins = MakeQuantizedTwins(config, dtype);
  const std::string path = UniqueTestPath("quantized.gguf");
  ASSERT_TRUE(WriteModelGguf(*twins.quantized, path).ok());
  auto gguf = LoadModel(path);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  // Q/K rows of a quantized tensor are permuted whole (blocks run along a
  // row); read in HF order they are the original rows.
  const TensorView& wk = (*gguf)->weights().layers[1].wk;
  const TensorView& original = twins.quantized->weights().layers[1].wk;
  EXPECT_EQ(wk.dtype, dtype);
  ASSERT_EQ(wk.nbytes, original.nbytes);
  std::vector<std::byte> hf_order(wk.nbytes);
  CopyInHfRowOrder(wk, config.head_dim, 0, wk.nbytes, hf_order.data());
  EXPECT_EQ(std::memcmp(hf_order.data(), original.data, wk.nbytes), 0);
  const std::vector<float> expected = Logits(twins.dequantized, kIds);
  const std::vector<float> actual = Logits(*gguf, kIds);
  float scale = 0;
  for (float v : expected) scale = std::max(scale, std::fabs(v));
  EXPECT_GT(scale, 0.0f);
  EXPECT_LE(MaxAbsDiff(expected, actual), 1e-5f * std::max(1.0f, scale));
  fs::remove(path);
}

// int8-a16 runs Q/K/V on bf16 (cpu::AttentionInputPath), except where the
// checkpoint already holds them quantized: Q8_0 blocks go through the q8
// kernels as stored, since bf16 would round their values (8-bit q times an
// f16 scale) once more. The engine says which it did; and the Q8_0 model,
// whose every weight is then used exactly, stays closer to its values' fp32
// logits than the same values held as F32 (re-rounded: Q/K/V to bf16, the
// rest to int8 blocks again).
TEST(GgufModelTest, Int8A16KeepsQ8_0AttentionWeightsAsStored) {
  if (cpu::DetectCpuSupport().int8_block_isa == cpu::Q8Isa::kNone) {
    GTEST_SKIP() << "int8-a16 needs AVX2 (oneDNN ISA " << cpu::DetectCpuSupport().isa << ")";
  }
  ModelConfig config = TinyLlama();
  config.rope_scaling = {};
  const QuantizedTwins twins = MakeQuantizedTwins(config, DType::kQ8_0);
  const std::vector<float> expected = Logits(twins.dequantized, kIds);
  float scale = 0;
  for (float v : expected) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0.0f);
  const std::unique_ptr<Engine> held_q8 = TestEngine(twins.quantized, Precision::kInt8A16);
  const std::unique_ptr<Engine> held_f32 = TestEngine(twins.dequantized, Precision::kInt8A16);
  ASSERT_NE(held_q8, nullptr);
  ASSERT_NE(held_f32, nullptr);
  EXPECT_NE(held_q8->path_description().find("Q/K/V on int8-a16 (as stored)"), std::string::npos)
      << held_q8->path_description();
  EXPECT_NE(held_f32->path_description().find("Q/K/V on bf16-"), std::string::npos)
      << held_f32->path_description();
  const float stored = MaxAbsDiff(expected, Logits(held_q8.get(), kIds));
  const float refloated = MaxAbsDiff(expected, Logits(held_f32.get(), kIds));
  std::printf("int8-a16 max |logit error| / max |logit|: held as Q8_0 %.3g, as F32 %.3g\n",
              stored / scale, refloated / scale);
  EXPECT_LT(stored, refloated);
}

INSTANTIATE_TEST_SUITE_P(EveryBlockType, GgufQuantizedModelTest,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                                           DType::kQ5_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

// ---- Metadata that disagrees with the tensors, and unsupported features ----

using Value = std::variant<uint32_t, float, std::string>;

// The metadata llama.cpp's converter writes for a llama model (keys only as
// this test states them; values from `c`).
std::vector<std::pair<std::string, Value>> LlamaMetadata(const ModelConfig& c) {
  return {
      {"general.architecture", std::string("llama")},
      {"llama.context_length", static_cast<uint32_t>(c.max_position_embeddings)},
      {"llama.embedding_length", static_cast<uint32_t>(c.hidden_size)},
      {"llama.block_count", static_cast<uint32_t>(c.num_layers)},
      {"llama.feed_forward_length", static_cast<uint32_t>(c.intermediate_size)},
      {"llama.attention.head_count", static_cast<uint32_t>(c.num_heads)},
      {"llama.attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads)},
      {"llama.rope.freq_base", static_cast<float>(c.rope_theta)},
      {"llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps)},
      {"llama.vocab_size", static_cast<uint32_t>(c.vocab_size)},
      {"llama.rope.dimension_count", static_cast<uint32_t>(c.head_dim)},
      {"tokenizer.ggml.bos_token_id", static_cast<uint32_t>(c.bos_token_id)},
  };
}

struct Edit {
  std::map<std::string, std::optional<Value>> metadata = {};  // nullopt: remove the key
  std::vector<std::string> drop_tensors = {};
  std::vector<std::pair<std::string, std::vector<int64_t>>> extra_f32_tensors = {};
  int64_t tokens = -1;  // >= 0: a tokenizer.ggml.tokens array of that many tokens
};

// A tiny llama GGUF (weights unpermuted: only the metadata checks matter).
std::string WriteEdited(const Edit& edit, ModelConfig c = TinyLlama()) {
  c.rope_scaling = {};
  auto model = MakeRandomModel(c, DType::kF32, 1);
  EXPECT_TRUE(model.ok());
  GgufWriter w;
  auto metadata = LlamaMetadata(c);
  for (const auto& [key, value] : edit.metadata) {
    std::erase_if(metadata, [&](const auto& kv) { return kv.first == key; });
    if (value) metadata.emplace_back(key, *value);
  }
  for (const auto& [key, value] : metadata) {
    if (const auto* u = std::get_if<uint32_t>(&value)) w.AddUint32(key, *u);
    if (const auto* f = std::get_if<float>(&value)) w.AddFloat32(key, *f);
    if (const auto* s = std::get_if<std::string>(&value)) w.AddString(key, *s);
  }
  if (edit.tokens >= 0) {
    std::vector<std::string> tokens;
    for (int64_t i = 0; i < edit.tokens; ++i) tokens.push_back(absl::StrCat("t", i));
    w.AddStringArray("tokenizer.ggml.tokens", tokens);
  }
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    if (std::find(edit.drop_tensors.begin(), edit.drop_tensors.end(), spec.gguf_name) !=
        edit.drop_tensors.end()) {
      continue;
    }
    const TensorView& t = SlotOf((*model)->weights(), spec);
    w.AddTensor(spec.gguf_name, t.dtype, t.shape, t.data);
  }
  std::vector<float> zeros(4096);
  for (const auto& [name, shape] : edit.extra_f32_tensors) {
    w.AddTensor(name, DType::kF32, shape, zeros.data());
  }
  const std::string path = UniqueTestPath("edited.gguf");
  EXPECT_TRUE(w.Write(path).ok());
  return path;
}

absl::Status LoadEdited(const Edit& edit, ModelConfig c = TinyLlama()) {
  const std::string path = WriteEdited(edit, c);
  absl::Status status = LoadModel(path).status();
  fs::remove(path);
  return status;
}

TEST(GgufModelTest, TheUneditedTinyFileLoads) { EXPECT_TRUE(LoadEdited({}).ok()); }

TEST(GgufModelTest, RefusesMetadataThatDisagreesWithTheTensors) {
  EXPECT_TRUE(ErrorContains(LoadEdited({.metadata = {{"llama.block_count", uint32_t{3}}}}),
                            "edited.gguf: missing tensor 'blk.2.attn_norm.weight' (the metadata "
                            "says llama with 3 layers"));
  EXPECT_TRUE(ErrorContains(LoadEdited({.metadata = {{"llama.block_count", uint32_t{1}}}}),
                            "tensor 'blk.1.attn_norm.weight': the metadata says 1 layers "
                            "(llama.block_count) but the file has layer 1"));
  EXPECT_TRUE(
      ErrorContains(LoadEdited({.metadata = {{"llama.embedding_length", uint32_t{32}},
                                             {"llama.attention.key_length", uint32_t{16}}}}),
                    "tensor 'token_embd.weight': shape [512, 64] is not [vocab, "
                    "llama.embedding_length = 32]"));
  EXPECT_TRUE(ErrorContains(
      LoadEdited({.metadata = {{"llama.feed_forward_length", uint32_t{100}}}}),
      "tensor 'blk.0.ffn_gate.weight': shape [128, 64] disagrees with the metadata (expected "
      "[100, 64]"));
  EXPECT_TRUE(ErrorContains(LoadEdited({.metadata = {{"llama.vocab_size", uint32_t{500}}}}),
                            "key 'llama.vocab_size': 500 disagrees with tensor "
                            "'token_embd.weight' (512 rows)"));
  EXPECT_TRUE(
      ErrorContains(LoadEdited({.metadata = {{"llama.attention.head_count", uint32_t{8}},
                                             {"llama.attention.key_length", uint32_t{16}}}}),
                    "tensor 'blk.0.attn_q.weight': shape [64, 64] disagrees with the "
                    "metadata (expected [128, 64]"));
  EXPECT_TRUE(LoadEdited({.tokens = 512}).ok());
  EXPECT_TRUE(ErrorContains(LoadEdited({.tokens = 511}),
                            "edited.gguf: key 'tokenizer.ggml.tokens': 511 tokens disagree with "
                            "tensor 'token_embd.weight' (512 rows)"));
  EXPECT_TRUE(ErrorContains(LoadEdited({.drop_tensors = {"blk.1.ffn_down.weight"}}),
                            "missing tensor 'blk.1.ffn_down.weight'"));
  EXPECT_TRUE(ErrorContains(
      LoadEdited({.extra_f32_tensors = {{"blk.0.attn_q.bias", {64}}}}),
      "tensor 'blk.0.attn_q.bias': not part of llama as configured (unsupported feature?)"));
  EXPECT_TRUE(ErrorContains(LoadEdited({.extra_f32_tensors = {{"rope_freqs.weight", {3}}}}),
                            "tensor 'rope_freqs.weight': shape [3] is not [head_dim / 2] = [8]"));
  EXPECT_TRUE(
      ErrorContains(LoadEdited({.metadata = {{"tokenizer.ggml.bos_token_id", uint32_t{512}}}}),
                    "key 'tokenizer.ggml.bos_token_id': value 512 is out of range [0, 511]"));
}

TEST(GgufModelTest, RefusesBadOrUnsupportedMetadataByKey) {
  EXPECT_TRUE(ErrorContains(
      LoadEdited({.metadata = {{"general.architecture", std::string("gemma3")}}}),
      "key 'general.architecture': unsupported architecture 'gemma3' (supported: llama, qwen3)"));
  EXPECT_TRUE(ErrorContains(LoadEdited({.metadata = {{"general.architecture", std::nullopt}}}),
                            "key 'general.architecture' is missing"));
  EXPECT_TRUE(ErrorContains(
      LoadEdited({.metadata = {{"llama.attention.layer_norm_rms_epsilon", std::nullopt}}}),
      "key 'llama.attention.layer_norm_rms_epsilon' is missing (required)"));
  EXPECT_TRUE(ErrorContains(LoadEdited({.metadata = {{"llama.block_count", std::string("two")}}}),
                            "key 'llama.block_count': is STRING, expected an integer"));
  EXPECT_TRUE(ErrorContains(
      LoadEdited({.metadata = {{"llama.attention.head_count_kv", uint32_t{3}}}}),
      "key 'llama.attention.head_count_kv': 3 does not divide attention.head_count 4"));
  EXPECT_TRUE(ErrorContains(
      LoadEdited({.metadata = {{"llama.rope.dimension_count", uint32_t{8}}}}),
      "key 'llama.rope.dimension_count': 8 differs from the head size 16 (partial rotary"));
  EXPECT_TRUE(
      ErrorContains(LoadEdited({.metadata = {{"llama.attention.value_length", uint32_t{8}}}}),
                    "key 'llama.attention.value_length': 8 differs from the key length 16"));
  EXPECT_TRUE(
      ErrorContains(LoadEdited({.metadata = {{"llama.rope.scaling.type", std::string("yarn")}}}),
                    "key 'llama.rope.scaling.type': 'yarn' RoPE scaling is not supported"));
  EXPECT_TRUE(ErrorContains(
      LoadEdited({.metadata = {{"llama.rope.scaling.factor", 4.0f}}}),
      "key 'llama.rope.scaling.factor': linear RoPE scaling factor 4 is not supported"));
  EXPECT_TRUE(LoadEdited({.metadata = {{"llama.rope.scaling.type", std::string("none")}}}).ok());
  EXPECT_TRUE(ErrorContains(LoadEdited({.metadata = {{"llama.expert_count", uint32_t{8}}}}),
                            "key 'llama.expert_count': mixture-of-experts"));
  EXPECT_TRUE(ErrorContains(LoadEdited({.metadata = {{"llama.context_length", uint32_t{0}}}}),
                            "key 'llama.context_length': value 0 is out of range"));
  EXPECT_TRUE(ErrorContains(LoadEdited({.metadata = {{"llama.rope.freq_base", -1.0f}}}),
                            "key 'llama.rope.freq_base': must be > 0"));
}

TEST(GgufModelTest, TensorsOfTypesTheEngineCannotReadAreRefusedByName) {
  const std::string path = WriteEdited({});
  // Retag attn_v (F32 [32, 64]) as I32, which has F32's size.
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string name = "blk.0.attn_v.weight";
  const size_t at = bytes.find(name) + name.size() + 4 + 8 * 2;  // n_dims, ne[2] -> type
  uint32_t type = 26;                                            // GGML_TYPE_I32
  std::memcpy(bytes.data() + at, &type, 4);
  std::ofstream(path, std::ios::binary) << bytes;
  EXPECT_TRUE(ErrorContains(LoadModel(path).status(),
                            "tensor 'blk.0.attn_v.weight': ggml type I32 (26) is not supported"));
  fs::remove(path);
}

TEST(GgufModelTest, LoadModelTellsFilesFromDirectoriesByMagic) {
  const std::string not_gguf = UniqueTestPath("model.gguf");
  std::ofstream(not_gguf) << "{\"a\": 1}";
  EXPECT_TRUE(ErrorContains(LoadModel(not_gguf).status(),
                            "model.gguf: not a GGUF file (no \"GGUF\" magic) and not a model "
                            "directory"));
  EXPECT_TRUE(ErrorContains(LoadModelConfigAt(not_gguf).status(), "not a GGUF file"));
  fs::remove(not_gguf);
  const std::string path = WriteEdited({});
  auto config = LoadModelConfigAt(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_layers, 2);
  auto same = LoadModelConfig(path);  // a .gguf given where a config.json is expected
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->hidden_size, 64);
  fs::remove(path);
}

TEST(GgufModelTest, FreqFactorsRoundTripThroughConfigJson) {
  ModelConfig c = TinyLlama();
  c.rope_scaling = {.type = RopeScaling::Type::kFreqFactors,
                    .freq_factors = {1, 1, 1, 2, 4, 8, 8, 8}};
  auto back = ParseModelConfig(ModelConfigToJson(c), "cfg.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->rope_scaling.type, RopeScaling::Type::kFreqFactors);
  EXPECT_EQ(back->rope_scaling.freq_factors, c.rope_scaling.freq_factors);
  c.rope_scaling.freq_factors.pop_back();
  EXPECT_TRUE(ErrorContains(ParseModelConfig(ModelConfigToJson(c), "cfg.json").status(),
                            "field 'rope_scaling': 7 factors, expected head_dim / 2 = 8"));
}

}  // namespace
}  // namespace saferoute
