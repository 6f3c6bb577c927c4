// Key/value caches of the CPU engine (internal to model/; users only see the
// opaque PrefixCache handle of engine.h).
#ifndef SAFEROUTE_MODEL_PREFIX_CACHE_H_
#define SAFEROUTE_MODEL_PREFIX_CACHE_H_

#include <cstdint>
#include <vector>

#include "model/engine.h"

namespace saferoute {

// Keys (after RoPE) and values of `length` positions, for every layer.
// Layout per layer: [n_kv_heads][capacity][head_dim], so one head's keys are
// contiguous rows (what the attention kernel reads).
struct KvCache {
  int64_t n_layers = 0, n_kv_heads = 0, head_dim = 0;
  int64_t capacity = 0;  // positions allocated
  int64_t length = 0;    // positions filled
  std::vector<float> k, v;

  void Allocate(int64_t layers, int64_t kv_heads, int64_t dim, int64_t positions) {
    n_layers = layers;
    n_kv_heads = kv_heads;
    head_dim = dim;
    capacity = positions;
    length = 0;
    k.assign(static_cast<size_t>(layers * kv_heads * positions * dim), 0.0f);
    v.assign(k.size(), 0.0f);
  }
  int64_t head_stride() const { return capacity * head_dim; }
  float* k_layer(int64_t layer) { return k.data() + layer * n_kv_heads * head_stride(); }
  float* v_layer(int64_t layer) { return v.data() + layer * n_kv_heads * head_stride(); }
  const float* k_layer(int64_t layer) const {
    return k.data() + layer * n_kv_heads * head_stride();
  }
  const float* v_layer(int64_t layer) const {
    return v.data() + layer * n_kv_heads * head_stride();
  }
};

// A computed prefix. `owner` identifies the Model it was computed with (a
// prefix from another model or precision is refused, not silently misused).
class PrefixCache {
 public:
  const Model* owner = nullptr;
  Precision precision = Precision::kFp32;
  std::vector<int32_t> tokens;
  KvCache kv;  // length == tokens.size() == capacity
};

}  // namespace saferoute

#endif  // SAFEROUTE_MODEL_PREFIX_CACHE_H_
