#include "router/router_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "absl/strings/str_join.h"
#include "io/safetensors.h"
#include "router/calibration.h"

namespace saferoute {
namespace {

using nlohmann::json;

constexpr int64_t kMaxFeatureDim = int64_t{1} << 20;
constexpr int64_t kMaxHiddenDim = 65536;

json MetricsJson(const EpochReport& r) {
  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  return {{"epoch", r.epoch},
          {"train_loss", num(r.train_loss)},
          {"train_bce", num(r.train_bce)},
          {"val_loss", num(r.val.loss)},
          {"val_auprc", num(r.val.auprc)},
          {"val_f1", num(r.val.f1)},
          {"val_accuracy", num(r.val.accuracy)},
          {"seconds", num(r.seconds)}};
}

class NetworkRouter final : public Router {
 public:
  NetworkRouter(std::unique_ptr<RouterNetwork> network, RouterInfo info)
      : network_(std::move(network)), info_(std::move(info)) {}

  RouterType type() const override { return network_->type(); }
  int feature_dim() const override { return network_->feature_dim(); }
  const std::string& feature_fingerprint() const override { return info_.fingerprint; }
  float Score(std::span<const float> feature) const override {
    SR_CHECK(static_cast<int64_t>(feature.size()) == network_->feature_dim());
    float logit = 0;
    network_->Logits(feature.data(), 1, &logit);
    return Sigmoid(logit);
  }
  void ScoreBatch(std::span<const float> features, std::span<float> out) const override {
    SR_CHECK(features.size() == out.size() * static_cast<size_t>(network_->feature_dim()));
    network_->Logits(features.data(), static_cast<int64_t>(out.size()), out.data());
    for (float& v : out) v = Sigmoid(v);
  }
  double threshold() const override { return info_.threshold; }
  const std::vector<CalibrationPoint>& calibration() const override { return info_.calibration; }
  absl::StatusOr<double> ThresholdForShare(double share) const override {
    return InterpolateThreshold(info_.calibration, share);
  }
  absl::Status CheckFeatureSource(std::string_view fingerprint, int dim) const override {
    return saferoute::CheckFeatureSource(info_, network_->feature_dim(), fingerprint, dim);
  }

 private:
  std::unique_ptr<RouterNetwork> network_;
  RouterInfo info_;
};

// Typed field access with errors naming the file and field.
class ConfigReader {
 public:
  ConfigReader(const json& config, std::string where) : config_(config), where_(std::move(where)) {}
  absl::Status Error(std::string_view field, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(where_, ": config field '", std::string(field), "': ", std::string(what)));
  }
  absl::StatusOr<const json*> Get(std::string_view field) const {
    auto it = config_.find(std::string(field));
    if (it == config_.end()) return Error(field, "missing");
    return &*it;
  }
  absl::StatusOr<int64_t> Int(std::string_view field, int64_t lo, int64_t hi) const {
    SR_ASSIGN_OR_RETURN(const json* v, Get(field));
    if (!v->is_number_integer()) return Error(field, "not an integer");
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) return Error(field, absl::StrCat(x, " not in [", lo, ", ", hi, "]"));
    return x;
  }
  absl::StatusOr<double> Number(std::string_view field) const {
    SR_ASSIGN_OR_RETURN(const json* v, Get(field));
    if (!v->is_number()) return Error(field, "not a number");
    const double x = v->get<double>();
    if (!std::isfinite(x)) return Error(field, "not finite");
    return x;
  }
  absl::StatusOr<std::string> String(std::string_view field) const {
    SR_ASSIGN_OR_RETURN(const json* v, Get(field));
    if (!v->is_string()) return Error(field, "not a string");
    return v->get<std::string>();
  }

 private:
  const json& config_;
  std::string where_;
};

}  // namespace

json TrainSummaryToJson(const TrainSummary& s) {
  const TrainOptions& o = s.options;
  return {{"examples", s.examples},
          {"positives", s.positives},
          {"train_examples", s.train_examples},
          {"val_examples", s.val_examples},
          {"val_positives", s.val_positives},
          {"seed", o.seed},
          {"epochs", s.epochs},
          {"best_epoch", s.best_epoch},
          {"kept_epoch", s.kept_epoch},
          {"selection", o.keep_last_epoch ? "last_epoch" : "best_val_auprc"},
          {"options",
           {{"batch_size", o.batch_size},
            {"learning_rate", o.learning_rate},
            {"weight_decay", o.weight_decay},
            {"warmup_steps", o.warmup_steps},
            {"kl_weight", o.kl_weight},
            {"prior_sigma", o.bayes.prior_sigma},
            {"init_log_sigma", o.bayes.init_log_sigma},
            {"val_share", o.val_share}}},
          {"best", MetricsJson(s.best)},
          {"last", MetricsJson(s.last)}};
}

