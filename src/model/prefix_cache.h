// Prefix caches of the CPU engine (internal to model/; users only see the
// opaque PrefixCache handle of engine.h). The KV memory is the backend's
// (cpu/kv_cache.h).
#ifndef SAFEROUTE_MODEL_PREFIX_CACHE_H_
#define SAFEROUTE_MODEL_PREFIX_CACHE_H_

#include <cstdint>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/kv_cache.h"
#include "model/engine.h"

namespace saferoute {

using cpu::KvCache;

// A computed prefix. `owner` identifies the Model it was computed with and
// `path` the GEMM path (a prefix from another model or path is refused, not
// silently misused: its keys and values carry that path's rounding).
class PrefixCache {
 public:
  const Model* owner = nullptr;
  cpu::GemmPath path = cpu::GemmPath::kFp32;
  std::vector<int32_t> tokens;
  KvCache kv;  // length == tokens.size() == capacity
};

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_PREFIX_CACHE_H_
