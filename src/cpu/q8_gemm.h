// Block-scaled int8 GEMM, the int8 path's kernel (cpu/linear.h):
//   y[M, N] (+)= x[M, K] W^T,  W [N, K] row-major,
// both operands quantized symmetrically in blocks of 32 along K, each block
// with its own scale (the layout of GGML's Q8_0; f32 for the activations, f16
// times one power of two per matrix for the weights, see below):
//   y[m, n] = sum_b sx[m, b] * sw[n, b] * (sum_{k in block b} qx[m, k] * qw[n, k])
// The integer block sums are exact (s32); the scaled block sums are
// accumulated in f32. A per-block scale keeps an activation's outlier
// channel from spending the 8 bits of its whole row (per-row int8 on SmolLM2:
// mean KL 0.059 from fp32; blocks of 32: see bench/precision_quality_bench).
//
// A Q8_0 weight (GGUF) IS this format: its blocks are used as stored, no
// round trip through f32 (a quant of -128, which ggml's quantizer never
// writes, is read as -127 so that every kernel variant computes the same
// exact sums). Other dtypes are read through DequantizeRows and quantized
// once, at load, with the activations' quantizer.
//
// Kernels (chosen at run time, see BestQ8Isa; each is compiled with its own
// function-level target attribute, so the library needs no -march; each
// K chunk's f16 weight scales are converted (F16C) once for all its rows):
//   avx512_vnni  vpdpbusd on zmm (16 columns per register)
//   avx_vnni     vpdpbusd on ymm (VEX; Alder Lake and later, Zen 5)
//   avx2         vpmaddubsw + vpmaddwd on ymm (AVX2 without VNNI)
// VNNI multiplies u8 by s8: activations are stored as q + 128 (u8) and each
// block's s32 sum starts from -128 * (the weight block's sum), which makes it
// exact. vpmaddubsw sums pairs in saturating 16 bits: there the activation's
// sign moves onto the weight (|qx| * sign(qx) qw, |.| <= 127, pairs <= 32258),
// also exact.
//
// Weight layout (packed once): columns in tiles of 16, K padded to whole
// blocks (zeros). For tile t and block b, 512 bytes [8 groups of 4 k][16
// columns][4 k] (one zmm per group: lane n holds k 4g..4g+3 of column n), a
// scale [16] and the negated block sums [16] (int16: |sum| <= 32 * 127). The threads share the
// tiles (three of them per micro-kernel call), K in chunks whose weights stay in L1.
//
// Weight scales are IEEE f16 (1.125 bytes per weight in all, f32 scales took
// 1.1875: 0.47 GB of an 8B model), times one power of two per matrix, 2^-e,
// that every kernel multiplies into the converted scales. Plain f16 would
// flush blocks whose scale is under its normal range (6.1e-5: amax 0.0078)
// and overflow over 65504, so e is chosen at pack time to put the matrix's
// largest block scale in [2^14, 2^15): every block within 2^28 of the largest
// keeps f16's full 11 bits; smaller ones (each under 2^-28 of the largest
// block's weight) lose bits as f16 subnormals, down to the smallest one
// (2^-24 * 2^-e), where their quants shrink toward 0. A matrix made only of
// Q8_0 parts keeps e = 0 and its file's f16 scales bit for bit. Other dtypes
// store d = the smallest f16 (times 2^-e) >= max |x| / 127, rounded up so that
// |x| / d <= 127 (no quant is clamped), and quantize the block with that d:
// q = round_half_even(x / d), so quants and scale agree. Activation scales
// stay f32.
#ifndef SAFEROUTE_CPU_Q8_GEMM_H_
#define SAFEROUTE_CPU_Q8_GEMM_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cpu/gemm.h"
#include "util/status.h"

