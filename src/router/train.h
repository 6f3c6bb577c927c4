// Training a router on (feature, hard label t) pairs, in-process.
//
// Recipe (saferoute-method.md, released code): AdamW, 100 warm-up steps then
// linear decay to 0 over all steps, batches drawn with replacement from a
// class-balanced sampler (weight 1/class count, N draws per epoch, so t=0 and
// t=1 appear about equally), loss BCE(t) + kl_weight * mean KL for the
// Bayesian MLP, one weight sample per step, posterior mean for validation.
// A stratified validation split (val_share of each class) is scored every
// epoch; the epoch with the best validation AUPRC is kept (keep_last_epoch:
// the paper's choice, the final epoch) and both are reported.
//
// Determinism: the same inputs, options and seed give bit-identical weights
// on the same machine with the same thread count (counter-based random
// numbers, fixed-partition reductions; oneDNN GEMM results are fixed for a
// given thread count).
#ifndef SAFEROUTE_ROUTER_TRAIN_H_
#define SAFEROUTE_ROUTER_TRAIN_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "router/network.h"
#include "router/router.h"
#include "util/status.h"

namespace saferoute {

struct TrainOptions {
  RouterType type = RouterType::kBayesianMlp;
  int hidden_dim = 512;          // paper / released code: 512 (ignored for logistic)
  int epochs = 100;              // paper: 1000 (pass it explicitly; ~10x the time)
  int batch_size = 512;          // paper: 512
  double learning_rate = 1e-3;   // peak AdamW lr
  double weight_decay = 0.01;    // AdamW decoupled decay (torch default, as the code)
  int warmup_steps = 100;        // linear warm-up from 0, then linear decay to 0
  double kl_weight = 0.01;       // Bayesian MLP only: loss = BCE + kl_weight * mean KL
  BayesSettings bayes;           // prior sigma 0.1, log-sigma init log(0.1)
  double val_share = 0.1;        // stratified on t; 0 = no validation (keeps the last epoch)
  uint64_t seed = 0;             // initialisation, split, batches and weight noise
  bool keep_last_epoch = false;  // true: the paper's choice; false: best validation AUPRC
};

// Validation metrics of the posterior-mean network (NaN where undefined).
struct SplitMetrics {
  double loss = 0;      // mean BCE
  double auprc = 0;     // average precision of the score for t = 1
  double f1 = 0;        // routing F1 at threshold 0.5
  double accuracy = 0;  // at threshold 0.5
};

struct EpochReport {
  int epoch = 0;          // 1-based
  double train_loss = 0;  // mean over the epoch's steps of BCE + kl_weight * KL
  double train_bce = 0;   // BCE part (balanced batches)
  SplitMetrics val;
  double seconds = 0;  // wall time of the epoch (training + validation)
};

struct TrainSummary {
  int64_t examples = 0, positives = 0;  // all rows given
  int64_t train_examples = 0, val_examples = 0;
  int64_t val_positives = 0;
  int epochs = 0;
  int best_epoch = 0;  // by validation AUPRC (0: no validation)
  int kept_epoch = 0;  // the epoch whose weights were returned
  EpochReport best, last;
  TrainOptions options;
};

struct TrainedRouter {
  RouterNetwork network;  // the kept epoch's weights
  TrainSummary summary;
  std::vector<int64_t> val_rows;  // indices into the input of the validation rows
  std::vector<float> val_scores;  // sigmoid scores of `network` on val_rows
};

using EpochCallback = std::function<void(const EpochReport&)>;

// features: [n, dim] row-major fp32, targets: [n] of 0/1. Errors name the
// offending row/option (non-finite features, labels not 0/1, a class missing
// from the training split, bad options).
absl::StatusOr<TrainedRouter> TrainRouter(std::span<const float> features, int dim,
                                          std::span<const uint8_t> targets,
                                          const TrainOptions& options,
                                          const EpochCallback& on_epoch = {});

// Learning-rate multiplier at 0-based step `step` (HF
// get_linear_schedule_with_warmup): step/warmup during warm-up, then
// (total - step)/(total - warmup), floored at 0.
double LearningRateScale(int64_t step, int64_t warmup_steps, int64_t total_steps);

// Stratified split: for each class, a seeded shuffle and round(share * count)
// rows to validation. Returns (train rows, validation rows), each sorted.
std::pair<std::vector<int64_t>, std::vector<int64_t>> StratifiedSplit(
    std::span<const uint8_t> targets, double val_share, uint64_t seed);

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_TRAIN_H_
