// Lot containment: the binomial upper tail against scipy, production-window
// keys (months, ISO weeks), the Bonferroni-protected group test, held cells,
// and screen() end to end on a table with a bad lot, a shifted window and
// cells that are outliers only in combination.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "eol/models/lot_tests.hpp"
#include "eol/models/screening.hpp"
#include "eol/models/series.hpp"
#include "support/cli_test.hpp"

using namespace eol::models;

TEST_CASE("lots: binomial upper tail agrees with scipy.stats.binom.sf(k-1, n, p)") {
    // scipy 1.10.1
    struct B {
        std::uint64_t k, n;
        double p, sf;
    };
    const B table[] = {{0, 10, 0.3, 1.0},
                       {1, 10, 0.3, 0.9717524751},
                       {5, 10, 0.3, 0.15026833259999992},
                       {10, 10, 0.3, 5.9048999999999975e-06},
                       {3, 1000, 0.001, 0.080209342840201},
                       {10, 1000, 0.001, 1.074283386846483e-07},
                       {30, 5000, 0.002, 2.4139570686620254e-07},
                       {120, 5000, 0.01, 2.2445831763867727e-17},
                       {600, 100000, 0.005, 7.390583776639648e-06},
                       {5200, 1000000, 0.005, 0.0024590471427539226},
                       {50, 50, 0.9, 0.005153775207320118},
                       {25, 50, 0.5, 0.5561375863296085}};
    for (const auto& b : table) {
        INFO("k=" << b.k << " n=" << b.n << " p=" << b.p);
        // log-gamma prefactors lose ~1e-9 relative at n = 10^6
        CHECK(binomial_upper_tail(b.k, b.n, b.p) == doctest::Approx(b.sf).epsilon(b.n >= 100000 ? 1e-8 : 1e-11));
    }
    CHECK(binomial_upper_tail(11, 10, 0.3) == 0.0);
    CHECK(binomial_upper_tail(1, 10, 0.0) == 0.0);
    CHECK(binomial_upper_tail(3, 10, 1.0) == 1.0);
    CHECK(regularized_beta(2.0, 3.0, 0.4) == doctest::Approx(1.0 - regularized_beta(3.0, 2.0, 0.6)));
    CHECK_THROWS_AS(binomial_upper_tail(1, 10, 1.5), InputError);
}

TEST_CASE("lots: dates, months and ISO weeks") {
    const auto d = parse_iso_day("2023-03-14");
    REQUIRE(d.has_value());
    CHECK(*d == 19430);  // days since 1970-01-01
    CHECK(day_to_iso(*d) == "2023-03-14");
    CHECK(month_key(*d) == "2023-03");
    CHECK(iso_week_key(*d) == "2023-W11");
    CHECK(parse_iso_day("2023-03-14T08:15:00Z") == d);
    CHECK(parse_iso_day("1970-01-01") == 0);
    CHECK(parse_iso_day("1969-12-31") == -1);
    CHECK_FALSE(parse_iso_day("2023-02-29").has_value());
    CHECK(parse_iso_day("2024-02-29").has_value());
    CHECK_FALSE(parse_iso_day("2023-13-01").has_value());
    CHECK_FALSE(parse_iso_day("2023-3-14").has_value());
    CHECK_FALSE(parse_iso_day("2023-03-14x").has_value());
    // ISO week-numbering years differ from calendar years around New Year.
    CHECK(iso_week_key(*parse_iso_day("2023-01-01")) == "2022-W52");  // a Sunday
    CHECK(iso_week_key(*parse_iso_day("2023-01-02")) == "2023-W01");
    CHECK(iso_week_key(*parse_iso_day("2021-01-03")) == "2020-W53");
    CHECK(iso_week_key(*parse_iso_day("2024-12-30")) == "2025-W01");
    for (std::int32_t day = -800; day < 40000; day += 37) CHECK(parse_iso_day(day_to_iso(day)) == day);
}

