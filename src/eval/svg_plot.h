// The F1-vs-large-share trade-off plot of an evaluation report, as a
// self-contained SVG (no plotting library in our dependencies): axes, ticks,
// grid, the SafeRoute and entropy curves, every method as a point with its
// own colour and marker and a label placed where it overlaps no other label
// or marker, and a legend.
#ifndef SAFEROUTE_EVAL_SVG_PLOT_H_
#define SAFEROUTE_EVAL_SVG_PLOT_H_

#include <string>
#include <string_view>
#include <vector>

#include "eval/report.h"

namespace saferoute::eval {

enum class Marker {
  kCircle,
  kSquare,
  kDiamond,
  kTriangleUp,
  kTriangleDown,
  kTriangleRight,
  kPentagon,
  kHexagon,
  kStar,
  kPlus,
  kCross,
};

// Where everything of the plot goes, in SVG pixels (y grows downwards).
struct PlotLayout {
  struct Box {
    double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    bool Overlaps(const Box& other) const {
      return x0 < other.x1 && other.x0 < x1 && y0 < other.y1 && other.y0 < y1;
    }
  };
  struct Point {
    std::string key, label;  // the method's key and its label text ("Oracle 0.800")
    std::string color;
    Marker marker = Marker::kCircle;
    double x = 0, y = 0;      // the marker's centre
    Box marker_box;           // what the marker covers
    Box label_box;            // what the label text covers (estimated metrics)
    bool label_left = false;  // text ends at label_box.x1 (anchor "end")
    bool leader = false;      // label set away from the marker: a line joins them
  };
  Box plot_area;                            // inside the axes
  double y_lo = 0, y_hi = 1, y_step = 0.1;  // F1 axis range and tick step
  std::vector<Point> points;                // one per method, in report order
};

PlotLayout LayOutTradeOffPlot(const EvalReport& report);

std::string RenderTradeOffSvg(const EvalReport& report, const std::string& title);

// Width in pixels of `text` set in DejaVu Sans at `font_px` (per-character
// advance classes, rounded up: an estimate that errs wide).
double EstimateTextWidth(std::string_view text, double font_px);

// Escapes &, <, >, " and ' for SVG text and attributes.
std::string XmlEscape(std::string_view text);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_SVG_PLOT_H_
