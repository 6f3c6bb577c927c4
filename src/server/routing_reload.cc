#include "server/routing_reload.h"

#include <cstdio>
#include <utility>

namespace saferoute::server {

RoutingReloader::RoutingReloader(const CLI::App& app, std::vector<std::string> command_line,
                                 std::string config_file, const ServerConfig& config,
                                 const Router* router)
    : app_(app),
      command_line_(std::move(command_line)),
      config_file_(std::move(config_file)),
      started_(config),
      router_path_(config.router_path),
      router_(std::shared_ptr<const Router>(), router),  // borrowed: owns nothing
      stamp_(StampOf(config.router_path)) {}

RoutingReloader::FileStamp RoutingReloader::StampOf(const std::string& path) {
  FileStamp stamp;
  if (path.empty()) return stamp;
  std::error_code error;  // a missing file: a zero stamp; reading it will say why
  stamp.size = std::filesystem::file_size(path, error);
  stamp.modified = std::filesystem::last_write_time(path, error);
  return stamp;
}

absl::Status RoutingReloader::Reload(GuardService& service) {
  SR_ASSIGN_OR_RETURN(ServerConfig next, RereadServerConfig(app_, command_line_, config_file_));
  for (const std::string& key : ChangedKeys(started_, next)) {
    if (key.rfind("router.", 0) != 0) {
      std::fprintf(stderr,
                   "saferoute serve: config key %s changed: takes effect at the next start, not "
                   "on SIGHUP\n",
                   key.c_str());
    }
  }
  std::shared_ptr<const Router> router = router_;
  const FileStamp stamp = StampOf(next.router_path);
  if (next.router_path != router_path_ || !(stamp == stamp_)) {
    router = nullptr;
    if (!next.router_path.empty()) {
      SR_ASSIGN_OR_RETURN(std::unique_ptr<Router> loaded, LoadRouter(next.router_path));
      router = std::move(loaded);
    }
  }
  const CascadeOptions& routing = next.service.cascade;
  SR_RETURN_IF_ERROR(service.ReloadRouting(RoutingSettingsOf(routing, router)));
  router_ = std::move(router);
  stamp_ = stamp;
  router_path_ = next.router_path;
  std::fprintf(stderr,
               "saferoute serve: reloaded routing: router=%s threshold=%g budget=%g window=%gs\n",
               router_path_.empty() ? "none" : router_path_.c_str(), service.router_threshold(),
               routing.max_escalation_share, routing.budget_window_seconds);
  return absl::OkStatus();
}

}  // namespace saferoute::server
