// `saferoute serve`: the HTTP guard service. Flags and TOML keys:
// server/server_config.h; endpoints and semantics: server/README.md.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "cascade/remote_guard.h"
#include "cli/command.h"
#include "cli/guard_flags.h"
#include "guard/guard_format.h"
#include "guard/local_guard.h"
#include "model/weights.h"
#include "router/router.h"
#include "server/guard_service.h"
#include "server/http_server.h"
#include "server/routing_reload.h"
#include "server/server_config.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"

namespace saferoute::cli {
namespace {

using server::ServerConfig;

// A remote server's config.json is out of reach, so its format cannot be
// guessed from the shape: the usual large guard unless large.format says.
constexpr std::string_view kDefaultRemoteFormat = "llama-guard-3-8b";

// A local guard runs the batches its scheduler forms: its forward batch is
// the scheduler's.
absl::StatusOr<std::unique_ptr<Guard>> OpenLocal(LocalGuardOptions options,
                                                 const SchedulerOptions& scheduler) {
  options.max_batch = scheduler.max_batch;
  return OpenLocalGuard(options);
}

// The remote large guard's format, on its tokenizer: it renders the prompts
// (token ids, so the server applies no template) and names the verdict tokens.
absl::StatusOr<std::shared_ptr<const GuardFormat>> RemoteFormat(const ServerConfig& config) {
  const std::string tokenizer_path = !config.remote_tokenizer.empty()
                                         ? config.remote_tokenizer
                                         : ModelTokenizerPath(config.large.model_dir);
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const BpeTokenizer> tokenizer, LoadTokenizer(tokenizer_path));
  auto format =
      OpenGuardFormat(config.large.format.empty() ? kDefaultRemoteFormat : config.large.format,
                      std::move(tokenizer));
  if (!format.ok()) {
    return absl::Status(format.status().code(),
                        absl::StrCat(tokenizer_path, ": ", format.status().message()));
  }
  return std::shared_ptr<const GuardFormat>(*std::move(format));
}

absl::Status RunServe(CLI::App& app, ServerConfig& config, const std::string& config_file,
                      bool print_config) {
  const std::vector<std::string> command_line = server::CommandLineFlags(app);
  if (!config_file.empty()) {
    SR_RETURN_IF_ERROR(server::ApplyConfigFile(app, config_file, config));
  }
  if (print_config) {
    std::fputs(server::ServerConfigToToml(config).c_str(), stdout);
    return absl::OkStatus();
  }
  SR_RETURN_IF_ERROR(server::ValidateServerConfig(config));

  // SIGINT/SIGTERM (stop) and SIGHUP (reload the routing) are blocked in
  // every thread (the ones started below inherit the mask) and taken
  // synchronously by sigwait() at the end.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::fprintf(stderr, "saferoute serve: loading small guard from %s\n",
               config.small.model_dir.c_str());
  SR_ASSIGN_OR_RETURN(std::unique_ptr<Guard> small,
                      OpenLocal(config.small, config.service.small_scheduler));
  std::unique_ptr<Router> router;
  if (!config.router_path.empty()) {
    SR_ASSIGN_OR_RETURN(router, LoadRouter(config.router_path));
  }
  auto metrics = std::make_shared<server::ServiceMetrics>();
  std::unique_ptr<Guard> large;
  if (config.large_mode == server::LargeGuardMode::kLocal) {
    std::fprintf(stderr, "saferoute serve: loading large guard from %s\n",
                 config.large.model_dir.c_str());
    SR_ASSIGN_OR_RETURN(large, OpenLocal(config.large, config.service.large_scheduler));
  } else if (config.large_mode == server::LargeGuardMode::kRemote) {
    RemoteGuardOptions remote = config.remote;
    // The key itself never passes through flags or the config file.
    if (!config.remote_api_key_env.empty()) {
      const char* key = std::getenv(config.remote_api_key_env.c_str());
      if (key == nullptr || *key == '\0') {
        return absl::InvalidArgumentError(
            absl::StrCat("config key remote.api_key_env: environment variable ",
                         config.remote_api_key_env, " is not set or empty"));
      }
      remote.api_key = key;
    }
    SR_ASSIGN_OR_RETURN(std::shared_ptr<const GuardFormat> format, RemoteFormat(config));
    SR_ASSIGN_OR_RETURN(large, RemoteGuard::Create(remote, std::move(format), metrics.get()));
  }

  SR_ASSIGN_OR_RETURN(
      std::unique_ptr<server::GuardService> service,
      server::GuardService::Create(
          {.small = small.get(), .router = router.get(), .large = large.get(), .metrics = metrics},
          config.service));
  SR_ASSIGN_OR_RETURN(server::HttpServerOptions http_options,
                      server::HttpServerOptionsFrom(config));
  const bool tls = !http_options.tls_cert_file.empty();
  const size_t n_keys = http_options.api_keys ? http_options.api_keys->size() : 0;
  server::GuardHttpServer http(service.get(), std::move(http_options));
  SR_ASSIGN_OR_RETURN(int port, http.Start());
  std::fprintf(stderr,
               "saferoute serve: listening on %s://%s:%d (small=%s on %s, router=%s, large=%s on "
               "%s, api keys=%zu)\n",
               tls ? "https" : "http", config.http.host.c_str(), port, small->name().c_str(),
               DescribeCompute(*small).c_str(), router ? config.router_path.c_str() : "none",
               large ? large->name().c_str() : "none",
               large ? DescribeCompute(*large).c_str() : "-", n_keys);

  server::RoutingReloader reloader(app, command_line, config_file, config, router.get());
  int signal_number = 0;
  for (;;) {
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) break;
    // Requests keep flowing: each runs with the routing it started with.
    if (absl::Status reloaded = reloader.Reload(*service); !reloaded.ok()) {
      std::fprintf(stderr,
                   "saferoute serve: SIGHUP reload failed, keeping the current routing: %s\n",
                   std::string(reloaded.message()).c_str());
    }
  }
  std::fprintf(stderr, "saferoute serve: signal %d, draining in-flight requests\n", signal_number);
  http.Stop();
  std::fprintf(stderr, "saferoute serve: stopped\n");
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupServeCommand(CLI::App& cmd) {
  auto config = std::make_shared<ServerConfig>();
  auto config_file = std::make_shared<std::string>();
  auto print_config = std::make_shared<bool>(false);
  server::AddServeFlags(cmd, *config, *config_file, *print_config);
  CLI::App* app = &cmd;
  return [app, config, config_file, print_config] {
    return RunServe(*app, *config, *config_file, *print_config);
  };
}

}  // namespace saferoute::cli
