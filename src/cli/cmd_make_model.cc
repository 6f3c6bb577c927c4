// `saferoute make-model`: writes a random-weight checkpoint of a named shape
// or a given config.json as a Hugging Face directory (config.json +
// model.safetensors [+ tokenizer.json]) that LoadModel, `inspect` and the
// guards read like a download. For benchmarks and stand-in guards; verdicts
// from random weights are meaningless.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/command.h"
#include "model/config.h"
#include "model/weights.h"

namespace saferoute::cli {
namespace {

struct MakeModelFlags {
  std::string shape, config, dtype = "bf16", out, tokenizer;
  uint64_t seed = 0;
};

absl::Status RunMakeModel(const MakeModelFlags& flags) {
  namespace fs = std::filesystem;
  ModelConfig config;
  if (!flags.shape.empty()) {
    SR_ASSIGN_OR_RETURN(config, NamedModelConfig(flags.shape));
  } else {
    SR_ASSIGN_OR_RETURN(config, LoadModelConfig(flags.config));
  }
  const DType dtype = flags.dtype == "f32" ? DType::kF32 : DType::kBF16;
  if (!flags.tokenizer.empty() && !fs::is_regular_file(flags.tokenizer)) {
    return absl::NotFoundError(absl::StrCat(flags.tokenizer, ": tokenizer file not found"));
  }
  const auto start = std::chrono::steady_clock::now();
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model,
                      MakeRandomModel(config, dtype, flags.seed));
  SR_RETURN_IF_ERROR(WriteModelDirectory(*model, flags.out));
  if (!flags.tokenizer.empty()) {
    std::error_code ec;
    fs::copy_file(flags.tokenizer, fs::path(flags.out) / "tokenizer.json",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat(flags.tokenizer, ": cannot copy to ", flags.out,
                                              "/tokenizer.json: ", ec.message()));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %s: %s, %lld layers, %.1f MB of %s weights, fingerprint %s (%.1f s)\n",
              flags.out.c_str(), config.architecture_name.c_str(),
              static_cast<long long>(config.num_layers), model->weight_bytes() / 1e6,
              flags.dtype.c_str(), model->fingerprint().c_str(), seconds);
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupMakeModelCommand(CLI::App& cmd) {
  auto flags = std::make_shared<MakeModelFlags>();
  std::string shapes;
  for (const std::string& name : NamedModelConfigNames()) {
    absl::StrAppend(&shapes, shapes.empty() ? "" : ", ", name);
  }
  auto* shape = cmd.add_option("--shape", flags->shape, "named shape: " + shapes);
  auto* config = cmd.add_option("--config", flags->config, "a config.json to take the shape from")
                     ->check(CLI::ExistingFile);
  shape->excludes(config);
  config->excludes(shape);
  cmd.add_option("--dtype", flags->dtype, "weight dtype")
      ->capture_default_str()
      ->check(CLI::IsMember({"bf16", "f32"}));
  cmd.add_option("--seed", flags->seed, "random seed (same seed, same weights)")
      ->capture_default_str();
  cmd.add_option("--out", flags->out, "output directory (created if missing)")->required();
  cmd.add_option("--tokenizer", flags->tokenizer, "tokenizer.json to copy into the directory");
  return [flags, shape, config]() -> absl::Status {
    if (shape->count() == 0 && config->count() == 0) {
      return absl::InvalidArgumentError("one of --shape or --config is required");
    }
    return RunMakeModel(*flags);
  };
}

}  // namespace saferoute::cli
