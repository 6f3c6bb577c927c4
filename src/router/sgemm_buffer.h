// Buffers for matrices the router passes to oneDNN's sgemm as an
// untransposed B operand (activations in the weight-gradient product, sampled
// weights in the input-gradient product): their data starts 16 bytes past a
// 64-byte boundary, never on a 32-byte one.
//
// Why: oneDNN 2.6's sgemm runs the router's [512 x 512] x [512 x 512]
// products with 'N' B about 35% slower when B is 32-byte aligned (AVX2 EPYC,
// 'N','N' and 'T','N', lda 528: 2.9-3.4 ms with B at +0, +32 or +64 bytes
// from a page, 2.0-2.5 ms at +4 to +24). A plain std::vector gets either,
// depending on the heap's history: two such products per training step, so
// up to ~1.8 ms of a ~33 ms step. Only the address matters; contents,
// strides and results are the same.
#ifndef SAFEROUTE_ROUTER_SGEMM_BUFFER_H_
#define SAFEROUTE_ROUTER_SGEMM_BUFFER_H_

#include <cstddef>
#include <new>
#include <vector>

namespace saferoute {

template <typename T>
struct SgemmOperandAllocator {
  using value_type = T;
  static constexpr size_t kAlignment = 64;
  static constexpr size_t kOffset = 16;  // bytes past the alignment

  SgemmOperandAllocator() = default;
  template <typename U>
  SgemmOperandAllocator(const SgemmOperandAllocator<U>&) {}

  T* allocate(size_t n) {
    void* raw = ::operator new (n * sizeof(T) + kOffset, std::align_val_t{kAlignment});
    return reinterpret_cast<T*>(static_cast<char*>(raw) + kOffset);
  }
  void deallocate(T* p, size_t) {
    ::operator delete (reinterpret_cast<char*>(p) - kOffset, std::align_val_t{kAlignment});
  }
  template <typename U>
  bool operator==(const SgemmOperandAllocator<U>&) const {
    return true;
  }
};

using SgemmOperandBuffer = std::vector<float, SgemmOperandAllocator<float>>;

}  // namespace saferoute

#endif  // SAFEROUTE_ROUTER_SGEMM_BUFFER_H_
