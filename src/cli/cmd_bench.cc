// `saferoute bench`: prefill throughput of the CPU engine on a model of real
// guard shape with random weights (or a checkpoint, --model), on one or more
// GEMM paths, each against the same run's measured matmul peak of its own
// precision (see ProbePeaks): fp32 sgemm for fp32 and bf16-widened (fp32
// arithmetic), oneDNN's bf16 matmul for bf16-native, its int8 matmul for
// both int8 paths (int8's block-scaled kernel and int8-rows).
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
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "cpu/dispatch.h"
#include "cpu/linear.h"
#include "model/config.h"
#include "model/engine.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"

namespace saferoute::cli {
namespace {

struct BenchFlags {
  std::string shape = "llama-guard-3-1b";
  std::string config_file;
  std::string model_dir;
  int threads = 2;
  std::string precision = "auto";
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

// User + system CPU seconds of this process so far (a machine shared with
// other work stretches wall time, much less CPU time).
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

double CurrentRssBytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;  // kB
  }
  return 0;
}

// One engine configuration to run: a precision, optionally forced onto a path
// ("bf16-widened" on a CPU that has bf16 units).
struct BenchTarget {
  Precision precision;
  std::optional<cpu::GemmPath> path;
  std::string name;
};

absl::StatusOr<std::vector<BenchTarget>> ParseTargets(const std::string& text) {
  std::vector<BenchTarget> targets;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    const std::string name(part);
    const std::optional<cpu::GemmPath> path = cpu::ParseGemmPath(name);
    if (path && !cpu::ParsePrecision(name).ok()) {  // a path forced: bf16-widened, int8-rows...
      targets.push_back({cpu::PathPrecision(*path), path, name});
      continue;
    }
    auto precision = cpu::ParsePrecision(name);
    if (!precision.ok()) {
      std::vector<std::string> paths;  // the paths that are not also a precision's name
      for (cpu::GemmPath p : cpu::kGemmPaths) {
        if (!cpu::ParsePrecision(cpu::GemmPathName(p)).ok()) paths.push_back(cpu::GemmPathName(p));
      }
      return absl::InvalidArgumentError(
          absl::StrCat("--precision: '", name, "' is not a precision (",
                       absl::StrJoin(cpu::PrecisionNames(), ", "), ") or a path (",
                       absl::StrJoin(paths, ", "), ")"));
    }
    targets.push_back({*precision, std::nullopt, name});
  }
  return targets;
}

// The same run's matmul peak of each path's precision: the best of oneDNN's
// own multi-threaded matmul of that precision on prefill-like and square
// products. The bench probes before and after the model runs and keeps the
// best, because one probe on a shared machine can under-measure (session 1
// saw 71.5 and 115.5 GFLOP/s in two runs, and so a "%peak" above 100).
// Each path is compared with its precision's library matmul (cpu::PeakPath):
// bf16-widened multiplies in fp32, so its peak is the fp32 one; the
// block-scaled int8 kernel's is oneDNN's int8 matmul (the machine's int8 peak).
struct PeakProbe {
  std::map<cpu::GemmPath, double> gflops;
  double of(cpu::GemmPath path) const {
    auto it = gflops.find(cpu::PeakPath(path, cpu::DetectCpuSupport()));
    return it == gflops.end() ? 0 : it->second;
  }
  nlohmann::json ToJson() const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [path, g] : gflops) out[cpu::GemmPathName(path)] = g;
    return out;
  }
  void Merge(const PeakProbe& other) {
    for (const auto& [path, g] : other.gflops) gflops[path] = std::max(gflops[path], g);
  }
};

