// router_bench: router inference latency and the paper's BNN training speed.
//
//   router_bench [--dim 2048] [--hidden 512] [--rows 100000] [--epochs 2] [--skip-train]
//
// Inference: one example at a time through Router::Score (the service's
// per-request path) and per example in ScoreBatch batches of 256.
// Training: the paper's Bayesian MLP (batch 512, AdamW, class-balanced
// batches, 10% validation) on synthetic features [rows, dim]; a few epochs are
// timed and extrapolated linearly to 100 and 1000 epochs (every epoch does the
// same work: rows/512 steps plus one validation pass).
// The machine's GEMM peak is measured in the same run, before and after
// training (oneDNN's own multi-threaded sgemm on the first layer's shape,
// best of 20): the training's share of it is comparable across runs on this
// noisy, shared machine, where absolute times drift by +-15%.
// Prints one JSON object on stdout; progress on stderr.
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/gemm.h"
#include "nlohmann/json.hpp"
#include "router/network.h"
#include "router/random.h"
#include "router/router_file.h"
#include "router/train.h"

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}
// CPU seconds of the whole process (all threads). On a shared, oversubscribed
// machine wall time overstates the cost; CPU time / threads is what an idle
// machine with the same cores would need (at best).
double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Args {
  int dim = 2048, hidden = 512, epochs = 2;
  long rows = 100000;
  bool skip_train = false;
};

