// For libFuzzer targets whose round trip goes through a file writer.
#ifndef SAFEROUTE_UTIL_FUZZ_SCRATCH_H_
#define SAFEROUTE_UTIL_FUZZ_SCRATCH_H_

#include <unistd.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace saferoute {

// A file name private to this process: in /dev/shm when there is one (the
// writers fsync, which on a disk would make each input cost milliseconds),
// else in the temporary directory.
inline std::string FuzzScratchPath(std::string_view name) {
  const std::filesystem::path dir = std::filesystem::is_directory("/dev/shm")
                                        ? std::filesystem::path("/dev/shm")
                                        : std::filesystem::temp_directory_path();
  return (dir / (std::string(name) + "." + std::to_string(getpid()))).string();
}

}  // namespace saferoute

#endif  // SAFEROUTE_UTIL_FUZZ_SCRATCH_H_
