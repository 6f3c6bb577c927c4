// The F1-vs-large-share trade-off plot of an evaluation report, as a
// self-contained SVG (no plotting library in our dependencies): axes, ticks,
// grid, the SafeRoute and entropy curves, every other method as a labelled
// point, and a legend.
#ifndef SAFEROUTE_EVAL_SVG_PLOT_H_
#define SAFEROUTE_EVAL_SVG_PLOT_H_

#include <string>

#include "eval/report.h"

namespace saferoute::eval {

std::string RenderTradeOffSvg(const EvalReport& report, const std::string& title);

// Escapes &, <, >, " and ' for SVG text and attributes.
std::string XmlEscape(std::string_view text);

}  // namespace saferoute::eval

#endif  // SAFEROUTE_EVAL_SVG_PLOT_H_
