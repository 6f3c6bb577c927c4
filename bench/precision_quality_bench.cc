// precision_quality_bench: how far the reduced-precision GEMM paths move a
// real model's next-token distributions from the fp32 path, over fixed
// prompts, beside llama.cpp Q8_0's distance from its own F32 on the same
// prompts (tests/data/smollm2/, recorded by helper scripts from llama.cpp).
//
// For every position t of every prompt (each prompt one prefill, logits at
// all positions): KL(P_fp32 || Q_path) = sum_v p(v) (log p(v) - log q(v)) in
// nats through a float64 log-softmax of the float32 logits, and whether the
// argmax agrees. Prints a table and JSON (mean KL over positions, median, p99,
// max, top-1 agreement), for each path asked for; and the same after the
// prompts' shared prefix, where every position is a distinct computation, with
// top-1 also over the positions fp32 itself decides clearly (its top two
// tokens kClearMargin nat or more apart).
//
//   precision_quality_bench --model DIR|FILE.gguf [--path-model FILE.gguf]
//       [--prompts tests/data/smollm2/quant_kl_prompts.jsonl]
//       [--reference tests/data/smollm2/llamacpp_quant_kl.json]
//       [--paths bf16-native,int8,int8:int8] [--limit N] [--threads 2]
//       [--json out.json]
//
// Speed: OpenMP's idle workers busy-wait between parallel regions, and on a
// shared 2-core machine (load 6) that made the engine runs ~20x slower
// (int8 on 3 prompts: 6.3 s, 0.32 s with OMP_WAIT_POLICY=passive); the
// numbers measured here do not depend on timing, so the bench re-runs
// itself with OMP_WAIT_POLICY=passive unless the variable is set. The
// reference's log-softmax is computed once per position, not once per path.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cpu/dispatch.h"
#include "cpu/linear.h"
#include "model/engine.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"
#include "passive_omp.h"

namespace saferoute {
namespace {

struct Prompt {
  std::string id;
  std::vector<int32_t> ids;
};

absl::StatusOr<std::vector<Prompt>> LoadPrompts(const std::string& path, int limit) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(path + ": cannot open");
  std::vector<Prompt> prompts;
  int line_number = 0;
  for (std::string line; std::getline(in, line) && static_cast<int>(prompts.size()) < limit;) {
    ++line_number;
    if (line.empty()) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      prompts.push_back({j.at("id").get<std::string>(), j.at("ids").get<std::vector<int32_t>>()});
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": line ", line_number, ": ", e.what()));
    }
  }
  return prompts;
}

// log-softmax of one row of logits, in double.
void LogSoftmax(const float* logits, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  const double max_logit = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  const double lse = max_logit + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = logits[i] - lse;
}

// A position whose fp32 top-two log-probabilities differ by less than this
// (nats; 0.1: the top token under 1.105x as likely as the runner-up) is a
// near-tie whose argmax any rounding may flip (bf16's disagreements have a
// median gap of 0.02 on SmolLM2-135M); top-1 is reported apart without them.
constexpr double kClearMargin = 0.1;

struct Stats {
  std::vector<double> kl;       // per position
  std::vector<uint8_t> agrees;  // per position: the argmax equals fp32's
  double prepare_seconds = 0, run_seconds = 0;
  nlohmann::json per_prompt = nlohmann::json::array();  // {id, positions, mean_kl, top1_agree}
  nlohmann::json ToJson() const {
    std::vector<double> sorted = kl;
    std::sort(sorted.begin(), sorted.end());
    double sum = 0;
    for (double v : kl) sum += v;
    auto quantile = [&](double q) {
      return sorted.empty() ? 0.0 : sorted[static_cast<size_t>(q * (sorted.size() - 1))];
    };
    return {{"positions", kl.size()},
            {"mean_kl", kl.empty() ? 0.0 : sum / kl.size()},
            {"median_kl", quantile(0.5)},
            {"p99_kl", quantile(0.99)},
            {"max_kl", sorted.empty() ? 0.0 : sorted.back()},
            {"top1_agreement",
             kl.empty() ? 0.0 : double(std::count(agrees.begin(), agrees.end(), 1)) / kl.size()},
            {"prepare_seconds", prepare_seconds},
            {"per_prompt", per_prompt},
            {"run_seconds", run_seconds}};
  }
};