namespace saferoute::cpu {

inline constexpr int64_t kQ8Block = 32;

enum class Q8Isa : uint8_t { kNone, kAvx2, kAvxVnni, kAvx512Vnni };
const char* Q8IsaName(Q8Isa isa);  // "none", "avx2", "avx_vnni", "avx512_vnni"
// Whether this CPU (cpuid) has the instructions of a kernel variant.
bool CpuRunsQ8Isa(Q8Isa isa);
// The best variant this CPU runs, capped at what oneDNN's effective ISA
// (`onednn_isa`, a cpu::CpuSupport::isa name) includes: ONEDNN_MAX_CPU_ISA
// then shows what a lesser CPU gets from these kernels too.
Q8Isa BestQ8Isa(std::string_view onednn_isa);

// Whether a variant reads activations as u8 (q + 128) rather than s8.
inline bool Q8IsaTakesU8(Q8Isa isa) { return isa == Q8Isa::kAvxVnni || isa == Q8Isa::kAvx512Vnni; }

// Quantizes one row x [k] in blocks of 32 (the last padded with zeros):
//   scale[b] = max |x[block b]| / 127   (0 for an all-zero block)
//   q[i]     = round_half_even(x[i] * (127 / max |x[block b]|))   in [-127, 127]
// stored XOR 0x80 (q + 128 as u8) when `as_u8`. q: [Blocks(k) * 32], scale: [Blocks(k)].
void QuantizeRowQ8(const float* x, int64_t k, bool as_u8, int8_t* q, float* scale);
inline int64_t Q8Blocks(int64_t k) { return (k + kQ8Block - 1) / kQ8Block; }

// 16-bit activations (Q8Activations::kInt16): one row x [k] in blocks of 32,
//   scale[b] = max |x[block b]| / 16383   (0 for an all-zero block)
//   q[i]     = round_half_even(x[i] * (16383 / max |x[block b]|))  in [-16383, 16383]
// split into two byte planes, q = 128 * high + low: high[i] = q >> 7 in
// [-128, 127] (stored XOR 0x80, as u8, when `as_u8`) and low[i] = q & 127.
// The kernels multiply each plane by the int8 weights (u8 x s8 products,
// exact) and sum a block as 128 * (high . w) + (low . w): at most
// 32 * 16383 * 127 < 2^31, exact in s32. 14 bits of magnitude against
// int8's 7: an activation's rounding error is 1/129 of int8's.
inline constexpr int kQ16Max = 16383;
void QuantizeRowQ16(const float* x, int64_t k, bool as_u8, int8_t* high, uint8_t* low,
                    float* scale);

// The activations' format of a Q8Gemm.
enum class Q8Activations : uint8_t {
  kInt8,   // QuantizeRowQ8: the int8 path (GGML's Q8_0 x Q8_0)
  kInt16,  // QuantizeRowQ16: the int8-a16 path (int8 weights, 16-bit activations)
};

// The weights' side of Q8Weights::Pack (dtypes other than Q8_0; see the
// scale format above): the exponent e of a matrix whose largest block scale
// (max |x| / 127) is `max_scale`, and one row x [k] (finite) quantized with
// it: q [Q8Blocks(k) * 32], f16 scale bits [Q8Blocks(k)], standing for
// F16ToF32(bits) * 2^-e.
int Q8WeightExponent(float max_scale);
void QuantizeWeightRowQ8(const float* x, int64_t k, int exponent, int8_t* q, uint16_t* scale_bits);

class Q8Weights {
 public:
  static constexpr int64_t kTile = 16;  // columns per tile
  static constexpr int64_t kTileBlockBytes = kTile * kQ8Block;

  // `parts` (sharing K) stacked along N. Errors name `name` and the part;
  // a non-finite weight or Q8_0 scale is one (it has no int8 scale).
  static absl::StatusOr<Q8Weights> Pack(std::span<const WeightMatrix> parts,
                                        const std::string& name);

