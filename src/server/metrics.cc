#include "server/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "util/status.h"

namespace saferoute::server {
namespace {

bool IsMetricName(absl::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

std::string LabelSet(const std::vector<std::string>& names, const LabelValues& values,
                     absl::string_view extra_name = {}, absl::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    absl::StrAppend(&out, names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    absl::StrAppend(&out, extra_name, "=\"", extra_value, "\"");
  }
  out += '}';
  return out;
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Integers print without exponent or fraction; other values round-trip.
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  // Shortest of %.15g / %.17g that reads back exactly (0.005, not 0.0050000000000000001).
  std::string shorter = absl::StrFormat("%.15g", value);
  if (std::strtod(shorter.c_str(), nullptr) == value) return shorter;
  return absl::StrFormat("%.17g", value);
}

void MetricsRegistry::AddFamily(Family family) {
  SR_CHECK(IsMetricName(family.name, /*allow_colon=*/true));
  for (const std::string& label : family.label_names) {
    SR_CHECK(IsMetricName(label, /*allow_colon=*/false) && label != "le");
  }
  std::lock_guard lock(mu_);
  for (const Family& f : families_) SR_CHECK(f.name != family.name);
  families_.push_back(std::move(family));
}

void MetricsRegistry::AddCounter(std::string name, std::string help,
                                 std::vector<std::string> labels) {
  AddFamily({.name = std::move(name),
             .help = std::move(help),
             .kind = Kind::kCounter,
             .label_names = std::move(labels)});
}

void MetricsRegistry::AddGauge(std::string name, std::string help,
                               std::vector<std::string> labels) {
  AddFamily({.name = std::move(name),
             .help = std::move(help),
             .kind = Kind::kGauge,
             .label_names = std::move(labels)});
}

void MetricsRegistry::AddCallbackGauge(std::string name, std::string help,
                                       std::function<double()> read) {
  AddFamily({.name = std::move(name),
             .help = std::move(help),
             .kind = Kind::kCallbackGauge,
             .read = std::move(read)});
}

void MetricsRegistry::AddCallbackFamily(std::string name, std::string help, bool is_counter,
                                        std::vector<std::string> labels,
                                        std::function<SeriesList()> read) {
  AddFamily({.name = std::move(name),
             .help = std::move(help),
             .kind = Kind::kCallbackFamily,
             .label_names = std::move(labels),
             .read_family = std::move(read),
             .callback_is_counter = is_counter});
}

void MetricsRegistry::AddHistogram(std::string name, std::string help,
                                   std::vector<double> upper_bounds,
                                   std::vector<std::string> labels) {
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    SR_CHECK(std::isfinite(upper_bounds[i]));
    SR_CHECK(i == 0 || upper_bounds[i] > upper_bounds[i - 1]);
  }
  AddFamily({.name = std::move(name),
             .help = std::move(help),
             .kind = Kind::kHistogram,
             .label_names = std::move(labels),
             .upper_bounds = std::move(upper_bounds)});
}

MetricsRegistry::Family& MetricsRegistry::FindLocked(absl::string_view name, Kind kind,
                                                     const LabelValues& labels) {
  for (Family& f : families_) {
    if (f.name == name) {
      // Wrong kind or label count: a programming error in the caller.
      SR_CHECK(f.kind == kind);
      SR_CHECK(f.label_names.size() == labels.size());
      return f;
    }
  }
  std::fprintf(stderr, "metrics: undeclared metric '%s'\n", std::string(name).c_str());
  SR_CHECK(false);
  std::abort();
}

const MetricsRegistry::Family* MetricsRegistry::FindConstLocked(absl::string_view name) const {
  for (const Family& f : families_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void MetricsRegistry::Increment(absl::string_view name, const LabelValues& labels, double by) {
  std::lock_guard lock(mu_);
  FindLocked(name, Kind::kCounter, labels).values[labels] += by;
}

void MetricsRegistry::Set(absl::string_view name, const LabelValues& labels, double value) {
  std::lock_guard lock(mu_);
  FindLocked(name, Kind::kGauge, labels).values[labels] = value;
}

void MetricsRegistry::Observe(absl::string_view name, const LabelValues& labels, double value) {
  std::lock_guard lock(mu_);
  Family& family = FindLocked(name, Kind::kHistogram, labels);
  HistogramSeries& series = family.histograms[labels];
  series.bucket_counts.resize(family.upper_bounds.size());
  for (size_t i = 0; i < family.upper_bounds.size(); ++i) {
    if (value <= family.upper_bounds[i]) {
      ++series.bucket_counts[i];
      break;
    }
  }
  ++series.count;
  series.sum += value;
}

double MetricsRegistry::Value(absl::string_view name, const LabelValues& labels) const {
  std::lock_guard lock(mu_);
  const Family* family = FindConstLocked(name);
  if (family == nullptr) return 0;
  if (family->kind == Kind::kCallbackGauge) return family->read();
  auto it = family->values.find(labels);
  return it == family->values.end() ? 0 : it->second;
}

uint64_t MetricsRegistry::Count(absl::string_view name, const LabelValues& labels) const {
  std::lock_guard lock(mu_);
  const Family* family = FindConstLocked(name);
  if (family == nullptr) return 0;
  auto it = family->histograms.find(labels);
  return it == family->histograms.end() ? 0 : it->second.count;
}

std::string MetricsRegistry::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const Family& f : families_) {
    const char* type =
        f.kind == Kind::kCounter || (f.kind == Kind::kCallbackFamily && f.callback_is_counter)
            ? "counter"
        : f.kind == Kind::kHistogram ? "histogram"
                                     : "gauge";
    absl::StrAppend(&out, "# HELP ", f.name, " ", EscapeHelp(f.help), "\n");
    absl::StrAppend(&out, "# TYPE ", f.name, " ", type, "\n");
    switch (f.kind) {
      case Kind::kCounter:
      case Kind::kGauge:
        // An unlabelled family shows 0 before its first update, so dashboards
        // and parsers see the series from the start.
        if (f.values.empty() && f.label_names.empty()) {
          absl::StrAppend(&out, f.name, " 0\n");
        }
        for (const auto& [labels, value] : f.values) {
          absl::StrAppend(&out, f.name, LabelSet(f.label_names, labels), " ",
                          FormatSampleValue(value), "\n");
        }
        break;
      case Kind::kCallbackGauge:
        absl::StrAppend(&out, f.name, " ", FormatSampleValue(f.read()), "\n");
        break;
      case Kind::kCallbackFamily:
        for (const auto& [labels, value] : f.read_family()) {
          SR_CHECK(labels.size() == f.label_names.size());
          absl::StrAppend(&out, f.name, LabelSet(f.label_names, labels), " ",
                          FormatSampleValue(value), "\n");
        }
        break;
      case Kind::kHistogram:
        for (const auto& [labels, series] : f.histograms) {
          uint64_t cumulative = 0;
          for (size_t i = 0; i < f.upper_bounds.size(); ++i) {
            cumulative += series.bucket_counts[i];
            absl::StrAppend(
                &out, f.name, "_bucket",
                LabelSet(f.label_names, labels, "le", FormatSampleValue(f.upper_bounds[i])), " ",
                cumulative, "\n");
          }
          absl::StrAppend(&out, f.name, "_bucket", LabelSet(f.label_names, labels, "le", "+Inf"),
                          " ", series.count, "\n");
          absl::StrAppend(&out, f.name, "_sum", LabelSet(f.label_names, labels), " ",
                          FormatSampleValue(series.sum), "\n");
          absl::StrAppend(&out, f.name, "_count", LabelSet(f.label_names, labels), " ",
                          series.count, "\n");
        }
        break;
    }
  }
  return out;
}

}  // namespace saferoute::server
