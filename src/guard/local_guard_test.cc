// LocalGuard end to end on the tiny full-vocabulary Llama Guard fixture
// against HF (transformers, fp32): render -> tokenize -> forward -> verdict ->
// greedy decode (for unsafe verdicts), for every 1B-layout prompt of the
// fixture.
#include "guard/local_guard.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "cpu/dispatch.h"
#include "cpu/testing/available_paths.h"
#include "gtest/gtest.h"
#include "guard/guard_format.h"
#include "io/safetensors.h"
#include "model/engine.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"

namespace saferoute {
namespace {

using Json = nlohmann::json;
const std::string kGuardDir = std::string(SAFEROUTE_SHARED_DIR) + "/fixtures/guard/";
const std::string kModelDir = kGuardDir + "llama_guard_tiny_fullvocab_bf16";
constexpr int kDecodeTokens = 8;  // as HF's greedy_8

Json Expected() {
  std::ifstream in(kGuardDir + "llama_guard_tiny_fullvocab_bf16_expected.json");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return Json::parse(buffer.str());
}

GuardRequest RequestOf(const Json& c) {
  GuardRequest request;
  for (size_t t = 0; t < c["turns"].size(); ++t) {
    request.conversation.push_back({t % 2 == 0 ? Turn::Role::kUser : Turn::Role::kAssistant,
                                    c["turns"][t].get<std::string>()});
  }
  if (!c["categories"].is_null()) {
    Policy policy;
    for (const auto& pair : c["categories"]) {
      policy.categories.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
    }
    request.policy = policy;
  }
  request.want_categories = true;
  return request;
}

struct GuardSetup {
  int max_batch = 16;
  double threshold = 0.5;
  int64_t max_kept_kv_bytes = LocalGuardOptions().max_kept_kv_bytes;
  cpu::GemmPath path = cpu::GemmPath::kFp32;
};

absl::StatusOr<std::unique_ptr<GuardFormat>> OpenFixtureFormat() {
  auto tokenizer = BpeTokenizer::Load(kModelDir + "/tokenizer.json");
  if (!tokenizer.ok()) return tokenizer.status();
  return OpenGuardFormat("llama-guard-3-1b", std::move(*tokenizer));
}

std::unique_ptr<Guard> OpenFixtureGuard(const GuardSetup& setup = {}) {
  LocalGuardOptions options;
  options.model_dir = kModelDir;
  options.format = "llama-guard-3-1b";
  options.engine.precision = cpu::PathPrecision(setup.path);
  options.engine.force_path = setup.path;
  options.engine.num_threads = 1;
  options.max_decode_tokens = kDecodeTokens;
  options.max_batch = setup.max_batch;
  options.threshold = setup.threshold;
  options.max_kept_kv_bytes = setup.max_kept_kv_bytes;
  auto guard = OpenLocalGuard(options);
  EXPECT_TRUE(guard.ok()) << guard.status();
  return guard.ok() ? std::move(*guard) : nullptr;
}

// Shared by the tests (loading the 128k-token tokenizer dominates). With the
// default threshold every verdict of the random fixture model is safe.
Guard* SharedGuard() {
  static Guard* guard = OpenFixtureGuard().release();
  return guard;
}

// The fixture's p_unsafe values lie in [0.195, 0.312]: at threshold 0.2 all
// cases but the last (0.195) are unsafe, so they decode. Batches of 4: the
// first all unsafe, the second one unsafe and one safe.
constexpr double kDecodingThreshold = 0.2;
GuardSetup DecodingSetup() {
  GuardSetup setup;
  setup.max_batch = 4;
  setup.threshold = kDecodingThreshold;
  return setup;
}
Guard* DecodingGuard() {
  static Guard* guard = OpenFixtureGuard(DecodingSetup()).release();
  return guard;
}

TEST(LocalGuard, MatchesHfOnFixture) {
  const Json expected = Expected();
  const auto& cases = expected["cases"];
  ASSERT_GE(cases.size(), 5u);
  auto features =
      SafetensorsFile::Open(kGuardDir + "llama_guard_tiny_fullvocab_bf16_expected.safetensors");
  ASSERT_TRUE(features.ok()) << features.status();
  Guard* guard = SharedGuard();
  ASSERT_NE(guard, nullptr);
  EXPECT_EQ(guard->feature_dim(), 64);

  std::vector<GuardRequest> requests;
  for (const auto& c : cases) requests.push_back(RequestOf(c));
  auto verdicts = guard->Classify(requests);
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ASSERT_EQ(verdicts->size(), cases.size());

  auto tokenizer = BpeTokenizer::Load(kModelDir + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok());
  auto format = OpenGuardFormat("llama-guard-3-1b", std::move(*tokenizer));
  ASSERT_TRUE(format.ok()) << format.status();
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    const Json& c = cases[i];
    const GuardVerdict& v = (*verdicts)[i];
    // The ids the guard ran on are the fixture's (HF render + the verdict lead).
    auto rendered = RenderForVerdict(**format, requests[i]);
    ASSERT_TRUE(rendered.ok());
    const auto want_ids = c["ids_with_verdict_position"].get<std::vector<int32_t>>();
    EXPECT_EQ(rendered->ids, want_ids);
    EXPECT_EQ(v.n_tokens, static_cast<int>(want_ids.size()));

    EXPECT_NEAR(v.p_unsafe, c["p_unsafe_two_way"].get<double>(), 1e-3);
    EXPECT_NEAR(v.p_unsafe_full, c["p_unsafe_full"].get<double>(), 1e-3);
    EXPECT_NEAR(v.p_safe_full, c["p_safe_full"].get<double>(), 1e-3);
    // The full-vocabulary figures are tiny for this random model: check them
    // relatively too, so the test can fail on a wrong log-sum-exp.
    EXPECT_NEAR(std::log(v.p_unsafe_full), std::log(c["p_unsafe_full"].get<double>()), 1e-3);
    EXPECT_NEAR(std::log(v.p_safe_full), std::log(c["p_safe_full"].get<double>()), 1e-3);
    EXPECT_NEAR(v.logit_safe, c["logit_safe"].get<double>(), 1e-3);
    EXPECT_NEAR(v.logit_unsafe, c["logit_unsafe"].get<double>(), 1e-3);
    EXPECT_EQ(v.unsafe, v.p_unsafe > 0.5);

    const TensorView* feature = (*features)->Find("feature_" + std::to_string(i));
    ASSERT_NE(feature, nullptr);
    ASSERT_EQ(feature->dtype, DType::kF32);
    ASSERT_EQ(feature->numel(), 64);
    ASSERT_EQ(v.feature.size(), 64u);
    const float* want = reinterpret_cast<const float*>(feature->data);
    for (int k = 0; k < 64; ++k) EXPECT_NEAR(v.feature[k], want[k], 1e-4) << "feature[" << k << "]";

    // Every verdict is safe here: no decode ran, none is reported.
    ASSERT_FALSE(v.unsafe);
    EXPECT_TRUE(v.generated_ids.empty());
    EXPECT_TRUE(v.categories.empty());
    EXPECT_FALSE(v.unparsed_output.has_value());
    EXPECT_EQ(v.timings.decode_steps, 0);
    EXPECT_EQ(v.timings.decode_ms, 0);
  }
}

void ExpectUnsafeVerdictsDecodeAsHfGreedy(Guard* guard) {
  const Json expected = Expected();
  const auto& cases = expected["cases"];
  ASSERT_NE(guard, nullptr);
  std::vector<GuardRequest> requests;
  for (const auto& c : cases) requests.push_back(RequestOf(c));
  auto verdicts = guard->Classify(requests);
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();

  auto format = OpenFixtureFormat();
  ASSERT_TRUE(format.ok()) << format.status();
  int unsafe = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    const GuardVerdict& v = (*verdicts)[i];
    const double p_unsafe = cases[i]["p_unsafe_two_way"].get<double>();
    ASSERT_EQ(v.unsafe, p_unsafe > kDecodingThreshold);
    if (!v.unsafe) {
      EXPECT_TRUE(v.generated_ids.empty());
      EXPECT_EQ(v.timings.decode_steps, 0);
      EXPECT_EQ(v.timings.decode_ms, 0);
      continue;
    }
    ++unsafe;
    const auto want = cases[i]["greedy_8"].get<std::vector<int32_t>>();
    EXPECT_EQ(v.generated_ids, want);
    // The first token is the verdict position's argmax: no step for it.
    EXPECT_EQ(v.timings.decode_steps, static_cast<int>(want.size()) - 1);
    EXPECT_GT(v.timings.decode_ms, 0);
    // Random weights: the decode is not a verdict, and must be reported as such.
    auto text = (*format)->tokenizer().Decode(v.generated_ids);
    const Policy* policy = requests[i].policy ? &*requests[i].policy : nullptr;
    if (!text.ok() || !(*format)->ParseOutput(*text, policy).has_value()) {
      ASSERT_TRUE(v.unparsed_output.has_value());
      EXPECT_TRUE(v.categories.empty());
    }
    auto alone = guard->Classify({requests[i]});
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_EQ((*alone)[0].generated_ids, v.generated_ids);
    EXPECT_EQ((*alone)[0].unparsed_output, v.unparsed_output);
  }
  EXPECT_EQ(unsafe, static_cast<int>(cases.size()) - 1);  // the premise of the test
}

