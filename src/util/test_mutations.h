// Test-only helper: deterministic random edits of a valid file image, for the
// parsers' bounded in-test fuzz loops (the libFuzzer targets do the long
// runs). The same seed gives the same images on every machine.
#ifndef SAFEROUTE_UTIL_TEST_MUTATIONS_H_
#define SAFEROUTE_UTIL_TEST_MUTATIONS_H_

#include <cstdint>
#include <string>
#include <utility>

namespace saferoute {

class ImageMutator {
 public:
  // `typed_bytes`: bytes that mean something to the format (JSON punctuation
  // and digits, small integers of a binary header), so that edits reach past
  // the first syntax check. Not empty.
  ImageMutator(uint64_t seed, std::string typed_bytes)
      : state_(seed), typed_(std::move(typed_bytes)) {}

  // `valid` with 1..max_edits edits, each one of: a random byte, a typed
  // byte, a deleted span of 1-8 bytes, an inserted run of 1-8 copies of a
  // typed or random byte. Never empty.
  std::string Mutate(const std::string& valid, int max_edits) {
    std::string image = valid;
    const int edits = 1 + static_cast<int>(Next() % static_cast<uint64_t>(max_edits));
    for (int e = 0; e < edits; ++e) {
      if (image.empty()) image.assign(1, Typed());
      const size_t at = Next() % image.size();
      switch (Next() % 4) {
        case 0:
          image[at] = static_cast<char>(Next());
          break;
        case 1:
          image[at] = Typed();
          break;
        case 2:
          image.erase(at, 1 + Next() % 8);
          break;
        case 3: {
          const char c = Next() % 2 ? Typed() : static_cast<char>(Next());
          image.insert(at, 1 + Next() % 8, c);
          break;
        }
      }
    }
    if (image.empty()) image.assign(1, Typed());
    return image;
  }

 private:
  // A 64-bit linear congruential generator; its high bits.
  uint64_t Next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return state_ >> 33;
  }
  char Typed() { return typed_[Next() % typed_.size()]; }

  uint64_t state_;
  std::string typed_;
};

}  // namespace saferoute

#endif  // SAFEROUTE_UTIL_TEST_MUTATIONS_H_
