// Key/value cache memory of the CPU backend: the keys (after RoPE) and values
// of `length` positions of one sequence, for every layer. A prefill can keep
// one (a prefix, or the whole prompt) and later calls continue it (decode).
#ifndef SAFEROUTE_CPU_KV_CACHE_H_
#define SAFEROUTE_CPU_KV_CACHE_H_

#include <algorithm>
#include <cstdint>
#include <vector>

namespace saferoute::cpu {

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
  // Copies the first `positions` positions of every layer and head of `from`
  // (same layers, heads and head_dim; capacity >= positions) and sets length.
  void CopyPrefix(const KvCache& from, int64_t positions) {
    const auto n = static_cast<size_t>(positions * head_dim);
    for (int64_t l = 0; l < n_layers; ++l) {
      for (int64_t g = 0; g < n_kv_heads; ++g) {
        std::copy_n(from.k_layer(l) + g * from.head_stride(), n, k_layer(l) + g * head_stride());
        std::copy_n(from.v_layer(l) + g * from.head_stride(), n, v_layer(l) + g * head_stride());
      }
    }
    length = positions;
  }
};

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_KV_CACHE_H_
