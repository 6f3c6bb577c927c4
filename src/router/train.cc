#include "router/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "router/adamw.h"
#include "router/metrics.h"
#include "router/parallel.h"
#include "router/random.h"

namespace saferoute {
namespace {

// Stream ids that keep the random streams of one seed independent.
constexpr uint64_t kSplitStream = 0x5b117;
constexpr uint64_t kBatchStream = 0xba7c4;
constexpr uint64_t kNoiseStream = 0x9015e;

absl::Status ValidateOptions(const TrainOptions& o) {
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("train options: ", std::string(what)));
  };
  if (o.type != RouterType::kLogistic && (o.hidden_dim <= 0 || o.hidden_dim > 65536))
    return bad(absl::StrCat("hidden_dim ", o.hidden_dim, " not in [1, 65536]"));
  if (o.epochs <= 0) return bad(absl::StrCat("epochs ", o.epochs, " must be positive"));
  if (o.batch_size <= 0) return bad(absl::StrCat("batch_size ", o.batch_size, " must be positive"));
  if (!(o.learning_rate > 0) || !std::isfinite(o.learning_rate))
    return bad("learning_rate must be a positive number");
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
    return bad("weight_decay must be >= 0");
  if (o.warmup_steps < 0) return bad("warmup_steps must be >= 0");
  if (!(o.kl_weight >= 0) || !std::isfinite(o.kl_weight)) return bad("kl_weight must be >= 0");
  if (!(o.bayes.prior_sigma > 0) || !std::isfinite(o.bayes.prior_sigma))
    return bad("prior_sigma must be positive");
  if (!std::isfinite(o.bayes.init_log_sigma)) return bad("init_log_sigma must be finite");
  if (!(o.val_share >= 0 && o.val_share < 1)) return bad("val_share must be in [0, 1)");
  return absl::OkStatus();
}

// Copies rows [rows] of features [*, dim] into out [rows.size(), dim].
void GatherRows(std::span<const float> features, int dim, std::span<const int64_t> rows,
                float* out) {
  const int64_t n = static_cast<int64_t>(rows.size());
#pragma omp parallel for schedule(static) if (n * dim >= kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * dim, features.data() + rows[i] * dim, sizeof(float) * dim);
  }
}

SplitMetrics Evaluate(const RouterNetwork& net, const std::vector<float>& val_features,
                      std::span<const uint8_t> val_targets, std::vector<float>* scores) {
  const int64_t n = static_cast<int64_t>(val_targets.size());
  SplitMetrics m;
  scores->resize(n);
  if (n == 0) {
    m.loss = m.auprc = m.f1 = m.accuracy = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  std::vector<float> logits(n);
  net.Logits(val_features.data(), n, logits.data());
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    loss += BceWithLogits(logits[i], val_targets[i]);
    (*scores)[i] = Sigmoid(logits[i]);
  }
  m.loss = loss / n;
  m.auprc = AveragePrecision(*scores, val_targets);
  const BinaryCounts counts = CountAtThreshold(*scores, val_targets, 0.5);
  m.f1 = counts.F1();
  m.accuracy = counts.Accuracy();
  return m;
}

}  // namespace

