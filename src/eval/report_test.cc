// Every method on a six-example case whose metrics are worked out by hand in
// the comments (threshold: unsafe iff p > 0.5, strict).
#include "eval/report.h"

#include <cmath>

#include "absl/strings/str_replace.h"
#include "eval/labels.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace saferoute::eval {
namespace {

//  i  gold  small p  large p   small pred  large pred  t
//  0   1     0.9      0.95        1           1        0  (both right)
//  1   1     0.3      0.8         0           1        1
//  2   0     0.6      0.2         1           0        1
//  3   0     0.1      0.7         0           1        0  (small right, large wrong)
//  4   1     0.35     0.45        0           0        0  (both wrong)
//  5   0     0.5      0.05        0 (strict)  0        0
// Latency: small 10 ms, large 30 ms each. Tokens 10,20,10,20,10,20.
EvalInputs HandCase() {
  const std::vector<bool> gold = {true, true, false, false, true, false};
  const std::vector<double> small_p = {0.9, 0.3, 0.6, 0.1, 0.35, 0.5};
  const std::vector<double> large_p = {0.95, 0.8, 0.2, 0.7, 0.45, 0.05};
  EvalInputs in;
  for (size_t i = 0; i < gold.size(); ++i) {
    Example ex;
    ex.id = "e" + std::to_string(i);
    ex.unsafe = gold[i];
    in.examples.push_back(ex);
    ScoreRecord s, l;
    s.id = l.id = ex.id;
    s.p_unsafe = small_p[i];
    s.logit_safe = 0;
    s.logit_unsafe = std::log(small_p[i] / (1 - small_p[i]));  // margin = logit(p)
    l.p_unsafe = large_p[i];
    s.latency_ms = 10;
    l.latency_ms = 30;
    s.n_tokens = l.n_tokens = (i % 2 == 0) ? 10 : 20;
    in.small.push_back(s);
    in.large.push_back(l);
  }
  return in;
}

void ExpectSafety(const EvalReport& r, const std::string& key, int64_t tp, int64_t fp, int64_t fn,
                  int64_t tn, double share) {
  const MethodResult* m = r.Find(key);
  ASSERT_NE(m, nullptr) << key;
  EXPECT_EQ(m->safety.tp, tp) << key;
  EXPECT_EQ(m->safety.fp, fp) << key;
  EXPECT_EQ(m->safety.fn, fn) << key;
  EXPECT_EQ(m->safety.tn, tn) << key;
  EXPECT_NEAR(m->large_share, share, 1e-12) << key;
}

TEST(ReportTest, SmallLargeOracleByHand) {
  const EvalReport r = RunEvaluation(HandCase());
  EXPECT_EQ(r.n, 6);
  EXPECT_EQ(r.n_unsafe, 3);
  EXPECT_EQ(r.n_hard, 2);
  // Small: tp {0}, fp {2}, fn {1,4} -> F1 = 2/(2+1+2) = 0.4.
  ExpectSafety(r, "small", 1, 1, 2, 2, 0.0);
  EXPECT_DOUBLE_EQ(r.Find("small")->safety.f1(), 0.4);
  EXPECT_DOUBLE_EQ(r.Find("small")->latency_rel.value(), 1.0);
  // Large: tp {0,1}, fp {3}, fn {4} -> F1 = 4/6.
  ExpectSafety(r, "large", 2, 1, 1, 2, 1.0);
  EXPECT_DOUBLE_EQ(r.Find("large")->latency_rel.value(), 3.0);  // 180 / 60
  // Oracle: large verdict on {1,2}: tp {0,1}, fn {4} -> F1 = 0.8; both passes everywhere.
  ExpectSafety(r, "oracle", 2, 0, 1, 3, 2.0 / 6);
  EXPECT_DOUBLE_EQ(r.Find("oracle")->safety.f1(), 0.8);
  EXPECT_DOUBLE_EQ(r.Find("oracle")->routing.f1(), 1.0);
  EXPECT_DOUBLE_EQ(r.Find("oracle")->latency_rel.value(), 4.0);  // (60 + 180) / 60
  EXPECT_FALSE(r.Find("small")->flops_rel.has_value());          // no parameter counts given
}

TEST(ReportTest, EntropyByHand) {
  const EvalReport r = RunEvaluation(HandCase());
  // H > 0.5 bit for p in (0.11, 0.89): routes {1,2,4,5}.
  // Final: 0 small 1 (tp), 1 large 1 (tp), 2 large 0, 3 small 0, 4 large 0 (fn), 5 large 0.
  ExpectSafety(r, "entropy", 2, 0, 1, 3, 4.0 / 6);
  const MethodResult* m = r.Find("entropy");
  // Routing vs t = {1,2}: tp 2, fp 2 -> F1 = 4/6.
  EXPECT_DOUBLE_EQ(m->routing.f1(), 4.0 / 6);
  // Entropy order: 5 (1.0, t0), 2 (.971, t1), 4 (.934, t0), 1 (.881, t1), {0,3}
  // AP = (.5 - 0) * 1/2 + (1 - .5) * 2/4 = 0.5.
  EXPECT_NEAR(m->routing_auprc.value(), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(m->latency_rel.value(), 3.0);  // (60 + 4 * 30) / 60
}

TEST(ReportTest, CalibratedEntropyVariantsByHand) {
  EvalInputs in = HandCase();
  in.content_free = ContentFreeScore{.p_unsafe = 0.2};
  in.batch_mean_p_unsafe = 0.8;
  in.temperature = 2.0;
  const EvalReport r = RunEvaluation(in);
  // CC, r1 = .2: q̂ = 4p / (1 + 3p) = .973 .632 .857 .308 .683 .8 -> H > .5 for all but i = 0.
  // Final: 0 s1 tp, 1 l1 tp, 2 l0 tn, 3 l1 fp, 4 l0 fn, 5 l0 tn.
  ExpectSafety(r, "entropy_cc", 2, 1, 1, 2, 5.0 / 6);
  // BC, r1 = .8: q̂ = p / (4 - 3p) = .692 .097 .273 .027 .119 .2 -> routes {0,2,4,5}.
  // Final: 0 l1 tp, 1 s0 fn, 2 l0 tn, 3 s0 tn, 4 l0 fn, 5 l0 tn.
  ExpectSafety(r, "entropy_bc", 1, 0, 2, 3, 4.0 / 6);
  EXPECT_DOUBLE_EQ(r.Find("entropy_bc")->safety.f1(), 0.5);
  // TS, T = 2: q̂ = sqrt(p) / (sqrt(p) + sqrt(1-p)) = .75 .396 .551 .25 .423 .5 -> routes all,
  // so the verdicts are the large guard's.
  ExpectSafety(r, "entropy_ts", 2, 1, 1, 2, 1.0);
  // Calibration moves only routing: the small verdict on kept examples stays
  // uncalibrated (BC keeps i = 1 at p .3 -> safe, the fn above).
  ASSERT_EQ(r.notes.size(), 1u);  // only SafeRoute (no router) is skipped
  EXPECT_THAT(r.notes[0], ::testing::HasSubstr("saferoute skipped"));
}

TEST(ReportTest, SkippedMethodsAreNamedInNotes) {
  const EvalReport r = RunEvaluation(HandCase());
  EXPECT_EQ(r.Find("entropy_ts"), nullptr);
  EXPECT_EQ(r.Find("saferoute"), nullptr);
  EXPECT_EQ(r.notes.size(), 4u);
}

TEST(ReportTest, SafeRouteCostAndCurveByHand) {
  EvalInputs in = HandCase();
  in.router_scores = std::vector<double>{0.1, 0.9, 0.7, 0.4, 0.6, 0.2};
  in.router_threshold = 0.5;
  in.small_params = 1e9;
  in.large_params = 8e9;
  const EvalReport r = RunEvaluation(in);
  // Routes {1,2,4}: 0 s1 tp, 1 l1 tp, 2 l0 tn, 3 s0 tn, 4 l0 fn, 5 s0 tn.
  ExpectSafety(r, "saferoute", 2, 0, 1, 3, 0.5);
  const MethodResult* m = r.Find("saferoute");
  EXPECT_DOUBLE_EQ(m->routing.f1(), 0.8);  // tp 2, fp 1
  EXPECT_NEAR(m->routing_auprc.value(), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(m->latency_rel.value(), 2.5);  // (60 + 90) / 60
  // FLOPs: small 2e9 * 90 tokens; large 2 * 8e9 * (20 + 10 + 10) tokens.
  EXPECT_NEAR(m->flops_rel.value(), 1.0 + 640.0 / 180.0, 1e-12);
  // Curve, by decreasing router score 1, 2, 4, 3, 5, 0: F1 .4 .667 .8 .8 .667 .667 .667.
  const std::vector<CurvePoint>& curve = r.curves.at("saferoute");
  const std::vector<double> f1 = {0.4, 4.0 / 6, 0.8, 0.8, 4.0 / 6, 4.0 / 6, 4.0 / 6};
  ASSERT_EQ(curve.size(), f1.size());
  for (size_t k = 0; k < f1.size(); ++k) {
    EXPECT_NEAR(curve[k].f1, f1[k], 1e-12) << k;
    EXPECT_NEAR(curve[k].large_share, k / 6.0, 1e-12) << k;
  }
  EXPECT_DOUBLE_EQ(curve[2].epsilon, 0.6);  // "route iff > 0.6" routes exactly {1, 2}
  // The curve's ends are the small-only and large-only F1.
  EXPECT_DOUBLE_EQ(curve.front().f1, r.Find("small")->safety.f1());
  EXPECT_DOUBLE_EQ(curve.back().f1, r.Find("large")->safety.f1());
}

TEST(ReportTest, RandomIsSeededAndMatchesItsRouting) {
  EvalInputs in = HandCase();
  in.seed = 3;
  in.share = 0.25;
  const EvalReport r = RunEvaluation(in);
  const std::vector<uint8_t> route = RandomRouting(6, 0.5, 3);
  double routed = 0;
  for (uint8_t x : route) routed += x;
  EXPECT_DOUBLE_EQ(r.Find("random")->large_share, routed / 6);
  ASSERT_NE(r.Find("random_share"), nullptr);
  EXPECT_EQ(ReportToJson(r)["methods"]["random_share"]["settings"]["share"].get<double>(), 0.25);

  // The spread over seeds 3..7, recomputed here from each draw's verdicts:
  // routed examples take the large guard's verdict (p > 0.5), others the small's.
  const std::vector<bool> gold = {true, true, false, false, true, false};
  const std::vector<bool> small_pred = {true, false, true, false, false, false};
  const std::vector<bool> large_pred = {true, true, false, true, false, false};
  std::vector<double> f1s;
  for (uint64_t seed = 3; seed < 8; ++seed) {
    const std::vector<uint8_t> draw = RandomRouting(6, 0.5, seed);
    Confusion c;
    for (size_t i = 0; i < 6; ++i) c.Add(draw[i] ? large_pred[i] : small_pred[i], gold[i]);
    f1s.push_back(c.f1());
  }
  double mean = 0;
  for (double f : f1s) mean += f / 5;
  double var = 0;
  for (double f : f1s) var += (f - mean) * (f - mean) / 4;
  const nlohmann::ordered_json json = ReportToJson(r);
  const auto& settings = json["methods"]["random"]["settings"];
  EXPECT_NEAR(settings["f1_mean_over_5_seeds"].get<double>(), mean, 1e-12);
  EXPECT_NEAR(settings["f1_std_over_5_seeds"].get<double>(), std::sqrt(var), 1e-12);
  EXPECT_DOUBLE_EQ(r.Find("random")->safety.f1(), f1s[0]);  // the row is seed 3's draw
}

// The case: the router file's calibrated ε for 20% lies above every
// router score of the data, so "SafeRoute @20%" routes nothing. The report
// must say so (table, JSON, warning) instead of printing a plain row.
TEST(ReportTest, MissedShareIsWarnedAndMarked) {
  EvalInputs in = HandCase();
  in.router_scores = std::vector<double>{0.1, 0.3, 0.2, 0.4, 0.25, 0.15};
  in.router_share_threshold = 0.9;  // above every score: routes 0 of 6
  in.share = 0.2;
  const EvalReport r = RunEvaluation(in);
  const nlohmann::ordered_json j = ReportToJson(r);
  EXPECT_DOUBLE_EQ(j["methods"]["saferoute_share"]["large_share"].get<double>(), 0.0);
  EXPECT_TRUE(j["methods"]["saferoute_share"]["settings"].value("target_share_missed", false));
  ASSERT_TRUE(j.contains("warnings"));
  std::string warnings;
  for (const auto& w : j["warnings"]) warnings += w.get<std::string>() + "\n";
  EXPECT_THAT(warnings, ::testing::HasSubstr("SafeRoute @20% sent 0.0% of the inputs to the large "
                                             "guard, not the requested 20%"));
  EXPECT_THAT(warnings, ::testing::HasSubstr("0 of the 6 router scores"));
  const std::string table = FormatReportTable(r);
  EXPECT_THAT(table, ::testing::HasSubstr("SafeRoute @20% !"));
  EXPECT_THAT(table, ::testing::HasSubstr("warning: SafeRoute @20% sent 0.0%"));
}

TEST(ReportTest, ShareWithinFivePointsIsNotWarned) {
  EvalInputs in = HandCase();
  in.router_scores = std::vector<double>{0.1, 0.95, 0.2, 0.4, 0.25, 0.15};
  in.router_share_threshold = 0.9;  // routes 1 of 6 = 16.7%: 3.3 points off 20%
  in.share = 0.2;
  const nlohmann::ordered_json j = ReportToJson(RunEvaluation(in));
  EXPECT_FALSE(j["methods"]["saferoute_share"]["settings"].value("target_share_missed", true));
  for (const auto& w : j.value("warnings", nlohmann::ordered_json::array()))
    EXPECT_THAT(w.get<std::string>(), ::testing::Not(::testing::HasSubstr("SafeRoute")));
  EXPECT_THAT(FormatReportTable(RunEvaluation(in)),
              ::testing::Not(::testing::HasSubstr("SafeRoute @20% !")));
}

// Random routing draws each input independently: on small sets the realised
// share can miss the requested one, and that is warned about too.
TEST(ReportTest, RandomShareMissIsWarned) {
  EvalInputs in = HandCase();
  in.share = 0.3;
  int missed_seeds = 0, met_seeds = 0;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    in.seed = seed;
    const EvalReport r = RunEvaluation(in);
    const MethodResult* m = r.Find("random_share");
    ASSERT_NE(m, nullptr);
    // 6 inputs: only 2 routed (33.3%) is within 5 points of 30%.
    const bool missed = std::abs(m->large_share - 0.3) > 0.05;
    missed_seeds += missed;
    met_seeds += !missed;
    const nlohmann::ordered_json j = ReportToJson(r);
    EXPECT_EQ(j["methods"]["random_share"]["settings"].value("target_share_missed", !missed),
              missed)
        << seed;
    EXPECT_EQ(FormatReportTable(r).find("Random 30% !") != std::string::npos, missed) << seed;
  }
  EXPECT_GT(missed_seeds, 0);
  EXPECT_GT(met_seeds, 0);
}

TEST(ReportTest, TableSaysWhyTheOracleCostCountsBothGuards) {
  const std::string table = FormatReportTable(RunEvaluation(HandCase()));
  // Words may wrap at any space.
  const std::string one_line = absl::StrReplaceAll(table, {{"\n        ", " "}});
  EXPECT_THAT(one_line, ::testing::HasSubstr("count both guards on every input"));
  EXPECT_THAT(one_line, ::testing::HasSubstr("known only after both guards ran"));
}

TEST(ReportTest, CurveThinningKeepsEndsAndOrder) {
  const size_t n = 1000;
  std::vector<double> scores(n);
  std::vector<uint8_t> sp(n), lp(n), gold(n);
  for (size_t i = 0; i < n; ++i) {
    scores[i] = static_cast<double>(i) / n;
    gold[i] = i % 3 == 0;
    lp[i] = gold[i];
    sp[i] = i % 2;
  }
  const auto curve = TradeOffCurve(scores, sp, lp, gold, 51);
  ASSERT_LE(curve.size(), 51u);
  EXPECT_GE(curve.size(), 40u);
  EXPECT_EQ(curve.front().large_share, 0.0);
  EXPECT_EQ(curve.back().large_share, 1.0);
  EXPECT_DOUBLE_EQ(curve.back().f1, 1.0);  // large is perfect here
  for (size_t k = 1; k < curve.size(); ++k)
    EXPECT_GT(curve[k].large_share, curve[k - 1].large_share);
}

TEST(ReportTest, JsonHasTheStableShape) {
  EvalInputs in = HandCase();
  in.router_scores = std::vector<double>{0.1, 0.9, 0.7, 0.4, 0.6, 0.2};
  const auto j = ReportToJson(RunEvaluation(in));
  EXPECT_EQ(j["n"], 6);
  for (const char* key : {"small", "large", "oracle", "random", "entropy", "saferoute"}) {
    ASSERT_TRUE(j["methods"].contains(key)) << key;
    for (const char* field :
         {"f1", "precision", "recall", "large_share", "routing_f1", "latency_rel"}) {
      EXPECT_TRUE(j["methods"][key].contains(field)) << key << "." << field;
    }
  }
  EXPECT_TRUE(j["curves"]["saferoute"].is_array());
  EXPECT_TRUE(j["curves"]["entropy"].is_array());
  EXPECT_DOUBLE_EQ(j["methods"]["oracle"]["f1"].get<double>(), 0.8);
  EXPECT_THAT(FormatReportTable(RunEvaluation(in)), ::testing::HasSubstr("SafeRoute"));
}

}  // namespace
}  // namespace saferoute::eval