// The 1/5/15-minute load averages (the machine is shared: the numbers say
// how busy it was), or "" where /proc is absent.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return in ? one + " " + five + " " + fifteen : "";
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One path's engine and its LM head, packed and run exactly as the engine's
// full-vocabulary logits are (CpuForward::FullLogits), so the head's
// precision is part of what is measured.
struct PathRun {
  std::unique_ptr<Engine> engine;
  cpu::PackedLinear head;  // [V, H]
  std::unique_ptr<cpu::LinearRunner> runner;
};

// `head_path`, if set, packs and runs the LM head on that path instead of
// the engine's (cpu::HeadPath: int8's head runs on bf16), e.g. int8:int8 for
// an int8 head.
absl::StatusOr<PathRun> MakePathRun(const std::shared_ptr<const Model>& model, cpu::GemmPath path,
                                    int threads,
                                    std::optional<cpu::GemmPath> head_path = std::nullopt) {
  const ModelConfig& config = model->config();
  const TensorView& head = model->weights().lm_head;
  if (head.shape != std::vector<int64_t>{config.vocab_size, config.hidden_size}) {
    return absl::InvalidArgumentError(absl::StrFormat("lm_head is not [%d, %d] (vocab, hidden)",
                                                      config.vocab_size, config.hidden_size));
  }
  EngineOptions options;
  options.precision = cpu::PathPrecision(path);
  options.force_path = path;
  options.num_threads = threads;
  options.max_tokens = 4096;
  PathRun run;
  SR_ASSIGN_OR_RETURN(run.engine, Engine::Create(model, options));
  const cpu::WeightMatrix matrix{head.dtype, head.data, config.vocab_size, config.hidden_size};
  const cpu::GemmPath head_on = head_path.value_or(cpu::HeadPath(path, cpu::DetectCpuSupport()));
  SR_ASSIGN_OR_RETURN(
      run.head, cpu::PackedLinear::Pack(head_on, {&matrix, 1}, cpu::DetectCpuSupport(), "lm_head"));
  run.runner = std::make_unique<cpu::LinearRunner>(head_on, threads);
  return run;
}

// Logits [T, V] at every position of one prompt (one prefill): the final
// norm output of every position through the path's LM head.
absl::StatusOr<std::vector<float>> AllLogits(PathRun& run, const Prompt& prompt, int64_t vocab) {
  SequenceRequest request;
  request.tokens = prompt.ids;
  request.all_hidden = true;
  SR_ASSIGN_OR_RETURN(std::vector<SequenceResult> results, run.engine->Prefill({&request, 1}));
  const std::vector<float>& hidden = results[0].hidden;  // [T, H]
  const auto t = static_cast<int64_t>(prompt.ids.size());
  std::vector<float> logits(static_cast<size_t>(t * vocab));
  SR_RETURN_IF_ERROR(run.runner->Run(hidden.data(), t, run.head.cols(), run.head, logits.data(),
                                     vocab, /*accumulate=*/false));
  return logits;
}

