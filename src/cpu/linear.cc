#include "cpu/linear.h"

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <tuple>

#include "cpu/convert.h"
#include "cpu/dequantize.h"
#include "cpu/int8.h"
#include "cpu/omp_threads.h"
#include "cpu/q8_gemm.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace saferoute::cpu {
namespace {

using dt = dnnl::memory::data_type;

const dnnl::engine& CpuEngine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// int8 activations are u8 (the s8 value + 128): oneDNN's u8 x s8 kernels
// need no compensation pass of their own, and its reorder of s8 weights for a
// u8 source is a JIT one (for an s8 source a generic one, ~7x slower here).
dt SourceType(GemmPath path) { return path == GemmPath::kInt8Rows ? dt::u8 : dt::bf16; }
dt WeightType(GemmPath path) { return path == GemmPath::kInt8Rows ? dt::s8 : dt::bf16; }
dt AccumulatorType(GemmPath path) { return path == GemmPath::kInt8Rows ? dt::s32 : dt::f32; }

// The row count the weight layout is chosen with. oneDNN's brgemm matmul
// blocks weights by N and K only; LinearRunner creates every per-M primitive
// with this fixed layout and refuses a reference implementation.
constexpr int64_t kLayoutRows = 256;

// Bytes of converted weight rows reordered into the packed layout at a time
// (an L2-sized plain buffer, reused).
constexpr int64_t kConvertChunkBytes = int64_t{1} << 20;

// Rows per step when converting a weight: the f32 rows stay in cache.
int64_t ConvertRowBlock(int64_t k) {
  return std::max<int64_t>(1, static_cast<int64_t>(GemmRunner::kPanelScratchBytes / 4) / k);
}

// Runs fn(r0, r1) over [0, rows) on up to `threads` OpenMP threads (one when
// the work is small: a fork/join costs more than it saves).
template <typename Fn>
void ParallelRows(int64_t rows, int64_t row_work, int threads, Fn fn) {
  if (rows <= 0) return;
  const int64_t parts =
      rows * row_work < (int64_t{1} << 16) ? 1 : std::min<int64_t>(std::max(1, threads), rows);
  if (parts == 1) {
    fn(int64_t{0}, rows);
    return;
  }
#pragma omp parallel for num_threads(static_cast <int>(parts)) schedule(static)
  for (int64_t p = 0; p < parts; ++p) fn(rows * p / parts, rows * (p + 1) / parts);
}

template <typename T>
void Grow(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

absl::Status CheckParts(std::span<const WeightMatrix> parts, const std::string& name) {
  if (parts.empty()) return absl::InvalidArgumentError(name + ": no weight matrices");
  for (size_t i = 0; i < parts.size(); ++i) {
    const WeightMatrix& w = parts[i];
    if (w.cols != parts[0].cols || w.rows <= 0 || w.cols <= 0 || w.data == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: part %d is [%d, %d], part 0 has %d columns", name, i, w.rows, w.cols,
                          parts[0].cols));
    }
    if (!CanDequantize(w.dtype) || !RowBytes(w.dtype, w.cols)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: part %d has dtype %s with %d columns, which cannot be read", name, i,
                          DTypeName(w.dtype), w.cols));
    }
  }
  return absl::OkStatus();
}

// Unmaps an anonymous mapping of `size` bytes (see AllocatePacked).
struct Unmap {
  size_t size = 0;
  void operator()(std::byte* p) const {
    if (p != nullptr) ::munmap(p, size);
  }
};
using PackedBuffer = std::unique_ptr<std::byte, Unmap>;

}  // namespace

struct PackedLinear::Native {
  dnnl::memory::desc desc;  // oneDNN's preferred layout of W as a [K, N] matmul operand
  PackedBuffer buffer;
  dnnl::memory weights;       // over `buffer`
  std::vector<float> scales;  // int8: [N] per output channel; empty for bf16
  // int8: [N] 128 * sum_k Wq[n, k], what the +128 offset of the u8 input
  // adds to each s32 product
  std::vector<int32_t> offsets;
  std::optional<Q8Weights> q8;  // the int8 path's blocks (no oneDNN layout)
};