TEST_CASE("lots: a lot with an outlier rate far above the baseline is held, the others not") {
    // 12 lots × 500 cells at a 1 % outlier rate; lot 7 at 6 %.
    std::vector<std::uint8_t> out;
    std::vector<std::uint32_t> lot;
    std::vector<std::string> names;
    for (std::uint32_t c = 0; c < 12; ++c) {
        names.push_back(std::string("L").append(std::to_string(c)));
        for (int i = 0; i < 500; ++i) {
            lot.push_back(c);
            out.push_back(c == 7 ? (i % 50 < 3) : (i % 100 == 0));
        }
    }
    LotTestSettings st;
    st.by_month = st.by_week = false;
    const LotTestResult r = test_groups(out, lot, names, {}, st);
    CHECK(r.tests == 12);
    CHECK(r.alpha_per_test == doctest::Approx(0.01 / 12));
    CHECK(r.baseline_rate == doctest::Approx((11 * 5 + 30) / 6000.0));
    REQUIRE(r.groups.size() == 12);
    for (const auto& g : r.groups) {
        INFO(g.key << " p=" << g.p_value);
        CHECK(g.kind == GroupKind::lot);
        CHECK(g.cells == 500);
        CHECK(g.held == (g.key == "L7"));
        CHECK(g.p_value == doctest::Approx(binomial_upper_tail(g.outliers, 500, r.baseline_rate)));
    }
    const auto held = held_cells(r, lot, {});
    for (std::size_t i = 0; i < held.size(); ++i) CHECK(held[i] == (lot[i] == 7 ? 1 : 0));

    // Bonferroni matters: with alpha 0.2 split 12 ways a borderline lot stays clear,
    // tested alone it would be held.
    std::vector<std::uint8_t> out2 = out;
    for (std::size_t i = 0; i < out2.size(); ++i)
        if (lot[i] == 7) out2[i] = (i % 500) % 100 < 2;  // 2 %: p ≈ 0.031
    LotTestSettings loose = st;
    loose.alpha = 0.2;
    loose.baseline_rate = 0.01;
    const LotTestResult r2 = test_groups(out2, lot, names, {}, loose);
    const double p7 = r2.groups[7].p_value;
    CHECK(p7 < 0.2);
    CHECK(p7 > 0.2 / 12);
    CHECK_FALSE(r2.groups[7].held);

    // Groups below min_cells are listed, not tested, and not counted in the correction.
    std::vector<std::uint8_t> out3 = out;
    std::vector<std::uint32_t> lot3 = lot;
    for (int i = 0; i < 5; ++i) {
        lot3.push_back(12);
        out3.push_back(1);  // a tiny lot of outliers only
    }
    std::vector<std::string> names3 = names;
    names3.push_back("tiny");
    LotTestSettings min20 = st;
    min20.min_cells = 20;
    const LotTestResult r3 = test_groups(out3, lot3, names3, {}, min20);
    REQUIRE(r3.groups.size() == 13);
    CHECK(r3.tests == 12);
    CHECK_FALSE(r3.groups[12].tested);
    CHECK_FALSE(r3.groups[12].held);
    CHECK(r3.groups[12].p_value == 1.0);
    min20.min_cells = 0;
    CHECK(test_groups(out3, lot3, names3, {}, min20).groups[12].held);

    CHECK_THROWS_AS(test_groups(out, std::vector<std::uint32_t>(5, 0), names, {}, st), InputError);
    LotTestSettings bad = st;
    bad.alpha = 0.0;
    CHECK_THROWS_AS(test_groups(out, lot, names, {}, bad), InputError);
}