absl::Status Run(const std::string& model_path, const std::string& path_model_path,
                 const std::string& prompts_path, const std::string& reference_path,
                 const std::string& paths_text, int limit, int threads,
                 const std::string& json_path) {
  const std::string load_before = LoadAverage();
  SR_ASSIGN_OR_RETURN(std::vector<Prompt> prompts, LoadPrompts(prompts_path, limit));
  SR_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, LoadModel(model_path));
  std::shared_ptr<const Model> path_model = model;
  if (!path_model_path.empty()) {
    SR_ASSIGN_OR_RETURN(path_model, LoadModel(path_model_path));
    if (path_model->config().vocab_size != model->config().vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("--path-model ", path_model_path, " has another vocabulary size"));
    }
  }
  const int64_t vocab = model->config().vocab_size;
  // PATH, or PATH:HEAD_PATH (the LM head on another path, e.g. int8:bf16-native).
  struct PathSpec {
    std::string name;
    cpu::GemmPath path;
    std::optional<cpu::GemmPath> head;
  };
  std::vector<PathSpec> paths;
  for (absl::string_view name : absl::StrSplit(paths_text, ',')) {
    const std::vector<std::string> parts = absl::StrSplit(name, ':');
    const auto path = cpu::ParseGemmPath(parts[0]);
    const auto head = parts.size() == 2 ? cpu::ParseGemmPath(parts[1]) : std::nullopt;
    if (!path || parts.size() > 2 || (parts.size() == 2 && !head)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--paths: '", name, "' is not PATH[:HEAD_PATH]"));
    }
    paths.push_back({std::string(name), *path, head});
  }
  SR_ASSIGN_OR_RETURN(PathRun fp32, MakePathRun(model, cpu::GemmPath::kFp32, threads));
  std::vector<PathRun> runs;
  std::vector<Stats> stats(paths.size());
  for (size_t p = 0; p < paths.size(); ++p) {
    const double start = Now();
    SR_ASSIGN_OR_RETURN(PathRun run,
                        MakePathRun(path_model, paths[p].path, threads, paths[p].head));
    stats[p].prepare_seconds = Now() - start;
    std::fprintf(stderr, "%s\n", run.engine->path_description().c_str());
    runs.push_back(std::move(run));
  }
  std::vector<double> log_p, p_ref, log_q;
  std::vector<double> reference_margin;  // per position: fp32's top-1 minus top-2 log-probability
  for (size_t i = 0; i < prompts.size(); ++i) {
    SR_ASSIGN_OR_RETURN(std::vector<float> reference, AllLogits(fp32, prompts[i], vocab));
    const auto positions = static_cast<int64_t>(prompts[i].ids.size());
    std::vector<std::vector<float>> got(paths.size());
    for (size_t p = 0; p < paths.size(); ++p) {
      const double start = Now();
      SR_ASSIGN_OR_RETURN(got[p], AllLogits(runs[p], prompts[i], vocab));
      stats[p].run_seconds += Now() - start;
    }
    for (int64_t t = 0; t < positions; ++t) {
      const float* pr = reference.data() + t * vocab;
      LogSoftmax(pr, vocab, log_p);
      p_ref.resize(log_p.size());
      for (size_t v = 0; v < log_p.size(); ++v) p_ref[v] = std::exp(log_p[v]);
      double first = -INFINITY, second = -INFINITY;
      for (double lp : log_p) {
        if (lp > first) {
          second = first;
          first = lp;
        } else if (lp > second) {
          second = lp;
        }
      }
      reference_margin.push_back(first - second);
      for (size_t p = 0; p < paths.size(); ++p) {
        const float* qr = got[p].data() + t * vocab;
        LogSoftmax(qr, vocab, log_q);
        double kl = 0;
        for (int64_t v = 0; v < vocab; ++v) kl += p_ref[v] * (log_p[v] - log_q[v]);
        stats[p].kl.push_back(kl);
        const bool agrees =
            (std::max_element(pr, pr + vocab) - pr) == (std::max_element(qr, qr + vocab) - qr);
        stats[p].agrees.push_back(agrees);
      }
    }
    for (Stats& st : stats) {
      double sum = 0;
      int64_t agree = 0;
      for (size_t t = st.kl.size() - static_cast<size_t>(positions); t < st.kl.size(); ++t) {
        sum += st.kl[t];
        agree += st.agrees[t];
      }
      st.per_prompt.push_back({{"id", prompts[i].id},
                               {"positions", positions},
                               {"mean_kl", sum / static_cast<double>(positions)},
                               {"top1_agree", agree}});
    }
    if ((i + 1) % 10 == 0) std::fprintf(stderr, "%zu/%zu prompts\n", i + 1, prompts.size());
  }

  nlohmann::json out = {{"model", model_path},
                        {"path_model", path_model_path.empty() ? model_path : path_model_path},
                        {"prompts", prompts_path},
                        {"prompts_used", prompts.size()},
                        {"threads", threads},
                        {"cpu", cpu::DetectCpuSupport().isa},
                        {"load_average_before", load_before},
                        {"load_average_after", LoadAverage()}};
  // The longest token prefix every prompt starts with.
  size_t common_prefix = prompts.empty() ? 0 : prompts[0].ids.size();
  for (const Prompt& prompt : prompts) {
    size_t same = 0;
    while (same < std::min(common_prefix, prompt.ids.size()) &&
           prompt.ids[same] == prompts[0].ids[same]) {
      ++same;
    }
    common_prefix = same;
  }
  std::printf("%-22s %9s %10s %10s %10s %10s %8s\n", "path", "positions", "mean KL", "median",
              "p99", "max", "top-1");
  for (size_t p = 0; p < paths.size(); ++p) {
    nlohmann::json s = stats[p].ToJson();
    // The prompts share a chat-template prefix (the system prompt): its
    // positions are the same computation in every prompt, one sample counted
    // once per prompt, and a single unlucky position there moves every
    // prompt's mean alike (one flipped argmax there is 200 of 23235
    // positions, 0.86 points of top-1, on the SmolLM2 prompts). Reported
    // apart: its KL summed once and its flipped positions counted once; KL
    // and top-1 over the positions after it; and top-1 over those of them
    // that fp32 decides clearly (kClearMargin).
    double prefix_sum = 0, rest_sum = 0;
    int64_t rest_positions = 0, rest_agree = 0, clear_positions = 0, clear_agree = 0;
    nlohmann::json prefix_flips = nlohmann::json::array();
    for (size_t i = 0, at = 0; i < prompts.size(); at += prompts[i].ids.size(), ++i) {
      for (size_t t = 0; t < prompts[i].ids.size(); ++t) {
        const double kl = stats[p].kl[at + t];
        const bool agrees = stats[p].agrees[at + t] != 0;
        if (t >= common_prefix) {
          rest_sum += kl;
          ++rest_positions;
          rest_agree += agrees;
          if (reference_margin[at + t] >= kClearMargin) {
            ++clear_positions;
            clear_agree += agrees;
          }
        } else if (i == 0) {
          prefix_sum += kl;
          if (!agrees) prefix_flips.push_back(t);
        }
      }
    }
    auto share = [](int64_t part, int64_t whole) {
      return whole > 0 ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
    };
    s["shared_prefix_positions"] = common_prefix;
    s["shared_prefix_kl_sum"] = prefix_sum;
    s["shared_prefix_flipped_positions"] = prefix_flips;
    s["after_prefix_positions"] = rest_positions;
    s["after_prefix_mean_kl"] = rest_positions > 0 ? rest_sum / rest_positions : 0.0;
    s["after_prefix_top1_agreement"] = share(rest_agree, rest_positions);
    s["clear_margin_nats"] = kClearMargin;
    s["after_prefix_clear_positions"] = clear_positions;
    s["after_prefix_clear_top1_agreement"] = share(clear_agree, clear_positions);

    s["description"] = runs[p].engine->path_description();
    std::printf("%-22s %9lld %10.5f %10.5f %10.4f %10.4f %7.2f%%\n", paths[p].name.c_str(),
                static_cast<long long>(s["positions"].get<int64_t>()), s["mean_kl"].get<double>(),
                s["median_kl"].get<double>(), s["p99_kl"].get<double>(), s["max_kl"].get<double>(),
                100 * s["top1_agreement"].get<double>());
    std::printf(
        "%-22s shared prefix (%zu positions, counted once): KL sum %.4f, argmax flipped at %s\n"
        "%-22s after it: %lld positions, mean KL %.5f, top-1 %.2f%%; at the %lld where fp32's "
        "top two are >= %.1f nat apart, top-1 %.2f%%\n",
        "", common_prefix, prefix_sum, prefix_flips.empty() ? "none" : prefix_flips.dump().c_str(),
        "", static_cast<long long>(rest_positions), s["after_prefix_mean_kl"].get<double>(),
        100 * share(rest_agree, rest_positions), static_cast<long long>(clear_positions),
        kClearMargin, 100 * share(clear_agree, clear_positions));
    out["paths"][paths[p].name] = s;
  }
  // llama.cpp Q8_0 over the same prompts (its per-prompt statistics).
  if (!reference_path.empty()) {
    std::ifstream in(reference_path);
    if (!in) return absl::NotFoundError(reference_path + ": cannot open");
    const nlohmann::json ref = nlohmann::json::parse(in);
    for (const auto& [config, data] : ref.at("configs").items()) {
      std::map<std::string, nlohmann::json> by_id;
      for (const auto& row : data.at("per_prompt")) by_id[row.at("id")] = row;
      double kl_sum = 0;
      int64_t positions = 0, agree = 0;
      for (const Prompt& prompt : prompts) {
        auto it = by_id.find(prompt.id);
        if (it == by_id.end()) continue;
        const int64_t n = it->second.at("positions").get<int64_t>();
        kl_sum += it->second.at("mean_kl").get<double>() * n;
        positions += n;
        agree += it->second.at("top1_agree").get<int64_t>();
      }
      if (positions == 0) continue;
      std::printf("%-22s %9lld %10.5f %10s %10s %10s %7.2f%%   (llama.cpp, %s)\n",
                  ("llama.cpp " + config).c_str(), static_cast<long long>(positions),
                  kl_sum / positions, "-", "-", "-", 100.0 * agree / positions,
                  data.value("model", "").c_str());
      out["llama_cpp"][config] = {{"positions", positions},
                                  {"mean_kl", kl_sum / positions},
                                  {"top1_agreement", double(agree) / positions}};
    }
  }
  const std::string text = out.dump(2);
  std::printf("%s\n", text.c_str());
  if (!json_path.empty()) {
    std::ofstream file(json_path);
    file << text << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace saferoute

int main(int argc, char** argv) {
  saferoute::bench::RerunWithPassiveOmpWait(argv, "precision_quality_bench");  // file comment
  CLI::App app("KL and top-1 agreement of the reduced-precision paths against fp32");
  std::string model, path_model, prompts = "tests/data/smollm2/quant_kl_prompts.jsonl",
                                 reference = "tests/data/smollm2/llamacpp_quant_kl.json",
                                 paths = "bf16-native,int8", json;
  int limit = 200, threads = 2;
  app.add_option("--model", model, "Model directory or .gguf file")->required();
  app.add_option("--path-model", path_model,
                 "Run the compared paths on this model instead (e.g. the Q8_0 GGUF of --model's "
                 "weights, which the int8 path uses as stored); fp32 stays on --model");
  app.add_option("--prompts", prompts, "JSONL of {id, ids}")->capture_default_str();
  app.add_option("--reference", reference, "llama.cpp statistics per prompt ('' for none)")
      ->capture_default_str();
  app.add_option("--paths", paths,
                 "GEMM paths to compare with fp32; PATH:HEAD_PATH runs the LM head on HEAD_PATH")
      ->capture_default_str();
  app.add_option("--limit", limit, "Use the first N prompts")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--threads", threads, "Threads")->capture_default_str();
  app.add_option("--json", json, "Also write the JSON here");
  CLI11_PARSE(app, argc, argv);
  const absl::Status status =
      saferoute::Run(model, path_model, prompts, reference, paths, limit, threads, json);
  if (!status.ok()) {
    std::fprintf(stderr, "precision_quality_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
