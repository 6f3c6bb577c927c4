#include "eval/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "absl/strings/str_format.h"

namespace saferoute::eval {
namespace {

constexpr double kWidth = 780, kHeight = 520;
constexpr double kLeft = 72, kRight = 220, kTop = 48, kBottom = 64;
constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;
constexpr double kLabelFontPx = 11;
constexpr double kMarkerRadius = 5.5;

struct Style {
  const char* key;
  const char* color;
  Marker marker;
};
// One colour and one marker per method, so every point is told apart by
// either (Okabe-Ito colours, colour-blind safe, extended with Tol's indigo and
// wine and a darkened yellow that shows on white).
constexpr Style kStyles[] = {
    {"small", "#666666", Marker::kCircle},
    {"large", "#000000", Marker::kSquare},
    {"random", "#CC79A7", Marker::kTriangleDown},
    {"random_share", "#882255", Marker::kTriangleRight},
    {"entropy", "#E69F00", Marker::kDiamond},
    {"entropy_ts", "#D55E00", Marker::kTriangleUp},
    {"entropy_cc", "#56B4E9", Marker::kPentagon},
    {"entropy_bc", "#A89000", Marker::kHexagon},
    {"saferoute", "#0072B2", Marker::kStar},
    {"saferoute_share", "#332288", Marker::kPlus},
    {"oracle", "#009E73", Marker::kCross},
};
// Methods missing from the table (none today) still get distinct styles.
constexpr const char* kFallbackColors[] = {"#44AA99", "#999933", "#AA4499", "#117733"};

struct ColorAndMarker {
  std::string color;
  Marker marker;
};
// `unknown_index` counts the methods not in kStyles seen so far.
ColorAndMarker StyleOf(const std::string& key, int& unknown_index) {
  for (const Style& s : kStyles) {
    if (key == s.key) return {s.color, s.marker};
  }
  ++unknown_index;
  constexpr int kColors = sizeof(kFallbackColors) / sizeof(kFallbackColors[0]);
  constexpr int kMarkers = static_cast<int>(Marker::kCross) + 1;
  const int i = unknown_index - 1;
  return {kFallbackColors[i % kColors], static_cast<Marker>((i + i / kColors) % kMarkers)};
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

// Regular polygon (or star when `inner` > 0) around (x, y), first vertex up.
std::string PolygonPoints(double x, double y, int vertices, double radius, double inner,
                          double rotation = 0) {
  std::string points;
  const int n = inner > 0 ? 2 * vertices : vertices;
  for (int k = 0; k < n; ++k) {
    const double r = (inner > 0 && k % 2 == 1) ? inner : radius;
    const double angle = rotation - std::numbers::pi / 2 + 2 * std::numbers::pi * k / n;
    absl::StrAppendFormat(&points, "%.1f,%.1f ", x + r * std::cos(angle), y + r * std::sin(angle));
  }
  return points;
}

std::string MarkerSvg(Marker marker, double x, double y, const std::string& color) {
  const double r = kMarkerRadius;
  // Filled shapes get a thin white outline so overlapping points stay apart.
  auto polygon = [&](const std::string& points) {
    return absl::StrFormat(
        "<polygon points=\"%s\" fill=\"%s\" stroke=\"white\" stroke-width=\"1\"/>\n", points,
        color);
  };
  switch (marker) {
    case Marker::kCircle:
      return absl::StrFormat(
          "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" stroke=\"white\" "
          "stroke-width=\"1\"/>\n",
          x, y, r, color);
    case Marker::kSquare:
      return absl::StrFormat(
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"white\" "
          "stroke-width=\"1\"/>\n",
          x - 0.85 * r, y - 0.85 * r, 1.7 * r, 1.7 * r, color);
    case Marker::kDiamond:
      return polygon(PolygonPoints(x, y, 4, 1.15 * r, 0));
    case Marker::kTriangleUp:
      return polygon(PolygonPoints(x, y + 1, 3, 1.2 * r, 0));
    case Marker::kTriangleDown:
      return polygon(PolygonPoints(x, y - 1, 3, 1.2 * r, 0, std::numbers::pi));
    case Marker::kTriangleRight:
      return polygon(PolygonPoints(x - 1, y, 3, 1.2 * r, 0, std::numbers::pi / 2));
    case Marker::kPentagon:
      return polygon(PolygonPoints(x, y, 5, 1.05 * r, 0));
    case Marker::kHexagon:
      return polygon(PolygonPoints(x, y, 6, 1.05 * r, 0));
    case Marker::kStar:
      return polygon(PolygonPoints(x, y, 5, 1.35 * r, 0.55 * r));
    case Marker::kPlus:
      return absl::StrFormat(
          "<path d=\"M%.1f %.1fH%.1fM%.1f %.1fV%.1f\" stroke=\"%s\" stroke-width=\"2.6\" "
          "fill=\"none\"/>\n",
          x - r, y, x + r, x, y - r, y + r, color);
    case Marker::kCross:
      return absl::StrFormat(
          "<path d=\"M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f\" stroke=\"%s\" "
          "stroke-width=\"2.6\" fill=\"none\"/>\n",
          x - 0.8 * r, y - 0.8 * r, x + 0.8 * r, y + 0.8 * r, x - 0.8 * r, y + 0.8 * r, x + 0.8 * r,
          y - 0.8 * r, color);
  }
  return "";
}

// Label text box for a label whose vertical centre is `cy`, starting at x0
// (left) or ending at x1 (`left`).
PlotLayout::Box TextBox(double anchor_x, double cy, double width, bool left) {
  const double half_height = kLabelFontPx * 0.62;  // cap height + descender, with margin
  return left ? PlotLayout::Box{anchor_x - width, cy - half_height, anchor_x, cy + half_height}
              : PlotLayout::Box{anchor_x, cy - half_height, anchor_x + width, cy + half_height};
}

bool Inside(const PlotLayout::Box& inner, const PlotLayout::Box& outer) {
  return inner.x0 >= outer.x0 && inner.x1 <= outer.x1 && inner.y0 >= outer.y0 &&
         inner.y1 <= outer.y1;
}

struct Candidate {
  PlotLayout::Box box;
  bool left;
  bool leader;
};

// Where a label may go, nearest first: beside, above, below and diagonal to
// its marker, then anywhere on a grid around it, by distance (joined to the
// marker by a leader line).
std::vector<Candidate> LabelCandidates(double x, double y, double width) {
  const double gap = kMarkerRadius + 4;
  const double half_height = kLabelFontPx * 0.62;
  std::vector<Candidate> out = {
      {TextBox(x + gap, y, width, false), false, false},
      {TextBox(x - gap, y, width, true), true, false},
      {TextBox(x - width / 2, y - gap - half_height, width, false), false, false},
      {TextBox(x - width / 2, y + gap + half_height, width, false), false, false},
      {TextBox(x + gap - 2, y - gap, width, false), false, false},
      {TextBox(x + gap - 2, y + gap, width, false), false, false},
      {TextBox(x - gap + 2, y - gap, width, true), true, false},
      {TextBox(x - gap + 2, y + gap, width, true), true, false},
  };
  std::vector<std::pair<double, Candidate>> grid;  // (distance, candidate)
  for (int row = -60; row <= 60; ++row) {
    for (int column = 0; column <= 8; ++column) {
      const double dx = gap + 6 + 16.0 * column, dy = 7.0 * row;
      if (row == 0 && column == 0) continue;  // the plain beside spots above
      const double distance = std::hypot(dx, dy);
      grid.push_back({distance, {TextBox(x + dx, y + dy, width, false), false, true}});
      grid.push_back({distance, {TextBox(x - dx, y + dy, width, true), true, true}});
    }
  }
  std::stable_sort(grid.begin(), grid.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [distance, candidate] : grid) out.push_back(candidate);
  return out;
}

struct Segment {
  double x0, y0, x1, y1;
};

// The leader line of a label at `c` for a marker at (x, y): from the marker
// to the middle of the text's near edge.
Segment LeaderOf(const Candidate& c, double x, double y) {
  return {x, y, c.left ? c.box.x1 : c.box.x0, (c.box.y0 + c.box.y1) / 2};
}

// Whether segment `s` passes through the inside of `box` (Liang-Barsky clipping).
bool Crosses(const Segment& s, const PlotLayout::Box& box) {
  double t0 = 0, t1 = 1;
  const double dx = s.x1 - s.x0, dy = s.y1 - s.y0;
  const double p[4] = {-dx, dx, -dy, dy};
  const double q[4] = {s.x0 - box.x0, box.x1 - s.x0, s.y0 - box.y0, box.y1 - s.y0};
  for (int k = 0; k < 4; ++k) {
    if (p[k] == 0) {
      if (q[k] <= 0) return false;  // parallel and outside
    } else {
      const double t = q[k] / p[k];
      if (p[k] < 0) {
        t0 = std::max(t0, t);
      } else {
        t1 = std::min(t1, t);
      }
    }
  }
  return t1 - t0 > 1e-9;
}

// Points of the curves (in pixels) every ~2 px along each segment, so a
// label placement can count how much of the curves it would hide.
std::vector<std::pair<double, double>> CurveSamples(const EvalReport& report,
                                                    const PlotLayout& layout) {
  std::vector<std::pair<double, double>> samples;
  const PlotLayout::Box& a = layout.plot_area;
  auto px = [&](const CurvePoint& p) {
    return std::pair<double, double>{
        a.x0 + p.large_share * (a.x1 - a.x0),
        a.y0 + (layout.y_hi - p.f1) / (layout.y_hi - layout.y_lo) * (a.y1 - a.y0)};
  };
  for (const auto& [name, points] : report.curves) {
    for (size_t k = 1; k < points.size(); ++k) {
      const auto [x0, y0] = px(points[k - 1]);
      const auto [x1, y1] = px(points[k]);
      const int steps = std::max(1, static_cast<int>(std::hypot(x1 - x0, y1 - y0) / 2));
      for (int s = 0; s <= steps; ++s) {
        const double t = static_cast<double>(s) / steps;
        samples.push_back({x0 + t * (x1 - x0), y0 + t * (y1 - y0)});
      }
    }
  }
  return samples;
}

// Places every label in `order`, each at the cheapest free candidate.
// Returns the points that found no free spot (they get their nearest one).
std::vector<size_t> PlaceLabelsInOrder(const std::vector<size_t>& order,
                                       const std::vector<std::pair<double, double>>& samples,
                                       PlotLayout& layout) {
  std::vector<size_t> failed;
  std::vector<PlotLayout::Box> placed;  // markers and labels so far
  std::vector<Segment> leaders;         // leader lines so far
  for (const PlotLayout::Point& p : layout.points) placed.push_back(p.marker_box);
  for (size_t i : order) {
    PlotLayout::Point& p = layout.points[i];
    const double width = EstimateTextWidth(p.label, kLabelFontPx);
    const std::vector<Candidate> candidates = LabelCandidates(p.x, p.y, width);
    double best_cost = std::numeric_limits<double>::infinity();
    const Candidate* best = nullptr;
    // Costs grow with the index, so past the best cost nothing can beat it.
    for (size_t c = 0; c < candidates.size() && static_cast<double>(c) < best_cost; ++c) {
      const Candidate& candidate = candidates[c];
      const PlotLayout::Box& box = candidate.box;
      if (!Inside(box, layout.plot_area)) continue;
      if (std::any_of(placed.begin(), placed.end(),
                      [&](const PlotLayout::Box& other) { return box.Overlaps(other); }) ||
          std::any_of(leaders.begin(), leaders.end(),
                      [&](const Segment& line) { return Crosses(line, box); })) {
        continue;
      }
      if (candidate.leader) {
        // Its line may cross no other label and no marker other than those
        // drawn over its own point.
        const Segment line = LeaderOf(candidate, p.x, p.y);
        const bool blocked =
            std::any_of(placed.begin(), placed.end(), [&](const PlotLayout::Box& other) {
              const bool at_start =
                  other.x0 <= p.x && p.x <= other.x1 && other.y0 <= p.y && p.y <= other.y1;
              return !at_start && Crosses(line, other);
            });
        if (blocked) continue;
      }
      int hidden = 0;
      for (const auto& [sx, sy] : samples) {
        hidden += sx > box.x0 && sx < box.x1 && sy > box.y0 && sy < box.y1;
      }
      // Nearer is better; hiding 8 px of curve costs as much as moving a
      // label one spot further out.
      const double cost = static_cast<double>(c) + 0.25 * hidden;
      if (cost < best_cost) {
        best_cost = cost;
        best = &candidate;
      }
    }
    if (best == nullptr) {
      failed.push_back(i);
      best = &candidates.front();
    }
    p.label_box = best->box;
    p.label_left = best->left;
    p.leader = best->leader;
    placed.push_back(p.label_box);
    if (p.leader) leaders.push_back(LeaderOf(*best, p.x, p.y));
  }
  return failed;
}

// Greedy placement, top to bottom (the crowded high-F1 corner first). A label
// that finds no free spot (boxed in by labels placed before it) moves to the
// front and the placement starts over, at most once per label.
void PlaceLabels(const EvalReport& report, PlotLayout& layout) {
  const auto samples = CurveSamples(report, layout);
  std::vector<size_t> order(layout.points.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return layout.points[a].y < layout.points[b].y; });
  for (size_t attempt = 0; attempt <= order.size(); ++attempt) {
    const std::vector<size_t> failed = PlaceLabelsInOrder(order, samples, layout);
    if (failed.empty()) return;
    const auto it = std::find(order.begin(), order.end(), failed.front());
    std::rotate(order.begin(), it, it + 1);
  }
}

// Methods with the same result (e.g. every calibrated variant that routes
// nothing sits on the small guard's point) would hide each other's markers:
// each group of coincident markers is set on a small ring around the point.
void SpreadCoincidentMarkers(std::vector<PlotLayout::Point>& points) {
  std::vector<bool> done(points.size(), false);
  for (size_t i = 0; i < points.size(); ++i) {
    if (done[i]) continue;
    std::vector<size_t> group = {i};
    for (size_t j = i + 1; j < points.size(); ++j) {
      if (!done[j] && std::hypot(points[j].x - points[i].x, points[j].y - points[i].y) < 1.0) {
        group.push_back(j);
      }
    }
    for (size_t j : group) done[j] = true;
    if (group.size() < 2) continue;
    const double cx = points[i].x, cy = points[i].y, ring = kMarkerRadius + 1.5;
    for (size_t k = 0; k < group.size(); ++k) {
      const double angle = -std::numbers::pi / 2 + 2 * std::numbers::pi * k / group.size();
      points[group[k]].x = cx + ring * std::cos(angle);
      points[group[k]].y = cy + ring * std::sin(angle);
    }
  }
}

std::string PointLabel(const MethodResult& m) {
  return absl::StrFormat("%s%s %.3f", m.label, m.missed_target_share ? " !" : "", m.safety.f1());
}

}  // namespace

double EstimateTextWidth(std::string_view text, double font_px) {
  // DejaVu Sans advance widths in em, grouped (see the font's hmtx table).
  double em = 0;
  for (unsigned char c : text) {
    if ((c & 0xC0) == 0x80) continue;  // UTF-8 continuation byte: counted with its lead
    if (c >= 0x80) {
      em += 0.70;  // ε and other non-ASCII letters
    } else if (std::string_view(" .,:;!'|iljI").find(static_cast<char>(c)) !=
               std::string_view::npos) {
      em += 0.33;
    } else if (std::string_view("ftr()[]-/").find(static_cast<char>(c)) != std::string_view::npos) {
      em += 0.42;
    } else if (std::string_view("mwMW%@").find(static_cast<char>(c)) != std::string_view::npos) {
      em += 1.0;
    } else if (c >= 'A' && c <= 'Z') {
      em += 0.78;
    } else {
      em += 0.65;
    }
  }
  return em * font_px;
}

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

PlotLayout LayOutTradeOffPlot(const EvalReport& report) {
  PlotLayout layout;
  layout.plot_area = {kLeft, kTop, kLeft + kPlotW, kTop + kPlotH};
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
  const double y_step = NiceStep(std::max(hi - lo + 2 * pad, 0.05), 6);
  layout.y_step = y_step;
  layout.y_lo = std::max(0.0, std::floor((lo - pad) / y_step) * y_step);
  layout.y_hi = std::min(1.0, std::ceil((hi + pad) / y_step) * y_step);
  if (layout.y_hi <= layout.y_lo) layout.y_hi = layout.y_lo + y_step;

  int unknown = 0;
  for (const MethodResult& m : report.methods) {
    PlotLayout::Point p;
    p.key = m.key;
    p.label = PointLabel(m);
    const ColorAndMarker style = StyleOf(m.key, unknown);
    p.color = style.color;
    p.marker = style.marker;
    p.x = kLeft + m.large_share * kPlotW;
    p.y = kTop + (layout.y_hi - m.safety.f1()) / (layout.y_hi - layout.y_lo) * kPlotH;
    layout.points.push_back(std::move(p));
  }
  SpreadCoincidentMarkers(layout.points);
  for (PlotLayout::Point& p : layout.points) {
    const double r = kMarkerRadius + 1.5;
    p.marker_box = {p.x - r, p.y - r, p.x + r, p.y + r};
  }
  PlaceLabels(report, layout);
  return layout;
}

namespace {

double XOf(double share) { return kLeft + share * kPlotW; }
double YOf(const PlotLayout& layout, double f1) {
  return kTop + (layout.y_hi - f1) / (layout.y_hi - layout.y_lo) * kPlotH;
}

// Grid, ticks, frame and axis titles.
std::string AxesSvg(const PlotLayout& layout) {
  std::string s;
  for (int k = 0; k <= 10; ++k) {
    const double x = XOf(k / 10.0);
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
  for (double f1 = layout.y_lo; f1 <= layout.y_hi + 1e-9; f1 += layout.y_step) {
    const double y = YOf(layout, f1);
    s += absl::StrFormat(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n", kLeft, y,
        kLeft + kPlotW, y);
    s += absl::StrFormat(
        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\" "
        "fill=\"#333\">%.*f</text>\n",
        kLeft - 8, y + 4, layout.y_step < 0.01 ? 3 : 2, f1);
  }
  s += absl::StrFormat(
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
      "stroke=\"#333\"/>\n",
      kLeft, kTop, kPlotW, kPlotH);
  s += absl::StrFormat(
      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">share of inputs sent "
      "to the large guard</text>\n",
      kLeft + kPlotW / 2, kHeight - 18);
  s += absl::StrFormat(
      "<text transform=\"translate(20 %.1f) rotate(-90)\" font-size=\"13\" "
      "text-anchor=\"middle\">safety F1 (unsafe = positive)</text>\n",
      kTop + kPlotH / 2);
  return s;
}

struct LegendLine {
  std::string label, color;
};

// The trade-off curves, each in the colour of the method whose threshold it
// sweeps; appends their legend entries to `lines`.
std::string CurvesSvg(const EvalReport& report, const PlotLayout& layout,
                      std::vector<LegendLine>& lines) {
  std::string s;
  for (const auto& [name, points] : report.curves) {
    if (points.empty()) continue;
    std::string color = "#777777";
    for (const PlotLayout::Point& p : layout.points) {
      if (p.key == name) color = p.color;
    }
    std::string path;
    for (const CurvePoint& p : points)
      absl::StrAppendFormat(&path, "%.1f,%.1f ", XOf(p.large_share), YOf(layout, p.f1));
    s += absl::StrFormat(
        "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
        "stroke-opacity=\"0.8\" stroke-linejoin=\"round\"/>\n",
        path, color);
    lines.push_back({name == "saferoute" ? "SafeRoute (sweep \xCE\xB5)"
                     : name == "entropy" ? "Entropy (sweep threshold)"
                                         : name,
                     color});
  }
  return s;
}

// Leader lines first, then markers, then labels on top (a white halo keeps
// them readable over grid and curves).
std::string PointsSvg(const PlotLayout& layout) {
  std::string s;
  for (const PlotLayout::Point& p : layout.points) {
    if (!p.leader) continue;
    const PlotLayout::Box& b = p.label_box;
    s += absl::StrFormat(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#777\" "
        "stroke-width=\"0.8\"/>\n",
        p.x, p.y, p.label_left ? b.x1 : b.x0, (b.y0 + b.y1) / 2);
  }
  for (const PlotLayout::Point& p : layout.points) s += MarkerSvg(p.marker, p.x, p.y, p.color);
  for (const PlotLayout::Point& p : layout.points) {
    const PlotLayout::Box& b = p.label_box;
    s += absl::StrFormat(
        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" text-anchor=\"%s\" fill=\"#222\" "
        "stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">%s</text>\n",
        p.label_left ? b.x1 : b.x0, (b.y0 + b.y1) / 2 + 0.36 * kLabelFontPx, kLabelFontPx,
        p.label_left ? "end" : "start", XmlEscape(p.label));
  }
  return s;
}

// Right of the plot: n, the curves, every method with its marker, and what
// '!' means when a method missed its requested share.
std::string LegendSvg(const EvalReport& report, const PlotLayout& layout,
                      const std::vector<LegendLine>& lines) {
  double ly = kTop + 8;
  const double lx = kLeft + kPlotW + 16;
  std::string s = absl::StrFormat(
      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" font-weight=\"bold\">n = %d</text>\n", lx, ly,
      report.n);
  ly += 20;
  for (const LegendLine& line : lines) {
    s += absl::StrFormat(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
        "stroke-width=\"2\"/>\n",
        lx, ly - 4, lx + 22, ly - 4, line.color);
    s += absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n", lx + 28, ly,
                         XmlEscape(line.label));
    ly += 18;
  }
  bool any_missed = false;
  for (size_t i = 0; i < layout.points.size(); ++i) {
    const PlotLayout::Point& p = layout.points[i];
    const MethodResult& m = report.methods[i];
    any_missed |= m.missed_target_share;
    s += MarkerSvg(p.marker, lx + 11, ly - 4, p.color);
    s += absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n", lx + 28, ly,
                         XmlEscape(m.missed_target_share ? m.label + " !" : m.label));
    ly += 18;
  }
  if (any_missed) {
    ly += 4;
    for (const char* text : {"! missed its requested", "  large-guard share"}) {
      s += absl::StrFormat(
          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#B00020\" "
          "xml:space=\"preserve\">%s</text>\n",
          lx, ly, text);
      ly += 15;
    }
  }
  return s;
}

}  // namespace

std::string RenderTradeOffSvg(const EvalReport& report, const std::string& title) {
  const PlotLayout layout = LayOutTradeOffPlot(report);
  std::string s = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f "
      "%.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
      kWidth, kHeight, kWidth, kHeight);
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s +=
      absl::StrFormat("<text x=\"%.1f\" y=\"26\" font-size=\"16\" font-weight=\"bold\">%s</text>\n",
                      kLeft, XmlEscape(title));
  s += AxesSvg(layout);
  std::vector<LegendLine> lines;
  s += CurvesSvg(report, layout, lines);
  s += PointsSvg(layout);
  s += LegendSvg(report, layout, lines);
  s += "</svg>\n";
  return s;
}

}  // namespace saferoute::eval
