// `saferoute fit`: the whole SafeRoute recipe for users, in one resumable job:
//   1. score the small and the large guard on the training and evaluation
//      data (scores + small-guard features; cached in --out and resumed),
//   2. hard labels on the training data (large right, small wrong),
//   3. train the router on the small guard's features (validation split
//      stratified on t, best-validation epoch kept),
//   4. calibrate the escalation budget on the validation split,
//   5. evaluate every method and baseline on the evaluation data.
// With no --small-model/--large-model it makes random-weight stand-in guards
// with the real Llama 3 vocabulary and runs on a slice of ../shared/bench, so
// that a newcomer sees the whole pipeline work; it says so loudly.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/guard_flags.h"
#include "eval/dataset.h"
#include "eval/eval_job.h"
#include "eval/scoring.h"
#include "eval/svg_plot.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"
#include "router/calibration.h"
#include "router/feature_set.h"
#include "router/router_file.h"
#include "router/train.h"

namespace saferoute::cli {
namespace {

namespace fs = std::filesystem;

struct FitFlags {
  GuardFlags small, large;
  std::vector<std::string> train, eval;
  int train_limit = -1;  // -1: all (stand-in mode: 600)
  int eval_limit = -1;   // -1: all (stand-in mode: 300)
  std::string out = "out/fit";
  std::string shared;  // ../shared (stand-in mode)
  std::string router = "bnn";
  TrainOptions train_options;
  double share = -1;  // <0: keep the paper's ε = 0.5
  uint64_t seed = 0;
};

// Stand-in for a large guard: a random-weight Llama with the real vocabulary,
// a different (bigger) shape than the small stand-in, rendered in the 8B layout.
ModelConfig StandInLargeConfig() {
  // The Llama Guard 3 family settings (vocabulary, RoPE, ids), scaled down.
  ModelConfig c = NamedModelConfig("llama-guard-3-1b").value();
  c.hidden_size = 128;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.intermediate_size = 384;
  c.tie_word_embeddings = true;
  return c;
}

absl::Status MakeStandInLarge(const std::string& dir, const std::string& tokenizer, uint64_t seed) {
  if (fs::exists(fs::path(dir) / "config.json") && fs::exists(fs::path(dir) / "tokenizer.json")) {
    return absl::OkStatus();  // made by an earlier run (the checkpoint is deterministic per seed)
  }
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model,
                      MakeRandomModel(StandInLargeConfig(), DType::kBF16, seed));
  SR_RETURN_IF_ERROR(WriteModelDirectory(*model, dir));
  std::error_code ec;
  fs::copy_file(tokenizer, fs::path(dir) / "tokenizer.json", fs::copy_options::overwrite_existing,
                ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("copying ", tokenizer, " into ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

// A seeded sample of `limit` examples (all if limit < 0), written in the
// bench JSONL shape so every later step (scores, labels, eval) reads one file.
absl::StatusOr<std::string> WriteSlice(const std::vector<std::string>& files, int limit,
                                       uint64_t seed, const std::string& path) {
  SR_ASSIGN_OR_RETURN(std::vector<eval::Example> examples, eval::LoadDatasets(files));
  if (limit >= 0 && static_cast<size_t>(limit) < examples.size()) {
    std::mt19937_64 rng(seed);
    std::shuffle(examples.begin(), examples.end(), rng);
    examples.resize(limit);
  }
  std::string text;
  for (const eval::Example& e : examples) {
    nlohmann::json row = {{"id", e.id}, {"prompt", e.prompt}, {"unsafe", e.unsafe}};
    row["response"] =
        e.response.has_value() ? nlohmann::json(*e.response) : nlohmann::json(nullptr);
    text += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict) + "\n";
  }
  // Rewriting an identical slice keeps resumed score directories valid.
  SR_RETURN_IF_ERROR(WriteFileAtomically(path, text));
  return path;
}

absl::StatusOr<std::string> ScoreWith(GuardFlags flags, const std::string& data,
                                      const std::string& out, const char* what) {
  SR_ASSIGN_OR_RETURN(LocalGuardOptions options, ToLocalGuardOptions(flags));
  SR_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfigAt(flags.model_dir));
  SR_ASSIGN_OR_RETURN(std::vector<eval::Example> examples, eval::LoadDatasets({data}));
  SR_ASSIGN_OR_RETURN(std::unique_ptr<Guard> guard, OpenLocalGuard(options));
  eval::ScoreOptions score_options;
  score_options.batch_size = flags.batch;
  score_options.dataset_files = {data};
  score_options.n_params = static_cast<double>(ComputeParamsPerToken(config));
  std::fprintf(stderr, "fit: scoring %zu examples with the %s guard (%s on %s)\n", examples.size(),
               what, guard->name().c_str(), DescribeCompute(*guard).c_str());
  SR_ASSIGN_OR_RETURN(eval::ScoreSummary summary,
                      eval::ScoreDataset(*guard, examples, out, score_options));
  if (summary.resumed > 0) {
    std::fprintf(stderr, "fit:   %lld of them reused from an earlier run\n",
                 static_cast<long long>(summary.resumed));
  }
  return out;
}

absl::Status TrainAndCalibrate(const FitFlags& flags, const std::string& features_path,
                               const std::string& labels_path, const std::string& router_path) {
  SR_ASSIGN_OR_RETURN(FeatureSet features, ReadFeatureFile(features_path));
  SR_ASSIGN_OR_RETURN(RouterLabels labels, ReadLabelsFor(labels_path, features.ids));
  int64_t positives = 0;
  for (uint8_t t : labels.t) positives += t;
  std::fprintf(stderr, "fit: %lld training examples, %lld hard (t = 1)\n",
               static_cast<long long>(features.rows()), static_cast<long long>(positives));
  if (positives < 2 || positives > features.rows() - 2) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the training data has ", positives, " hard examples out of ", features.rows(),
        ": a router needs both kinds (the small guard wrong where the large is right, and not). "
        "Use more training data (--train, --train-limit)."));
  }
  TrainOptions options = flags.train_options;
  SR_ASSIGN_OR_RETURN(options.type, ParseRouterType(flags.router));
  options.seed = flags.seed;
  SR_ASSIGN_OR_RETURN(
      TrainedRouter trained,
      TrainRouter(features.features, features.dim, labels.t, options, [&](const EpochReport& r) {
        if (r.epoch % 10 == 0 || r.epoch == options.epochs) {
          std::fprintf(stderr, "fit: epoch %d/%d loss %.4f val_auprc %.4f\n", r.epoch,
                       options.epochs, r.train_loss, r.val.auprc);
        }
      }));
  RouterInfo info;
  info.fingerprint = features.fingerprint;
  info.training = TrainSummaryToJson(trained.summary);
  info.training["features_file"] = features_path;
  info.training["labels_file"] = labels_path;
  // Budget calibration on the held-out validation rows, with the cascade's
  // safety F1 at each threshold (the label file carries both verdicts).
  SR_ASSIGN_OR_RETURN(info.calibration, CalibrateOnValidation(trained, labels));
  info.calibration_source = {{"split", "validation"}, {"examples", trained.val_rows.size()}};
  if (flags.share >= 0) {
    SR_ASSIGN_OR_RETURN(info.threshold, InterpolateThreshold(info.calibration, flags.share));
    info.calibration_source["target_share"] = flags.share;
  }
  SR_RETURN_IF_ERROR(WriteRouterFile(router_path, trained.network, info));
  const TrainSummary& s = trained.summary;
  std::fprintf(stderr,
               "fit: router %s: kept epoch %d (best val AUPRC %.4f); last epoch %d val AUPRC %.4f; "
               "threshold %.4f\n",
               router_path.c_str(), s.kept_epoch, s.best.val.auprc, s.last.epoch, s.last.val.auprc,
               info.threshold);
  return absl::OkStatus();
}

