// `saferoute bench`: prefill throughput of the CPU engine on a model of real
// guard shape with random weights, against this machine's measured GEMM peak
// (see ProbePeak).
//
// For every batch size B and message length T it times Prefill of B random
// sequences of T tokens (router feature + two selected logits, as a guard
// call does), and with --prefix P > 0 also (a) the same B messages after a
// cached P-token prefix and (b) the uncached call over P + T tokens that (a)
// replaces. FLOPs are counted honestly: 2 x (weights used per token) x tokens
// (every linear layer of every decoder layer; embeddings are a lookup; the
// lm_head only for the selected ids) + attention (4 x d x heads x keys seen,
// summed over queries and layers).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "cpu/gemm.h"
#include "model/config.h"
#include "model/engine.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"

namespace saferoute::cli {
namespace {

struct BenchFlags {
  std::string shape = "llama-guard-3-1b";
  std::string config_file;
  int threads = 2;
  std::string precision = "bf16";
  std::string batches = "1,8";
  std::string lengths = "64,300,1200";
  int prefix = 150;
  int reps = 3;
  int warmup = 1;  // untimed runs before each cell's timed ones
  std::string json_file;
  uint64_t seed = 1;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux: kilobytes
}

absl::StatusOr<std::vector<int>> ParseList(const std::string& text, const char* flag) {
  std::vector<int> values;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": '", std::string(part), "' is not a positive integer"));
    }
    values.push_back(v);
  }
  return values;
}

// Multiply-adds per token of all linear layers (what the GEMMs execute).
double LinearMacsPerToken(const ModelConfig& c) {
  const double h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const double per_layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size;
  return per_layer * c.num_layers;
}

// Attention FLOPs of one sequence: T queries after `past` cached positions.
double AttentionFlops(const ModelConfig& c, int64_t past, int64_t tokens) {
  double keys = 0;  // sum over queries of keys seen
  for (int64_t i = 0; i < tokens; ++i) keys += static_cast<double>(past + i + 1);
  return 4.0 * c.head_dim * c.num_heads * keys * c.num_layers;
}

// Best-of-reps GFLOP/s of a [m, k] x [n, k]^T GEMM through the engine's GEMM.
absl::StatusOr<double> EngineGemmGflops(DType dtype, int threads, int reps) {
  const int64_t m = 512, k = 2048, n = 8192;
  std::vector<float> x(static_cast<size_t>(m * k), 0.01f), y(static_cast<size_t>(m * n));
  std::vector<float> w32;
  std::vector<uint16_t> w16;
  const std::byte* data;
  if (dtype == DType::kF32) {
    w32.assign(static_cast<size_t>(n * k), 0.02f);
    data = reinterpret_cast<const std::byte*>(w32.data());
  } else {
    w16.assign(static_cast<size_t>(n * k), 0x3c00);  // bf16 0.0078125
    data = reinterpret_cast<const std::byte*>(w16.data());
  }
  cpu::GemmRunner runner(threads);
  const cpu::GemmJob job[] = {{{dtype, data, n, k}, y.data(), n, false}};
  double best = 1e30;
  for (int r = 0; r < reps + 1; ++r) {  // first run is warm-up
    const double t0 = Now();
    SR_RETURN_IF_ERROR(runner.Run(x.data(), m, k, k, job));
    if (r > 0) best = std::min(best, Now() - t0);
  }
  return 2.0 * m * n * k / best / 1e9;
}

// The machine's fp32 GEMM peak: the best of oneDNN's own multi-threaded sgemm
// on prefill-like and square products, and of the engine's GEMM on the
// prefill shape. The bench probes before and after the model runs and keeps
// the best, because one probe on a shared machine can under-measure (session 1
// saw 71.5 and 115.5 GFLOP/s in two runs, and so a "%peak" above 100).
struct PeakProbe {
  double library_fp32 = 0;         // best oneDNN sgemm over the shapes
  double engine_fp32 = 0;          // engine GEMM, fp32 weights
  double engine_bf16_weights = 0;  // engine GEMM, bf16 weights widened per panel
  double best() const { return std::max({library_fp32, engine_fp32, engine_bf16_weights}); }
  nlohmann::json ToJson() const {
    return {{"library_sgemm_gflops", library_fp32},
            {"engine_gemm_fp32_gflops", engine_fp32},
            {"engine_gemm_bf16_weights_gflops", engine_bf16_weights}};
  }
};

absl::StatusOr<PeakProbe> ProbePeak(int threads, int reps) {
  PeakProbe probe;
  // (M, K, N): a 512-token prefill through the 1B shape's MLP, a 1024-token
  // one, and a square product (a library's best case).
  const int64_t shapes[][3] = {{512, 2048, 8192}, {1024, 2048, 8192}, {2048, 2048, 2048}};
  for (const auto& s : shapes) {
    probe.library_fp32 =
        std::max(probe.library_fp32, cpu::LibrarySgemmGflops(s[0], s[1], s[2], threads, reps));
  }
  SR_ASSIGN_OR_RETURN(probe.engine_fp32, EngineGemmGflops(DType::kF32, threads, reps));
  SR_ASSIGN_OR_RETURN(probe.engine_bf16_weights, EngineGemmGflops(DType::kBF16, threads, reps));
  return probe;
}

