#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_split.h"
#include "eval/labels.h"
#include "router/metrics.h"
#include "util/status.h"

namespace saferoute::eval {
namespace {

enum class Cost { kSmallOnly, kLargeOnly, kBoth, kRouted };

constexpr char kOracleCostNote[] =
    "Oracle: large% is the share of hard inputs (t=1) whose verdict it takes from the large "
    "guard, but its latency and FLOPs count both guards on every input: t (large right, small "
    "wrong) is known only after both guards ran and the gold label is read, so the oracle is an "
    "accuracy ceiling, not a routing anyone can deploy at that share.";

// Everything per example that every method needs, computed once.
struct Columns {
  std::vector<uint8_t> gold, small_pred, large_pred, t;
  std::vector<double> small_latency, large_latency, small_flops, large_flops;
  double small_latency_total = 0, small_flops_total = 0;
  bool have_flops = false;
};

Columns MakeColumns(const EvalInputs& in) {
  const size_t n = in.examples.size();
  SR_CHECK(in.small.size() == n && in.large.size() == n);
  Columns c;
  c.have_flops = in.small_params.has_value() && in.large_params.has_value();
  for (size_t i = 0; i < n; ++i) {
    const bool gold = in.examples[i].unsafe;
    const bool sp = PredictUnsafe(in.small[i].p_unsafe);
    const bool lp = PredictUnsafe(in.large[i].p_unsafe);
    c.gold.push_back(gold);
    c.small_pred.push_back(sp);
    c.large_pred.push_back(lp);
    c.t.push_back(lp == gold && sp != gold);  // Eq. 1
    c.small_latency.push_back(in.small[i].latency_ms);
    c.large_latency.push_back(in.large[i].latency_ms);
    c.small_latency_total += in.small[i].latency_ms;
    if (c.have_flops) {
      // A forward pass costs about 2 * params FLOPs per token.
      c.small_flops.push_back(2.0 * *in.small_params * static_cast<double>(in.small[i].n_tokens));
      c.large_flops.push_back(2.0 * *in.large_params * static_cast<double>(in.large[i].n_tokens));
      c.small_flops_total += c.small_flops.back();
    }
  }
  return c;
}

std::optional<double> RelativeCost(const std::vector<double>& small,
                                   const std::vector<double>& large, double small_total,
                                   const std::vector<uint8_t>& route, Cost cost) {
  if (!(small_total > 0)) return std::nullopt;
  double total = 0;
  for (size_t i = 0; i < small.size(); ++i) {
    switch (cost) {
      case Cost::kSmallOnly:
        total += small[i];
        break;
      case Cost::kLargeOnly:
        total += large[i];
        break;
      case Cost::kBoth:
        total += small[i] + large[i];
        break;
      // The small guard always runs (its feature drives the routing).
      case Cost::kRouted:
        total += small[i] + (route[i] ? large[i] : 0.0);
        break;
    }
  }
  return total / small_total;
}

MethodResult Evaluate(const Columns& c, std::string key, std::string label,
                      const std::vector<uint8_t>& route, Cost cost,
                      const std::vector<double>* routing_scores) {
  MethodResult m;
  m.key = std::move(key);
  m.label = std::move(label);
  const size_t n = c.gold.size();
  int64_t routed = 0;
  for (size_t i = 0; i < n; ++i) {
    const bool final_pred =
        cost == Cost::kLargeOnly ? c.large_pred[i] : (route[i] ? c.large_pred[i] : c.small_pred[i]);
    m.safety.Add(final_pred, c.gold[i]);
    m.routing.Add(route[i] != 0, c.t[i] != 0);
    routed += route[i] != 0;
  }
  m.large_share = n == 0 ? 0.0 : static_cast<double>(routed) / n;
  // The share counts verdicts taken from the large guard (the oracle's is the
  // share of t = 1, as the paper's 5.09%); its cost still includes both passes.
  if (cost == Cost::kLargeOnly) m.large_share = 1.0;
  if (routing_scores != nullptr) {
    // NaN when no example has t = 1 (nothing to find); reported as 0.
    const double ap = AveragePrecision(std::span<const double>(*routing_scores), c.t);
    m.routing_auprc = std::isnan(ap) ? 0.0 : ap;
  }
  m.latency_rel =
      RelativeCost(c.small_latency, c.large_latency, c.small_latency_total, route, cost);
  if (c.have_flops)
    m.flops_rel = RelativeCost(c.small_flops, c.large_flops, c.small_flops_total, route, cost);
  return m;
}

// Route iff score > threshold.
std::vector<uint8_t> Threshold(const std::vector<double>& scores, double threshold) {
  std::vector<uint8_t> route(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) route[i] = scores[i] > threshold;
  return route;
}

std::vector<double> EntropyOf(const std::vector<double>& p) {
  std::vector<double> h(p.size());
  for (size_t i = 0; i < p.size(); ++i) h[i] = BinaryEntropyBits(p[i]);
  return h;
}

// `text` broken at spaces into lines of at most `width` characters (longer
// words stay whole); lines after the first start with `indent`.
std::string WrapWords(std::string_view text, size_t width, std::string_view indent) {
  std::string out, line;
  for (absl::string_view word :
       absl::StrSplit(absl::string_view(text.data(), text.size()), ' ', absl::SkipEmpty())) {
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      absl::StrAppend(&out, line, "\n");
      line = std::string(indent);
    }
    if (!line.empty() && line != indent) line += ' ';
    line.append(word.data(), word.size());
  }
  if (!line.empty()) absl::StrAppend(&out, line, "\n");
  return out;
}

// Records the requested share on `m`; when the realised share misses it by
// more than kShareTolerance, marks `m` and adds a warning saying why.
void CheckTargetShare(MethodResult& m, double target, const std::string& why, EvalReport& report) {
  m.target_share = target;
  m.missed_target_share = std::abs(m.large_share - target) > kShareTolerance;
  m.settings["target_share_missed"] = m.missed_target_share;
  if (!m.missed_target_share) return;
  report.warnings.push_back(absl::StrFormat(
      "%s sent %.1f%% of the inputs to the large guard, not the requested %.0f%% (more than "
      "%.0f points off): %s",
      m.label, 100 * m.large_share, 100 * target, 100 * kShareTolerance, why));
}

// Why "route iff score > ε" with ε from the router's calibration table does
// not send the requested share of these inputs.
std::string RouterShareMissReason(const std::vector<double>& scores, double epsilon) {
  const auto above =
      std::count_if(scores.begin(), scores.end(), [&](double s) { return s > epsilon; });
  const auto [lo, hi] = std::minmax_element(scores.begin(), scores.end());
  return absl::StrFormat(
      "its epsilon %.4g is the router file's calibrated threshold for that share, and %d of the "
      "%d router scores of this data lie above it (they range from %.4g to %.4g); these inputs "
      "are not distributed like the router's calibration set",
      epsilon, above, scores.size(), scores.empty() ? 0.0 : *lo, scores.empty() ? 0.0 : *hi);
}

}  // namespace

