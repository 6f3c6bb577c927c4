// Router files: safetensors with the network's parameters (names and shapes
// in router/network.h) and a versioned JSON description in __metadata__:
//
//   "format":  "saferoute-router"
//   "version": "1"
//   "config":  JSON object {
//       "type": "bnn" | "mlp" | "logistic", "feature_dim": D, "hidden_dim": H,
//       "prior_sigma": 0.1 (bnn), "fingerprint": "<guard model + layer>",
//       "threshold": ε (default 0.5),
//       "calibration": [[threshold, large_share, f1], ...]  (may be empty),
//       "calibration_source": {...}  (what the table was measured on),
//       "training": {...}            (data summary, seed, epochs, metrics) }
//
// Reading validates everything (hostile input): magic/version, config fields
// and ranges, every expected tensor present with dtype F32 and the exact
// shape, no unexpected tensors, finite values, a well-formed table.
#ifndef SAFEROUTE_ROUTER_ROUTER_FILE_H_
#define SAFEROUTE_ROUTER_ROUTER_FILE_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "router/network.h"
#include "router/router.h"
#include "router/train.h"
#include "util/status.h"

namespace saferoute {

inline constexpr char kRouterFormat[] = "saferoute-router";
inline constexpr int kRouterFormatVersion = 1;

// Everything a router file holds besides the weights.
struct RouterInfo {
  std::string fingerprint;  // guard model + layer whose features the router reads
  double threshold = 0.5;   // the paper's fixed ε unless calibration chose another
  std::vector<CalibrationPoint> calibration;
  nlohmann::json calibration_source = nlohmann::json::object();
  nlohmann::json training = nlohmann::json::object();
};

// Training summary as stored under "training" (counts, seed, options, best
// and last epoch metrics).
nlohmann::json TrainSummaryToJson(const TrainSummary& summary);

absl::Status WriteRouterFile(const std::string& path, const RouterNetwork& network,
                             const RouterInfo& info);

struct RouterFileContents {
  std::unique_ptr<RouterNetwork> network;
  RouterInfo info;
};
absl::StatusOr<RouterFileContents> ReadRouterFile(const std::string& path);
// ReadRouterFile on a safetensors image in memory; `source` names it in errors.
absl::StatusOr<RouterFileContents> ParseRouterFile(std::span<const std::byte> image,
                                                   const std::string& source);

// The check behind Router::CheckFeatureSource, for code holding a network
// and its info (e.g. calibration): dimension first, then fingerprint.
absl::Status CheckFeatureSource(const RouterInfo& info, int router_dim,
                                std::string_view fingerprint, int dim);

// An in-memory Router over `network` (posterior means for the Bayesian MLP).
std::unique_ptr<Router> MakeRouter(std::unique_ptr<RouterNetwork> network, RouterInfo info);

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_ROUTER_FILE_H_
