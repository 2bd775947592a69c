// eol/models/control_chart.hpp — individuals control chart of per-day
// medians with Nelson's eight rules, to find the day a process began to drift.
//
// A point is one production day: the median (numpy definition) of that day's
// non-missing values. Center line and sigma:
//   - from a baseline period [baseline_first_day, baseline_last_day] when one
//     is given: the mean of its points and sigma = mean moving range / 1.128
//     (the classic individuals chart; needs ≥ 2 baseline points);
//   - otherwise robustly from all points: the median of the points and
//     sigma = median moving range / 0.9539 (the median of |X1 - X2| for two
//     independent normals is 0.9539 σ), so a drift does not inflate its own
//     limits.
// Nelson's rules, evaluated on the window that ends at each point:
//   1 one point beyond 3σ            5 two of three beyond 2σ, same side
//   2 nine in a row on one side      6 four of five beyond 1σ, same side
//   3 six in a row rising or falling 7 fifteen in a row within 1σ
//   4 fourteen in a row alternating  8 eight in a row outside 1σ, both sides
// For each rule the first point at which it fires is reported, with the first
// point of that window (for rule 2, the run extended back to where it began):
// "when the drift began".
//
// Pure computation. Errors: InputError (mismatched lengths, baseline with
// fewer than 2 points).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eol/models/lot_tests.hpp"  // kNoDay, day helpers

namespace eol::models {

constexpr int kNelsonRules = 8;

/// Bit r-1 of element i is set when rule r fires at point i (its window ends
/// there). `sigma` must be positive.
std::vector<std::uint8_t> nelson_rules(std::span<const double> x, double center, double sigma);

/// First index of the window of rule `rule` (1…8) that ends at `i`.
std::size_t nelson_window_start(std::span<const double> x, double center, double sigma, int rule, std::size_t i);

struct RuleSignal {
    bool fired = false;
    std::size_t first_index = 0;     // first point where the rule fires
    std::size_t start_index = 0;     // first point of that window: when it began
    std::int32_t first_day = kNoDay;
    std::int32_t start_day = kNoDay;
    std::size_t points = 0;          // points at which the rule fires
};

struct ChartPoint {
    std::int32_t day = kNoDay;
    double value = 0.0;     // median of the day
    std::size_t count = 0;  // values that day
};

struct ChartSettings {
    std::int32_t baseline_first_day = kNoDay;  // both kNoDay: robust estimates over all points
    std::int32_t baseline_last_day = kNoDay;
    std::size_t min_count_per_day = 1;         // days with fewer values are left out
};

struct ControlChart {
    std::vector<ChartPoint> points;  // by day
    double center = 0.0;
    double sigma = 0.0;
    bool from_baseline = false;
    bool evaluated = false;          // false: < 2 points or sigma 0 (see note)
    std::string note;
    std::vector<std::uint8_t> fired; // per point, bit r-1 = rule r
    std::array<RuleSignal, kNelsonRules> rules;
};

/// Chart of per-day medians of `values` (NaN skipped) by `day_of_row`.
ControlChart daily_median_chart(std::span<const double> values, std::span<const std::int32_t> day_of_row,
                                const ChartSettings& settings = {});

/// Chart of a series already reduced to points (center/sigma as above).
ControlChart chart_of_points(std::vector<ChartPoint> points, const ChartSettings& settings = {});

}  // namespace eol::models