std::string FindSharedDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  for (const char* candidate : {"../shared", SAFEROUTE_SHARED_DIR}) {
    if (fs::exists(fs::path(candidate) / "fixtures")) return candidate;
  }
  return "";
}

absl::Status RunFit(FitFlags flags) {
  const bool stand_ins = flags.small.model_dir.empty() && flags.large.model_dir.empty();
  if (!stand_ins && (flags.small.model_dir.empty() || flags.large.model_dir.empty())) {
    return absl::InvalidArgumentError(
        "give both --small-model and --large-model, or neither (stand-ins)");
  }
  std::error_code ec;
  fs::create_directories(flags.out, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", flags.out, ": ", ec.message()));

  const std::string shared = FindSharedDir(flags.shared);
  if (stand_ins) {
    if (shared.empty()) {
      return absl::NotFoundError(
          "no --small-model/--large-model given and no ../shared to make stand-ins from "
          "(pass --shared DIR)");
    }
    std::fprintf(
        stderr,
        "\n*** fit: no guard models given: using RANDOM-WEIGHT STAND-IN GUARDS with the real\n"
        "*** Llama 3 vocabulary. Their verdicts are meaningless: this run shows the pipeline\n"
        "*** working, not SafeRoute's accuracy. Pass --small-model/--large-model for real "
        "guards.\n\n");
    flags.small.model_dir = shared + "/fixtures/guard/llama_guard_tiny_fullvocab_bf16";
    if (flags.small.format.empty()) flags.small.format = "llama-guard-3-1b";
    flags.large.model_dir = flags.out + "/standin-large";
    if (flags.large.format.empty()) flags.large.format = "llama-guard-3-8b";
    SR_RETURN_IF_ERROR(MakeStandInLarge(
        flags.large.model_dir, shared + "/tokenizers/llama3/tokenizer.json", flags.seed + 1));
    if (flags.train.empty()) flags.train = {shared + "/bench/train/guard_mix_5k.jsonl"};
    if (flags.eval.empty()) flags.eval = {shared + "/bench/eval/openai_moderation.jsonl"};
    if (flags.train_limit < 0) flags.train_limit = 600;
    if (flags.eval_limit < 0) flags.eval_limit = 300;
  }
  if (flags.train.empty() || flags.eval.empty()) {
    return absl::InvalidArgumentError("--train and --eval datasets are required with real guards");
  }
  flags.large.threads = flags.small.threads;

  // 1. Data slices and scores (each step resumes what an earlier run left).
  SR_ASSIGN_OR_RETURN(std::string train_data, WriteSlice(flags.train, flags.train_limit, flags.seed,
                                                         flags.out + "/data-train.jsonl"));
  SR_ASSIGN_OR_RETURN(std::string eval_data, WriteSlice(flags.eval, flags.eval_limit, flags.seed,
                                                        flags.out + "/data-eval.jsonl"));
  const std::string s_train = flags.out + "/scores/small-train",
                    s_eval = flags.out + "/scores/small-eval";
  const std::string l_train = flags.out + "/scores/large-train",
                    l_eval = flags.out + "/scores/large-eval";
  SR_RETURN_IF_ERROR(ScoreWith(flags.small, train_data, s_train, "small").status());
  SR_RETURN_IF_ERROR(ScoreWith(flags.small, eval_data, s_eval, "small").status());
  SR_RETURN_IF_ERROR(ScoreWith(flags.large, train_data, l_train, "large").status());
  SR_RETURN_IF_ERROR(ScoreWith(flags.large, eval_data, l_eval, "large").status());

  // 2. Hard labels on the training data.
  eval::LabelJob label_job{.data = {train_data},
                           .mapping = {},
                           .small_scores = s_train + "/" + eval::kScoresFile,
                           .large_scores = l_train + "/" + eval::kScoresFile,
                           .out = flags.out + "/labels-train.jsonl"};
  SR_RETURN_IF_ERROR(eval::RunLabelJob(label_job).status());

  // 3-4. Router, calibrated on its validation split.
  const std::string router_path = flags.out + "/router.safetensors";
  SR_RETURN_IF_ERROR(
      TrainAndCalibrate(flags, s_train + "/" + eval::kFeaturesFile, label_job.out, router_path));

  // 5. Evaluation on held-out data: every method and baseline.
  SR_ASSIGN_OR_RETURN(std::unique_ptr<Router> router, LoadRouter(router_path));
  eval::EvalJob job;
  job.data = {eval_data};
  job.small_scores = s_eval + "/" + eval::kScoresFile;
  job.large_scores = l_eval + "/" + eval::kScoresFile;
  job.features = s_eval + "/" + eval::kFeaturesFile;
  job.calib_small_scores = s_train + "/" + eval::kScoresFile;
  job.calib_data = {train_data};
  if (flags.share >= 0) job.share = flags.share;
  job.seed = flags.seed;
  SR_ASSIGN_OR_RETURN(eval::EvalReport report, eval::RunEvalJob(job, router.get()));
  SR_RETURN_IF_ERROR(
      WriteFileAtomically(flags.out + "/eval.json", eval::ReportToJson(report).dump(2) + "\n"));
  SR_RETURN_IF_ERROR(WriteFileAtomically(
      flags.out + "/eval.svg",
      eval::RenderTradeOffSvg(report, stand_ins ? "F1 vs large-guard share (random stand-in guards)"
                                                : "F1 vs large-guard share")));
  std::printf("%s", eval::FormatReportTable(report).c_str());
  std::printf("\nrouter: %s\nreport: %s/eval.json, plot: %s/eval.svg\n", router_path.c_str(),
              flags.out.c_str(), flags.out.c_str());
  if (stand_ins) {
    std::printf(
        "(random-weight stand-in guards: the numbers above show the pipeline, not accuracy)\n");
  }
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupFitCommand(CLI::App& cmd) {
  auto flags = std::make_shared<FitFlags>();
  AddGuardFlags(cmd, flags->small, "small-", "small guard", /*model_required=*/false);
  AddGuardFlags(cmd, flags->large, "large-", "large guard", /*model_required=*/false);
  cmd.add_option("--train", flags->train, "training datasets (bench JSONL shape)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--eval", flags->eval, "evaluation datasets (never train on these)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--train-limit", flags->train_limit,
                 "seeded sample of the training data (-1: all; stand-ins: 600)")
      ->capture_default_str();
  cmd.add_option("--eval-limit", flags->eval_limit,
                 "seeded sample of the evaluation data (-1: all; stand-ins: 300)")
      ->capture_default_str();
  cmd.add_option("--out", flags->out, "work directory (scores are cached here and reused)")
      ->capture_default_str();
  cmd.add_option("--shared", flags->shared,
                 "the shared/ folder for stand-ins (default: ../shared)");
  cmd.add_option("--router", flags->router, "bnn (paper), mlp or logistic")
      ->capture_default_str()
      ->check(CLI::IsMember({"bnn", "mlp", "logistic"}));
  cmd.add_option("--epochs", flags->train_options.epochs, "router training epochs (paper: 1000)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd.add_option(
         "--share", flags->share,
         "large-guard budget: calibrate ε to send this share (default: the paper's ε = 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--seed", flags->seed, "seed for data samples, stand-ins and training")
      ->capture_default_str();
  return [flags] { return RunFit(*flags); };
}

}  // namespace saferoute::cli
