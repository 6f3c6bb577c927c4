// Element-wise kernels of the int8 GEMM path (cpu/linear.h): symmetric
// quantization of rows to int8 and the f32 epilogue of an s32 product. Each
// has a scalar reference in int8_test.cc, compared on random input.
#ifndef SAFEROUTE_CPU_INT8_H_
#define SAFEROUTE_CPU_INT8_H_

#include <cstdint>

namespace saferoute::cpu {

// Symmetric per-row quantization of x [rows, cols] (row stride ldx):
//   scale[r] = max_c |x[r, c]| / q_max     (1 for an all-zero row)
//   q[r, c]  = round_half_even(x[r, c] * (q_max / max_c |x[r, c]|)), in [-q_max, q_max]
// q: [rows, cols] with row stride ldq. q_max in [1, 127]. Used for weights
// at load (per output channel) and for activations per call (per row).
void QuantizeRowsS8(const float* x, int64_t ldx, int64_t rows, int64_t cols, int q_max, int8_t* q,
                    int64_t ldq, float* scale);
// The same with q_max 127, stored offset by 128 as u8 (q + 128 in [1, 255]):
// the unsigned operand of a u8 x s8 product (VNNI's vpdpbusd), whose
// s32 result is then corrected by 128 * (the weight row's sum).
void QuantizeRowsU8(const float* x, int64_t ldx, int64_t rows, int64_t cols, uint8_t* q,
                    int64_t ldq, float* scale);

// The f32 result of an s32 product of quantized rows:
//   y[r, c] = (accumulate ? y[r, c] : 0)
//             + float(acc[r, c] - col_offset[c]) * (row_scale[r] * col_scale[c])
// acc: [rows, cols] row stride lda; y: row stride ldy. acc and y may be the
// same memory (lda == ldy): each element is read before it is written.
void ScaleS32ToF32(const int32_t* acc, int64_t lda, int64_t rows, int64_t cols,
                   const int32_t* col_offset, const float* row_scale, const float* col_scale,
                   bool accumulate, float* y, int64_t ldy);

}  // namespace saferoute::cpu

#endif  // SAFEROUTE_CPU_INT8_H_