namespace {

// The matmul y [m, n] (+)= x [m, k] W^T of a path, dense x and y, W in the
// packed layout `weights`; a reference implementation is refused.
absl::StatusOr<dnnl::matmul> CreateMatmul(GemmPath path, const dnnl::memory::desc& weights,
                                          int64_t m, int64_t n, int64_t k, bool sum) {
  try {
    const dnnl::memory::desc src({m, k}, SourceType(path), {k, 1});
    const dnnl::memory::desc dst({m, n}, AccumulatorType(path), {n, 1});
    dnnl::primitive_attr attr;
    if (sum) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, dst), attr, CpuEngine());
    const std::string impl = pd.impl_info_str();
    if (impl.find("ref") != std::string::npos) {
      return absl::InternalError(
          absl::StrFormat("linear: oneDNN offers only %s for a %s matmul of M=%d K=%d N=%d", impl,
                          GemmPathName(path), m, k, n));
    }
    return dnnl::matmul(pd);
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrFormat("linear: oneDNN %s matmul M=%d K=%d N=%d: %s",
                                               GemmPathName(path), m, k, n, e.what()));
  }
}

// A zeroed buffer for packed weights (the layout's padding must be zero):
// fresh anonymous pages, which the kernel zeroes on first touch, so nothing
// writes the buffer twice (a memset of the whole buffer, then the reorder,
// cost a 1B load ~1 s of faults and zeroing). 2 MiB aligned so that a system
// with THP "always" can back it with huge pages. Deliberately NOT
// madvise(MADV_HUGEPAGE): with the common defrag=madvise setting that makes
// every fault in the buffer compact memory synchronously, and with the
// checkpoint filling the page cache a 1B load spent 10-17 s in the kernel
// instead of ~2.5 s (Zen 5, 3 runs each, Q8_0 GGUF), for no measurable GEMM
// speed-up (bf16 prefill 446.7 vs 443.2 tok/s).
PackedBuffer AllocatePacked(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t size = std::max<size_t>(kHugePage, (bytes + kHugePage - 1) / kHugePage * kHugePage);
  // Map one huge page more than needed and unmap the unaligned head and tail.
  void* mapped =
      ::mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) throw std::bad_alloc();
  const auto begin = reinterpret_cast<uintptr_t>(mapped);
  const uintptr_t aligned = (begin + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > begin) ::munmap(mapped, aligned - begin);
  const uintptr_t tail = begin + size + kHugePage - (aligned + size);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + size), tail);
  return PackedBuffer(reinterpret_cast<std::byte*>(aligned), Unmap{size});
}

// Product of the layout's inner blocks along N (dimension 1 of [K, N]).
int64_t NBlock(const dnnl::memory::desc& desc) {
  const auto& blocking = desc.data.format_desc.blocking;
  int64_t block = 1;
  for (int i = 0; i < blocking.inner_nblks; ++i) {
    if (blocking.inner_idxs[i] == 1) block *= blocking.inner_blks[i];
  }
  return block;
}

}  // namespace

// out = rows [first, first + count) of `w` in the path's element type
// ([count, K] bf16, or int8 with the scale and weight-sum offset of stacked
// row row0 + first + i), through `rows_f32` a few rows at a time. Serial: the
// callers run chunks of rows on their threads.
void PackedLinear::ConvertRows(GemmPath path, const WeightMatrix& w, int q_max, Native& native,
                               int64_t row0, int64_t first, int64_t count, std::byte* out,
                               std::vector<float>& rows_f32) {
  const int64_t k = w.cols;
  const size_t elem = path == GemmPath::kInt8Rows ? 1 : 2;
  const int64_t block = ConvertRowBlock(k);
  Grow(rows_f32, std::min(block, count) * k);
  for (int64_t r0 = 0; r0 < count; r0 += block) {
    const int64_t n = std::min(block, count - r0);
    std::byte* rows_out = out + static_cast<size_t>(r0 * k) * elem;
    DequantizeRows(w, first + r0, n, rows_f32.data());
    if (path == GemmPath::kBf16Native) {
      NarrowToBf16(rows_f32.data(), reinterpret_cast<uint16_t*>(rows_out),
                   static_cast<size_t>(n * k));
      continue;
    }
    auto* q = reinterpret_cast<int8_t*>(rows_out);
    const size_t stacked = static_cast<size_t>(row0 + first + r0);
    QuantizeRowsS8(rows_f32.data(), k, n, k, q_max, q, k, native.scales.data() + stacked);
    for (int64_t r = 0; r < n; ++r) {
      int32_t sum = 0;
      for (int64_t c = 0; c < k; ++c) sum += q[r * k + c];
      native.offsets[stacked + static_cast<size_t>(r)] = 128 * sum;
    }
  }
}

