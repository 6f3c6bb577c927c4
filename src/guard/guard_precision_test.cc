// The guard verdict on every GEMM path, on the full-vocabulary guard fixture
// (tiny random Llama with the real Llama 3 vocabulary, HF fp32 reference
// values in ../shared/fixtures/guard/): p(unsafe) of every conversation on
// the bf16 paths stays within 0.02 of the fp32 path (int8: its own, wider,
// documented bound), and the full-vocabulary probabilities through the
// engine's log-sum-exp match HF.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cpu/dispatch.h"
#include "cpu/testing/available_paths.h"
#include "guard/guard_format.h"
#include "model/engine.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_tokenizer.h"

namespace saferoute {
namespace {

const std::string kGuardDir = std::string(SAFEROUTE_SHARED_DIR) + "/fixtures/guard/";

// The verdict token ids of the Llama Guard 3 format, opened on the fixture's
// own tokenizer (the format file is the one place that knows them).
std::vector<int32_t> VerdictIds() {
  auto tokenizer = BpeTokenizer::Load(kGuardDir + "llama_guard_tiny_fullvocab_bf16/tokenizer.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) return {};
  auto format = OpenGuardFormat("llama-guard-3-1b", std::move(*tokenizer));
  EXPECT_TRUE(format.ok()) << format.status();
  if (!format.ok()) return {};
  std::vector<int32_t> ids(2, -1);  // [safe, unsafe]
  for (const VerdictToken& token : (*format)->verdict_tokens()) {
    if (token.label == "safe") ids[0] = token.id;
    if (token.label == "unsafe") ids[1] = token.id;
  }
  EXPECT_TRUE(ids[0] >= 0 && ids[1] >= 0) << "the format has no safe/unsafe verdict token";
  return ids;
}

// The guard-safety bound (issue 11): a verdict probability may move by at
// most 0.02 from the fp32 path's on a reduced-precision path. The bf16 paths
// meet it (measured max 0.013, Zen 5, native and widened alike); it is what
// makes bf16 the `auto` choice (cpu/dispatch.h).
constexpr double kVerdictTol = 0.02;
// int8-a16 (int8 weights, 16-bit activations) meets it: measured max 0.0045
// (Zen 5, avx512_vnni kernel), 0.0047 with oneDNN capped at AVX2 (the avx2
// kernel, and oneDNN's AVX2 sgemm for attention); with Q/K/V on bf16 since
// (cpu::AttentionInputPath), 0.0044 and 0.0045.
// The int8 paths with 8-bit activations do NOT meet it on this fixture (2
// layers, hidden 64, where bf16 alone moves p by 0.013). int8 (blocks of 32
// for weights and activations, cpu/q8_gemm.h): measured max 0.021 over the
// six conversations with f16 weight scales rounded up (0.040 with the f32
// scales before them: the fixture's p swings by that much under weight
// changes of one part in 10^4), the same on every kernel variant (the s32
// block sums are exact and the f32 order is the same); bound 0.06. int8-rows
// (oneDNN, per-row scales): 0.072 (8-bit weights, VNNI) and 0.042 (7-bit
// weights, oneDNN capped at AVX2), bound 0.1. 8-bit activation grids are
// ~4-7x coarser than bf16's rounding: these are the paths' own documented
// bounds, not the guard-safety one.
constexpr double kInt8VerdictTol = 0.06;
constexpr double kInt8RowsVerdictTol = 0.1;
// |log p_unsafe_full - fp32's| (p ~ 1e-9 here, a 128k-logit log-sum-exp):
// bf16 measured 0.034; int8 0.16 (its head on bf16; 0.23 with f32 weight
// scales); int8-a16 0.048 with its head on bf16, 0.082 on int8-a16 (since
// Q/K/V run on bf16); int8-rows 0.26 (VNNI) / 0.40 (AVX2 cap).
constexpr double kBf16LogFullTol = 0.1;
constexpr double kInt8LogFullTol = 0.8;

nlohmann::json Cases() {
  std::ifstream in(kGuardDir + "llama_guard_tiny_fullvocab_bf16_expected.json");
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str())["cases"];
}

struct Verdict {
  double p_unsafe = 0;       // softmax over the two verdict logits
  double p_unsafe_full = 0;  // softmax over the vocabulary
};

std::vector<Verdict> Verdicts(const std::shared_ptr<const Model>& model, cpu::GemmPath path) {
  EngineOptions options;
  options.precision = cpu::PathPrecision(path);
  options.force_path = path;
  options.num_threads = 2;
  options.max_tokens = 512;
  auto engine = Engine::Create(model, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return {};
  const nlohmann::json cases = Cases();
  std::vector<std::vector<int32_t>> ids;
  for (const auto& c : cases)
    ids.push_back(c["ids_with_verdict_position"].get<std::vector<int32_t>>());
  const std::vector<int32_t> verdict_ids = VerdictIds();
  if (verdict_ids.size() != 2) return {};
  std::vector<SequenceRequest> requests(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    requests[i].tokens = ids[i];
    requests[i].logit_ids = verdict_ids;
    requests[i].log_sum_exp = true;
  }
  auto results = (*engine)->Prefill(requests);
  EXPECT_TRUE(results.ok()) << results.status();
  if (!results.ok()) return {};
  std::vector<Verdict> verdicts;
  for (const SequenceResult& r : *results) {
    const double safe = r.logits[0], unsafe = r.logits[1];
    verdicts.push_back({1.0 / (1.0 + std::exp(safe - unsafe)), std::exp(unsafe - r.log_sum_exp)});
  }
  return verdicts;
}

TEST(GuardPrecision, VerdictOnEveryPathStaysWithinTheGuardBound) {
  auto model = LoadModel(kGuardDir + "llama_guard_tiny_fullvocab_bf16");
  ASSERT_TRUE(model.ok()) << model.status();
  const nlohmann::json cases = Cases();
  const std::vector<Verdict> fp32 = Verdicts(*model, cpu::GemmPath::kFp32);
  ASSERT_EQ(fp32.size(), cases.size());
  // The fp32 path against HF (fp32): the two-way probability tightly; the
  // full-vocabulary one (~1e-9 here, from a log-sum-exp over 128k logits)
  // relatively.
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_NEAR(fp32[i].p_unsafe, cases[i]["p_unsafe_two_way"].get<double>(), 1e-4) << i;
    const double want_full = cases[i]["p_unsafe_full"].get<double>();
    EXPECT_NEAR(fp32[i].p_unsafe_full, want_full, 1e-3 * want_full) << i;
  }
  const cpu::CpuSupport& support = cpu::DetectCpuSupport();
  for (cpu::GemmPath path : cpu::testing::AvailablePaths(
           {cpu::GemmPath::kBf16Widened, cpu::GemmPath::kBf16Native, cpu::GemmPath::kInt8,
            cpu::GemmPath::kInt8Rows, cpu::GemmPath::kInt8A16})) {
    const std::vector<Verdict> got = Verdicts(*model, path);
    ASSERT_EQ(got.size(), cases.size());
    double worst = 0, worst_full = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      worst = std::max(worst, std::fabs(got[i].p_unsafe - fp32[i].p_unsafe));
      worst_full = std::max(
          worst_full, std::fabs(std::log(got[i].p_unsafe_full) - std::log(fp32[i].p_unsafe_full)));
      // int8-a16's full-vocabulary probability is held to bf16's bound too.
      const bool int8 = cpu::PathPrecision(path) == cpu::Precision::kInt8;
      // int8-a16 is held to the guard bound itself.
      const double verdict_tol = path == cpu::GemmPath::kInt8       ? kInt8VerdictTol
                                 : path == cpu::GemmPath::kInt8Rows ? kInt8RowsVerdictTol
                                                                    : kVerdictTol;
      EXPECT_NEAR(got[i].p_unsafe, fp32[i].p_unsafe, verdict_tol)
          << cpu::DescribePath(path, support) << " conversation " << i;
      EXPECT_NEAR(std::log(got[i].p_unsafe_full), std::log(fp32[i].p_unsafe_full),
                  int8 ? kInt8LogFullTol : kBf16LogFullTol)
          << cpu::DescribePath(path, support) << " conversation " << i;
    }
    std::printf("%s: max |p_unsafe - fp32| %.5f, max |log p_unsafe_full - fp32| %.5f\n",
                cpu::DescribePath(path, support).c_str(), worst, worst_full);
  }
}

}  // namespace
}  // namespace saferoute
