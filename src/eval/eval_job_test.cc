// label/eval jobs end to end over files: datasets, score files, meta.json,
// features.safetensors, a fake Router, calibration sets, and bad inputs.
#include "eval/eval_job.h"

#include <filesystem>
#include <fstream>

#include "eval/score_file.h"
#include "eval/svg_plot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/safetensors.h"
#include "nlohmann/json.hpp"

namespace saferoute::eval {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Router score = feature[0] (features are written so that this is the
// intended routing probability).
class FakeRouter : public Router {
 public:
  RouterType type() const override { return RouterType::kLogistic; }
  int feature_dim() const override { return 2; }
  const std::string& feature_fingerprint() const override { return fingerprint_; }
  float Score(std::span<const float> f) const override { return f[0]; }
  void ScoreBatch(std::span<const float> f, std::span<float> out) const override {
    for (size_t i = 0; i < out.size(); ++i) out[i] = f[2 * i];
  }
  double threshold() const override { return 0.5; }
  const std::vector<CalibrationPoint>& calibration() const override { return calibration_; }
  absl::StatusOr<double> ThresholdForShare(double share) const override {
    return absl::FailedPreconditionError("no calibration table");
  }
  absl::Status CheckFeatureSource(std::string_view fp, int dim) const override {
    if (fp != fingerprint_ || dim != 2) {
      return absl::InvalidArgumentError(
          absl::StrFormat("router wants '%s' dim 2, got '%s' dim %d", fingerprint_, fp, dim));
    }
    return absl::OkStatus();
  }

 private:
  std::string fingerprint_ = "small-fp";
  std::vector<CalibrationPoint> calibration_;
};

class EvalJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sr_eval_job_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "small");
    fs::create_directories(dir_ / "large");
    // The six-example hand case of report_test.cc.
    const std::vector<int> gold = {1, 1, 0, 0, 1, 0};
    const std::vector<double> sp = {0.9, 0.3, 0.6, 0.1, 0.35, 0.5},
                              lp = {0.95, 0.8, 0.2, 0.7, 0.45, 0.05};
    std::string data, small, large;
    for (int i = 0; i < 6; ++i) {
      data += absl::StrFormat(R"({"id":"e%d","prompt":"p%d","response":null,"unsafe":%s})", i, i,
                              gold[i] ? "true" : "false") +
              "\n";
      small +=
          absl::StrFormat(
              R"({"id":"e%d","p_unsafe":%.17g,"logit_safe":0,"logit_unsafe":%.17g,"n_tokens":10,"latency_ms":10})",
              i, sp[i], std::log(sp[i] / (1 - sp[i]))) +
          "\n";
      large += absl::StrFormat(R"({"id":"e%d","p_unsafe":%.17g,"n_tokens":10,"latency_ms":30})", i,
                               lp[i]) +
               "\n";
    }
    data_ = Write("data.jsonl", data);
    small_ = Write("small/scores.jsonl", small);
    large_ = Write("large/scores.jsonl", large);
    Write(
        "small/meta.json",
        R"({"guard":"s","fingerprint":"small-fp","content_free":{"p_unsafe":0.2,"logit_safe":0,"logit_unsafe":0},"n_params":1e9})");
    Write("large/meta.json", R"({"guard":"l","n_params":8e9})");
    features_ = WriteFeatures("small/features.safetensors", {"e5", "e4", "e3", "e2", "e1", "e0"},
                              {0.2, 0.6, 0.4, 0.7, 0.9, 0.1}, "small-fp");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream((dir_ / name).string(), std::ios::binary) << text;
    return (dir_ / name).string();
  }
  std::string WriteFeatures(const std::string& name, const std::vector<std::string>& ids,
                            const std::vector<float>& first, const std::string& fp, int dim = 2) {
    std::vector<float> rows;
    for (float f : first) {
      rows.push_back(f);
      for (int k = 1; k < dim; ++k) rows.push_back(-1);
    }
    const std::vector<TensorToWrite> t = {{.name = "features",
                                           .dtype = DType::kF32,
                                           .shape = {static_cast<int64_t>(ids.size()), dim},
                                           .data = rows.data(),
                                           .nbytes = rows.size() * sizeof(float)}};
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(
        WriteSafetensors(path, t, {{"ids", nlohmann::json(ids).dump()}, {"fingerprint", fp}}).ok());
    return path;
  }
  EvalJob Job() const {
    EvalJob job;
    job.data = {data_};
    job.small_scores = small_;
    job.large_scores = large_;
    return job;
  }
  fs::path dir_;
  std::string data_, small_, large_, features_;
};

TEST_F(EvalJobTest, LabelJobWritesEquationOneLabels) {
  LabelJob job{.data = {data_},
               .small_scores = small_,
               .large_scores = large_,
               .out = (dir_ / "labels.jsonl").string()};
  auto labels = RunLabelJob(job);
  ASSERT_TRUE(labels.ok()) << labels.status();
  std::ifstream in(job.out);
  std::string line;
  std::vector<int> t;
  while (std::getline(in, line)) t.push_back(nlohmann::json::parse(line)["t"].get<int>());
  EXPECT_EQ(t, (std::vector<int>{0, 1, 1, 0, 0, 0}));
  std::getline(std::ifstream(job.out), line);
  EXPECT_EQ(line, R"({"id":"e0","t":0,"small_pred":true,"large_pred":true,"gold":true})");
}