PackedLinear::PackedLinear() = default;
PackedLinear::~PackedLinear() = default;
PackedLinear::PackedLinear(PackedLinear&&) noexcept = default;
PackedLinear& PackedLinear::operator=(PackedLinear&&) noexcept = default;

size_t PackedLinear::owned_bytes() const {
  if (!native_) return 0;
  if (native_->q8) return native_->q8->bytes();
  return native_->desc.get_size() + native_->scales.size() * sizeof(float) +
         native_->offsets.size() * sizeof(int32_t);
}

absl::StatusOr<PackedLinear> PackedLinear::Pack(GemmPath path, std::span<const WeightMatrix> parts,
                                                const CpuSupport& support,
                                                const std::string& name) {
  SR_RETURN_IF_ERROR(CheckParts(parts, name));
  PackedLinear packed;
  packed.path_ = path;
  packed.parts_.assign(parts.begin(), parts.end());
  packed.k_ = parts[0].cols;
  for (const WeightMatrix& w : parts) packed.n_ += w.rows;
  if (path == GemmPath::kFp32 || path == GemmPath::kBf16Widened) return packed;
  if ((path == GemmPath::kBf16Native && !support.bf16_native) ||
      (RunsQ8Kernels(path) && support.int8_block_isa == Q8Isa::kNone) ||
      (path == GemmPath::kInt8Rows && !support.int8)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": path ", GemmPathName(path), " is not available on this CPU"));
  }

  auto native = std::make_unique<Native>();
  if (RunsQ8Kernels(path)) {  // int8 and int8-a16 pack the same weights
    SR_ASSIGN_OR_RETURN(Q8Weights q8, Q8Weights::Pack(parts, name));
    native->q8 = std::move(q8);
    packed.native_ = std::move(native);
    return packed;
  }
  const int64_t n = packed.n_, k = packed.k_;
  const dnnl::engine& engine = CpuEngine();
  try {
    const dnnl::memory::desc src({kLayoutRows, k}, SourceType(path), {k, 1});
    const dnnl::memory::desc any({k, n}, WeightType(path), dnnl::memory::format_tag::any);
    const dnnl::memory::desc dst({kLayoutRows, n}, AccumulatorType(path), {n, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any, dst), engine);
    native->desc = pd.weights_desc();
  } catch (const dnnl::error& e) {
    return absl::InternalError(
        absl::StrCat(name, ": oneDNN has no ", GemmPathName(path), " matmul: ", e.what()));
  }

  if (path == GemmPath::kInt8Rows) {
    native->scales.resize(static_cast<size_t>(n));
    native->offsets.resize(static_cast<size_t>(n));
  }
  try {
    dnnl::stream stream(engine);
    native->buffer = AllocatePacked(native->desc.get_size());
    native->weights = dnnl::memory(native->desc, engine, native->buffer.get());
    // Each part is reordered straight into its columns of the packed layout
    // (a sub-memory) when every part starts on a block of the layout's N
    // blocking; a BF16 part on the bf16 path is then read in place. Else the
    // parts go through one stacked plain copy.
    const int64_t n_block = NBlock(native->desc);
    bool direct = true;
    for (int64_t row0 = 0; const WeightMatrix& w : parts) {
      direct = direct && row0 % n_block == 0;
      row0 += w.rows;
    }
    // W [rows, K] row-major is oneDNN's plain [K, rows] operand with strides {1, K}.
    auto reorder = [&](dnnl::stream& on, const void* source, int64_t rows,
                       const dnnl::memory::desc& target) {
      const dnnl::memory::desc plain_desc({k, rows}, WeightType(path), {1, k});
      dnnl::memory from(plain_desc, engine, const_cast<void*>(source));
      dnnl::memory to(target, engine, native->buffer.get());
      dnnl::reorder(from, to).execute(on, from, to);
      on.wait();
    };
    // Rows are converted a chunk (a whole number of N blocks, ~L2 sized) at a
    // time on each thread: a whole-part plain copy would be written to fresh
    // pages (faults and zeroing) and read back from memory.
    const int q_max = support.int8_weight_max;
    const size_t elem = path == GemmPath::kInt8Rows ? 1 : 2;
    const int64_t k_bytes = k * static_cast<int64_t>(elem);  // one converted row
    const int64_t chunk =
        std::max<int64_t>(n_block, kConvertChunkBytes / k_bytes / n_block * n_block);
    struct Chunk {
      const WeightMatrix* w;
      int64_t row0, first, count;
    };
    std::vector<Chunk> chunks;
    for (int64_t row0 = 0; const WeightMatrix& w : parts) {
      if (!direct || path != GemmPath::kBf16Native || w.dtype != DType::kBF16) {
        for (int64_t first = 0; first < w.rows; first += chunk) {
          chunks.push_back({&w, row0, first, std::min(chunk, w.rows - first)});
        }
      }
      row0 += w.rows;
    }
    std::vector<std::byte> stacked;  // [N, K] plain, when not direct
    if (!direct) stacked.resize(static_cast<size_t>(n * k) * elem);
    std::string chunk_error;  // the first reorder failure, from any thread
#pragma omp parallel
    {
      std::vector<std::byte> plain;
      std::vector<float> rows_f32;
      std::optional<dnnl::stream> thread_stream;
#pragma omp for schedule(dynamic, 1)
      for (size_t i = 0; i < chunks.size(); ++i) {
        const Chunk& c = chunks[i];
        if (!direct) {
          ConvertRows(path, *c.w, q_max, *native, c.row0, c.first, c.count,
                      stacked.data() + (c.row0 + c.first) * k_bytes, rows_f32);
          continue;
        }
        Grow(plain, c.count * k_bytes);
        ConvertRows(path, *c.w, q_max, *native, c.row0, c.first, c.count, plain.data(), rows_f32);
        // A reorder inside the parallel region runs on this thread alone.
        try {
          if (!thread_stream) thread_stream.emplace(engine);
          reorder(*thread_stream, plain.data(), c.count,
                  native->desc.submemory_desc({k, c.count}, {0, c.row0 + c.first}));
        } catch (const dnnl::error& e) {
#pragma omp critical(saferoute_pack_error)
          if (chunk_error.empty()) chunk_error = e.what();
        }
      }
    }
    if (!chunk_error.empty()) {
      return absl::InternalError(absl::StrCat(name, ": oneDNN reorder failed: ", chunk_error));
    }
    if (direct) {
      // BF16 parts on the bf16 path: read in place from the checkpoint.
      for (int64_t row0 = 0; const WeightMatrix& w : parts) {
        if (path == GemmPath::kBf16Native && w.dtype == DType::kBF16) {
          reorder(stream, w.data, w.rows, native->desc.submemory_desc({k, w.rows}, {0, row0}));
        }
        row0 += w.rows;
      }
    } else {
      reorder(stream, stacked.data(), n, native->desc);
    }
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat(name, ": oneDNN reorder failed: ", e.what()));
  }
  packed.native_ = std::move(native);
  return packed;
}

