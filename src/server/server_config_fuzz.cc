// libFuzzer target (DEVELOPERS.md, "Fuzzing"): the TOML file of `saferoute
// serve --config` as the command reads it: toml11, then each key onto its
// field through the serve key table (ApplyConfigText, the file reader's text
// entry point; no file is written).
// Invariants beyond "no crash":
//  - an error is one line of valid UTF-8 (it goes to the log and the terminal);
//  - whatever file is accepted, the effective configuration --print-config
//    writes (ServerConfigToToml) reads back to the same configuration, and
//    validation says the same of both.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "CLI/CLI.hpp"
#include "server/server_config.h"
#include "util/utf8.h"

namespace saferoute::server {
namespace {

// The configuration a fresh `serve` command (no flags) gets from `toml`.
absl::Status Apply(std::string_view toml, ServerConfig& config) {
  CLI::App app;
  std::string config_file;
  bool print_config = false;
  AddServeFlags(app, config, config_file, print_config);
  return ApplyConfigText(app, toml, "fuzz.toml", config);
}

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s\n%s\n", what, detail.c_str());
  std::abort();
}

}  // namespace
}  // namespace saferoute::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using saferoute::server::Apply;
  using saferoute::server::Fail;
  using saferoute::server::ServerConfig;
  using saferoute::server::ServerConfigToToml;
  ServerConfig config;
  const absl::Status status =
      Apply(std::string_view(reinterpret_cast<const char*>(data), size), config);
  if (!status.ok()) {
    const std::string message(status.message());
    if (saferoute::FindInvalidUtf8(message) != std::string::npos ||
        message.find('\n') != std::string::npos) {
      Fail("error message is not one line of valid UTF-8:", message);
    }
    return 0;
  }
  const std::string printed = ServerConfigToToml(config);
  ServerConfig again;
  if (const absl::Status reread = Apply(printed, again); !reread.ok()) {
    Fail("printed configuration not accepted:", std::string(reread.message()) + "\n" + printed);
  }
  if (ServerConfigToToml(again) != printed) {
    Fail("printed configuration reads back differently:",
         printed + "---\n" + ServerConfigToToml(again));
  }
  if (saferoute::server::ValidateServerConfig(again).ok() !=
      saferoute::server::ValidateServerConfig(config).ok()) {
    Fail("validation differs after the round trip:", printed);
  }
  return 0;
}