absl::StatusOr<PeakProbe> ProbePeaks(const std::set<cpu::GemmPath>& paths, int threads, int reps) {
  PeakProbe probe;
  const cpu::CpuSupport& support = cpu::DetectCpuSupport();
  // (M, K, N): a 512-token prefill through the 1B shape's MLP, a 1024-token
  // one, and a square product (a library's best case).
  const int64_t shapes[][3] = {{512, 2048, 8192}, {1024, 2048, 8192}, {2048, 2048, 2048}};
  for (cpu::GemmPath path : paths) {
    const cpu::GemmPath peak_path = cpu::PeakPath(path, support);
    double& best = probe.gflops[peak_path];
    for (const auto& s : shapes) {
      SR_ASSIGN_OR_RETURN(
          double g, cpu::PathMatmulGflops(peak_path, support, s[0], s[1], s[2], threads, reps));
      best = std::max(best, g);
    }
  }
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
  std::shared_ptr<const Model> model;
  ModelConfig config;
  std::string shape_name;
  if (!flags.model_dir.empty()) {
    std::fprintf(stderr, "bench: loading %s...\n", flags.model_dir.c_str());
    SR_ASSIGN_OR_RETURN(model, LoadModel(flags.model_dir));
    config = model->config();
    shape_name = flags.model_dir;
  } else if (!flags.config_file.empty()) {
    SR_ASSIGN_OR_RETURN(config, LoadModelConfig(flags.config_file));
    shape_name = flags.config_file;
  } else {
    SR_ASSIGN_OR_RETURN(config, NamedModelConfig(flags.shape));
    shape_name = flags.shape;
  }
  if (flags.reps < 1) return absl::InvalidArgumentError("--reps: must be >= 1");
  if (flags.warmup < 0) return absl::InvalidArgumentError("--warmup: must be >= 0");
  if (flags.prefix < 0) return absl::InvalidArgumentError("--prefix: must be >= 0");
  SR_ASSIGN_OR_RETURN(std::vector<int> batches, ParseList(flags.batches, "--batches"));
  SR_ASSIGN_OR_RETURN(std::vector<int> lengths, ParseList(flags.lengths, "--lengths"));
  SR_ASSIGN_OR_RETURN(std::vector<BenchTarget> targets, ParseTargets(flags.precision));
  const int threads = std::max(1, flags.threads);
  const cpu::CpuSupport& support = cpu::DetectCpuSupport();
  std::set<cpu::GemmPath> paths;
  for (const BenchTarget& t : targets) {
    SR_ASSIGN_OR_RETURN(cpu::GemmPath path, cpu::ChoosePath(t.precision, support, t.path));
    paths.insert(path);
  }

  std::fprintf(stderr, "bench: measuring the matmul peaks (%d threads)...\n", threads);
  SR_ASSIGN_OR_RETURN(const PeakProbe probe_before, ProbePeaks(paths, threads, flags.reps));

  if (!model) {
    std::fprintf(stderr, "bench: random %s-shaped model (bf16 weights)...\n", shape_name.c_str());
    SR_ASSIGN_OR_RETURN(model, MakeRandomModel(config, DType::kBF16, flags.seed));
  }
  const int max_length = *std::max_element(lengths.begin(), lengths.end());
  std::mt19937 rng(static_cast<uint32_t>(flags.seed));
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& v : t) v = token(rng);
    return t;
  };
  const std::vector<int32_t> prefix_tokens = random_tokens(flags.prefix);
  std::vector<std::vector<std::vector<int32_t>>> inputs;  // [batch][length] -> sequences
  for (int batch : batches) {
    for (int length : lengths) {
      std::vector<std::vector<int32_t>> seqs;
      for (int b = 0; b < batch; ++b) seqs.push_back(random_tokens(length));
      inputs.push_back(std::move(seqs));
    }
  }

  const double macs = LinearMacsPerToken(config);
  const double weights = static_cast<double>(model->weight_bytes());
  nlohmann::json rows = nlohmann::json::array();
  nlohmann::json engines = nlohmann::json::array();
  std::printf("%-13s %-17s %-6s %-7s %-9s %10s %10s %9s %7s\n", "path", "isa", "batch", "tokens",
              "mode", "seconds", "tok/s", "GFLOP/s", "%peak");
  for (const BenchTarget& target : targets) {
    EngineOptions options;
    options.precision = target.precision;
    options.force_path = target.path;
    options.num_threads = threads;
    options.max_tokens = flags.prefix + max_length;
    const double load_start = Now(), load_cpu_start = CpuSeconds();
    SR_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model, options));
    const double load_seconds = Now() - load_start;
    const double load_cpu_seconds = CpuSeconds() - load_cpu_start;
    const cpu::GemmPath path = engine->path();
    const std::string path_name = cpu::GemmPathName(path);
    std::fprintf(stderr, "bench: %s -> %s (prepared in %.2f s, %.2f CPU s)\n", target.name.c_str(),
                 engine->path_description().c_str(), load_seconds, load_cpu_seconds);
    const double peak = probe_before.of(path);
    std::shared_ptr<const PrefixCache> prefix;
    if (flags.prefix > 0) {
      SR_ASSIGN_OR_RETURN(prefix, engine->ComputePrefix(prefix_tokens));
    }
    auto report = [&](int batch, int length, const char* mode, int64_t past, double seconds) {
      const double tokens = static_cast<double>(batch) * length;
      const double flops = 2.0 * macs * tokens + batch * AttentionFlops(config, past, length) +
                           2.0 * config.hidden_size * 2 * batch;
      const double gflops = flops / seconds / 1e9;
      std::printf("%-13s %-17s %-6d %-7d %-9s %10.3f %10.1f %9.1f %6.1f%%\n", path_name.c_str(),
                  support.isa.c_str(), batch, length, mode, seconds, tokens / seconds, gflops,
                  100.0 * gflops / peak);
      std::fflush(stdout);
      rows.push_back({{"precision", target.name},
                      {"path", path_name},
                      {"isa", support.isa},
                      {"impl", cpu::PathImplementation(path, support)},
                      {"batch", batch},
                      {"tokens", length},
                      {"mode", mode},
                      {"past", past},
                      {"seconds", seconds},
                      {"tokens_per_s", tokens / seconds},
                      {"gflops", gflops},
                      {"peak_gflops", peak},
                      {"ratio_to_peak", gflops / peak}});
    };
    size_t cell = 0;
    for (int batch : batches) {
      for (int length : lengths) {
        const std::vector<std::vector<int32_t>>& seqs = inputs[cell++];
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
    const double rss = CurrentRssBytes();
    std::printf(
        "%s: prepared in %.2f s, packed weights %.3f GB, resident now %.3f GB = %.3fx the "
        "checkpoint's %.3f GB\n",
        path_name.c_str(), load_seconds, engine->packed_weight_bytes() / 1e9, rss / 1e9,
        rss / weights, weights / 1e9);
    engines.push_back({{"precision", target.name},
                       {"path", path_name},
                       {"description", engine->path_description()},
                       {"prepare_seconds", load_seconds},
                       {"prepare_cpu_seconds", load_cpu_seconds},
                       {"packed_weight_bytes", engine->packed_weight_bytes()},
                       {"rss_bytes", rss},
                       {"rss_over_weights", rss / weights}});
  }
  std::fprintf(stderr, "bench: measuring the matmul peaks again...\n");
  SR_ASSIGN_OR_RETURN(const PeakProbe probe_after, ProbePeaks(paths, threads, flags.reps));
  PeakProbe peaks = probe_before;
  peaks.Merge(probe_after);
  // Rows were printed against the first probe; the JSON uses the best.
  for (auto& row : rows) {
    const double peak = peaks.of(*cpu::ParseGemmPath(row["path"].get<std::string>()));
    row["peak_gflops"] = peak;
    row["ratio_to_peak"] = row["gflops"].get<double>() / peak;
  }
  const double peak_rss = PeakRssBytes();
  for (const auto& [path, g] : peaks.gflops) {
    std::printf("matmul peak %s: %.1f GFLOP/s (before %.1f, after %.1f)\n", cpu::GemmPathName(path),
                g, probe_before.of(path), probe_after.of(path));
  }
  std::printf("cpu: isa %s; bf16: %s; int8: %s\n", support.isa.c_str(), support.bf16_impl.c_str(),
              support.int8_impl.c_str());
  std::printf("weights %.3f GB, peak RSS %.3f GB, peak RSS/weights %.3f\n", weights / 1e9,
              peak_rss / 1e9, peak_rss / weights);
  nlohmann::json out = {{"shape", shape_name},
                        {"model", flags.model_dir.empty() ? "random" : "checkpoint"},
                        {"precision", flags.precision},
                        {"threads", threads},
                        {"reps", flags.reps},
                        {"warmup", flags.warmup},
                        {"isa", support.isa},
                        {"bf16_impl", support.bf16_impl},
                        {"int8_impl", support.int8_impl},
                        {"peak_gflops", peaks.ToJson()},
                        {"peak_probe_before", probe_before.ToJson()},
                        {"peak_probe_after", probe_after.ToJson()},
                        {"weight_bytes", weights},
                        {"peak_rss_bytes", peak_rss},
                        {"peak_rss_over_weights", peak_rss / weights},
                        {"engines", engines},
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
  auto* config = cmd.add_option("--config", flags->config_file,
                                "config.json or .gguf giving the shape instead")
                     ->excludes(shape);
  cmd.add_option("--model", flags->model_dir,
                 "Benchmark this checkpoint instead of random weights (memory-mapped as a user "
                 "runs it, so resident memory is meaningful)")
      ->excludes(shape)
      ->excludes(config);
  cmd.add_option("--threads", flags->threads, "Threads")->capture_default_str();
  cmd.add_option("--precision", flags->precision,
                 "Comma-separated: auto, fp32, bf16, int8, int8-a16, or a path (bf16-widened, "
                 "bf16-native, int8-rows); each runs every cell")
      ->capture_default_str();
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