// Unsafe verdicts decode: the batched decode, continuing the classification
// pass, gives HF's greedy tokens; safe ones in the same batch run no step.
// Each request alone (one-at-a-time decode) gives the same tokens. The same
// with no room for kept keys/values (every unsafe verdict prefilled again).
TEST(LocalGuard, UnsafeVerdictsDecodeAsHfGreedy) {
  GuardSetup no_room = DecodingSetup();
  no_room.max_kept_kv_bytes = 0;
  const std::unique_ptr<Guard> prefilled_again = OpenFixtureGuard(no_room);
  for (Guard* guard : {DecodingGuard(), prefilled_again.get()}) {
    SCOPED_TRACE(guard == DecodingGuard() ? "kept keys/values" : "prefilled again");
    ExpectUnsafeVerdictsDecodeAsHfGreedy(guard);
  }
}

// Two threads decoding on one guard (kept caches of both alive between their
// prefills and decodes) get the tokens each gets alone.
TEST(LocalGuard, ConcurrentDecodesDoNotMix) {
  Guard* guard = DecodingGuard();
  ASSERT_NE(guard, nullptr);
  const Json expected = Expected();
  std::vector<GuardRequest> requests;
  for (const auto& c : expected["cases"]) requests.push_back(RequestOf(c));
  std::vector<GuardRequest> reversed(requests.rbegin(), requests.rend());
  absl::StatusOr<std::vector<GuardVerdict>> a, b;
  std::thread t1([&] { a = guard->Classify(requests); });
  std::thread t2([&] { b = guard->Classify(reversed); });
  t1.join();
  t2.join();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  const size_t n = requests.size();
  for (size_t i = 0; i < n; ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    EXPECT_EQ((*a)[i].generated_ids, (*b)[n - 1 - i].generated_ids);
    if ((*a)[i].unsafe) {
      EXPECT_EQ((*a)[i].generated_ids,
                expected["cases"][i]["greedy_8"].get<std::vector<int32_t>>());
    } else {
      EXPECT_TRUE((*a)[i].generated_ids.empty());
    }
  }
}

