// Router files: the committed v1 fixture, round trips, hostile files.
#include "router/router_file.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "nlohmann/json.hpp"
#include "util/test_paths.h"

namespace saferoute {
namespace {

using nlohmann::json;

std::string FixturePath(const char* name) {
  return std::string(SAFEROUTE_SOURCE_DIR) + "/src/router/testdata/" + name;
}

TEST(RouterFileTest, VersionOneFixtureScoresAsThePythonReference) {
  absl::StatusOr<std::unique_ptr<Router>> router = LoadRouter(FixturePath("router_v1.safetensors"));
  ASSERT_TRUE(router.ok()) << router.status();
  EXPECT_EQ((*router)->type(), RouterType::kBayesianMlp);
  EXPECT_EQ((*router)->feature_dim(), 4);
  EXPECT_EQ((*router)->feature_fingerprint(), "tiny-guard:last-layer");
  EXPECT_DOUBLE_EQ((*router)->threshold(), 0.4);
  ASSERT_EQ((*router)->calibration().size(), 3u);
  // Between (0.4, 30%) and (0.7, 10%): halfway.
  EXPECT_NEAR(*(*router)->ThresholdForShare(0.2), 0.55, 1e-12);

  std::ifstream in(FixturePath("router_v1_expected.json"));
  const json expected = json::parse(in);
  const auto inputs = expected["inputs"].get<std::vector<std::vector<float>>>();
  const auto scores = expected["scores"].get<std::vector<double>>();
  ASSERT_EQ(inputs.size(), scores.size());
  std::vector<float> flat;
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_NEAR((*router)->Score(inputs[i]), scores[i], 1e-6) << "input " << i;
    flat.insert(flat.end(), inputs[i].begin(), inputs[i].end());
  }
  std::vector<float> batch(inputs.size());
  (*router)->ScoreBatch(flat, batch);
  for (size_t i = 0; i < inputs.size(); ++i) EXPECT_NEAR(batch[i], scores[i], 1e-6);
}

RouterNetwork TinyNetwork(RouterType type, uint64_t seed) {
  RouterNetwork net(type, 6, 5);
  net.Initialize(seed);
  return net;
}

RouterInfo TinyInfo() {
  RouterInfo info;
  info.fingerprint = "guard-x:layer-16";
  info.threshold = 0.35;
  info.calibration = {{.threshold = 0.1, .large_share = 0.5, .f1 = 0.7},
                      {.threshold = 0.6, .large_share = 0.1, .f1 = -1}};
  info.training = {{"examples", 12}, {"seed", 3}};
  return info;
}

class RoundTripTest : public ::testing::TestWithParam<RouterType> {};

TEST_P(RoundTripTest, WeightsAndInfoSurviveBitForBit) {
  const std::string path = UniqueTestPath("round_trip.safetensors");
  const RouterNetwork net = TinyNetwork(GetParam(), 8);
  ASSERT_TRUE(WriteRouterFile(path, net, TinyInfo()).ok());
  absl::StatusOr<RouterFileContents> read = ReadRouterFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->network->params().size(), net.params().size());
  for (size_t p = 0; p < net.params().size(); ++p) {
    const auto& a = net.params()[p].values;
    const auto& b = read->network->params()[p].values;
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << net.params()[p].name;
  }
  EXPECT_EQ(read->info.fingerprint, "guard-x:layer-16");
  EXPECT_EQ(read->info.threshold, 0.35);
  ASSERT_EQ(read->info.calibration.size(), 2u);
  EXPECT_EQ(read->info.calibration[0].f1, 0.7);
  EXPECT_EQ(read->info.calibration[1].f1, -1);
  EXPECT_EQ(read->info.training["seed"], 3);

  auto router = LoadRouter(path);
  ASSERT_TRUE(router.ok());
  const std::vector<float> x = {0.3f, -1.0f, 0.2f, 0.9f, -0.5f, 1.1f};
  float logit = 0;
  net.Logits(x.data(), 1, &logit);
  EXPECT_EQ((*router)->Score(x), Sigmoid(logit));
}

INSTANTIATE_TEST_SUITE_P(AllRouters, RoundTripTest,
                         ::testing::Values(RouterType::kBayesianMlp, RouterType::kMlp,
                                           RouterType::kLogistic),
                         [](const auto& info) { return std::string(RouterTypeName(info.param)); });

TEST(RouterFileTest, FeatureSourceMustMatch) {
  auto router =
      MakeRouter(std::make_unique<RouterNetwork>(TinyNetwork(RouterType::kMlp, 1)), TinyInfo());
  EXPECT_TRUE(router->CheckFeatureSource("guard-x:layer-16", 6).ok());
  absl::Status wrong_fp = router->CheckFeatureSource("guard-y:layer-16", 6);
  EXPECT_FALSE(wrong_fp.ok());
  EXPECT_NE(wrong_fp.message().find("guard-y:layer-16"), std::string_view::npos);
  absl::Status wrong_dim = router->CheckFeatureSource("guard-x:layer-16", 2048);
  EXPECT_FALSE(wrong_dim.ok());
  EXPECT_NE(wrong_dim.message().find("2048"), std::string_view::npos);
}

