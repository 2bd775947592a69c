// PAT: type-7 quantiles (hand-computed, and against a sort-based reference),
// robust limits, spec clipping, static limits from reference lots and their
// adequacy, dynamic limits per lot and the minimum count fallback.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "eol/models/pat.hpp"
#include "eol/models/series.hpp"

using namespace eol::models;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Type-7 quantile by full sort (the definition, for comparison).
double sorted_quantile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    const double h = static_cast<double>(v.size() - 1) * q;
    const auto lo = static_cast<std::size_t>(std::floor(h));
    if (lo + 1 >= v.size()) return v[lo];
    return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}

bool contains(const std::vector<std::string>& notes, const std::string& part) {
    for (const auto& n : notes)
        if (n.find(part) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE("pat: type-7 quantiles by hand (numpy.percentile values)") {
    // numpy.percentile(range(1, 11), [25, 50, 75]) = [3.25, 5.5, 7.75]
    std::vector<double> ten{7, 3, 10, 1, 5, 9, 2, 8, 6, 4};
    std::vector<double> scratch;
    const RobustSummary s = robust_summary(ten, scratch);
    CHECK(s.count == 10);
    CHECK(s.q1 == 3.25);
    CHECK(s.median == 5.5);
    CHECK(s.q3 == 7.75);
    CHECK(s.robust_sigma == doctest::Approx(4.5 / 1.35));
    // Odd count: sorted 1 2 3 5 7 8 9 → Q1 at h=1.5 → 2.5, Q3 at h=4.5 → 7.5.
    std::vector<double> seven{9, 1, 7, 3, 5, 2, 8};
    const RobustSummary o = robust_summary(seven, scratch);
    CHECK(o.median == 5.0);
    CHECK(o.q1 == 2.5);
    CHECK(o.q3 == 7.5);
    // quantile_inplace at the ends and in between.
    std::vector<double> v{4, 1, 3, 2};
    CHECK(quantile_inplace(v, 0.0) == 1.0);
    CHECK(quantile_inplace(v, 1.0) == 4.0);
    CHECK(quantile_inplace(v, 0.1) == doctest::Approx(1.3));
    CHECK(median_inplace(v) == 2.5);
    // One and two values.
    std::vector<double> one{42};
    CHECK(robust_summary(one, scratch).q1 == 42);
    std::vector<double> two{1, 3};
    const RobustSummary t = robust_summary(two, scratch);
    CHECK(t.q1 == 1.5);
    CHECK(t.median == 2.0);
    CHECK(t.q3 == 2.5);
}

TEST_CASE("pat: selection-based quantiles equal the sort-based definition") {
    std::mt19937 rng(5);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<double> scratch;
    for (std::size_t n : {3u, 4u, 5u, 17u, 100u, 1001u, 4096u}) {
        std::vector<double> x(n);
        for (auto& v : x) v = std::round(nd(rng) * 8.0) / 8.0;  // with ties
        const RobustSummary s = robust_summary(x, scratch);
        INFO("n = " << n);
        CHECK(s.q1 == doctest::Approx(sorted_quantile(x, 0.25)).epsilon(1e-15));
        CHECK(s.median == doctest::Approx(sorted_quantile(x, 0.5)).epsilon(1e-15));
        CHECK(s.q3 == doctest::Approx(sorted_quantile(x, 0.75)).epsilon(1e-15));
        for (double q : {0.01, 0.3, 0.999}) {
            std::vector<double> c = x;
            CHECK(quantile_inplace(c, q) == doctest::Approx(sorted_quantile(x, q)).epsilon(1e-15));
        }
    }
}

TEST_CASE("pat: missing values are skipped, bad input is an error") {
    std::vector<double> x{kNaN, 1, 2, kNaN, 3, 4, 5};
    std::vector<double> scratch;
    const RobustSummary s = robust_summary(x, scratch);
    CHECK(s.count == 5);
    CHECK(s.median == 3.0);
    std::vector<double> none{kNaN, kNaN};
    CHECK(robust_summary(none, scratch).count == 0);
    CHECK(std::isnan(robust_summary(none, scratch).median));
    std::vector<double> empty;
    CHECK_THROWS_AS(quantile_inplace(empty, 0.5), InputError);
    std::vector<double> v{1, 2};
    CHECK_THROWS_WITH_AS(quantile_inplace(v, 1.5), doctest::Contains("outside [0, 1]"), InputError);
    CHECK_THROWS_AS(pat_limits(v, 0.0, {}, scratch), InputError);
}

TEST_CASE("pat: limits are median ± k robust sigma, clipped to the spec, never wider") {
    std::vector<double> ten{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    std::vector<double> scratch;
    // Robust sigma 4.5/1.35 = 3.333…; k = 6 → 5.5 ± 20.
    PatLimits open = pat_limits(ten, 6.0, {}, scratch);
    CHECK(open.low == doctest::Approx(-14.5));
    CHECK(open.high == doctest::Approx(25.5));
    CHECK_FALSE(open.spec_clipped_low);
    CHECK_FALSE(open.spec_clipped_high);
    // A tighter spec wins on that side only.
    PatLimits clipped = pat_limits(ten, 6.0, SpecLimits{0.0, 100.0}, scratch);
    CHECK(clipped.low == 0.0);
    CHECK(clipped.spec_clipped_low);
    CHECK(clipped.high == doctest::Approx(25.5));
    CHECK_FALSE(clipped.spec_clipped_high);
    CHECK(clipped.contains(-0.0));
    CHECK_FALSE(clipped.contains(-0.1));
    CHECK(clipped.contains(kNaN));  // missing is never out of limits
    // Smaller k tightens.
    PatLimits k3 = pat_limits(ten, 3.0, {}, scratch);
    CHECK(k3.high == doctest::Approx(15.5));
    // Zero IQR: no PAT limits (they would flag every value off the median).
    std::vector<double> flat{2, 2, 2, 2, 2, 2, 3};
    CHECK(pat_limits(flat, 6.0, SpecLimits{1.0, 4.0}, scratch).source == PatSource::spec_only);
}

TEST_CASE("pat: static limits from ≥ 6 reference lots of ≥ 30 parts, dynamic limits per lot") {
    // 7 lots: lots 0-5 have 40 parts ~ N(10, 1), lot 6 has 40 parts ~ N(10.5, 0.5)
    // and one gross outlier; lot 3 is not a reference lot.
    std::mt19937 rng(11);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<double> col;
    std::vector<std::uint32_t> lot;
    for (std::uint32_t c = 0; c < 7; ++c)
        for (int i = 0; i < 40; ++i) {
            col.push_back(c == 6 ? 10.5 + 0.5 * nd(rng) : 10.0 + nd(rng));
            lot.push_back(c);
        }
    col[6 * 40 + 5] = 30.0;
    std::vector<std::uint8_t> ref{1, 1, 1, 0, 1, 1, 1};
    const std::vector<std::string> names{"A", "B", "C", "D", "E", "F", "G"};
    PatSettings st;
    PatFeatureResult r = pat_feature(col, lot, 7, ref, SpecLimits{}, st, names);
    CHECK(r.reference_lots == 6);
    CHECK(r.static_adequate);
    CHECK(r.notes.empty());
    // Static: pooled reference values.
    std::vector<double> pooled;
    for (std::size_t i = 0; i < col.size(); ++i)
        if (ref[lot[i]]) pooled.push_back(col[i]);
    const double med = sorted_quantile(pooled, 0.5);
    const double sig = (sorted_quantile(pooled, 0.75) - sorted_quantile(pooled, 0.25)) / 1.35;
    CHECK(r.static_limits.high == doctest::Approx(med + 6.0 * sig));
    CHECK(r.static_limits.low == doctest::Approx(med - 6.0 * sig));
    CHECK(r.static_limits.source == PatSource::static_reference);
    // Dynamic: each lot its own, within the static limits.
    REQUIRE(r.lot_limits.size() == 7);
    std::vector<double> g(col.begin() + 6 * 40, col.end());
    const double gm = sorted_quantile(g, 0.5);
    const double gs = (sorted_quantile(g, 0.75) - sorted_quantile(g, 0.25)) / 1.35;
    CHECK(r.lot_limits[6].source == PatSource::dynamic_lot);
    CHECK(r.lot_limits[6].high == doctest::Approx(std::min(gm + 6.0 * gs, r.static_limits.high)));
    CHECK(r.lot_limits[6].low == doctest::Approx(std::max(gm - 6.0 * gs, r.static_limits.low)));
    CHECK_FALSE(r.lot_limits[6].contains(30.0));
    CHECK(r.lot_limits[3].source == PatSource::dynamic_lot);  // not a reference, still its own dynamic limits

    // Only 5 reference lots with ≥ 30 parts: computed, but not adequate, and said so.
    std::vector<std::uint8_t> few{1, 1, 1, 0, 1, 1, 0};
    PatFeatureResult f = pat_feature(col, lot, 7, few, SpecLimits{}, st, names);
    CHECK(f.reference_lots == 5);
    CHECK_FALSE(f.static_adequate);
    CHECK(contains(f.notes, "not adequate"));
    CHECK(f.static_limits.source == PatSource::static_reference);
}

TEST_CASE("pat: a lot below the minimum count falls back to the static limits, noted") {
    std::vector<double> col;
    std::vector<std::uint32_t> lot;
    for (int i = 0; i < 200; ++i) {
        col.push_back(1.0 + 0.01 * (i % 17));
        lot.push_back(0);
    }
    for (int i = 0; i < 12; ++i) {  // lot 1: 12 parts, far tighter
        col.push_back(1.08 + 0.0001 * i);
        lot.push_back(1);
    }
    col.push_back(kNaN);  // lot 2: only a missing value
    lot.push_back(2);
    PatSettings st;  // min_dynamic_count 20
    const std::vector<std::string> names{"big", "small", "empty"};
    PatFeatureResult r = pat_feature(col, lot, 3, {}, SpecLimits{0.5, 2.0}, st, names);
    CHECK(r.lot_limits[0].source == PatSource::dynamic_lot);
    CHECK(r.lot_limits[1].source == PatSource::static_reference);
    CHECK(r.lot_limits[1].high == r.static_limits.high);
    CHECK(contains(r.notes, "small (12 values)"));
    CHECK_FALSE(contains(r.notes, "empty"));
    // With a minimum of 10 the small lot gets its own limits.
    st.min_dynamic_count = 10;
    PatFeatureResult r10 = pat_feature(col, lot, 3, {}, SpecLimits{0.5, 2.0}, st, names);
    CHECK(r10.lot_limits[1].source == PatSource::dynamic_lot);
    CHECK(r10.lot_limits[1].high < r10.static_limits.high);
    // Static mode: every lot judged by the static limits.
    PatSettings stat = st;
    stat.dynamic = false;
    PatFeatureResult rs = pat_feature(col, lot, 3, {}, SpecLimits{0.5, 2.0}, stat, names);
    CHECK(rs.lot_limits[0].source == PatSource::static_reference);
    CHECK(rs.lot_limits[0].high == rs.static_limits.high);
    // No lots at all: one lot.
    PatFeatureResult single = pat_feature(col, {}, 0, {}, SpecLimits{}, st);
    CHECK(single.lot_limits.size() == 1);
    CHECK(single.lot_limits[0].stats.count == col.size() - 1);
    // Errors name the mismatch.
    std::vector<std::uint32_t> short_lots(3, 0);
    CHECK_THROWS_WITH_AS(pat_feature(col, short_lots, 1, {}, SpecLimits{}, st), doctest::Contains("lot codes"),
                         InputError);
    CHECK_THROWS_AS(pat_feature(col, lot, 3, {}, SpecLimits{2.0, 1.0}, st), InputError);
}
