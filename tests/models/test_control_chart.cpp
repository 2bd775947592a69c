// Nelson's rules, each on a crafted series that fires it and one that does
// not (center 0, sigma 1), then the daily-median chart: robust and baseline
// limits, and the day a planted drift began.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "eol/models/control_chart.hpp"
#include "eol/models/series.hpp"

using namespace eol::models;

namespace {

// Index of the first point at which rule r fires, or -1.
long first_fire(const std::vector<double>& x, int r) {
    const auto f = nelson_rules(x, 0.0, 1.0);
    for (std::size_t i = 0; i < f.size(); ++i)
        if (f[i] & (1u << (r - 1))) return static_cast<long>(i);
    return -1;
}

}  // namespace

TEST_CASE("nelson rule 1: one point beyond 3 sigma") {
    CHECK(first_fire({0.0, 0.5, -0.5, 3.5, 0.0}, 1) == 3);
    CHECK(first_fire({0.0, -3.2}, 1) == 1);
    CHECK(first_fire({0.0, 2.9, -2.99, 3.0}, 1) == -1);  // 3.0 is not beyond
}

TEST_CASE("nelson rule 2: nine in a row on one side") {
    CHECK(first_fire({-0.2, 0.3, 0.1, 0.4, 0.2, 0.6, 0.1, 0.2, 0.3, 0.5}, 2) == 9);
    CHECK(first_fire(std::vector<double>(9, -0.4), 2) == 8);
    CHECK(first_fire({0.3, 0.1, 0.4, 0.2, 0.6, 0.1, 0.2, 0.3, -0.5, 0.3}, 2) == -1);
    CHECK(first_fire({0.3, 0.1, 0.4, 0.2, 0.0, 0.6, 0.1, 0.2, 0.3, 0.5}, 2) == -1);  // on the line breaks it
}

TEST_CASE("nelson rule 3: six in a row rising or falling") {
    CHECK(first_fire({0.5, -0.6, -0.4, -0.1, 0.2, 0.3, 0.7}, 3) == 6);
    CHECK(first_fire({0.6, 0.5, 0.4, 0.3, 0.2, 0.1}, 3) == 5);
    CHECK(first_fire({0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.6}, 3) == -1);  // a tie breaks the run
    CHECK(first_fire({0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.6}, 3) == -1);
}

TEST_CASE("nelson rule 4: fourteen in a row alternating") {
    std::vector<double> alt;
    for (int i = 0; i < 14; ++i) alt.push_back(i % 2 == 0 ? 0.4 : -0.3);
    CHECK(first_fire(alt, 4) == 13);
    std::vector<double> short_alt(alt.begin(), alt.begin() + 13);
    CHECK(first_fire(short_alt, 4) == -1);
    alt[7] = alt[6];  // one step without a change breaks the alternation
    CHECK(first_fire(alt, 4) == -1);
}

TEST_CASE("nelson rule 5: two of three beyond 2 sigma on the same side") {
    CHECK(first_fire({0.0, 2.5, 0.0, 2.2}, 5) == 3);
    CHECK(first_fire({0.0, -2.1, -2.6}, 5) == 2);
    CHECK(first_fire({2.5, 0.0, -2.5, 0.0, 2.5}, 5) == -1);  // opposite sides
    CHECK(first_fire({2.5, 0.0, 0.0, 2.5}, 5) == -1);        // not within three
}

TEST_CASE("nelson rule 6: four of five beyond 1 sigma on the same side") {
    CHECK(first_fire({1.5, 1.2, 0.0, 1.1, 1.9}, 6) == 4);
    CHECK(first_fire({0.0, -1.5, -1.2, -1.1, -1.9}, 6) == 4);
    CHECK(first_fire({-1.5, -1.2, -1.1, -1.9}, 6) == -1);  // a window of five needs five points
    CHECK(first_fire({1.5, -1.5, 1.5, -1.5, 1.5}, 6) == -1);
    CHECK(first_fire({1.5, 1.5, 0.0, 0.0, 1.5, 1.5}, 6) == -1);
}

