// config.json parsing: the fixtures' real HF configs, every refusal rule, and
// the named shapes.
#include "model/config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "nlohmann/json.hpp"
#include "util/test_status.h"

namespace saferoute {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kFixtures = fs::path(SAFEROUTE_SHARED_DIR) / "fixtures";

// A minimal valid Llama config; tests edit one field at a time.
json BaseConfig() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2})");
}

absl::StatusOr<ModelConfig> Parse(const json& j) { return ParseModelConfig(j.dump(), "cfg.json"); }

TEST(ModelConfigTest, ParsesTheFixtureConfigs) {
  auto lg1b = LoadModelConfig((kFixtures / "models/llama_guard_1b_like_f32/config.json").string());
  ASSERT_TRUE(lg1b.ok()) << lg1b.status();
  EXPECT_EQ(lg1b->architecture, Architecture::kLlama);
  EXPECT_EQ(lg1b->hidden_size, 64);
  EXPECT_EQ(lg1b->num_layers, 3);
  EXPECT_EQ(lg1b->num_heads, 8);
  EXPECT_EQ(lg1b->num_kv_heads, 2);
  EXPECT_EQ(lg1b->head_dim, 8);  // implicit: hidden / heads
  EXPECT_EQ(lg1b->intermediate_size, 256);
  EXPECT_EQ(lg1b->vocab_size, 1024);
  EXPECT_EQ(lg1b->rope_theta, 500000.0);
  EXPECT_EQ(lg1b->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(lg1b->rope_scaling.factor, 32.0);
  EXPECT_EQ(lg1b->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(lg1b->rms_norm_eps, 1e-5);
  EXPECT_TRUE(lg1b->tie_word_embeddings);
  EXPECT_EQ(lg1b->bos_token_id, 1);
  EXPECT_EQ(lg1b->eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(lg1b->torch_dtype, "float32");

  auto qwen = LoadModelConfig((kFixtures / "models/qwen3_like_bf16/config.json").string());
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_EQ(qwen->architecture, Architecture::kQwen3);
  EXPECT_EQ(qwen->head_dim, 32);
  EXPECT_EQ(qwen->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(qwen->rope_theta, 1e6);
  EXPECT_EQ(qwen->rms_norm_eps, 1e-6);

  auto guard =
      LoadModelConfig((kFixtures / "guard/llama_guard_tiny_fullvocab_bf16/config.json").string());
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_EQ(guard->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(guard->bos_token_id, 128000);
}

TEST(ModelConfigTest, ToJsonRoundTripsEveryNamedShape) {
  for (const std::string& name : NamedModelConfigNames()) {
    SCOPED_TRACE(name);
    auto c = NamedModelConfig(name);
    ASSERT_TRUE(c.ok()) << c.status();
    auto back = ParseModelConfig(ModelConfigToJson(*c), name);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->architecture, c->architecture);
    EXPECT_EQ(back->architecture_name, c->architecture_name);
    EXPECT_EQ(back->hidden_size, c->hidden_size);
    EXPECT_EQ(back->num_layers, c->num_layers);
    EXPECT_EQ(back->num_heads, c->num_heads);
    EXPECT_EQ(back->num_kv_heads, c->num_kv_heads);
    EXPECT_EQ(back->head_dim, c->head_dim);
    EXPECT_EQ(back->intermediate_size, c->intermediate_size);
    EXPECT_EQ(back->vocab_size, c->vocab_size);
    EXPECT_EQ(back->max_position_embeddings, c->max_position_embeddings);
    EXPECT_EQ(back->rope_theta, c->rope_theta);
    EXPECT_EQ(back->rope_scaling.type, c->rope_scaling.type);
    EXPECT_EQ(back->rope_scaling.factor, c->rope_scaling.factor);
    EXPECT_EQ(back->rms_norm_eps, c->rms_norm_eps);
    EXPECT_EQ(back->tie_word_embeddings, c->tie_word_embeddings);
    EXPECT_EQ(back->bos_token_id, c->bos_token_id);
    EXPECT_EQ(back->eos_token_ids, c->eos_token_ids);
  }
}

TEST(ModelConfigTest, NamedShapesMatchTheGuardModelDoc) {
  auto lg1b = NamedModelConfig("llama-guard-3-1b");
  ASSERT_TRUE(lg1b.ok());
  EXPECT_EQ(lg1b->hidden_size, 2048);
  EXPECT_EQ(lg1b->num_layers, 16);
  EXPECT_EQ(lg1b->head_dim, 64);
  EXPECT_FALSE(lg1b->tie_word_embeddings);
  EXPECT_EQ(lg1b->rope_scaling.factor, 8.0);
  auto lg8b = NamedModelConfig("llama-guard-3-8b");
  ASSERT_TRUE(lg8b.ok());
  EXPECT_EQ(lg8b->intermediate_size, 14336);
  EXPECT_EQ(lg8b->head_dim, 128);
  auto q06 = NamedModelConfig("qwen3guard-0.6b");
  ASSERT_TRUE(q06.ok());
  EXPECT_EQ(q06->head_dim, 128);
  EXPECT_TRUE(q06->tie_word_embeddings);
  auto q8 = NamedModelConfig("qwen3guard-8b");
  ASSERT_TRUE(q8.ok());
  EXPECT_FALSE(q8->tie_word_embeddings);
  EXPECT_TRUE(ErrorContains(NamedModelConfig("gpt-9").status(),
                            "unknown model shape 'gpt-9' (known: llama-guard-3-1b"));
}

TEST(ModelConfigTest, AcceptsHfVariants) {
  json j = BaseConfig();
  j["eos_token_id"] = {5, 6};
  j.erase("num_key_value_heads");  // HF: defaults to num_attention_heads
  j["rope_scaling"] = {{"type", "llama3"},
                       {"factor", 8},
                       {"low_freq_factor", 1},
                       {"high_freq_factor", 4},
                       {"original_max_position_embeddings", 8192}};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(Parse(j)->rope_scaling.type, RopeScaling::Type::kNone);
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(Parse(j)->rope_scaling.type, RopeScaling::Type::kNone);
  // transformers 5 style: rope_parameters carries theta and the type.
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  ASSERT_TRUE(Parse(j).ok()) << Parse(j).status();
  EXPECT_EQ(Parse(j)->rope_theta, 1e6);
}

TEST(ModelConfigTest, RefusesUnsupportedModelsByName) {
  json j = BaseConfig();
  j["architectures"] = {"MistralForCausalLM"};
  EXPECT_TRUE(ErrorContains(Parse(j).status(),
                            "unsupported architecture 'MistralForCausalLM' (supported: "
                            "LlamaForCausalLM, Qwen3ForCausalLM)"));
  j = BaseConfig();
  j["model_type"] = "qwen3";
  EXPECT_TRUE(ErrorContains(Parse(j).status(), "field 'model_type': 'qwen3' does not match"));
  for (const char* type : {"linear", "dynamic", "yarn", "longrope"}) {
    j = BaseConfig();
    j["rope_scaling"] = {{"rope_type", type}, {"factor", 2.0}};
    EXPECT_TRUE(ErrorContains(Parse(j).status(),
                              absl::StrCat("unsupported RoPE scaling type '", type, "'")));
  }
  j = BaseConfig();
  j["rope_scaling"].erase("low_freq_factor");
  EXPECT_TRUE(
      ErrorContains(Parse(j).status(), "field 'low_freq_factor': missing (required for llama3"));
  j = BaseConfig();
  j["rope_scaling"]["high_freq_factor"] = 1.0;
  EXPECT_TRUE(ErrorContains(Parse(j).status(), "must be greater than low_freq_factor"));
  j = BaseConfig();
  j["hidden_act"] = "gelu";
  EXPECT_TRUE(ErrorContains(Parse(j).status(), "field 'hidden_act': 'gelu' is not supported"));
  for (const char* flag : {"attention_bias", "mlp_bias", "use_sliding_window"}) {
    j = BaseConfig();
    j[flag] = true;
    EXPECT_TRUE(ErrorContains(Parse(j).status(),
                              absl::StrCat("field '", flag, "': true is not supported")));
  }
}

TEST(ModelConfigTest, RefusesBadSizes) {
  struct Case {
    const char* field;
    json value;
    const char* error;
  };
  const Case cases[] = {
      {"hidden_size", -64, "field 'hidden_size': value -64 is out of range"},
      {"hidden_size", 0, "field 'hidden_size': value 0 is out of range"},
      {"hidden_size", 1 << 20, "is out of range [1, 65536]"},
      {"hidden_size", 64.5, "field 'hidden_size': must be an integer"},
      {"hidden_size", "64", "field 'hidden_size': must be an integer"},
      {"num_hidden_layers", 100000, "field 'num_hidden_layers': value 100000 is out of range"},
      {"vocab_size", uint64_t{1} << 63, "field 'vocab_size': value 9223372036854775808 is out"},
      {"num_key_value_heads", 3, "field 'num_key_value_heads': 3 does not divide"},
      {"num_attention_heads", 6, "6 does not divide hidden_size 64"},
      {"head_dim", 15, "field 'head_dim': 15 is odd"},
      {"head_dim", 4096, "field 'head_dim': value 4096 is out of range"},
      {"rms_norm_eps", -1.0, "field 'rms_norm_eps': must be > 0"},
      {"rope_theta", 0, "field 'rope_theta': must be > 0"},
      {"tie_word_embeddings", "yes", "field 'tie_word_embeddings': must be true/false"},
      {"eos_token_id", 512, "field 'eos_token_id': value 512 is out of range [0, 511]"},
      {"eos_token_id", json::array({1, "x"}), "field 'eos_token_id': must be an integer"},
      {"bos_token_id", -3, "field 'bos_token_id': value -3 is out of range"},
      {"rope_scaling", 3, "rope_scaling: must be an object or null"},
      {"architectures", json::array(), "field 'architectures': must be a non-empty list"},
  };
  for (const Case& c : cases) {
    json j = BaseConfig();
    j[c.field] = c.value;
    EXPECT_TRUE(ErrorContains(Parse(j).status(), c.error)) << c.field << " = " << c.value;
  }
  json j = BaseConfig();
  j.erase("vocab_size");
  EXPECT_TRUE(ErrorContains(Parse(j).status(), "cfg.json: field 'vocab_size': missing (required)"));
  EXPECT_TRUE(ErrorContains(ParseModelConfig("{not json", "cfg.json").status(),
                            "cfg.json: not valid JSON"));
  EXPECT_TRUE(ErrorContains(ParseModelConfig("[1]", "cfg.json").status(), "not a JSON object"));
  EXPECT_TRUE(ErrorContains(LoadModelConfig("/nonexistent/config.json").status(),
                            "/nonexistent/config.json: cannot read"));
}

}  // namespace
}  // namespace saferoute
