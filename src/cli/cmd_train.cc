// `saferoute train`: trains a router on a feature file and a hard-label file
// (formats: router/feature_set.h) and writes a router file (router/router_file.h).
// The validation split's scores also give the file its budget calibration
// table; the operating threshold stays the paper's 0.5 until `calibrate`.
#include <cmath>
#include <cstdio>
#include <string>

#include "cli/command.h"
#include "router/calibration.h"
#include "router/feature_set.h"
#include "router/router_file.h"
#include "router/train.h"

namespace saferoute::cli {
namespace {

struct TrainFlags {
  std::string features, labels, out;
  std::string router = "bnn";
  TrainOptions options;
};

void PrintEpoch(const EpochReport& r, int epochs) {
  std::fprintf(stderr,
               "epoch %d/%d  loss %.5f (bce %.5f)  val_loss %.5f  val_auprc %.4f  val_f1 %.4f  "
               "%.1fs\n",
               r.epoch, epochs, r.train_loss, r.train_bce, r.val.loss, r.val.auprc, r.val.f1,
               r.seconds);
}

absl::Status RunTrain(const TrainFlags& flags) {
  TrainOptions options = flags.options;
  SR_ASSIGN_OR_RETURN(options.type, ParseRouterType(flags.router));
  SR_ASSIGN_OR_RETURN(FeatureSet features, ReadFeatureFile(flags.features));
  SR_ASSIGN_OR_RETURN(RouterLabels labels, ReadLabelsFor(flags.labels, features.ids));
  std::fprintf(stderr, "train: %lld examples x %d features from '%s', %s router\n",
               static_cast<long long>(features.rows()), features.dim, features.fingerprint.c_str(),
               flags.router.c_str());
  SR_ASSIGN_OR_RETURN(TrainedRouter trained,
                      TrainRouter(features.features, features.dim, labels.t, options,
                                  [&](const EpochReport& r) { PrintEpoch(r, options.epochs); }));

  RouterInfo info;
  info.fingerprint = features.fingerprint;
  info.training = TrainSummaryToJson(trained.summary);
  info.training["features_file"] = flags.features;
  info.training["labels_file"] = flags.labels;
  if (!trained.val_rows.empty()) {
    // Budget table from the held-out validation rows (with the cascade's
    // safety F1 when the label file carries the guards' verdicts).
    SR_ASSIGN_OR_RETURN(info.calibration, CalibrateOnValidation(trained, labels));
    info.calibration_source = {{"split", "validation"},
                               {"examples", trained.val_rows.size()},
                               {"safety_f1", labels.has_outcomes}};
  }
  SR_RETURN_IF_ERROR(WriteRouterFile(flags.out, trained.network, info));
  const TrainSummary& s = trained.summary;
  std::printf("wrote %s: %s router, kept epoch %d (%s)\n", flags.out.c_str(), flags.router.c_str(),
              s.kept_epoch, options.keep_last_epoch ? "last epoch" : "best validation AUPRC");
  std::printf("  best epoch %d: val_auprc %.4f val_f1 %.4f val_loss %.5f\n", s.best_epoch,
              s.best.val.auprc, s.best.val.f1, s.best.val.loss);
  std::printf("  last epoch %d: val_auprc %.4f val_f1 %.4f val_loss %.5f\n", s.last.epoch,
              s.last.val.auprc, s.last.val.f1, s.last.val.loss);
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupTrainCommand(CLI::App& cmd) {
  auto flags = std::make_shared<TrainFlags>();
  TrainOptions& o = flags->options;
  cmd.add_option("--features", flags->features,
                 "feature file: 'features' [N, D] F32, metadata ids + fingerprint")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--labels", flags->labels,
                 "hard labels, JSONL {\"id\", \"t\"} (from `saferoute label`)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--out", flags->out, "router file to write (.safetensors)")->required();
  cmd.add_option("--router", flags->router, "bnn (paper), mlp or logistic")
      ->capture_default_str()
      ->check(CLI::IsMember({"bnn", "mlp", "logistic"}));
  cmd.add_option("--epochs", o.epochs, "training epochs (the paper uses 1000)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd.add_option("--seed", o.seed, "seed for init, split, batches and weight noise")
      ->capture_default_str();
  cmd.add_option("--val-share", o.val_share, "validation share, stratified on t")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.99));
  cmd.add_option("--batch", o.batch_size, "batch size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd.add_option("--lr", o.learning_rate, "peak AdamW learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd.add_option("--weight-decay", o.weight_decay, "AdamW weight decay")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--warmup", o.warmup_steps, "linear warm-up steps")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--hidden", o.hidden_dim, "hidden width of the MLPs")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  cmd.add_option("--kl-weight", o.kl_weight, "weight of the mean KL term (bnn)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--keep-last-epoch", o.keep_last_epoch,
               "keep the final epoch (the paper) instead of the best validation AUPRC");
  return [flags] { return RunTrain(*flags); };
}

}  // namespace saferoute::cli