TEST_F(EvalJobTest, EvalWithRouterMetaAndCalibration) {
  FakeRouter router;
  EvalJob job = Job();
  job.features = features_;
  job.calib_small_scores =
      small_;  // calibrating on the test set itself: only to exercise the wiring
  job.calib_data = {data_};
  auto report = RunEvalJob(job, &router);
  ASSERT_TRUE(report.ok()) << report.status();
  // Router scores by id: e0 .1, e1 .9, e2 .7, e3 .4, e4 .6, e5 .2 (the hand case).
  const MethodResult* sr = report->Find("saferoute");
  ASSERT_NE(sr, nullptr);
  EXPECT_DOUBLE_EQ(sr->safety.f1(), 0.8);
  EXPECT_DOUBLE_EQ(sr->large_share, 0.5);
  EXPECT_NEAR(sr->flops_rel.value(), 1.0 + 8.0 * 3 / 6, 1e-12);  // n_params from meta.json
  // CC read from meta.json (p = 0.2): the hand-checked result.
  EXPECT_DOUBLE_EQ(report->Find("entropy_cc")->safety.f1(), 4.0 / 6);
  ASSERT_NE(report->Find("entropy_ts"), nullptr);
  ASSERT_NE(report->Find("entropy_bc"), nullptr);
  // BC reference = mean small p = (0.9+0.3+0.6+0.1+0.35+0.5)/6.
  EXPECT_NEAR(ReportToJson(*report)["methods"]["entropy_bc"]["settings"]["batch_mean_p_unsafe"]
                  .get<double>(),
              2.75 / 6, 1e-12);
  EXPECT_TRUE(report->notes.empty());
  const std::string svg = RenderTradeOffSvg(*report, "a <test> & title");
  EXPECT_THAT(svg, HasSubstr("a &lt;test&gt; &amp; title"));
  EXPECT_THAT(svg, HasSubstr("<polyline"));
  EXPECT_THAT(svg, HasSubstr("Oracle 0.800"));
}

TEST_F(EvalJobTest, RouterNeedsFeaturesAndMatchingSource) {
  FakeRouter router;
  auto no_features = RunEvalJob(Job(), &router);
  EXPECT_THAT(no_features.status().message(), HasSubstr("needs both a router"));

  EvalJob job = Job();
  job.features = WriteFeatures("wrong_dim.safetensors", {"e0", "e1", "e2", "e3", "e4", "e5"},
                               {0, 0, 0, 0, 0, 0}, "small-fp", 3);
  auto wrong_dim = RunEvalJob(job, &router);
  EXPECT_THAT(
      wrong_dim.status().message(),
      HasSubstr("wrong_dim.safetensors: router wants 'small-fp' dim 2, got 'small-fp' dim 3"));

  job.features = WriteFeatures("other_fp.safetensors", {"e0", "e1", "e2", "e3", "e4", "e5"},
                               {0, 0, 0, 0, 0, 0}, "other");
  EXPECT_THAT(RunEvalJob(job, &router).status().message(),
              HasSubstr("features come from 'other' but the small guard's scores from 'small-fp'"));

  job.features = WriteFeatures("missing.safetensors", {"e0", "e1", "e2", "e3", "e4"},
                               {0, 0, 0, 0, 0}, "small-fp");
  EXPECT_THAT(RunEvalJob(job, &router).status().message(),
              HasSubstr("missing.safetensors: no feature row for id 'e5'"));

  job.features = WriteFeatures("extra.safetensors", {"e0", "e1", "e2", "e3", "e4", "e5", "zz"},
                               {0, 0, 0, 0, 0, 0, 0}, "small-fp");
  EXPECT_THAT(RunEvalJob(job, &router).status().message(),
              HasSubstr("extra.safetensors: row 6 id 'zz' is not in the dataset"));

  job.features = WriteFeatures("nan.safetensors", {"e0", "e1", "e2", "e3", "e4", "e5"},
                               {0, 0, NAN, 0, 0, 0}, "small-fp");
  EXPECT_THAT(RunEvalJob(job, &router).status().message(),
              HasSubstr("nan.safetensors: features row 2 ('e2') is not finite"));
}

TEST_F(EvalJobTest, BadScoreFilesNameFileAndLine) {
  EvalJob job = Job();
  job.large_scores = Write("large/bad.jsonl",
                           "{\"id\":\"e0\",\"p_unsafe\":0.5}\n{\"id\":\"e1\",\"p_unsafe\":-0.1}\n");
  EXPECT_THAT(RunEvalJob(job, nullptr).status().message(),
              HasSubstr("large/bad.jsonl:2: field 'p_unsafe' = -0.1"));
  job.large_scores = Write("large/short.jsonl", "{\"id\":\"e0\",\"p_unsafe\":0.5}\n");
  EXPECT_THAT(RunEvalJob(job, nullptr).status().message(),
              HasSubstr("large/short.jsonl: has no score for id 'e1'"));
  job.large_scores = Write("large/empty.jsonl", "");
  EXPECT_THAT(RunEvalJob(job, nullptr).status().message(),
              HasSubstr("large/empty.jsonl: no score rows"));
  job = Job();
  job.share = 1.5;
  EXPECT_THAT(RunEvalJob(job, nullptr).status().message(),
              HasSubstr("--share 1.5 is not in (0, 1]"));
  job = Job();
  job.calib_data = {data_};
  EXPECT_THAT(RunEvalJob(job, nullptr).status().message(),
              HasSubstr("--calib-data needs --calib-small-scores"));
  Write("small/meta.json",
        R"({"guard":"s","content_free":{"p_unsafe":1.0,"logit_safe":0,"logit_unsafe":0}})");
  EXPECT_THAT(RunEvalJob(Job(), nullptr).status().message(),
              HasSubstr("meta.json: field 'content_free' p_unsafe must lie"));
}

}  // namespace
}  // namespace saferoute::eval