absl::Status WriteRouterFile(const std::string& path, const RouterNetwork& network,
                             const RouterInfo& info) {
  SR_RETURN_IF_ERROR(ValidateCalibrationTable(info.calibration, path));
  if (!(info.threshold >= 0 && info.threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": threshold ", info.threshold, " not in [0, 1]"));
  }
  json calibration = json::array();
  for (const CalibrationPoint& p : info.calibration)
    calibration.push_back({p.threshold, p.large_share, p.f1});
  json config = {{"type", std::string(RouterTypeName(network.type()))},
                 {"feature_dim", network.feature_dim()},
                 {"hidden_dim", network.hidden_dim()},
                 {"fingerprint", info.fingerprint},
                 {"threshold", info.threshold},
                 {"calibration", calibration},
                 {"calibration_source", info.calibration_source},
                 {"training", info.training}};
  if (network.bayesian()) config["prior_sigma"] = network.bayes().prior_sigma;
  std::vector<TensorToWrite> tensors;
  for (const ParamTensor& p : network.params()) {
    tensors.push_back({.name = p.name,
                       .dtype = DType::kF32,
                       .shape = p.shape,
                       .data = p.values.data(),
                       .nbytes = p.values.size() * sizeof(float)});
  }
  const std::map<std::string, std::string> metadata = {
      {"format", kRouterFormat},
      {"version", std::to_string(kRouterFormatVersion)},
      // Non-finite numbers in "training" were stored as null above; dump
      // replaces invalid UTF-8 in a fingerprint instead of throwing.
      {"config", config.dump(-1, ' ', false, json::error_handler_t::replace)}};
  return WriteSafetensors(path, tensors, metadata);
}