TEST_CASE("lots: production windows by month and ISO week") {
    // Jan–Apr 2023, 40 cells a day; outliers at 0.5 %, but at 10 % from 2023-03-06 to 2023-03-12 (ISO week 10).
    const std::int32_t jan1 = *parse_iso_day("2023-01-01");
    const std::int32_t w10 = *parse_iso_day("2023-03-06");
    std::vector<std::uint8_t> out;
    std::vector<std::int32_t> day;
    for (std::int32_t d = jan1; d < jan1 + 120; ++d)
        for (int i = 0; i < 40; ++i) {
            day.push_back(d);
            const bool bad = d >= w10 && d < w10 + 7;
            out.push_back(bad ? (i % 20 < 2) : ((d * 40 + i) % 200 == 0));
        }
    day[5] = kNoDay;  // unknown day: in no window
    const LotTestResult r = test_groups(out, {}, {}, day, {});
    std::size_t months = 0, weeks = 0;
    for (const auto& g : r.groups) {
        if (g.kind == GroupKind::month) ++months;
        if (g.kind == GroupKind::week) ++weeks;
        INFO(g.key << " " << g.outliers << "/" << g.cells << " p=" << g.p_value);
        // the bad week, and the month around it (33 of 1240 against ~13 expected)
        CHECK(g.held == (g.key == "2023-W10" || g.key == "2023-03"));
    }
    CHECK(months == 4);
    CHECK(weeks == 18);  // 2022-W52 … 2023-W17
    CHECK(r.tests == months + weeks);
    const std::int32_t mar1 = *parse_iso_day("2023-03-01"), apr1 = *parse_iso_day("2023-04-01");
    const auto held = held_cells(r, {}, day);
    for (std::size_t i = 0; i < held.size(); ++i)
        CHECK(held[i] == ((day[i] != kNoDay && day[i] >= mar1 && day[i] < apr1) ? 1 : 0));
}

namespace {

// A table of `lots` lots × `per_lot` cells, 3 correlated features (r0, r1, ocv),
// days in lot order; lot `bad_lot` carries `bad_fraction` of cells with a
// combination defect (r0 down, r1 up: each only 2.5 σ off, but r0 and r1 are
// correlated 0.8); row `gross` has a gross r0 value.
FeatureTable make_table(std::uint32_t lots, int per_lot, std::uint32_t bad_lot, double bad_fraction,
                        std::size_t gross) {
    FeatureTable t;
    t.features = {"r0_ohm", "r1_ohm", "ocv_v"};
    std::mt19937 rng(42);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<double> r0, r1, ocv;
    LotCoder coder(t.lot_names);
    const std::int32_t start = *parse_iso_day("2023-01-02");
    for (std::uint32_t c = 0; c < lots; ++c) {
        const std::uint32_t code = coder.code(std::string("LOT").append(std::to_string(c)));
        for (int i = 0; i < per_lot; ++i) {
            const double a = nd(rng), b = nd(rng), e = nd(rng);
            double x0 = 0.020 + 0.0004 * a;
            double x1 = 0.010 + 0.0003 * (0.8 * a + 0.6 * b);
            double x2 = 3.600 + 0.002 * (-0.7 * a + 0.714 * e);
            if (c == bad_lot && i < static_cast<int>(bad_fraction * per_lot)) {
                x0 -= 0.0010;   // -2.5 σ and …
                x1 += 0.00075;  // … +2.5 σ: against their correlation of 0.8
            }
            r0.push_back(x0);
            r1.push_back(x1);
            ocv.push_back(x2);
            t.lot.push_back(code);
            t.day.push_back(start + static_cast<std::int32_t>(c));
            t.serials.push_back(std::string("S").append(std::to_string(t.serials.size())));
        }
    }
    r0[gross] = 0.035;
    t.rows = r0.size();
    t.values = r0;
    t.values.insert(t.values.end(), r1.begin(), r1.end());
    t.values.insert(t.values.end(), ocv.begin(), ocv.end());
    return t;
}

}  // namespace