bool ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (flag == "--skip-train") {
      args->skip_train = true;
    } else if ((flag == "--dim" || flag == "--hidden" || flag == "--rows" || flag == "--epochs") &&
               (v = value()) != nullptr) {
      const long x = std::strtol(v, nullptr, 10);
      if (x <= 0) return false;
      if (flag == "--dim") args->dim = static_cast<int>(x);
      if (flag == "--hidden") args->hidden = static_cast<int>(x);
      if (flag == "--rows") args->rows = x;
      if (flag == "--epochs") args->epochs = static_cast<int>(x);
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace saferoute;
  Args args;
  if (!ParseArgs(argc, argv, &args)) {
    std::fprintf(
        stderr,
        "usage: router_bench [--dim N] [--hidden N] [--rows N] [--epochs N] [--skip-train]\n");
    return 2;
  }
  nlohmann::json out = {
      {"threads", omp_get_max_threads()}, {"dim", args.dim}, {"hidden", args.hidden}};

  // Inference through the public Router API.
  {
    auto net = std::make_unique<RouterNetwork>(RouterType::kBayesianMlp, args.dim, args.hidden);
    net->Initialize(1);
    RouterInfo info;
    info.fingerprint = "bench";
    std::unique_ptr<Router> router = MakeRouter(std::move(net), info);
    const int n = 1024;
    std::vector<float> x(static_cast<size_t>(n) * args.dim);
    FillNormal(7, x.data(), x.size());
    float sink = 0;
    for (int i = 0; i < 50; ++i)
      sink += router->Score(std::span(x).subspan(static_cast<size_t>(i) * args.dim, args.dim));
    const int reps = 2000;
    double cpu_start = CpuSeconds();
    auto start = Clock::now();
    for (int i = 0; i < reps; ++i) {
      sink += router->Score(std::span(x).subspan(static_cast<size_t>(i % n) * args.dim, args.dim));
    }
    const double single_ms = Seconds(start) * 1e3 / reps;
    const double single_cpu_ms = (CpuSeconds() - cpu_start) * 1e3 / reps;
    std::vector<float> scores(256);
    router->ScoreBatch(std::span(x).first(256 * static_cast<size_t>(args.dim)), scores);
    start = Clock::now();
    cpu_start = CpuSeconds();
    const int batch_reps = 20;
    for (int r = 0; r < batch_reps; ++r) {
      for (int b = 0; b < n; b += 256) {
        router->ScoreBatch(std::span(x).subspan(static_cast<size_t>(b) * args.dim,
                                                256 * static_cast<size_t>(args.dim)),
                           scores);
        sink += scores[0];
      }
    }
    const double batch_ms = Seconds(start) * 1e3 / (batch_reps * n);
    const double batch_cpu_ms = (CpuSeconds() - cpu_start) * 1e3 / (batch_reps * n);
    out["inference"] = {{"router", "bnn (posterior mean)"},
                        {"score_one_ms", single_ms},
                        {"score_one_cpu_ms", single_cpu_ms},
                        {"score_batch256_ms_per_example", batch_ms},
                        {"score_batch256_cpu_ms_per_example", batch_cpu_ms},
                        {"goal_ms", 0.1},
                        {"checksum", sink}};
    std::fprintf(stderr,
                 "inference: %.4f ms/example one at a time (%.4f CPU ms), %.4f ms/example in "
                 "batches of 256 (%.4f CPU ms)\n",
                 single_ms, single_cpu_ms, batch_ms, batch_cpu_ms);
  }

  if (!args.skip_train) {
    // Synthetic features with a learnable rule (t = 1 for ~10% of rows).
    const size_t total = static_cast<size_t>(args.rows) * args.dim;
    std::vector<float> features(total);
    FillNormal(11, features.data(), total);
    std::vector<float> direction(args.dim);
    FillNormal(12, direction.data(), args.dim);
    std::vector<uint8_t> targets(args.rows);
    for (long i = 0; i < args.rows; ++i) {
      double projection = 0;
      for (int j = 0; j < args.dim; ++j) projection += features[i * args.dim + j] * direction[j];
      targets[i] = projection / std::sqrt(static_cast<double>(args.dim)) > 1.28 ? 1 : 0;
    }
    TrainOptions options;  // paper settings: bnn, hidden 512, batch 512, lr 1e-3, KL 0.01
    options.hidden_dim = args.hidden;
    options.epochs = args.epochs;
    auto probe_peak = [&] {
      const int threads = omp_get_max_threads();
      return std::max(cpu::LibrarySgemmGflops(512, args.dim, args.hidden, threads, 20),
                      cpu::LibrarySgemmGflops(512, args.hidden, args.hidden, threads, 20));
    };
    const double peak_before = probe_peak();
    std::vector<double> epoch_seconds, epoch_cpu_seconds;
    double cpu_mark = CpuSeconds();
    auto start = Clock::now();
    auto trained = TrainRouter(features, args.dim, targets, options, [&](const EpochReport& r) {
      epoch_seconds.push_back(r.seconds);
      // Includes the setup before epoch 1 (split, checks): small next to an epoch.
      epoch_cpu_seconds.push_back(CpuSeconds() - cpu_mark);
      cpu_mark = CpuSeconds();
      std::fprintf(stderr, "epoch %d: %.2fs  loss %.4f  val_auprc %.4f\n", r.epoch, r.seconds,
                   r.train_loss, r.val.auprc);
    });
    const double total_s = Seconds(start);
    if (!trained.ok()) {
      std::fprintf(stderr, "training failed: %s\n",
                   std::string(trained.status().message()).c_str());
      return 1;
    }
    // The first epoch includes page faults of fresh buffers; extrapolate from
    // the later ones when there are any.
    auto later_mean = [](const std::vector<double>& v) {
      if (v.size() == 1) return v.front();
      double sum = 0;
      for (size_t e = 1; e < v.size(); ++e) sum += v[e];
      return sum / static_cast<double>(v.size() - 1);
    };
    const double per_epoch = later_mean(epoch_seconds);
    // Idle-machine estimate: CPU time spread over the threads.
    const double per_epoch_idle = later_mean(epoch_cpu_seconds) / omp_get_max_threads();
    const double peak_after = probe_peak();
    const long steps = (static_cast<long>(trained->summary.train_examples) + 511) / 512;
    // Multiply-adds of the products in one epoch: per training example the
    // forward pass (D*H + H*H + H), the weight gradients (the same) and the
    // input gradients of layers 2 and 3 (H*H + H); per validation example
    // one forward pass.
    const double d = args.dim, h = args.hidden;
    const double forward = d * h + h * h + h;
    const double gemm_gflop =
        2.0 *
        (static_cast<double>(trained->summary.train_examples) * (2 * forward + h * h + h) +
         static_cast<double>(trained->summary.val_examples) * forward) /
        1e9;
    const double peak = std::max(peak_before, peak_after);
    out["training"] = {{"router", "bnn"},
                       {"rows", args.rows},
                       {"train_rows", trained->summary.train_examples},
                       {"steps_per_epoch", steps},
                       {"epochs_measured", args.epochs},
                       {"epoch_seconds", epoch_seconds},
                       {"total_seconds_including_setup", total_s},
                       {"seconds_per_epoch", per_epoch},
                       {"ms_per_step", per_epoch * 1e3 / steps},
                       {"extrapolated_100_epochs_minutes", per_epoch * 100 / 60},
                       {"extrapolated_1000_epochs_minutes", per_epoch * 1000 / 60},
                       {"epoch_cpu_seconds", epoch_cpu_seconds},
                       {"idle_estimate_seconds_per_epoch", per_epoch_idle},
                       {"idle_estimate_100_epochs_minutes", per_epoch_idle * 100 / 60},
                       {"goal_100_epochs_minutes", 10},
                       {"gemm_gflop_per_epoch", gemm_gflop},
                       {"sgemm_peak_gflops_before", peak_before},
                       {"sgemm_peak_gflops_after", peak_after},
                       {"gemm_gflops_achieved", gemm_gflop / per_epoch},
                       {"percent_of_sgemm_peak", 100.0 * gemm_gflop / per_epoch / peak},
                       {"epoch_seconds_at_peak", gemm_gflop / peak},
                       {"last_val_auprc", trained->summary.last.val.auprc}};
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