namespace {

// The router in a parsed safetensors file; the views point into its bytes.
absl::StatusOr<RouterFileContents> RouterFromTensors(
    const std::vector<TensorView>& tensors, const std::map<std::string, std::string>& metadata,
    const std::string& path) {
  auto meta = [&](const char* key) -> const std::string* {
    auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
  };
  const std::string* format = meta("format");
  if (!format || *format != kRouterFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a SafeRoute router file (metadata 'format' is ",
                     format ? absl::StrCat("'", *format, "'") : std::string("missing"),
                     ", expected '", kRouterFormat, "')"));
  }
  const std::string* version = meta("version");
  if (!version || *version != std::to_string(kRouterFormatVersion)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": unsupported router file version ", version ? *version : std::string("(missing)"),
        " (this build reads version ", kRouterFormatVersion, ")"));
  }
  const std::string* config_text = meta("config");
  if (!config_text)
    return absl::InvalidArgumentError(absl::StrCat(path, ": metadata 'config' missing"));
  const json config = json::parse(*config_text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": metadata 'config' is not a JSON object"));
  }
  ConfigReader reader(config, path);
  SR_ASSIGN_OR_RETURN(std::string type_name, reader.String("type"));
  absl::StatusOr<RouterType> type = ParseRouterType(type_name);
  if (!type.ok()) return reader.Error("type", std::string(type.status().message()));
  SR_ASSIGN_OR_RETURN(int64_t feature_dim, reader.Int("feature_dim", 1, kMaxFeatureDim));
  int64_t hidden_dim = 0;
  if (*type != RouterType::kLogistic) {
    SR_ASSIGN_OR_RETURN(hidden_dim, reader.Int("hidden_dim", 1, kMaxHiddenDim));
  }
  BayesSettings bayes;
  if (*type == RouterType::kBayesianMlp) {
    SR_ASSIGN_OR_RETURN(bayes.prior_sigma, reader.Number("prior_sigma"));
    if (!(bayes.prior_sigma > 0)) return reader.Error("prior_sigma", "must be positive");
  }
  RouterFileContents contents;
  SR_ASSIGN_OR_RETURN(contents.info.fingerprint, reader.String("fingerprint"));
  SR_ASSIGN_OR_RETURN(contents.info.threshold, reader.Number("threshold"));
  if (contents.info.threshold < 0 || contents.info.threshold > 1)
    return reader.Error("threshold", "not in [0, 1]");
  SR_ASSIGN_OR_RETURN(const json* table, reader.Get("calibration"));
  if (!table->is_array()) return reader.Error("calibration", "not an array");
  for (size_t i = 0; i < table->size(); ++i) {
    const json& row = (*table)[i];
    if (!row.is_array() || row.size() != 3 || !row[0].is_number() || !row[1].is_number() ||
        !row[2].is_number()) {
      return reader.Error("calibration", absl::StrCat("row ", i, " is not [threshold, share, f1]"));
    }
    contents.info.calibration.push_back({.threshold = row[0].get<double>(),
                                         .large_share = row[1].get<double>(),
                                         .f1 = row[2].get<double>()});
  }
  SR_RETURN_IF_ERROR(ValidateCalibrationTable(contents.info.calibration, path));
  if (auto it = config.find("calibration_source"); it != config.end())
    contents.info.calibration_source = *it;
  if (auto it = config.find("training"); it != config.end()) contents.info.training = *it;

  // Every tensor is checked against the layout before the network is built:
  // the config alone sizes it (a 200-byte file saying feature_dim 2^20,
  // hidden_dim 65536 asked for 256 GiB).
  const std::vector<ParamSpec> layout =
      RouterNetwork::Layout(*type, static_cast<int>(feature_dim), static_cast<int>(hidden_dim));
  std::vector<const TensorView*> views;  // [layout.size()]
  std::set<std::string> expected;
  auto bad = [&](const std::string& name, std::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor '", name, "': ", std::string(what)));
  };
  for (const ParamSpec& spec : layout) {
    expected.insert(spec.name);
    const auto found = std::find_if(tensors.begin(), tensors.end(),
                                    [&](const TensorView& t) { return t.name == spec.name; });
    if (found == tensors.end())
      return bad(spec.name, absl::StrCat("missing (a ", type_name, " router needs it)"));
    if (found->dtype != DType::kF32) {
      return bad(spec.name,
                 absl::StrCat("dtype ", std::string(DTypeName(found->dtype)), ", expected F32"));
    }
    if (found->shape != spec.shape) {
      return bad(spec.name, absl::StrCat("shape [", absl::StrJoin(found->shape, ","),
                                         "], expected [", absl::StrJoin(spec.shape, ","), "]"));
    }
    views.push_back(&*found);
  }
  for (const TensorView& view : tensors) {
    if (!expected.contains(view.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": unexpected tensor '", view.name, "' for a ", type_name, " router"));
    }
  }
  contents.network = std::make_unique<RouterNetwork>(*type, static_cast<int>(feature_dim),
                                                     static_cast<int>(hidden_dim), bayes);
  std::vector<ParamTensor>& params = contents.network->params();
  SR_CHECK(params.size() == views.size());  // params() is in Layout() order
  for (size_t k = 0; k < params.size(); ++k) {
    ParamTensor& p = params[k];
    SR_CHECK(p.name == layout[k].name);
    SR_CHECK(views[k]->nbytes == p.values.size() * sizeof(float));  // shape checked above
    std::memcpy(p.values.data(), views[k]->data, views[k]->nbytes);
    for (size_t i = 0; i < p.values.size(); ++i) {
      if (!std::isfinite(p.values[i]))
        return bad(p.name, absl::StrCat("element ", i, " is not finite"));
    }
  }
  return contents;
}

}  // namespace

absl::StatusOr<RouterFileContents> ReadRouterFile(const std::string& path) {
  SR_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  return RouterFromTensors(file->tensors(), file->metadata(), path);
}

absl::StatusOr<RouterFileContents> ParseRouterFile(std::span<const std::byte> image,
                                                   const std::string& source) {
  SR_ASSIGN_OR_RETURN(SafetensorsContents contents, ParseSafetensors(image, source));
  return RouterFromTensors(contents.tensors, contents.metadata, source);
}

absl::Status CheckFeatureSource(const RouterInfo& info, int router_dim,
                                std::string_view fingerprint, int dim) {
  if (dim != router_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("router expects ", router_dim, "-dim features, got ", dim,
                     "-dim features (from '", std::string(fingerprint), "')"));
  }
  if (fingerprint != info.fingerprint) {
    return absl::InvalidArgumentError(absl::StrCat("router was trained on features from '",
                                                   info.fingerprint, "', got features from '",
                                                   std::string(fingerprint), "'"));
  }
  return absl::OkStatus();
}

std::unique_ptr<Router> MakeRouter(std::unique_ptr<RouterNetwork> network, RouterInfo info) {
  return std::make_unique<NetworkRouter>(std::move(network), std::move(info));
}

absl::StatusOr<std::unique_ptr<Router>> LoadRouter(const std::string& path) {
  SR_ASSIGN_OR_RETURN(RouterFileContents contents, ReadRouterFile(path));
  return MakeRouter(std::move(contents.network), std::move(contents.info));
}

}  // namespace saferoute