const MethodResult* EvalReport::Find(const std::string& key) const {
  for (const MethodResult& m : methods) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

std::vector<CurvePoint> TradeOffCurve(const std::vector<double>& scores,
                                      const std::vector<uint8_t>& small_pred,
                                      const std::vector<uint8_t>& large_pred,
                                      const std::vector<uint8_t>& gold, size_t max_points) {
  const size_t n = scores.size();
  SR_CHECK(small_pred.size() == n && large_pred.size() == n && gold.size() == n && max_points >= 2);
  std::vector<CurvePoint> all;
  if (n == 0) return all;
  Confusion c = Count(small_pred, gold);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  auto remove = [&](bool pred, bool g) {
    if (pred) {
      g ? --c.tp : --c.fp;
    } else {
      g ? --c.fn : --c.tn;
    }
  };
  all.push_back({scores[order[0]], 0.0, c.f1()});  // ε = max: nothing routed
  size_t routed = 0;
  for (size_t k = 0; k < n;) {
    size_t end = k;
    while (end < n && scores[order[end]] == scores[order[k]]) {
      const size_t i = order[end];
      remove(small_pred[i] != 0, gold[i] != 0);
      c.Add(large_pred[i] != 0, gold[i] != 0);
      ++routed;
      ++end;
    }
    // Everything scored >= this value is routed: any ε in [next value, value)
    // does that; report the next lower value (or value - 1 after the last).
    const double epsilon = end < n ? scores[order[end]] : scores[order[k]] - 1.0;
    all.push_back({epsilon, static_cast<double>(routed) / n, c.f1()});
    k = end;
  }
  if (all.size() <= max_points) return all;
  // Thin evenly in share: keep the first point at or past each grid step.
  std::vector<CurvePoint> thinned;
  const size_t steps = max_points - 1;
  size_t next_step = 0;
  for (size_t p = 0; p < all.size(); ++p) {
    const bool last = p + 1 == all.size();
    if (last || all[p].large_share * steps >= static_cast<double>(next_step)) {
      thinned.push_back(all[p]);
      while (static_cast<double>(next_step) <= all[p].large_share * steps) ++next_step;
    }
  }
  return thinned;
}

EvalReport RunEvaluation(const EvalInputs& in) {
  const Columns c = MakeColumns(in);
  const size_t n = c.gold.size();
  EvalReport report;
  report.n = static_cast<int64_t>(n);
  report.n_unsafe = std::count(c.gold.begin(), c.gold.end(), 1);
  report.n_hard = std::count(c.t.begin(), c.t.end(), 1);
  const std::vector<uint8_t> none(n, 0), all(n, 1);

  report.methods.push_back(Evaluate(c, "small", "Small only", none, Cost::kSmallOnly, nullptr));
  report.methods.push_back(Evaluate(c, "large", "Large only", all, Cost::kLargeOnly, nullptr));

  auto add_random = [&](const std::string& key, double share) {
    MethodResult m = Evaluate(c, key, absl::StrFormat("Random %.0f%%", 100 * share),
                              RandomRouting(n, share, in.seed), Cost::kRouted, nullptr);
    m.settings["share"] = share;
    m.settings["seed"] = in.seed;
    CheckTargetShare(m, share,
                     absl::StrFormat("each input is drawn with probability %.2f (seed %d), so on "
                                     "n = %d inputs the realised share varies by about %.1f points",
                                     share, in.seed, n,
                                     100 * std::sqrt(share * (1 - share) / std::max<size_t>(n, 1))),
                     report);
    // One draw is noisy on small sets: also the spread of safety F1 over
    // seeds seed..seed+4 (the row itself is seed's draw).
    constexpr int kSeeds = 5;
    std::vector<double> f1s = {m.safety.f1()};
    for (int s = 1; s < kSeeds; ++s) {
      f1s.push_back(
          Evaluate(c, key, "", RandomRouting(n, share, in.seed + s), Cost::kRouted, nullptr)
              .safety.f1());
    }
    const double mean = std::accumulate(f1s.begin(), f1s.end(), 0.0) / kSeeds;
    double var = 0;
    for (double f : f1s) var += (f - mean) * (f - mean);
    m.settings["f1_mean_over_5_seeds"] = mean;
    m.settings["f1_std_over_5_seeds"] = std::sqrt(var / (kSeeds - 1));
    report.methods.push_back(std::move(m));
  };
  add_random("random", 0.5);
  if (in.share.has_value()) add_random("random_share", *in.share);

  // Entropy baselines: route iff H(q̂) > 0.5 bit; the verdict stays the small
  // guard's uncalibrated one (calibration only moves the routing decision).
  std::vector<double> p_small(n);
  for (size_t i = 0; i < n; ++i) p_small[i] = in.small[i].p_unsafe;
  auto add_entropy = [&](const std::string& key, const std::string& label,
                         const std::vector<double>& q, nlohmann::ordered_json settings) {
    const std::vector<double> h = EntropyOf(q);
    MethodResult m =
        Evaluate(c, key, label, Threshold(h, kEntropyThresholdBits), Cost::kRouted, &h);
    m.settings = std::move(settings);
    m.settings["entropy_threshold_bits"] = kEntropyThresholdBits;
    report.methods.push_back(std::move(m));
    return h;
  };
  const std::vector<double> entropy =
      add_entropy("entropy", "Entropy", p_small, nlohmann::ordered_json::object());

  if (in.temperature.has_value()) {
    std::vector<double> q(n);
    for (size_t i = 0; i < n; ++i)
      q[i] = Sigmoid((in.small[i].logit_unsafe - in.small[i].logit_safe) / *in.temperature);
    add_entropy("entropy_ts", "Entropy + TS", q, {{"temperature", *in.temperature}});
  } else {
    report.notes.push_back(
        "entropy_ts skipped: no labelled calibration scores (--calib-data, --calib-small-scores)");
  }
  if (in.content_free.has_value()) {
    std::vector<double> q(n);
    for (size_t i = 0; i < n; ++i) q[i] = DiagonalCalibrate(p_small[i], in.content_free->p_unsafe);
    add_entropy("entropy_cc", "Entropy + CC", q,
                {{"content_free_p_unsafe", in.content_free->p_unsafe}});
  } else {
    report.notes.push_back(
        "entropy_cc skipped: the small guard's meta.json has no content_free score");
  }
  if (in.batch_mean_p_unsafe.has_value()) {
    std::vector<double> q(n);
    for (size_t i = 0; i < n; ++i) q[i] = DiagonalCalibrate(p_small[i], *in.batch_mean_p_unsafe);
    add_entropy("entropy_bc", "Entropy + BC", q,
                {{"batch_mean_p_unsafe", *in.batch_mean_p_unsafe}});
  } else {
    report.notes.push_back("entropy_bc skipped: no calibration scores (--calib-small-scores)");
  }

  if (in.router_scores.has_value()) {
    const std::vector<double>& r = *in.router_scores;
    SR_CHECK(r.size() == n);
    MethodResult m =
        Evaluate(c, "saferoute", "SafeRoute", Threshold(r, in.router_threshold), Cost::kRouted, &r);
    m.settings["epsilon"] = in.router_threshold;
    report.methods.push_back(std::move(m));
    if (in.router_share_threshold.has_value()) {
      MethodResult s = Evaluate(c, "saferoute_share",
                                absl::StrFormat("SafeRoute @%.0f%%", 100 * in.share.value_or(0)),
                                Threshold(r, *in.router_share_threshold), Cost::kRouted, &r);
      s.settings["epsilon"] = *in.router_share_threshold;
      if (in.share.has_value()) {
        s.settings["target_share"] = *in.share;
        CheckTargetShare(s, *in.share, RouterShareMissReason(r, *in.router_share_threshold),
                         report);
      }
      report.methods.push_back(std::move(s));
    }
    report.curves["saferoute"] = TradeOffCurve(r, c.small_pred, c.large_pred, c.gold);
  } else {
    report.notes.push_back("saferoute skipped: no router (--router, --features)");
  }
  report.curves["entropy"] = TradeOffCurve(entropy, c.small_pred, c.large_pred, c.gold);

  // Oracle: the large verdict exactly where t = 1; both guards run on everything.
  MethodResult oracle = Evaluate(c, "oracle", "Oracle", c.t, Cost::kBoth, nullptr);
  oracle.settings["cost"] = kOracleCostNote;
  report.methods.push_back(std::move(oracle));
  return report;
}

nlohmann::ordered_json ReportToJson(const EvalReport& report) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["n"] = report.n;
  j["n_unsafe"] = report.n_unsafe;
  j["n_hard"] = report.n_hard;
  ordered_json methods = ordered_json::object();
  auto optional = [](const std::optional<double>& v) {
    return v.has_value() ? ordered_json(*v) : ordered_json();
  };
  for (const MethodResult& m : report.methods) {
    ordered_json o;
    o["label"] = m.label;
    o["f1"] = m.safety.f1();
    o["precision"] = m.safety.precision();
    o["recall"] = m.safety.recall();
    o["large_share"] = m.large_share;
    o["routing_f1"] = m.routing.f1();
    o["routing_precision"] = m.routing.precision();
    o["routing_recall"] = m.routing.recall();
    o["routing_auprc"] = optional(m.routing_auprc);
    o["latency_rel"] = optional(m.latency_rel);
    o["flops_rel"] = optional(m.flops_rel);
    o["confusion"] = {
        {"tp", m.safety.tp}, {"fp", m.safety.fp}, {"fn", m.safety.fn}, {"tn", m.safety.tn}};
    o["settings"] = m.settings;
    methods[m.key] = std::move(o);
  }
  j["methods"] = std::move(methods);
  ordered_json curves = ordered_json::object();
  for (const auto& [name, points] : report.curves) {
    ordered_json arr = ordered_json::array();
    for (const CurvePoint& p : points) {
      arr.push_back({{"epsilon", p.epsilon}, {"large_share", p.large_share}, {"f1", p.f1}});
    }
    curves[name] = std::move(arr);
  }
  j["curves"] = std::move(curves);
  j["notes"] = report.notes;
  j["warnings"] = report.warnings;
  return j;
}

