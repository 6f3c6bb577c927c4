// Tokenizer throughput on English prose, single-threaded, and the time to
// render + tokenize a full Llama Guard 3 prompt. Prints one JSON object.
//
//   tokenizer_bench [--text alpaca.json] [--tokenizer tokenizer.json|model.gguf] [--mb 8]
//
// A tokenizer without the Llama Guard 3 specials (SmolLM2's) is timed on the
// prose only ("render_tokenize_guard_prompt_us" is then null).
// The prose is Stanford Alpaca (instruction, input, output concatenated),
// cycled up to --mb megabytes. Reported: best of 3 passes (MB = 1e6 bytes),
// for the default path (ASCII fast path + PCRE2) and for PCRE2 alone;
// mb_per_s is wall time, mb_per_cpu_s thread CPU time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "guard/guard_format.h"
#include "nlohmann/json.hpp"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"

namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

int Fail(const std::string& message) {
  std::fprintf(stderr, "tokenizer_bench: %s\n", message.c_str());
  return 1;
}

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU time of this thread: on a shared, loaded machine wall time measures
// the neighbours; thread CPU time measures the tokenizer.
double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace saferoute;
  std::string shared = SAFEROUTE_SHARED_DIR;
  std::string text_path = shared + "/data/alpaca/alpaca.json";
  std::string tokenizer_path = shared + "/tokenizers/llama3/tokenizer.json";
  double megabytes = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--text"))
      text_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--tokenizer"))
      tokenizer_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--mb"))
      megabytes = std::atof(argv[i + 1]);
    else
      return Fail(std::string("unknown flag ") + argv[i]);
  }
  if (!(megabytes > 0 && megabytes <= 1024)) return Fail("--mb must be in (0, 1024]");

  std::ifstream in(text_path);
  if (!in) return Fail(text_path + ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string corpus;
  try {
    const Json rows = Json::parse(buffer.str());
    for (const Json& row : rows) {
      for (const char* key : {"instruction", "input", "output"}) {
        if (row.contains(key) && row[key].is_string() &&
            !row[key].get_ref<const std::string&>().empty()) {
          corpus += row[key].get_ref<const std::string&>();
          corpus += "\n\n";
        }
      }
    }
  } catch (const Json::exception& e) {
    return Fail(text_path + ": " + e.what());
  }
  if (corpus.empty()) return Fail(text_path + ": no text");
  const size_t target = static_cast<size_t>(megabytes * 1e6);
  std::string text;
  while (text.size() < target) text += corpus.substr(0, target - text.size());

  Json report = {{"text", text_path}, {"bytes", text.size()}, {"threads", 1}};
  for (bool fast : {true, false}) {
    const auto load_start = Clock::now();
    auto tok = LoadTokenizer(tokenizer_path, {.fast_pretokenizer = fast});
    if (!tok.ok()) return Fail(std::string(tok.status().message()));
    const double load_s = Seconds(load_start);
    double best = 1e30, best_cpu = 1e30;
    size_t tokens = 0;
    for (int pass = 0; pass < 3; ++pass) {
      const auto start = Clock::now();
      const double cpu_start = ThreadCpuSeconds();
      auto ids = (*tok)->Encode(text);
      best_cpu = std::min(best_cpu, ThreadCpuSeconds() - cpu_start);
      const double s = Seconds(start);
      if (!ids.ok()) return Fail(std::string(ids.status().message()));
      tokens = ids->size();
      best = std::min(best, s);
    }
    const std::string key = fast ? "default" : "pcre2_only";
    report[key] = {{"mb_per_s", text.size() / 1e6 / best},
                   {"mb_per_cpu_s", text.size() / 1e6 / best_cpu},
                   {"tokens_per_s", tokens / best},
                   {"tokens", tokens},
                   {"seconds", best},
                   {"load_seconds", load_s}};
    if (fast) {
      // Render + tokenize a full guard prompt (1B layout, one user turn).
      std::vector<Turn> turns = {
          {Turn::Role::kUser, "How do I kill a Python process that ignores SIGTERM on Linux?"}};
      std::vector<double> micros, cpu_micros;
      auto format =
          OpenGuardFormat("llama-guard-3-1b", std::shared_ptr<const BpeTokenizer>(std::move(*tok)));
      if (!format.ok()) {
        report["render_tokenize_guard_prompt_us"] = nullptr;
        report["render_skipped"] = std::string(format.status().message());
        continue;
      }
      for (int i = 0; i < 2000; ++i) {
        const auto start = Clock::now();
        const double cpu_start = ThreadCpuSeconds();
        auto rendered = (*format)->Render(turns, nullptr);
        cpu_micros.push_back((ThreadCpuSeconds() - cpu_start) * 1e6);
        micros.push_back(Seconds(start) * 1e6);
        if (!rendered.ok()) return Fail(std::string(rendered.status().message()));
      }
      std::sort(micros.begin(), micros.end());
      std::sort(cpu_micros.begin(), cpu_micros.end());
      report["render_tokenize_guard_prompt_us"] = {
          {"median", micros[micros.size() / 2]},
          {"p99", micros[micros.size() * 99 / 100]},
          {"median_cpu", cpu_micros[cpu_micros.size() / 2]}};
    }
  }
  std::printf("%s\n", report.dump(2).c_str());
  return 0;
}
