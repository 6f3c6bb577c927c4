#include "eval/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_format.h"

namespace saferoute::eval {
namespace {

constexpr double kWidth = 760, kHeight = 500;
constexpr double kLeft = 72, kRight = 200, kTop = 48, kBottom = 64;
constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;

struct Style {
  const char* key;
  const char* color;
};
// Colour-blind-safe palette (Okabe-Ito).
constexpr Style kStyles[] = {
    {"saferoute", "#0072B2"},    {"entropy", "#E69F00"},         {"small", "#555555"},
    {"large", "#000000"},        {"oracle", "#009E73"},          {"random", "#CC79A7"},
    {"random_share", "#CC79A7"}, {"entropy_ts", "#D55E00"},      {"entropy_cc", "#56B4E9"},
    {"entropy_bc", "#F0E442"},   {"saferoute_share", "#0072B2"},
};
const char* ColorOf(const std::string& key) {
  for (const Style& s : kStyles) {
    if (key == s.key) return s.color;
  }
  return "#777777";
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks.
double NiceStep(double range, int target) {
  const double raw = range / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

}  // namespace

std::string XmlEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderTradeOffSvg(const EvalReport& report, const std::string& title) {
  // y range: every plotted F1, padded, snapped to ticks.
  double lo = 1, hi = 0;
  auto see = [&](double f1) {
    lo = std::min(lo, f1);
    hi = std::max(hi, f1);
  };
  for (const auto& [name, points] : report.curves) {
    for (const CurvePoint& p : points) see(p.f1);
  }
  for (const MethodResult& m : report.methods) see(m.safety.f1());
  if (lo > hi) lo = 0, hi = 1;
  const double pad = std::max(0.02, (hi - lo) * 0.08);
  double y_step = NiceStep(std::max(hi - lo + 2 * pad, 0.05), 6);
  double y_lo = std::max(0.0, std::floor((lo - pad) / y_step) * y_step);
  double y_hi = std::min(1.0, std::ceil((hi + pad) / y_step) * y_step);
  if (y_hi <= y_lo) y_hi = y_lo + y_step;
  auto X = [](double share) { return kLeft + share * kPlotW; };
  auto Y = [&](double f1) { return kTop + (y_hi - f1) / (y_hi - y_lo) * kPlotH; };

  std::string s;
  s += absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f "
      "%.0f\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
      kWidth, kHeight, kWidth, kHeight);
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s +=
      absl::StrFormat("<text x=\"%.1f\" y=\"26\" font-size=\"16\" font-weight=\"bold\">%s</text>\n",
                      kLeft, XmlEscape(title));
  // Grid and ticks.
  for (int k = 0; k <= 10; ++k) {
    const double share = k / 10.0;
    const double x = X(share);
    s += absl::StrFormat(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n", x, kTop, x,
        kTop + kPlotH);
    if (k % 2 == 0) {
      s += absl::StrFormat(
          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
          "fill=\"#333\">%d%%</text>\n",
          x, kTop + kPlotH + 18, k * 10);
    }
  }
  for (double f1 = y_lo; f1 <= y_hi + 1e-9; f1 += y_step) {
    const double y = Y(f1);
    s += absl::StrFormat(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n", kLeft, y,
        kLeft + kPlotW, y);
    s += absl::StrFormat(
        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\" "
        "fill=\"#333\">%.*f</text>\n",
        kLeft - 8, y + 4, y_step < 0.01 ? 3 : 2, f1);
  }
  s += absl::StrFormat(
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
      "stroke=\"#333\"/>\n",
      kLeft, kTop, kPlotW, kPlotH);
  s += absl::StrFormat(
      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">share of inputs sent to "
      "the large guard"
      "</text>\n",
      kLeft + kPlotW / 2, kHeight - 18);
  s += absl::StrFormat(
      "<text transform=\"translate(20 %.1f) rotate(-90)\" font-size=\"13\" "
      "text-anchor=\"middle\">safety F1 "
      "(unsafe = positive)</text>\n",
      kTop + kPlotH / 2);

  // Curves.
  std::vector<std::pair<std::string, std::string>> legend;  // (label, colour) for lines
  for (const auto& [name, points] : report.curves) {
    if (points.empty()) continue;
    std::string path;
    for (const CurvePoint& p : points)
      path += absl::StrFormat("%.1f,%.1f ", X(p.large_share), Y(p.f1));
    s += absl::StrFormat(
        "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.2\" "
        "stroke-linejoin=\"round\"/>\n",
        path, ColorOf(name));
    legend.push_back({name == "saferoute" ? "SafeRoute (sweep \xCE\xB5)"
                      : name == "entropy" ? "Entropy (sweep threshold)"
                                          : name,
                      ColorOf(name)});
  }

  // Methods as points; labels nudged apart vertically so they never overlap.
  struct Label {
    double x, y, label_y;
    std::string text, color;
    bool left;                // text ends left of the point (near the right edge)
    double text_x0, text_x1;  // horizontal extent of the text
  };
  std::vector<Label> labels;
  for (const MethodResult& m : report.methods) {
    Label l{X(m.large_share),
            Y(m.safety.f1()),
            Y(m.safety.f1()),
            absl::StrFormat("%s %.3f", m.label, m.safety.f1()),
            ColorOf(m.key),
            false,
            0,
            0};
    const double width = 6.3 * static_cast<double>(l.text.size());  // ~11 px sans-serif
    l.left = l.x + 9 + width > kLeft + kPlotW;
    l.text_x0 = l.left ? l.x - 9 - width : l.x + 9;
    l.text_x1 = l.left ? l.x - 9 : l.x + 9 + width;
    labels.push_back(std::move(l));
  }
  // Top to bottom, push each label below any earlier label whose text it
  // would overlap, so no two labels collide.
  std::sort(labels.begin(), labels.end(), [](const Label& a, const Label& b) { return a.y < b.y; });
  constexpr double kLabelGap = 14;
  for (size_t i = 1; i < labels.size(); ++i) {
    for (bool moved = true; moved;) {
      moved = false;
      for (size_t j = 0; j < i; ++j) {
        const bool overlap_x =
            labels[i].text_x0 < labels[j].text_x1 && labels[j].text_x0 < labels[i].text_x1;
        if (overlap_x && std::abs(labels[i].label_y - labels[j].label_y) < kLabelGap) {
          labels[i].label_y = labels[j].label_y + kLabelGap;
          moved = true;
        }
      }
    }
  }
  for (const Label& l : labels) {
    s += absl::StrFormat(
        "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\" stroke=\"white\" "
        "stroke-width=\"1.5\"/>\n",
        l.x, l.y, l.color);
    const double tx = l.left ? l.text_x1 : l.text_x0;
    if (std::abs(l.label_y - l.y) > 1) {
      s += absl::StrFormat(
          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" "
          "stroke-width=\"0.8\"/>\n",
          l.x, l.y, tx, l.label_y);
    }
    // A white halo keeps labels readable over the curves.
    s += absl::StrFormat(
        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"%s\" fill=\"#222\" "
        "stroke=\"white\" "
        "stroke-width=\"3\" paint-order=\"stroke\">%s</text>\n",
        tx, l.label_y + 4, l.left ? "end" : "start", XmlEscape(l.text));
  }

  // Legend.
  double ly = kTop + 8;
  const double lx = kLeft + kPlotW + 16;
  s += absl::StrFormat(
      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" font-weight=\"bold\">n = %d</text>\n", lx, ly,
      report.n);
  ly += 20;
  for (const auto& [label, color] : legend) {
    s += absl::StrFormat(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
        "stroke-width=\"2.2\"/>\n",
        lx, ly - 4, lx + 22, ly - 4, color);
    s += absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n", lx + 28, ly,
                         XmlEscape(label));
    ly += 18;
  }
  for (const MethodResult& m : report.methods) {
    s += absl::StrFormat("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>\n", lx + 11, ly - 4,
                         ColorOf(m.key));
    s += absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n", lx + 28, ly,
                         XmlEscape(m.label));
    ly += 18;
  }
  s += "</svg>\n";
  return s;
}

}  // namespace saferoute::eval