std::string FormatReportTable(const EvalReport& report) {
  std::string out = absl::StrFormat("n = %d (unsafe %d, hard t=1 %d)\n", report.n, report.n_unsafe,
                                    report.n_hard);
  out += absl::StrFormat("%-16s %6s %6s %6s %7s %8s %7s %8s %7s\n", "method", "F1", "P", "R",
                         "large%", "route F1", "AUPRC", "latency", "FLOPs");
  bool any_missed = false;
  for (const MethodResult& m : report.methods) {
    any_missed |= m.missed_target_share;
    out += absl::StrFormat("%-16s %6.4f %6.4f %6.4f %6.2f%% %8.4f %7s %8s %7s\n",
                           m.missed_target_share ? m.label + " !" : m.label, m.safety.f1(),
                           m.safety.precision(), m.safety.recall(), 100 * m.large_share,
                           m.routing.f1(),
                           m.routing_auprc ? absl::StrFormat("%.4f", *m.routing_auprc) : "-",
                           m.latency_rel ? absl::StrFormat("x%.3f", *m.latency_rel) : "-",
                           m.flops_rel ? absl::StrFormat("x%.3f", *m.flops_rel) : "-");
  }
  if (any_missed) {
    out += absl::StrFormat("! missed its requested large-guard share by more than %.0f points\n",
                           100 * kShareTolerance);
  }
  if (report.Find("oracle") != nullptr) out += WrapWords(kOracleCostNote, 100, "        ");
  for (const std::string& note : report.notes) out += "note: " + note + "\n";
  for (const std::string& warning : report.warnings) out += "warning: " + warning + "\n";
  return out;
}

}  // namespace saferoute::eval
