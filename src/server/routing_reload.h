// Reloading the routing on SIGHUP: the router file and the router.* keys
// (threshold, budget, budget window), read again from the same command line
// and config file, and handed to the running service (GuardService::
// ReloadRouting) while requests keep flowing. Other keys take effect only at
// the next start; a changed one is logged as such.
#ifndef SAFEROUTE_SERVER_ROUTING_RELOAD_H_
#define SAFEROUTE_SERVER_ROUTING_RELOAD_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "router/router.h"
#include "server/guard_service.h"
#include "server/server_config.h"
#include "util/status.h"

namespace saferoute::server {

class RoutingReloader {
 public:
  // `command_line`: CommandLineFlags(app) taken before the config file was
  // applied; `config`: the configuration in force; `router`: the router
  // loaded at start (or null), owned by the caller and outliving this.
  RoutingReloader(const CLI::App& app, std::vector<std::string> command_line,
                  std::string config_file, const ServerConfig& config, const Router* router);

  // The whole reload, or nothing: any error (the config file, the router
  // file, a router that does not fit the small guard, a budget without a
  // calibration table) leaves the routing as it was. The router file is read
  // again only if its path, size or modification time changed, so a
  // threshold-only change keeps the budget's window. Logs what it did.
  absl::Status Reload(GuardService& service);

 private:
  struct FileStamp {
    std::uintmax_t size = 0;
    std::filesystem::file_time_type modified;
    bool operator==(const FileStamp&) const = default;
  };
  static FileStamp StampOf(const std::string& path);

  const CLI::App& app_;
  const std::vector<std::string> command_line_;
  const std::string config_file_;
  // As started: a reread that differs from it in a key other than router.*
  // is logged as waiting for the next start.
  const ServerConfig started_;
  std::string router_path_;               // in force ("" = none)
  std::shared_ptr<const Router> router_;  // in force (null: none)
  FileStamp stamp_;                       // of router_path_ when read
};

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_ROUTING_RELOAD_H_
