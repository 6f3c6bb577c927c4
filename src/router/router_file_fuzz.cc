// libFuzzer target (DEVELOPERS.md, "Fuzzing"): router files (safetensors +
// JSON config in the metadata) as `serve`, `eval` and `calibrate` load them.
// Invariants beyond "no crash": an accepted file gives a network of the
// configured shape with finite parameters, a threshold in [0, 1] and a valid
// calibration table; written back (WriteRouterFile) and read again it is the
// same router, parameter for parameter and field for field; a small router
// scores a feature to a probability.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "router/calibration.h"
#include "router/router_file.h"
#include "util/fuzz_scratch.h"

namespace saferoute {
namespace {

const std::string& ScratchPath() {
  static const std::string path = FuzzScratchPath("router_file_fuzz.safetensors");
  return path;
}

void CheckSame(const RouterFileContents& a, const RouterFileContents& b) {
  SR_CHECK(a.network->type() == b.network->type() &&
           a.network->feature_dim() == b.network->feature_dim() &&
           a.network->hidden_dim() == b.network->hidden_dim());
  SR_CHECK(!a.network->bayesian() ||
           a.network->bayes().prior_sigma == b.network->bayes().prior_sigma);
  const std::vector<ParamTensor>& pa = a.network->params();
  const std::vector<ParamTensor>& pb = b.network->params();
  SR_CHECK(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    SR_CHECK(pa[i].name == pb[i].name && pa[i].shape == pb[i].shape &&
             pa[i].values == pb[i].values);
  }
  SR_CHECK(a.info.fingerprint == b.info.fingerprint && a.info.threshold == b.info.threshold &&
           a.info.calibration_source == b.info.calibration_source &&
           a.info.training == b.info.training);
  SR_CHECK(a.info.calibration.size() == b.info.calibration.size());
  for (size_t i = 0; i < a.info.calibration.size(); ++i) {
    const CalibrationPoint &x = a.info.calibration[i], &y = b.info.calibration[i];
    SR_CHECK(x.threshold == y.threshold && x.large_share == y.large_share && x.f1 == y.f1);
  }
}

void Check(std::span<const std::byte> image) {
  absl::StatusOr<RouterFileContents> contents = ParseRouterFile(image, "fuzz.router");
  if (!contents.ok()) return;
  const RouterNetwork& network = *contents->network;
  SR_CHECK(network.feature_dim() >= 1);
  SR_CHECK(contents->info.threshold >= 0 && contents->info.threshold <= 1);
  SR_CHECK(ValidateCalibrationTable(contents->info.calibration, "fuzz").ok());
  int64_t bytes = 0;
  for (const ParamTensor& p : network.params()) {
    int64_t numel = 1;
    for (int64_t d : p.shape) numel *= d;
    SR_CHECK(numel == static_cast<int64_t>(p.values.size()));
    for (float v : p.values) SR_CHECK(std::isfinite(v));
    bytes += numel * static_cast<int64_t>(sizeof(float));
  }
  SR_CHECK(bytes <= static_cast<int64_t>(image.size()));  // the parameters came from the file

  SR_CHECK(WriteRouterFile(ScratchPath(), network, contents->info).ok());
  absl::StatusOr<RouterFileContents> again = ReadRouterFile(ScratchPath());
  std::filesystem::remove(ScratchPath());
  SR_CHECK(again.ok());
  CheckSame(*contents, *again);

  const int64_t dim = network.feature_dim();
  if (dim * std::max(network.hidden_dim(), 1) <= 4096) {
    const std::unique_ptr<Router> router =
        MakeRouter(std::move(contents->network), std::move(contents->info));
    const std::vector<float> feature(dim, 0.5f);
    const float p = router->Score(feature);
    SR_CHECK(std::isnan(p) || (p >= 0 && p <= 1));
  }
}

}  // namespace
}  // namespace saferoute

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  saferoute::Check(std::span(reinterpret_cast<const std::byte*>(data), size));
  return 0;
}
