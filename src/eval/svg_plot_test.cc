// The trade-off plot's layout: every method its own colour and marker, and
// labels that overlap neither each other nor any marker, on reports with all
// methods (including crowded ones where several methods share a point).
#include "eval/svg_plot.h"

#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace saferoute::eval {
namespace {

// Every method of the report on `n` random examples. `crowded`: the
// calibrated variants and SafeRoute at a share route nothing (they all sit on
// the small guard's point) and TS routes everything (on the large guard's).
EvalInputs AllMethods(uint32_t seed, size_t n, bool crowded) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  EvalInputs in;
  std::vector<double> router;
  for (size_t i = 0; i < n; ++i) {
    Example ex;
    ex.id = "e" + std::to_string(i);
    ex.unsafe = u(rng) < 0.4;
    in.examples.push_back(ex);
    ScoreRecord s, l;
    s.id = l.id = ex.id;
    // The small guard right about 65% of the time, the large about 80%.
    s.p_unsafe = std::clamp((ex.unsafe ? 0.65 : 0.35) + u(rng) - 0.5, 0.01, 0.99);
    l.p_unsafe = std::clamp((ex.unsafe ? 0.8 : 0.2) + u(rng) - 0.5, 0.01, 0.99);
    s.logit_safe = 0;
    s.logit_unsafe = std::log(s.p_unsafe / (1 - s.p_unsafe));
    s.latency_ms = 10;
    l.latency_ms = 40;
    s.n_tokens = l.n_tokens = 50;
    in.small.push_back(s);
    in.large.push_back(l);
    router.push_back(u(rng));
  }
  in.router_scores = router;
  in.router_threshold = 0.5;
  in.share = 0.2;
  in.router_share_threshold = crowded ? 2.0 : 0.8;
  in.content_free = ContentFreeScore{.p_unsafe = crowded ? 1e-6 : 0.3};
  in.batch_mean_p_unsafe = crowded ? 1e-6 : 0.45;
  in.temperature = crowded ? 1e3 : 1.3;
  in.small_params = 1e9;
  in.large_params = 8e9;
  in.seed = seed;
  return in;
}

// Whether the segment from (x0, y0) to (x1, y1) passes through the inside
// of `box`: sampled every 0.1 px.
bool SegmentEntersBox(double x0, double y0, double x1, double y1, const PlotLayout::Box& box) {
  const int steps = 1 + static_cast<int>(10 * std::hypot(x1 - x0, y1 - y0));
  for (int k = 0; k <= steps; ++k) {
    const double t = static_cast<double>(k) / steps;
    const double x = x0 + t * (x1 - x0), y = y0 + t * (y1 - y0);
    if (x > box.x0 + 0.1 && x < box.x1 - 0.1 && y > box.y0 + 0.1 && y < box.y1 - 0.1) return true;
  }
  return false;
}

void ExpectReadableLayout(const EvalReport& report, const std::string& what) {
  const PlotLayout layout = LayOutTradeOffPlot(report);
  ASSERT_EQ(layout.points.size(), report.methods.size()) << what;
  std::set<std::string> colors;
  std::set<Marker> markers;
  for (const PlotLayout::Point& p : layout.points) {
    colors.insert(p.color);
    markers.insert(p.marker);
  }
  EXPECT_EQ(colors.size(), layout.points.size()) << what << ": two methods share a colour";
  EXPECT_EQ(markers.size(), layout.points.size()) << what << ": two methods share a marker";
  for (size_t i = 0; i < layout.points.size(); ++i) {
    const PlotLayout::Point& a = layout.points[i];
    const PlotLayout::Box& box = a.label_box;
    EXPECT_GE(box.x1 - box.x0, EstimateTextWidth(a.label, 11) - 1e-9) << what << " " << a.key;
    EXPECT_TRUE(box.x0 >= layout.plot_area.x0 && box.x1 <= layout.plot_area.x1 &&
                box.y0 >= layout.plot_area.y0 && box.y1 <= layout.plot_area.y1)
        << what << ": label of " << a.key << " leaves the plot: " << box.x0 << "," << box.y0 << " "
        << box.x1 << "," << box.y1;
    for (size_t j = 0; j < layout.points.size(); ++j) {
      const PlotLayout::Point& b = layout.points[j];
      EXPECT_FALSE(box.Overlaps(b.marker_box))
          << what << ": label of " << a.key << " covers the marker of " << b.key;
      if (j != i) {
        EXPECT_FALSE(box.Overlaps(b.label_box))
            << what << ": labels of " << a.key << " and " << b.key << " overlap";
        if (a.leader) {
          const double end_x = a.label_left ? box.x1 : box.x0;
          EXPECT_FALSE(SegmentEntersBox(a.x, a.y, end_x, (box.y0 + box.y1) / 2, b.label_box))
              << what << ": the leader line of " << a.key << " crosses the label of " << b.key;
        }
      }
    }
  }
}

TEST(SvgPlot, EveryMethodHasItsOwnStyleAndLabelsDoNotOverlap) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    for (bool crowded : {false, true}) {
      const EvalReport report = RunEvaluation(AllMethods(seed, 300, crowded));
      ASSERT_EQ(report.methods.size(), 11u);  // every method the report knows
      ExpectReadableLayout(report, absl::StrCat("seed ", seed, crowded ? " crowded" : ""));
    }
  }
}

TEST(SvgPlot, SvgDrawsEveryLabelAndMarksAMissedShare) {
  const EvalReport report = RunEvaluation(AllMethods(3, 300, /*crowded=*/true));
  const MethodResult* share = report.Find("saferoute_share");
  ASSERT_NE(share, nullptr);
  ASSERT_TRUE(share->missed_target_share);  // ε above every score: 0% instead of 20%
  const std::string svg = RenderTradeOffSvg(report, "t <&>");
  for (const PlotLayout::Point& p : LayOutTradeOffPlot(report).points) {
    EXPECT_THAT(svg, ::testing::HasSubstr(">" + XmlEscape(p.label) + "</text>")) << p.key;
  }
  EXPECT_THAT(svg, ::testing::HasSubstr("SafeRoute @20% ! "));
  EXPECT_THAT(svg, ::testing::HasSubstr("missed its requested"));
  EXPECT_THAT(svg, ::testing::HasSubstr("t &lt;&amp;&gt;"));
}

TEST(SvgPlot, TextWidthGrowsWithGlyphWidth) {
  EXPECT_DOUBLE_EQ(EstimateTextWidth("", 11), 0);
  EXPECT_LT(EstimateTextWidth("iiii", 11), EstimateTextWidth("mmmm", 11));
  // "ε" is two UTF-8 bytes but one glyph.
  EXPECT_LT(EstimateTextWidth("\xCE\xB5", 11), 11);
}

}  // namespace
}  // namespace saferoute::eval