struct Timing {
  double seconds = 0;  // best of reps
};

absl::StatusOr<Timing> TimePrefill(Engine& engine, const std::vector<std::vector<int32_t>>& seqs,
                                   std::shared_ptr<const PrefixCache> prefix, int reps,
                                   int warmup) {
  // Two selected logits, as a guard's two verdict tokens: which two rows of
  // the LM head does not change the cost.
  const std::vector<int32_t> verdict_ids = {0, 1};
  std::vector<SequenceRequest> requests(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    requests[i].tokens = seqs[i];
    requests[i].prefix = prefix;
    requests[i].logits = LogitsMode::kSelected;
    requests[i].logit_ids = verdict_ids;
  }
  Timing timing{1e30};
  for (int r = 0; r < warmup + reps; ++r) {
    const double t0 = Now();
    SR_ASSIGN_OR_RETURN(auto results, engine.Prefill(requests));
    if (r >= warmup) timing.seconds = std::min(timing.seconds, Now() - t0);
  }
  return timing;
}

absl::Status RunBench(const BenchFlags& flags) {
  ModelConfig config;
  if (!flags.config_file.empty()) {
    SR_ASSIGN_OR_RETURN(config, LoadModelConfig(flags.config_file));
  } else {
    SR_ASSIGN_OR_RETURN(config, NamedModelConfig(flags.shape));
  }
  Precision precision;
  if (flags.precision == "bf16") {
    precision = Precision::kBf16;
  } else if (flags.precision == "fp32") {
    precision = Precision::kFp32;
  } else {
    return absl::InvalidArgumentError("--precision: must be bf16 or fp32");
  }
  if (flags.reps < 1) return absl::InvalidArgumentError("--reps: must be >= 1");
  if (flags.warmup < 0) return absl::InvalidArgumentError("--warmup: must be >= 0");
  if (flags.prefix < 0) return absl::InvalidArgumentError("--prefix: must be >= 0");
  SR_ASSIGN_OR_RETURN(std::vector<int> batches, ParseList(flags.batches, "--batches"));
  SR_ASSIGN_OR_RETURN(std::vector<int> lengths, ParseList(flags.lengths, "--lengths"));
  const int threads = std::max(1, flags.threads);

  std::fprintf(stderr, "bench: measuring the GEMM peak (%d threads)...\n", threads);
  SR_ASSIGN_OR_RETURN(const PeakProbe probe_before, ProbePeak(threads, flags.reps));
  // Peak of the precision used. The bf16 path multiplies bf16-rounded
  // activations by bf16 weights in fp32 arithmetic (cpu/gemm.h), so its
  // compute peak is the fp32 one; on a CPU with native bf16 dot products
  // (AVX512-BF16/AMX) the chip's bf16 peak is higher and the ratio below
  // flatters the engine there (it does not use them yet): say so.
  double peak = probe_before.best();
  const bool native_bf16 = cpu::NativeBf16MatmulSupported();
  if (precision == Precision::kBf16 && native_bf16) {
    std::fprintf(stderr,
                 "bench: note: this CPU has native bf16 matmul, which the engine does not use; "
                 "%%peak is against the fp32 peak\n");
  }

  std::fprintf(stderr, "bench: random %s-shaped model (bf16 weights)...\n", flags.shape.c_str());
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model,
                      MakeRandomModel(config, DType::kBF16, flags.seed));
  const int max_length = *std::max_element(lengths.begin(), lengths.end());
  EngineOptions options;
  options.precision = precision;
  options.num_threads = threads;
  options.max_tokens = flags.prefix + max_length;
  SR_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model, options));

  std::mt19937 rng(static_cast<uint32_t>(flags.seed));
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& v : t) v = token(rng);
    return t;
  };
  std::vector<int32_t> prefix_tokens = random_tokens(flags.prefix);
  std::shared_ptr<const PrefixCache> prefix;
  if (flags.prefix > 0) {
    SR_ASSIGN_OR_RETURN(prefix, engine->ComputePrefix(prefix_tokens));
  }

  const double macs = LinearMacsPerToken(config);
  nlohmann::json rows = nlohmann::json::array();
  std::printf("%-6s %-7s %-9s %10s %10s %9s %7s\n", "batch", "tokens", "mode", "seconds", "tok/s",
              "GFLOP/s", "%peak");
  auto report = [&](int batch, int length, const char* mode, int64_t past, double seconds) {
    const double tokens = static_cast<double>(batch) * length;
    const double flops = 2.0 * macs * tokens + batch * AttentionFlops(config, past, length) +
                         2.0 * config.hidden_size * 2 * batch;
    const double gflops = flops / seconds / 1e9;
    std::printf("%-6d %-7d %-9s %10.3f %10.1f %9.1f %6.1f%%\n", batch, length, mode, seconds,
                tokens / seconds, gflops, 100.0 * gflops / peak);
    std::fflush(stdout);
    rows.push_back({{"batch", batch},
                    {"tokens", length},
                    {"mode", mode},
                    {"past", past},
                    {"seconds", seconds},
                    {"tokens_per_s", tokens / seconds},
                    {"gflops", gflops},
                    {"ratio_to_peak", gflops / peak}});
    return seconds;
  };
  for (int batch : batches) {
    for (int length : lengths) {
      std::vector<std::vector<int32_t>> seqs;
      for (int b = 0; b < batch; ++b) seqs.push_back(random_tokens(length));
      SR_ASSIGN_OR_RETURN(Timing plain,
                          TimePrefill(*engine, seqs, nullptr, flags.reps, flags.warmup));
      report(batch, length, "plain", 0, plain.seconds);
      if (!prefix) continue;
      // The uncached call the prefix replaces: prefix + message, all computed.
      std::vector<std::vector<int32_t>> joined = seqs;
      for (auto& s : joined) s.insert(s.begin(), prefix_tokens.begin(), prefix_tokens.end());
      SR_ASSIGN_OR_RETURN(Timing uncached,
                          TimePrefill(*engine, joined, nullptr, flags.reps, flags.warmup));
      SR_ASSIGN_OR_RETURN(Timing cached,
                          TimePrefill(*engine, seqs, prefix, flags.reps, flags.warmup));
      report(batch, flags.prefix + length, "uncached", 0, uncached.seconds);
      report(batch, length, "cached", flags.prefix, cached.seconds);
      std::printf("       cached / uncached = %.3f\n", cached.seconds / uncached.seconds);
      rows.back()["cached_over_uncached"] = cached.seconds / uncached.seconds;
    }
  }
  std::fprintf(stderr, "bench: measuring the GEMM peak again...\n");
  SR_ASSIGN_OR_RETURN(const PeakProbe probe_after, ProbePeak(threads, flags.reps));
  const double final_peak = std::max(peak, probe_after.best());
  if (final_peak > peak) {
    // Rows were printed against the first probe; the JSON uses the best.
    for (auto& row : rows) row["ratio_to_peak"] = row["gflops"].get<double>() / final_peak;
  }
  const double rss = PeakRssBytes();
  const double weights = static_cast<double>(model->weight_bytes());
  std::printf(
      "GEMM peak (fp32 compute, best of oneDNN sgemm and the engine GEMM, probed before and "
      "after): %.1f GFLOP/s (before %.1f, after %.1f; native oneDNN bf16 matmul: %s)\n",
      final_peak, probe_before.best(), probe_after.best(), native_bf16 ? "yes" : "no");
  std::printf("weights %.3f GB, peak RSS %.3f GB, RSS/weights %.3f\n", weights / 1e9, rss / 1e9,
              rss / weights);
  nlohmann::json out = {{"shape", flags.config_file.empty() ? flags.shape : flags.config_file},
                        {"precision", flags.precision},
                        {"threads", threads},
                        {"reps", flags.reps},
                        {"warmup", flags.warmup},
                        {"peak_gflops", final_peak},
                        {"peak_compute", "fp32"},
                        {"peak_probe_before", probe_before.ToJson()},
                        {"peak_probe_after", probe_after.ToJson()},
                        {"native_bf16_matmul", native_bf16},
                        {"weight_bytes", weights},
                        {"peak_rss_bytes", rss},
                        {"rss_over_weights", rss / weights},
                        {"rows", rows}};
  const std::string text = out.dump(2);
  std::printf("%s\n", text.c_str());
  if (!flags.json_file.empty()) {
    std::ofstream file(flags.json_file);
    file << text << "\n";
    if (!file) return absl::InternalError(absl::StrCat("cannot write '", flags.json_file, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

CommandRunner SetupBenchCommand(CLI::App& cmd) {
  auto flags = std::make_shared<BenchFlags>();
  auto* shape = cmd.add_option("--shape", flags->shape, "Named model shape (random weights)")
                    ->capture_default_str();
  cmd.add_option("--config", flags->config_file, "config.json giving the shape instead")
      ->excludes(shape);
  cmd.add_option("--threads", flags->threads, "Threads")->capture_default_str();
  cmd.add_option("--precision", flags->precision, "bf16 or fp32")->capture_default_str();
  cmd.add_option("--batches", flags->batches, "Batch sizes, comma-separated")
      ->capture_default_str();
  cmd.add_option("--lengths", flags->lengths, "Message lengths in tokens")->capture_default_str();
  cmd.add_option("--prefix", flags->prefix, "Cached prefix length (0: none)")
      ->capture_default_str();
  cmd.add_option("--reps", flags->reps, "Timed repetitions per cell (best is reported)")
      ->capture_default_str();
  cmd.add_option("--warmup", flags->warmup,
                 "Untimed runs before each cell (0 saves time on long cells; the model's pages "
                 "are touched by the earlier cells anyway)")
      ->capture_default_str();
  cmd.add_option("--json", flags->json_file, "Also write the JSON report here");
  cmd.add_option("--seed", flags->seed, "Random weight/token seed")->capture_default_str();
  return [flags] { return RunBench(*flags); };
}

}  // namespace saferoute::cli
