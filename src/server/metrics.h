// A small Prometheus metrics registry with a hand-written text exposition
// (format 0.0.4): # HELP / # TYPE per family, escaped label values, histograms
// as cumulative _bucket{le=...} series ending at le="+Inf", plus _sum/_count.
//
// Families are declared once (Add*) and then updated by name with label
// values in the declared label order. Thread-safe: one mutex; updates are a
// map lookup and an add, far below the cost of a guard call.
#ifndef SAFEROUTE_SERVER_METRICS_H_
#define SAFEROUTE_SERVER_METRICS_H_

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace saferoute::server {

using LabelValues = std::vector<std::string>;

class MetricsRegistry {
 public:
  // Declaring a name twice, or a name/label that is not a valid Prometheus
  // identifier, is a programming error (SR_CHECK).
  void AddCounter(std::string name, std::string help, std::vector<std::string> labels = {});
  void AddGauge(std::string name, std::string help, std::vector<std::string> labels = {});
  // A gauge read at scrape time (queue depth, circuit state).
  void AddCallbackGauge(std::string name, std::string help, std::function<double()> read);
  // A labelled family read at scrape time, typed counter or gauge (e.g. the
  // remote guard's own counters). `read` runs under the registry's lock and
  // must not call back into the registry.
  using SeriesList = std::vector<std::pair<LabelValues, double>>;
  void AddCallbackFamily(std::string name, std::string help, bool is_counter,
                         std::vector<std::string> labels, std::function<SeriesList()> read);
  // `upper_bounds` strictly increasing, without +Inf (added implicitly).
  void AddHistogram(std::string name, std::string help, std::vector<double> upper_bounds,
                    std::vector<std::string> labels = {});

  void Increment(absl::string_view name, const LabelValues& labels = {}, double by = 1);
  void Set(absl::string_view name, const LabelValues& labels, double value);
  void Observe(absl::string_view name, const LabelValues& labels, double value);

  // Current value of a counter/gauge series (0 if never touched); for tests
  // (nothing in the service reads metrics back as state).
  double Value(absl::string_view name, const LabelValues& labels = {}) const;
  // Number of observations of a histogram series.
  uint64_t Count(absl::string_view name, const LabelValues& labels = {}) const;

  // Text exposition format, families in declaration order.
  std::string Render() const;

 private:
  enum class Kind { kCounter, kGauge, kCallbackGauge, kCallbackFamily, kHistogram };
  struct HistogramSeries {
    std::vector<uint64_t> bucket_counts;  // per finite bound, non-cumulative
    uint64_t count = 0;
    double sum = 0;
  };
  struct Family {
    std::string name, help;
    Kind kind;
    std::vector<std::string> label_names;
    std::vector<double> upper_bounds;
    std::function<double()> read;
    std::function<SeriesList()> read_family;
    bool callback_is_counter = false;
    std::map<LabelValues, double> values;
    std::map<LabelValues, HistogramSeries> histograms;
  };
  void AddFamily(Family family);
  Family& FindLocked(absl::string_view name, Kind kind, const LabelValues& labels);
  const Family* FindConstLocked(absl::string_view name) const;

  mutable std::mutex mu_;
  std::vector<Family> families_;
};

// Escaping rules of the text format, exposed for tests.
std::string EscapeLabelValue(absl::string_view value);  // \\, \", \n
std::string EscapeHelp(absl::string_view help);         // \\, \n
std::string FormatSampleValue(double value);            // +Inf, -Inf, NaN, shortest round-trip

}  // namespace saferoute::server

#endif  // SAFEROUTE_SERVER_METRICS_H_