  int64_t rows() const { return n_; }
  int64_t cols() const { return k_; }
  int64_t blocks() const { return kb_; }
  int64_t tiles() const { return tiles_; }
  size_t bytes() const {
    return quants_.size() + scales_.size() * sizeof(uint16_t) + neg_sums_.size() * sizeof(int16_t);
  }
  // 2^-e: a stored scale's value is F16ToF32(bits) * scale_exp2().
  float scale_exp2() const { return scale_exp2_; }

  // Tile t, block b: 512 quants, 16 scales (f16 bits), 16 negated block sums
  // (VNNI's u8 activations q + 128 add 128 * sum to each block's s32 sum).
  const int8_t* quants(int64_t t, int64_t b) const {
    return quants_.data() + (t * kb_ + b) * kTileBlockBytes;
  }
  const uint16_t* scales(int64_t t, int64_t b) const {
    return scales_.data() + (t * kb_ + b) * kTile;
  }
  const int16_t* neg_sums(int64_t t, int64_t b) const {
    return neg_sums_.data() + (t * kb_ + b) * kTile;
  }

  // The stored value of W[n, k] (quant, its block's f16 scale bits and the
  // scale they stand for: decoded times scale_exp2()), for tests.
  int8_t quant(int64_t n, int64_t k) const;
  uint16_t scale_bits(int64_t n, int64_t b) const { return scales(n / kTile, b)[n % kTile]; }
  float scale(int64_t n, int64_t b) const;

 private:
  // Column n: q [kb * 32], scale bits [kb].
  void SetColumn(int64_t n, const int8_t* q, const uint16_t* scale_bits);
  // Packs part `w` as columns row0.. with the matrix's exponent e.
  void PackQ8_0Part(const WeightMatrix& w, int64_t row0, int exponent);
  void PackConvertedPart(const WeightMatrix& w, int64_t row0, int exponent);
  int64_t n_ = 0, k_ = 0, kb_ = 0, tiles_ = 0;
  float scale_exp2_ = 1.0f;
  std::vector<int8_t> quants_;     // [tiles][kb][8][16][4]
  std::vector<uint16_t> scales_;   // [tiles][kb][16] f16 bits
  std::vector<int16_t> neg_sums_;  // [tiles][kb][16]
};

// Runs the product on one kernel variant with its own scratch (grown, never
// shrunk). Not thread-safe: one per engine.
class Q8Gemm {
 public:
  // isa must be one CpuRunsQ8Isa accepts (SR_CHECK). kInt16 activations cost
  // two u8 x s8 products per weight (the high and low byte planes) where
  // kInt8 takes one.
  Q8Gemm(Q8Isa isa, int num_threads, Q8Activations activations = Q8Activations::kInt8);

  Q8Isa isa() const { return isa_; }
  Q8Activations activations() const { return activations_; }

  // y [m, w.rows()] (row stride ldy) (+)= x [m, w.cols()] (row stride ldx) W^T.
  void Run(const float* x, int64_t m, int64_t ldx, const Q8Weights& w, float* y, int64_t ldy,
           bool accumulate);

  // The product alone, on activations already quantized for this variant
  // (as QuantizeRowQ8 with as_u8 = Q8IsaTakesU8(isa)): xq [m, blocks * 32],
  // xs [m, blocks]. Run = quantize + this. kInt8 activations only (SR_CHECK).
  void RunQuantized(const int8_t* xq, const float* xs, int64_t m, const Q8Weights& w, float* y,
                    int64_t ldy, bool accumulate) const;

 private:
  // xl: the low byte plane of kInt16 activations, nullptr for kInt8.
  void RunPlanes(const int8_t* xq, const uint8_t* xl, const float* xs, int64_t m,
                 const Q8Weights& w, float* y, int64_t ldy, bool accumulate) const;

  Q8Isa isa_;
  Q8Activations activations_;
  int num_threads_;
  std::vector<int8_t> xq_;   // [m, blocks * 32]: the quants (kInt16: their high bytes)
  std::vector<uint8_t> xl_;  // [m, blocks * 32]: kInt16's low bytes
  std::vector<float> xs_;    // [m, blocks]
};

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_Q8_GEMM_H_