// On every GEMM path this CPU runs, in mixed batches (budget room for some of
// the kept keys/values, the rest prefilled again): an unsafe verdict's decode
// equals the engine's one-at-a-time greedy decode of the whole prompt (no
// prefix; parity_test checks it against full forwards); safe verdicts have
// none.
TEST(LocalGuard, UnsafeVerdictsDecodeAsOneAtATimeOnEveryPath) {
  const Json expected = Expected();
  std::vector<GuardRequest> requests;
  for (const auto& c : expected["cases"]) requests.push_back(RequestOf(c));
  auto format = OpenFixtureFormat();
  ASSERT_TRUE(format.ok()) << format.status();
  auto model = LoadModel(kModelDir);
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& config = (*model)->config();
  std::vector<int32_t> stop_ids = config.eos_token_ids;
  for (int32_t id : (*format)->stop_ids()) stop_ids.push_back(id);
  // Room for about two requests' keys/values per batch.
  const int64_t per_position =
      2 * config.num_layers * config.num_kv_heads * config.head_dim * int64_t{sizeof(float)};
  const auto first = RenderForVerdict(**format, requests[0]);
  ASSERT_TRUE(first.ok()) << first.status();
  const int64_t two_requests =
      2 * per_position *
      static_cast<int64_t>(first->ids.size() - first->prefix_tokens + kDecodeTokens);

  for (cpu::GemmPath path :
       cpu::testing::AvailablePaths({cpu::GemmPath::kFp32, cpu::GemmPath::kBf16Widened,
                                     cpu::GemmPath::kBf16Native, cpu::GemmPath::kInt8})) {
    SCOPED_TRACE(cpu::GemmPathName(path));
    GuardSetup setup;
    setup.max_batch = 4;
    setup.threshold = 0.24;  // HF: cases 1, 2, 4 unsafe (p >= 0.25), 0, 3, 5 safe (p <= 0.22)
    setup.max_kept_kv_bytes = two_requests;
    setup.path = path;
    const std::unique_ptr<Guard> guard = OpenFixtureGuard(setup);
    ASSERT_NE(guard, nullptr);
    auto verdicts = guard->Classify(requests);
    ASSERT_TRUE(verdicts.ok()) << verdicts.status();
    EngineOptions engine_options;
    engine_options.precision = cpu::PathPrecision(path);
    engine_options.force_path = path;
    engine_options.num_threads = 1;
    auto engine = Engine::Create(*model, engine_options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    int unsafe = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      SCOPED_TRACE("case " + std::to_string(i));
      const GuardVerdict& v = (*verdicts)[i];
      if (!v.unsafe) {
        EXPECT_TRUE(v.generated_ids.empty());
        EXPECT_EQ(v.timings.decode_steps, 0);
        continue;
      }
      ++unsafe;
      auto rendered = RenderForVerdict(**format, requests[i]);
      ASSERT_TRUE(rendered.ok()) << rendered.status();
      auto want = (*engine)->GreedyDecode(rendered->ids, nullptr, kDecodeTokens, stop_ids);
      ASSERT_TRUE(want.ok()) << want.status();
      EXPECT_EQ(v.generated_ids, *want);
      EXPECT_EQ(v.timings.decode_steps, static_cast<int>(want->size()) - 1);
    }
    // The premise: both kinds in the batches.
    EXPECT_GT(unsafe, 0);
    EXPECT_LT(unsafe, static_cast<int>(requests.size()));
  }
}

