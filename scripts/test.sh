#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every test.
#   ./scripts/test.sh            all tests (unit, model, server) + sanitizer builds of the server tests
#                                + a fuzz smoke run (every libFuzzer target for a few seconds)
#   SAFEROUTE_QUICK=1 ./scripts/test.sh   skip the sanitizer builds and the fuzz smoke run
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
jobs="$(nproc)"

bash scripts/install-deps.sh

cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release > build-configure.log 2>&1 || { cat build-configure.log; exit 1; }
rm -f build-configure.log
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs" --timeout 900

if [[ "${SAFEROUTE_QUICK:-0}" != "1" ]]; then
  # The service and the cascade library (and what they call) under
  # AddressSanitizer+UBSan and ThreadSanitizer.
  for san in address thread; do
    # -O1 without debug info: sanitizer reports still name functions, and the
    # build (everything the server links) is the slow part of CI on 2 cores.
    cmake -S . -B "build/$san" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1" -DSAFEROUTE_SANITIZE=$san \
      -DSAFEROUTE_BUILD_BENCH=OFF > /dev/null
    cmake --build "build/$san" -j"$jobs" --target saferoute_cascade_tests saferoute_server_tests
    # tsan.supp: only Debian's uninstrumented libcpp-httplib.so (see the file).
    TSAN_OPTIONS="suppressions=$root/scripts/tsan.supp halt_on_error=0" \
      ctest --test-dir "build/$san" --output-on-failure -L server --timeout 900
  done

  # What an AVX2-only CPU runs: our own kernels (cpu/: conversions,
  # dequantizers, int8 quantization, element-wise kernels) pick their SIMD
  # variant at compile time from -march=native, so on an AVX-512 machine the
  # AVX2 variants are never built. Build cpu/ for Haswell (AVX2+FMA+F16C) and
  # run its tests with oneDNN capped at AVX2 too (~1.5 min on 2 cores).
  cmake -S . -B build/avx2 -DCMAKE_BUILD_TYPE=Release -DSAFEROUTE_NATIVE=OFF \
    -DCMAKE_CXX_FLAGS="-march=haswell" -DSAFEROUTE_BUILD_BENCH=OFF > /dev/null
  cmake --build build/avx2 -j"$jobs" --target saferoute_cpu_tests
  for t in build/avx2/src/cpu/*_test; do
    echo "== $t (AVX2 build, ONEDNN_MAX_CPU_ISA=AVX2)"
    ONEDNN_MAX_CPU_ISA=AVX2 "$t"
  done

  # Fuzz smoke run: every libFuzzer target (libraries instrumented, clang,
  # -O1 without debug info; only what the targets link is built), a few
  # seconds each on its committed seeds; any finding fails. Long runs:
  # DEVELOPERS.md, "Fuzzing".
  cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_CXX_FLAGS="-O1" -DSAFEROUTE_FUZZ=ON -DSAFEROUTE_BUILD_TESTS=OFF \
    -DSAFEROUTE_BUILD_BENCH=OFF > /dev/null
  cmake --build build/fuzz -j"$jobs" --target fuzz_targets
  ctest --test-dir build/fuzz --output-on-failure -L fuzz -j"$jobs"
fi