TEST(RouterFileTest, NoCalibrationTableIsAnErrorForBudgets) {
  RouterInfo info = TinyInfo();
  info.calibration.clear();
  auto router =
      MakeRouter(std::make_unique<RouterNetwork>(TinyNetwork(RouterType::kLogistic, 1)), info);
  EXPECT_EQ(router->ThresholdForShare(0.1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(router->threshold(), 0.35);
}

// Writes a router file whose tensors/metadata were changed by `mutate`.
struct Parts {
  std::vector<ParamTensor> tensors;
  std::map<std::string, std::string> metadata;
  json config;
};
absl::Status ReadMutated(const std::function<void(Parts&)>& mutate) {
  const std::string good = UniqueTestPath("good.safetensors");
  const RouterNetwork net = TinyNetwork(RouterType::kBayesianMlp, 2);
  SR_RETURN_IF_ERROR(WriteRouterFile(good, net, TinyInfo()));
  auto file = SafetensorsFile::Open(good);
  SR_CHECK(file.ok());
  Parts parts{.tensors = net.params(), .metadata = (*file)->metadata(), .config = {}};
  parts.config = json::parse(parts.metadata["config"]);
  mutate(parts);
  if (!parts.config.is_null()) parts.metadata["config"] = parts.config.dump();
  std::vector<TensorToWrite> to_write;
  for (const ParamTensor& p : parts.tensors) {
    to_write.push_back({.name = p.name,
                        .dtype = DType::kF32,
                        .shape = p.shape,
                        .data = p.values.data(),
                        .nbytes = p.values.size() * sizeof(float)});
  }
  const std::string bad = UniqueTestPath("bad.safetensors");
  SR_RETURN_IF_ERROR(WriteSafetensors(bad, to_write, parts.metadata));
  return ReadRouterFile(bad).status();
}

void ExpectRejected(const std::function<void(Parts&)>& mutate, std::string_view message_part) {
  absl::Status status = ReadMutated(mutate);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(std::string(status.message()).find(std::string(message_part)), std::string::npos)
      << "message: " << status.message() << "\nexpected to contain: " << message_part;
}

TEST(RouterFileTest, UnmodifiedFileIsAccepted) {
  EXPECT_TRUE(ReadMutated([](Parts&) {}).ok());
}

TEST(RouterFileTest, CorruptFilesAreRejectedWithAClearMessage) {
  ExpectRejected([](Parts& p) { p.metadata["format"] = "gguf"; }, "not a SafeRoute router file");
  ExpectRejected([](Parts& p) { p.metadata.erase("format"); }, "not a SafeRoute router file");
  ExpectRejected([](Parts& p) { p.metadata["version"] = "2"; },
                 "unsupported router file version 2");
  ExpectRejected(
      [](Parts& p) {
        p.config = nullptr;
        p.metadata["config"] = "{not json";
      },
      "'config' is not a JSON object");
  ExpectRejected([](Parts& p) { p.config["type"] = "transformer"; }, "config field 'type'");
  ExpectRejected([](Parts& p) { p.config["feature_dim"] = -6; }, "config field 'feature_dim'");
  ExpectRejected([](Parts& p) { p.config["feature_dim"] = 7; },
                 "tensor 'fc0.weight': shape [5,6], expected [5,7]");
  // Seen writing router_file_fuzz: the network used to be allocated from the
  // config before its tensors were checked (this asked for 512 GiB).
  ExpectRejected(
      [](Parts& p) {
        p.config["feature_dim"] = 1 << 20;
        p.config["hidden_dim"] = 65536;
      },
      "tensor 'fc0.weight': shape [5,6], expected [65536,1048576]");
  ExpectRejected([](Parts& p) { p.config.erase("fingerprint"); }, "'fingerprint': missing");
  ExpectRejected([](Parts& p) { p.config["threshold"] = 1.5; }, "'threshold': not in [0, 1]");
  ExpectRejected([](Parts& p) { p.config["prior_sigma"] = 0; }, "prior_sigma");
  ExpectRejected(
      [](Parts& p) {
        p.config["calibration"] = {{0.5, 0.1, -1}, {0.2, 0.3, -1}};
      },
      "thresholds not ascending");
  ExpectRejected([](Parts& p) { p.config["calibration"] = {{0.5, 0.1}}; }, "row 0");
  ExpectRejected([](Parts& p) { p.tensors.erase(p.tensors.begin() + 2); },
                 "tensor 'fc0.weight_log_sigma': missing");
  ExpectRejected([](Parts& p) { p.tensors[0].values[3] = std::nanf(""); },
                 "tensor 'fc0.weight': element 3 is not finite");
  ExpectRejected(
      [](Parts& p) { p.tensors.push_back({.name = "extra", .shape = {1}, .values = {0}}); },
      "unexpected tensor 'extra'");
  ExpectRejected(
      [](Parts& p) {
        p.tensors[1].shape = {1, 5};  // fc0.bias [5] -> [1, 5]
      },
      "tensor 'fc0.bias': shape [1,5], expected [5]");
}

TEST(RouterFileTest, TruncatedAndGarbageFilesAreRejected) {
  const std::string good = UniqueTestPath("for_truncation.safetensors");
  ASSERT_TRUE(WriteRouterFile(good, TinyNetwork(RouterType::kMlp, 4), TinyInfo()).ok());
  std::ifstream in(good, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  const std::string bad = UniqueTestPath("truncated.safetensors");
  for (size_t keep : {size_t{0}, size_t{5}, size_t{100}, bytes.size() - 1}) {
    std::ofstream(bad, std::ios::binary | std::ios::trunc).write(bytes.data(), keep);
    EXPECT_FALSE(LoadRouter(bad).ok()) << "kept " << keep << " bytes";
  }
  EXPECT_FALSE(LoadRouter(::testing::TempDir() + "/does-not-exist.safetensors").ok());
}

}  // namespace
}  // namespace saferoute