TEST_CASE("nelson rule 7: fifteen in a row within 1 sigma") {
    std::vector<double> calm;
    for (int i = 0; i < 15; ++i) calm.push_back((i / 2) % 2 == 0 ? 0.3 : -0.2);
    CHECK(first_fire(calm, 7) == 14);
    calm[9] = 1.2;
    CHECK(first_fire(calm, 7) == -1);
}

TEST_CASE("nelson rule 8: eight in a row outside 1 sigma, on both sides") {
    CHECK(first_fire({1.5, -1.5, 1.2, 1.8, -1.4, -1.1, 2.0, -1.6}, 8) == 7);
    CHECK(first_fire(std::vector<double>(8, 1.5), 8) == -1);         // one side only
    CHECK(first_fire({1.5, -1.5, 1.2, 0.8, -1.4, -1.1, 2.0, -1.6}, 8) == -1);
    const std::vector<double> two{1.0, 2.0};
    CHECK_THROWS_AS(nelson_rules(two, 0.0, 0.0), InputError);
}

TEST_CASE("chart: per-day medians, robust limits, and the day a drift began") {
    // 60 days from 2023-03-01, 30 cells a day ~ N(20, 1); from day 40 the
    // process mean moves up by 0.5 (≈ 2.7 σ of a daily median).
    std::mt19937 rng(8);
    std::normal_distribution<double> nd(0.0, 1.0);
    const std::int32_t d0 = *parse_iso_day("2023-03-01");
    std::vector<double> v;
    std::vector<std::int32_t> day;
    for (int d = 0; d < 60; ++d)
        for (int i = 0; i < 30; ++i) {
            v.push_back(20.0 + nd(rng) + (d >= 40 ? 0.5 : 0.0));
            day.push_back(d0 + d);
        }
    // Rows out of day order and a row without a day do not matter.
    std::swap(v[5], v[1000]);
    std::swap(day[5], day[1000]);
    v.push_back(99.0);
    day.push_back(kNoDay);

    ChartSettings base;
    base.baseline_first_day = d0;
    base.baseline_last_day = d0 + 29;  // the first 30 days are known good
    const ControlChart ch = daily_median_chart(v, day, base);
    REQUIRE(ch.points.size() == 60);
    CHECK(ch.points[0].count == 30);
    CHECK(ch.from_baseline);
    CHECK(ch.evaluated);
    CHECK(ch.center == doctest::Approx(20.0).epsilon(0.01));
    CHECK(ch.sigma > 0.1);
    CHECK(ch.sigma < 0.35);
    // Nine in a row above the center: fires on the 9th day of the drift at the
    // latest, and the run is traced back to the day it began.
    const RuleSignal& r2 = ch.rules[1];
    REQUIRE(r2.fired);
    CHECK(r2.first_day >= d0 + 40);
    CHECK(r2.first_day <= d0 + 48);
    CHECK(r2.start_day >= d0 + 37);
    CHECK(r2.start_day <= d0 + 40);
    CHECK(day_to_iso(r2.start_day).substr(0, 7) == "2023-04");
    // Before the drift nothing but chance fires rule 1.
    CHECK((!ch.rules[0].fired || ch.rules[0].first_day >= d0 + 40));

    // Robust limits from all points: the drift does not hide itself.
    const ControlChart robust = daily_median_chart(v, day);
    CHECK_FALSE(robust.from_baseline);
    CHECK(robust.rules[1].fired);
    // Too few points, or a baseline without points, are reported.
    const ControlChart tiny = chart_of_points({{d0, 1.0, 1}});
    CHECK_FALSE(tiny.evaluated);
    CHECK_FALSE(tiny.note.empty());
    ChartSettings empty_base;
    empty_base.baseline_first_day = d0 + 1000;
    empty_base.baseline_last_day = d0 + 1001;
    CHECK_THROWS_WITH_AS(daily_median_chart(v, day, empty_base), doctest::Contains("baseline"), InputError);
    CHECK_THROWS_AS(daily_median_chart(v, std::vector<std::int32_t>(3, d0)), InputError);
}