TEST_CASE("screen: PAT, MCD and lot containment end to end") {
    FeatureTable t = make_table(12, 400, 5, 0.06, 17);
    ScreeningSettings st;
    st.charts = false;
    st.spec["ocv_v"] = SpecLimits{3.50, 3.70};
    const ScreeningResult r = screen(t, st);
    REQUIRE(r.features.size() == 3);
    REQUIRE(r.status.size() == t.rows);
    // The gross r0 value is a PAT outlier, with a reason naming the feature and the limit.
    CHECK((r.status[17] & kFlagPat) != 0);
    bool found = false;
    for (const auto& c : r.flagged) {
        if (c.row != 17) continue;
        found = true;
        REQUIRE_FALSE(c.pat.empty());
        CHECK(c.pat[0].feature == 0);
        CHECK(c.pat[0].high);
        const auto why = reasons(c, r);
        REQUIRE_FALSE(why.empty());
        CHECK(why[0].find("PAT: r0_ohm 0.035 above") != std::string::npos);
    }
    CHECK(found);
    // The combination defects are MCD outliers though inside every PAT limit.
    std::size_t bad_mcd = 0, bad_pat = 0;
    for (int i = 0; i < 24; ++i) {
        const std::size_t row = 5 * 400 + static_cast<std::size_t>(i);
        bad_mcd += (r.status[row] & kFlagMcd) != 0 ? 1u : 0u;
        bad_pat += (r.status[row] & kFlagPat) != 0 ? 1u : 0u;
    }
    CHECK(bad_mcd == 24);
    CHECK(bad_pat == 0);
    // … and MCD names the features that drove it: r0 and r1, not ocv.
    for (const auto& c : r.flagged) {
        if (c.row != 5 * 400) continue;
        REQUIRE(c.top.size() == 3);
        CHECK(c.top[0].feature != 2);
        CHECK(c.top[1].feature != 2);
        CHECK(std::isfinite(c.distance_sq));
        CHECK(c.distance_sq > c.cutoff_sq);
        CHECK(reasons(c, r).front().find("MCD: d²") == 0);
    }
    // Lot 5 is held whole (every cell, flagged or not); no other lot is.
    for (const auto& g : r.lots.groups) {
        if (g.kind != GroupKind::lot) continue;
        INFO(g.key << " " << g.outliers << "/" << g.cells << " p=" << g.p_value);
        CHECK(g.held == (g.key == "LOT5"));
    }
    CHECK((r.status[5 * 400 + 399] & kFlagHeldGroup) != 0);
    CHECK((r.status[4 * 400 + 399] & kFlagHeldGroup) == 0);
    // Few good cells of good lots are flagged.
    std::size_t good_flagged = 0;
    for (std::size_t i = 0; i < t.rows; ++i)
        if (t.lot[i] != 5 && i != 17 && (r.status[i] & (kFlagPat | kFlagMcd)) != 0) ++good_flagged;
    CHECK(good_flagged < t.rows / 200);
    CHECK(r.mcd.ran);
    CHECK(r.mcd.rows_fitted == t.rows);
    CHECK(r.count(kFlagHeldGroup) >= 400);
}

