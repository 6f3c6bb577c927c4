// `saferoute`: the command-line front end. The table below is the whole
// command surface; each entry's flags are declared in its cmd_<name>.cc.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"

namespace saferoute::cli {
namespace {

// Commands, in the order `saferoute --help` lists them. Add a command by
// writing cli/cmd_<name>.cc and adding one line here.
const std::vector<CommandEntry> kCommands = {
    {"fit", "Score, label, train, calibrate and evaluate a router (the whole recipe)",
     SetupFitCommand},
    {"score",
     "Run a guard over datasets: scores (JSONL) + router features (safetensors), resumable",
     SetupScoreCommand},
    {"classify", "One Llama Guard 3 call on a local model: verdict, p(unsafe), categories (JSON)",
     SetupClassifyCommand},
    {"tokenize", "Token ids of text (or a JSONL of texts) with a tokenizer.json",
     SetupTokenizeCommand},
    {"render", "The Llama Guard 3 prompt (text + ids) for a prompt [+ response]",
     SetupRenderCommand},
    {"train", "Train a router (bnn, mlp, logistic) on features + hard labels", SetupTrainCommand},
    {"calibrate", "Set a router's threshold for a large-guard budget on held-out features",
     SetupCalibrateCommand},
    {"label", "Hard labels t (Eq. 1) from small and large guard score files + gold labels",
     SetupLabelCommand},
    {"eval", "Every method vs baselines: F1, routing F1/AUPRC, share, cost, curves, SVG plot",
     SetupEvalCommand},
    {"augment",
     "Paraphrase a dataset k times through an OpenAI-compatible chat endpoint (resumable)",
     SetupAugmentCommand},
    {"make-model",
     "Write a random-weight checkpoint of a named shape or config.json (bench, stand-in guards)",
     SetupMakeModelCommand},
    {"inspect", "Raw hidden states / logits / per-layer residuals of token ids (JSON)",
     SetupInspectCommand},
    {"bench", "Prefill throughput vs the measured GEMM peak, prefix cache, RSS", SetupBenchCommand},
    {"serve", "HTTP guard service: OpenAI /v1/moderations + /v1/guard, cascade, metrics",
     SetupServeCommand},
};

}  // namespace
}  // namespace saferoute::cli

int main(int argc, char** argv) {
  using namespace saferoute::cli;
  CLI::App app{"SafeRoute: a small guard on every input, a large guard only where it is needed"};
  app.set_version_flag("--version", std::string("saferoute ") + SAFEROUTE_VERSION);
  app.require_subcommand(1);
  CommandRunner runner;
  std::string chosen;
  for (const CommandEntry& entry : kCommands) {
    CLI::App* sub = app.add_subcommand(entry.name, entry.help);
    CommandRunner run = entry.setup(*sub);
    sub->callback([&runner, &chosen, run, name = entry.name] {
      runner = run;
      chosen = name;
    });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);  // usage errors: exit code from CLI11 (non-zero), message on stderr
  }
  if (!runner) return 2;
  absl::Status status = runner();
  if (!status.ok()) {
    std::fprintf(stderr, "saferoute %s: error: %s\n", chosen.c_str(),
                 std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
