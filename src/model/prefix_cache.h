// Prefix caches of the CPU engine (internal to model/; users only see the
// opaque PrefixCache handle of engine.h). The KV memory is the backend's
// (cpu/kv_cache.h).
#ifndef SAFEROUTE_MODEL_PREFIX_CACHE_H_
#define SAFEROUTE_MODEL_PREFIX_CACHE_H_

#include <cstdint>
#include <memory>
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

// A sequence's own keys/values kept by a prefill for a greedy decode
// (SequenceRequest::decode_tokens): positions [prefix, prefix + kv.length),
// the prefix itself shared by reference.
class SequenceCache {
 public:
  const Model* owner = nullptr;
  cpu::GemmPath path = cpu::GemmPath::kFp32;
  std::shared_ptr<const PrefixCache> prefix;  // or null
  KvCache kv;                                 // capacity: the prompt's tokens + room
  int32_t next_token = -1;                    // argmax of the logits at the last position
  int room = 0;                               // tokens the decode may generate, next_token included
  bool spent = false;                         // decoded once already

  int64_t prefix_length() const { return prefix ? prefix->kv.length : 0; }
};

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_PREFIX_CACHE_H_
