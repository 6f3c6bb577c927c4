// How a `saferoute` subcommand plugs into the command table in main.cc.
//
// Each command lives in its own file cli/cmd_<name>.cc and exposes one
// function that declares its flags on the CLI11 sub-app it is given and
// returns the function that runs it after parsing. Flags are declared once,
// with help text and defaults; unknown flags are an error (CLI11 default).
#ifndef SAFEROUTE_CLI_COMMAND_H_
#define SAFEROUTE_CLI_COMMAND_H_

#include <functional>

#include "CLI/CLI.hpp"
#include "util/status.h"

namespace saferoute::cli {

// Runs the command after flags are parsed. An error Status is printed as
// "saferoute <cmd>: error: <message>" and gives exit code 1.
using CommandRunner = std::function<absl::Status()>;
using CommandSetup = CommandRunner (*)(CLI::App& cmd);

struct CommandEntry {
  const char* name;
  const char* help;
  CommandSetup setup;
};

// One declaration per command file.
CommandRunner SetupInspectCommand(CLI::App& cmd);
CommandRunner SetupBenchCommand(CLI::App& cmd);
CommandRunner SetupTokenizeCommand(CLI::App& cmd);
CommandRunner SetupRenderCommand(CLI::App& cmd);
CommandRunner SetupClassifyCommand(CLI::App& cmd);
CommandRunner SetupScoreCommand(CLI::App& cmd);
CommandRunner SetupLabelCommand(CLI::App& cmd);
CommandRunner SetupTrainCommand(CLI::App& cmd);
CommandRunner SetupCalibrateCommand(CLI::App& cmd);
CommandRunner SetupEvalCommand(CLI::App& cmd);
CommandRunner SetupAugmentCommand(CLI::App& cmd);
CommandRunner SetupFitCommand(CLI::App& cmd);
CommandRunner SetupServeCommand(CLI::App& cmd);
CommandRunner SetupMakeModelCommand(CLI::App& cmd);

}  // namespace saferoute::cli

#endif  // SAFEROUTE_CLI_COMMAND_H_