struct LinearRunner::Impl {
  dnnl::stream stream{CpuEngine()};
  std::vector<uint16_t> x_bf16;  // [M, K] the bf16 input
  std::vector<uint8_t> x_u8;     // [M, K] the int8 input, + 128
  std::vector<float> row_scale;  // [M]
  std::vector<int32_t> acc;      // [M, N] s32 product when it cannot go to y in place
  std::vector<float> y_dense;    // [M, N] bf16 product when y is strided
  std::optional<Q8Gemm> q8;      // the int8 path's kernel, created on first use
  // (m, n, k, accumulate) -> primitive. One packed layout per (n, k).
  std::map<std::tuple<int64_t, int64_t, int64_t, bool>, dnnl::matmul> primitives;

  absl::StatusOr<const dnnl::matmul*> Primitive(GemmPath path, const PackedLinear& w, int64_t m,
                                                bool sum);
};

absl::StatusOr<const dnnl::matmul*> LinearRunner::Impl::Primitive(GemmPath path,
                                                                  const PackedLinear& w, int64_t m,
                                                                  bool sum) {
  const auto key = std::make_tuple(m, w.rows(), w.cols(), sum);
  auto it = primitives.find(key);
  if (it != primitives.end()) return &it->second;
  SR_ASSIGN_OR_RETURN(dnnl::matmul prim,
                      CreateMatmul(path, w.native_->desc, m, w.rows(), w.cols(), sum));
  return &primitives.emplace(key, std::move(prim)).first->second;
}

LinearRunner::LinearRunner(GemmPath path, int num_threads)
    : path_(path),
      num_threads_(std::max(1, num_threads)),
      widened_(num_threads_, path == GemmPath::kBf16Widened),
      impl_(std::make_unique<Impl>()) {}

