// Overflow-checked integer arithmetic for sizes and offsets that come from
// untrusted files. Every size computed from file contents goes through these.
#ifndef SAFEROUTE_IO_CHECKED_MATH_H_
#define SAFEROUTE_IO_CHECKED_MATH_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace saferoute {

// a + b, or nullopt on overflow.
inline std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// a * b, or nullopt on overflow.
inline std::optional<uint64_t> CheckedMul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// Product of non-negative dims, or nullopt if any dim is negative or the
// product does not fit in int64 (so it is also a valid TensorView::numel()).
inline std::optional<int64_t> CheckedNumel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, d, &n)) return std::nullopt;
  }
  return n;
}

}  // namespace saferoute

#endif  // SAFEROUTE_IO_CHECKED_MATH_H_