double LearningRateScale(int64_t step, int64_t warmup_steps, int64_t total_steps) {
  if (step < warmup_steps) return static_cast<double>(step) / std::max<int64_t>(1, warmup_steps);
  return std::max(0.0, static_cast<double>(total_steps - step) /
                           std::max<int64_t>(1, total_steps - warmup_steps));
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> StratifiedSplit(
    std::span<const uint8_t> targets, double val_share, uint64_t seed) {
  std::vector<int64_t> train, val;
  for (uint8_t cls : {uint8_t{0}, uint8_t{1}}) {
    std::vector<int64_t> rows;
    for (size_t i = 0; i < targets.size(); ++i) {
      if ((targets[i] != 0) == (cls != 0)) rows.push_back(static_cast<int64_t>(i));
    }
    // Fisher-Yates with the counter-based generator.
    const uint64_t key = MixKey(seed, kSplitStream, cls);
    for (size_t i = rows.size(); i > 1; --i) {
      std::swap(rows[i - 1], rows[IndexAt(key, i, i)]);
    }
    const size_t n_val = static_cast<size_t>(std::llround(val_share * rows.size()));
    val.insert(val.end(), rows.begin(), rows.begin() + n_val);
    train.insert(train.end(), rows.begin() + n_val, rows.end());
  }
  std::sort(train.begin(), train.end());
  std::sort(val.begin(), val.end());
  return {std::move(train), std::move(val)};
}

absl::StatusOr<TrainedRouter> TrainRouter(std::span<const float> features, int dim,
                                          std::span<const uint8_t> targets,
                                          const TrainOptions& options,
                                          const EpochCallback& on_epoch) {
  SR_RETURN_IF_ERROR(ValidateOptions(options));
  const int64_t n = static_cast<int64_t>(targets.size());
  if (dim <= 0)
    return absl::InvalidArgumentError(absl::StrCat("feature dim ", dim, " must be positive"));
  if (n == 0) return absl::InvalidArgumentError("no training examples");
  if (features.size() != static_cast<size_t>(n) * dim) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "features hold %d floats, expected %d rows x %d = %d", features.size(), n, dim, n * dim));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] > 1)
      return absl::InvalidArgumentError(
          absl::StrCat("row ", i, ": label t=", int{targets[i]}, " is not 0 or 1"));
  }
  for (size_t i = 0; i < features.size(); ++i) {
    if (!std::isfinite(features[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("row ", i / dim, ", column ", i % dim, ": feature is not finite"));
    }
  }

  auto [train_rows, val_rows] = StratifiedSplit(targets, options.val_share, options.seed);
  std::vector<int64_t> by_class[2];
  for (int64_t r : train_rows) by_class[targets[r] != 0].push_back(r);
  if (by_class[0].empty() || by_class[1].empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the training split has ", by_class[0].size(),
                                                   " rows with t=0 and ", by_class[1].size(),
                                                   " with t=1; both classes are needed"));
  }

  TrainSummary summary;
  summary.options = options;
  summary.examples = n;
  summary.positives = std::count(targets.begin(), targets.end(), uint8_t{1});
  summary.train_examples = static_cast<int64_t>(train_rows.size());
  summary.val_examples = static_cast<int64_t>(val_rows.size());
  summary.epochs = options.epochs;

  std::vector<float> val_features(val_rows.size() * dim);
  GatherRows(features, dim, val_rows, val_features.data());
  std::vector<uint8_t> val_targets;
  for (int64_t r : val_rows) val_targets.push_back(targets[r]);
  summary.val_positives = std::count(val_targets.begin(), val_targets.end(), uint8_t{1});

  RouterNetwork net(options.type, dim, options.hidden_dim, options.bayes);
  net.Initialize(options.seed);
  AdamW optimizer(net.params());

  const int64_t n_train = static_cast<int64_t>(train_rows.size());
  const int64_t steps_per_epoch = (n_train + options.batch_size - 1) / options.batch_size;
  const int64_t total_steps = steps_per_epoch * options.epochs;
  std::vector<float> batch_features(static_cast<size_t>(options.batch_size) * dim);
  std::vector<float> batch_targets(options.batch_size);
  std::vector<int64_t> batch_rows(options.batch_size);
  std::vector<std::vector<float>> grads;
  RouterNetwork::StepBuffers step_buffers;  // reused every step
  // Bayesian MLP: the weight sample of the current step. Drawn whole for the
  // first step; after that each chunk is redrawn for step + 1 as soon as the
  // gradient pass has updated it (below), while it is in cache.
  const uint64_t noise_seed = MixKey(options.seed, kNoiseStream, 0);
  WeightSample sample;
  if (net.bayesian()) net.DrawWeightSample(noise_seed, 0, &sample);
  int64_t step = 0;
  const RouterNetwork::BayesianGradientSink update_bayesian =
      [&](const RouterNetwork::BayesianGradientChunk& chunk) {
        std::vector<ParamTensor>& params = net.params();
        optimizer.UpdateRange(chunk.mean_index, chunk.begin, chunk.end,
                              params[chunk.mean_index].values.data() + chunk.begin, chunk.d_mean);
        optimizer.UpdateRange(chunk.log_sigma_index, chunk.begin, chunk.end,
                              params[chunk.log_sigma_index].values.data() + chunk.begin,
                              chunk.d_log_sigma);
        net.DrawWeightSampleRange(noise_seed, static_cast<uint64_t>(step) + 1, chunk.mean_index,
                                  chunk.begin, chunk.end, &sample);
      };
  std::vector<float> val_scores;

  std::optional<std::vector<ParamTensor>> best_params;
  std::vector<float> best_scores;
  double best_auprc = -1;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    double loss_sum = 0, bce_sum = 0;
    // N draws per epoch (torch WeightedRandomSampler, num_samples = N), in
    // batches of batch_size; the last batch holds the remainder.
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      const int64_t rows = std::min<int64_t>(options.batch_size, n_train - s * options.batch_size);
      const uint64_t key = MixKey(options.seed, kBatchStream, static_cast<uint64_t>(step));
      for (int64_t i = 0; i < rows; ++i) {
        // Weight 1/count per row = each class with probability 1/2, then a
        // uniform row within the class.
        const int cls = UniformAt(key, 2 * i) < 0.5 ? 0 : 1;
        const std::vector<int64_t>& pool = by_class[cls];
        batch_rows[i] = pool[IndexAt(key, 2 * i + 1, pool.size())];
        batch_targets[i] = static_cast<float>(cls);
      }
      GatherRows(features, dim, std::span(batch_rows.data(), rows), batch_features.data());
      optimizer.BeginStep(
          options.learning_rate * LearningRateScale(step, options.warmup_steps, total_steps),
          options.weight_decay);
      double bce = 0;
      // The Bayesian tensors are updated inside the gradient pass (sink); the
      // rest (LayerNorm, or every tensor of the other routers) after it.
      const double loss =
          net.LossAndGradients(batch_features.data(), batch_targets.data(), rows,
                               net.bayesian() ? &sample : nullptr, options.kl_weight, &grads, &bce,
                               &step_buffers, net.bayesian() ? &update_bayesian : nullptr);
      if (!std::isfinite(loss)) {
        return absl::InternalError(absl::StrCat("epoch ", epoch, ", step ", step,
                                                ": training loss is not finite (lr too high?)"));
      }
      loss_sum += loss;
      bce_sum += bce;
      for (size_t p = 0; p < net.params().size(); ++p) {
        if (net.is_bayesian_param(static_cast<int>(p))) continue;
        optimizer.UpdateTensor(static_cast<int>(p), net.params()[p].values, grads[p]);
      }
    }
    EpochReport report;
    report.epoch = epoch;
    report.train_loss = loss_sum / steps_per_epoch;
    report.train_bce = bce_sum / steps_per_epoch;
    report.val = Evaluate(net, val_features, val_targets, &val_scores);
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    summary.last = report;
    // Strictly better only: ties keep the earlier epoch. NaN (no validation
    // positives) never selects.
    if (report.val.auprc > best_auprc) {
      best_auprc = report.val.auprc;
      summary.best = report;
      summary.best_epoch = epoch;
      if (!options.keep_last_epoch) {
        best_params = net.params();
        best_scores = val_scores;
      }
    }
    if (on_epoch) on_epoch(report);
  }

  TrainedRouter result{
      .network = std::move(net), .summary = summary, .val_rows = val_rows, .val_scores = {}};
  if (!options.keep_last_epoch && best_params) {
    result.network.params() = std::move(*best_params);
    result.val_scores = std::move(best_scores);
    result.summary.kept_epoch = result.summary.best_epoch;
  } else {
    result.val_scores = std::move(val_scores);
    result.summary.kept_epoch = options.epochs;
  }
  return result;
}

}  // namespace saferoute