LinearRunner::~LinearRunner() = default;

size_t LinearRunner::primitives_created() const { return impl_->primitives.size(); }

absl::Status LinearRunner::Run(const float* x, int64_t m, int64_t ldx, const PackedLinear& w,
                               float* y, int64_t ldy, bool accumulate) {
  if (m <= 0) return absl::OkStatus();
  if (w.path() != path_) {
    return absl::InvalidArgumentError(absl::StrCat("linear: weight packed for ",
                                                   GemmPathName(w.path()), ", runner runs ",
                                                   GemmPathName(path_)));
  }
  const int64_t n = w.rows(), k = w.cols();
  if (path_ == GemmPath::kFp32 || path_ == GemmPath::kBf16Widened) {
    // One job per stacked part, each writing its columns of y.
    std::vector<GemmJob> jobs;  // at most a few parts; tiny
    jobs.reserve(w.parts().size());
    int64_t column = 0;
    for (const WeightMatrix& part : w.parts()) {
      jobs.push_back({part, y + column, ldy, accumulate});
      column += part.rows;
    }
    return widened_.Run(x, m, k, ldx, jobs);
  }

  Impl& s = *impl_;
  if (RunsQ8Kernels(path_)) {
    if (!s.q8) {
      const Q8Isa isa = DetectCpuSupport().int8_block_isa;
      if (isa == Q8Isa::kNone) {
        return absl::FailedPreconditionError(
            absl::StrCat("linear: the ", GemmPathName(path_), " path needs AVX2 on this CPU"));
      }
      s.q8.emplace(isa, num_threads_,
                   path_ == GemmPath::kInt8A16 ? Q8Activations::kInt16 : Q8Activations::kInt8);
    }
    s.q8->Run(x, m, ldx, *w.native_->q8, y, ldy, accumulate);
    return absl::OkStatus();
  }
  const ScopedOmpMaxThreads team(num_threads_);  // oneDNN's OpenMP team for this call
  const dnnl::engine& engine = CpuEngine();
  try {
    // oneDNN 2.6's brgemm matmul takes dense operands only (row strides K
    // and N; other strides select its reference implementation): x is
    // converted into dense scratch anyway, and a strided y goes through a
    // dense [M, N] scratch.
    const bool dense_y = ldy == n;
    if (path_ == GemmPath::kBf16Native) {
      Grow(s.x_bf16, m * k);
      ParallelRows(m, k, num_threads_, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          NarrowToBf16(x + r * ldx, s.x_bf16.data() + r * k, static_cast<size_t>(k));
        }
      });
      float* out = y;
      if (!dense_y) {
        Grow(s.y_dense, m * n);
        out = s.y_dense.data();
      }
      const bool sum = accumulate && dense_y;
      SR_ASSIGN_OR_RETURN(const dnnl::matmul* prim, s.Primitive(path_, w, m, sum));
      dnnl::memory src({{m, k}, dt::bf16, {k, 1}}, engine, s.x_bf16.data());
      dnnl::memory dst({{m, n}, dt::f32, {n, 1}}, engine, out);
      prim->execute(
          s.stream,
          {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w.native_->weights}, {DNNL_ARG_DST, dst}});
      s.stream.wait();
      if (!dense_y) {
        for (int64_t r = 0; r < m; ++r) {
          const float* from = out + r * n;
          float* to = y + r * ldy;
          if (accumulate) {
            for (int64_t c = 0; c < n; ++c) to[c] += from[c];
          } else {
            std::copy_n(from, n, to);
          }
        }
      }
      return absl::OkStatus();
    }
    // int8: x quantized per row (+128, as u8); the s32 product goes to y in place (same
    // element size) when y is dense and nothing is added to it.
    Grow(s.x_u8, m * k);
    Grow(s.row_scale, m);
    ParallelRows(m, k, num_threads_, [&](int64_t r0, int64_t r1) {
      QuantizeRowsU8(x + r0 * ldx, ldx, r1 - r0, k, s.x_u8.data() + r0 * k, k,
                     s.row_scale.data() + r0);
    });
    int32_t* acc = reinterpret_cast<int32_t*>(y);
    if (accumulate || !dense_y) {
      Grow(s.acc, m * n);
      acc = s.acc.data();
    }
    SR_ASSIGN_OR_RETURN(const dnnl::matmul* prim, s.Primitive(path_, w, m, false));
    dnnl::memory src({{m, k}, dt::u8, {k, 1}}, engine, s.x_u8.data());
    dnnl::memory dst({{m, n}, dt::s32, {n, 1}}, engine, acc);
    prim->execute(
        s.stream,
        {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w.native_->weights}, {DNNL_ARG_DST, dst}});
    s.stream.wait();
    ParallelRows(m, n, num_threads_, [&](int64_t r0, int64_t r1) {
      ScaleS32ToF32(acc + r0 * n, n, r1 - r0, n, w.native_->offsets.data(), s.row_scale.data() + r0,
                    w.native_->scales.data(), accumulate, y + r0 * ldy, ldy);
    });
    return absl::OkStatus();
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrFormat("linear: oneDNN %s matmul M=%d K=%d N=%d: %s",
                                               GemmPathName(path_), m, k, n, e.what()));
  }
}