TEST(LocalGuard, BatchingAndConcurrencyDoNotChangeResults) {
  const Json expected = Expected();
  std::vector<GuardRequest> requests;
  for (const auto& c : expected["cases"]) {
    requests.push_back(RequestOf(c));
    requests.back().want_categories = false;
  }
  Guard* batched = SharedGuard();
  ASSERT_NE(batched, nullptr);
  auto a = batched->Classify(requests);  // one batch of all
  ASSERT_TRUE(a.ok());
  std::vector<GuardVerdict> b;  // one at a time
  for (const GuardRequest& r : requests) b.push_back((*batched->Classify({r}))[0]);
  // Two threads on one guard (shared prefix cache).
  std::vector<GuardVerdict> c1, c2;
  std::thread t1([&] { c1 = *batched->Classify(requests); });
  std::thread t2([&] { c2 = *batched->Classify(requests); });
  t1.join();
  t2.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    for (const auto* other : {&b[i], &c1[i], &c2[i]}) {
      EXPECT_NEAR((*a)[i].logit_unsafe, other->logit_unsafe, 1e-4);
      EXPECT_NEAR((*a)[i].logit_safe, other->logit_safe, 1e-4);
      EXPECT_NEAR((*a)[i].p_unsafe_full, other->p_unsafe_full, 1e-6);
    }
    EXPECT_TRUE((*a)[i].generated_ids.empty());
    EXPECT_FALSE((*a)[i].unparsed_output.has_value());
  }
}

// The name goes into responses: the model's name, not its path.
TEST(LocalGuard, NameIsTheModelsNameWithoutItsPath) {
  Guard* guard = SharedGuard();
  ASSERT_NE(guard, nullptr);
  EXPECT_EQ(guard->name(), "llama_guard_tiny_fullvocab_bf16");
}

TEST(LocalGuard, BadRequestsNameIndexAndLimit) {
  Guard* guard = SharedGuard();
  ASSERT_NE(guard, nullptr);
  std::vector<GuardRequest> requests(2);
  requests[0].prompt = "hello";
  for (int i = 0; i < 4200; ++i) requests[1].prompt += " word";  // > 4096 tokens
  for (GuardRequest& r : requests) r.want_categories = true;
  auto status = guard->Classify(requests).status();
  EXPECT_TRUE(absl::IsOutOfRange(status)) << status;
  EXPECT_NE(status.message().find("request 1"), std::string::npos) << status;
  EXPECT_NE(status.message().find("limit of 4096"), std::string::npos) << status;
  EXPECT_EQ(status.message().find("max_input_tokens"), std::string::npos) << status;
  // Alone, the request needs no index.
  status = guard->Classify({requests[1]}).status();
  EXPECT_TRUE(absl::IsOutOfRange(status)) << status;
  EXPECT_EQ(status.message().find("request"), std::string::npos) << status;

  requests[1].prompt = "bad \xC3";
  status = guard->Classify(requests).status();
  EXPECT_NE(status.message().find("request 1"), std::string::npos) << status;
  EXPECT_NE(status.message().find("UTF-8"), std::string::npos) << status;

  LocalGuardOptions options;
  options.model_dir = kModelDir;
  // The tiny model's shape is neither guard: the format must be given.
  auto guessed = OpenLocalGuard(options);
  ASSERT_FALSE(guessed.ok());
  EXPECT_NE(guessed.status().message().find("give the format"), std::string::npos);
}

}  // namespace
}  // namespace saferoute