TEST_CASE("screen: missing values, feature selection, settings errors") {
    FeatureTable t = make_table(8, 100, 99, 0.0, 3);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    t.values[1 * t.rows + 10] = nan;  // r1 of row 10 missing
    t.values[2 * t.rows + 11] = nan;  // ocv of row 11
    t.values[0 * t.rows + 12] = 0.040;  // r0 of row 12 gross, and …
    t.values[2 * t.rows + 12] = nan;    // … its ocv missing
    ScreeningSettings st;
    ScreeningResult r = screen(t, st);
    CHECK(r.mcd.rows_fitted == t.rows - 3);
    CHECK(r.mcd.rows_scored == t.rows);
    CHECK(std::isfinite(r.distance_sq[10]));
    CHECK((r.status[12] & kFlagMcd) != 0);  // scored on r0 and r1 alone
    CHECK((r.status[12] & kFlagPat) != 0);
    bool noted = false;
    for (const auto& n : r.notes) noted = noted || n.find("scored on the features they have") != std::string::npos;
    CHECK(noted);

    st.missing = MissingPolicy::impute_median;
    r = screen(t, st);
    CHECK(r.mcd.rows_fitted == t.rows);

    ScreeningSettings two;
    two.features = {"ocv_v", "r0_ohm"};
    r = screen(t, two);
    REQUIRE(r.features == std::vector<std::string>{"ocv_v", "r0_ohm"});
    CHECK(r.pat.size() == 2);
    CHECK(r.mcd.location.size() == 2);
    CHECK(r.mcd.location(0) == doctest::Approx(3.6).epsilon(0.001));

    ScreeningSettings unknown;
    unknown.features = {"dcir_ohm"};
    CHECK_THROWS_WITH_AS(screen(t, unknown), doctest::Contains("no feature 'dcir_ohm'"), InputError);
    ScreeningSettings ref;
    ref.reference_lots = {"LOT99"};
    CHECK_THROWS_WITH_AS(screen(t, ref), doctest::Contains("reference lot 'LOT99'"), InputError);
    ScreeningSettings q;
    q.mcd_quantile = 1.0;
    CHECK_THROWS_AS(screen(t, q), InputError);
    FeatureTable broken = t;
    broken.values.pop_back();
    CHECK_THROWS_WITH_AS(screen(broken, {}), doctest::Contains("values for"), InputError);
}

using eol::test::Run;
using eol::test::run_cli;

TEST_CASE("cli: eolstation screen --features screens a CSV without a store") {
    // The table of the end-to-end test above, written as CSV with lot and date columns.
    const FeatureTable t = make_table(10, 200, 6, 0.075, 17);
    const eol::test::TempDir tmp;
    const auto& dir = tmp.dir;
    const auto csv = dir / "cells.csv";
    {
        std::ofstream f(csv);
        f.precision(17);
        f << "serial,lot,date,r0_ohm,r1_ohm,ocv_v\n";
        for (std::size_t i = 0; i < t.rows; ++i)
            f << t.serials[i] << "," << t.lot_names[t.lot[i]] << "," << day_to_iso(t.day[i]) << "," << t.values[i]
              << "," << t.values[t.rows + i] << "," << (i == 30 ? std::string("NA") : std::to_string(t.values[2 * t.rows + i]))
              << "\n";
    }
    const Run text = run_cli("screen --features '" + csv.string() + "'");
    INFO(text.out);
    CHECK(text.code == 1);  // cells flagged: a domain "no"
    CHECK(text.out.find("screened 2000 cells × 3 features") != std::string::npos);
    CHECK(text.out.find("S17 ") != std::string::npos);
    CHECK(text.out.find("PAT: r0_ohm 0.035 above") != std::string::npos);
    CHECK(text.out.find("lot LOT6:") != std::string::npos);
    CHECK(text.out.find("scored on the features they have") != std::string::npos);

    const Run js = run_cli("screen --features '" + csv.string() + "' --json --k 8 --quantile 0.9999");
    CHECK(js.code == 1);
    CHECK(js.out.find("\"serial\": \"S17\"") != std::string::npos);
    CHECK(js.out.find("\"held\": true") != std::string::npos);

    // Only the clean columns: nothing flagged, exit 0.
    const Run clean = run_cli("screen --features '" + csv.string() + "' --columns ocv_v --k 12 --quantile 0.999999");
    INFO(clean.out);
    CHECK(clean.code == 0);

    // Bad input: exit 2 with file:line and column.
    {
        std::ofstream f(dir / "bad.csv");
        f << "serial,r0_ohm\nA,0.02\nB,abc\n";
    }
    const Run bad = run_cli("screen --features '" + (dir / "bad.csv").string() + "'");
    CHECK(bad.code == 2);
    CHECK(bad.out.find("bad.csv:3: column 'r0_ohm': 'abc' is not a number") != std::string::npos);
    const Run nofeat = run_cli("screen --features '" + csv.string() + "' --columns dcir_ohm");
    CHECK(nofeat.code == 2);
    CHECK(nofeat.out.find("dcir_ohm") != std::string::npos);
}