absl::StatusOr<double> PathMatmulGflops(GemmPath path, const CpuSupport& support, int64_t m,
                                        int64_t k, int64_t n, int threads, int reps) {
  if (path == GemmPath::kFp32 || path == GemmPath::kBf16Widened) {
    return LibrarySgemmGflops(m, k, n, threads, reps);
  }
  // Random bf16 weights, packed as the engine packs them; non-trivial inputs.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<uint16_t> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = F32ToBf16(0.02f * uniform(rng));
  const WeightMatrix matrix{DType::kBF16, reinterpret_cast<const std::byte*>(w.data()), n, k};
  SR_ASSIGN_OR_RETURN(PackedLinear packed,
                      PackedLinear::Pack(path, {&matrix, 1}, support, "peak probe"));
  auto best_seconds = [&](auto&& run) {
    double best = 1e30;
    for (int r = 0; r < std::max(1, reps) + 1; ++r) {  // the first run warms up
      const auto start = std::chrono::steady_clock::now();
      run();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (r > 0) best = std::min(best, seconds);
    }
    return best;
  };
  const double flops = 2.0 * static_cast<double>(m) * n * k;
  if (path == GemmPath::kInt8) {  // the kernel alone, on activations already quantized
    const Q8Gemm gemm(support.int8_block_isa, threads);
    const int64_t kb = Q8Blocks(k);
    std::vector<float> x(static_cast<size_t>(k));
    std::vector<int8_t> xq(static_cast<size_t>(m * kb * kQ8Block));
    std::vector<float> xs(static_cast<size_t>(m * kb)), y(static_cast<size_t>(m * n));
    for (int64_t r = 0; r < m; ++r) {
      for (float& v : x) v = uniform(rng);
      QuantizeRowQ8(x.data(), k, Q8IsaTakesU8(gemm.isa()), xq.data() + r * kb * kQ8Block,
                    xs.data() + r * kb);
    }
    return flops / best_seconds([&] {
             gemm.RunQuantized(xq.data(), xs.data(), m, *packed.native_->q8, y.data(), n, false);
           }) /
           1e9;
  }
  // Time the library's matmul alone (the activation conversion is the
  // engine's cost, not the hardware's peak), on inputs of the path's type.
  const ScopedOmpMaxThreads team(threads);
  const dnnl::engine& engine = CpuEngine();
  dnnl::stream stream(engine);
  SR_ASSIGN_OR_RETURN(dnnl::matmul prim, CreateMatmul(path, packed.native_->desc, m, n, k, false));
  std::vector<uint16_t> x_bf16(static_cast<size_t>(m * k));
  std::vector<uint8_t> x_u8(static_cast<size_t>(m * k));
  for (auto& v : x_bf16) v = F32ToBf16(uniform(rng));
  for (auto& v : x_u8) v = static_cast<uint8_t>(1 + rng() % 255);
  std::vector<float> y(static_cast<size_t>(m * n));  // f32 or s32: same size
  dnnl::memory src({{m, k}, SourceType(path), {k, 1}}, engine,
                   path == GemmPath::kInt8Rows ? static_cast<void*>(x_u8.data()) : x_bf16.data());
  dnnl::memory dst({{m, n}, AccumulatorType(path), {n, 1}}, engine, y.data());
  return flops / best_seconds([&] {
           prim.execute(stream, {{DNNL_ARG_SRC, src},
                                 {DNNL_ARG_WEIGHTS, packed.native_->weights},
                                 {DNNL_ARG_DST, dst}});
           stream.wait();
         }) /
         1e9;
}

}  // namespace saferoute::cpu
