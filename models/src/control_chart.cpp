// Individuals chart of per-day medians and Nelson's rules. See control_chart.hpp.
#include "eol/models/control_chart.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <sstream>

#include "eol/models/pat.hpp"
#include "eol/models/series.hpp"
#include "common.hpp"

namespace eol::models {
namespace {

using detail::cat;

int side(double v, double center) { return v > center ? 1 : (v < center ? -1 : 0); }

// Window length of each rule.
constexpr std::size_t kWindow[kNelsonRules] = {1, 9, 6, 14, 3, 5, 15, 8};

// Whether rule r (1…8) holds on x[i-len+1 … i].
bool rule_holds(std::span<const double> x, double c, double s, int r, std::size_t i) {
    const std::size_t len = kWindow[r - 1];
    if (i + 1 < len) return false;
    const std::size_t a = i + 1 - len;
    switch (r) {
        case 1: return std::fabs(x[i] - c) > 3.0 * s;
        case 2: {
            const int sd = side(x[a], c);
            if (sd == 0) return false;
            for (std::size_t k = a; k <= i; ++k)
                if (side(x[k], c) != sd) return false;
            return true;
        }
        case 3: {
            bool up = true, down = true;
            for (std::size_t k = a + 1; k <= i; ++k) {
                up = up && x[k] > x[k - 1];
                down = down && x[k] < x[k - 1];
            }
            return up || down;
        }
        case 4: {
            for (std::size_t k = a + 2; k <= i; ++k) {
                const double d1 = x[k - 1] - x[k - 2];
                const double d2 = x[k] - x[k - 1];
                if (!(d1 * d2 < 0.0)) return false;
            }
            return true;
        }
        case 5:
        case 6: {
            const double lim = (r == 5 ? 2.0 : 1.0) * s;
            const std::size_t need = r == 5 ? 2 : 4;
            std::size_t hi = 0, lo = 0;
            for (std::size_t k = a; k <= i; ++k) {
                hi += x[k] > c + lim ? 1u : 0u;
                lo += x[k] < c - lim ? 1u : 0u;
            }
            return hi >= need || lo >= need;
        }
        case 7: {
            for (std::size_t k = a; k <= i; ++k)
                if (!(std::fabs(x[k] - c) < s)) return false;
            return true;
        }
        case 8: {
            bool above = false, below = false;
            for (std::size_t k = a; k <= i; ++k) {
                if (!(std::fabs(x[k] - c) > s)) return false;
                above = above || x[k] > c;
                below = below || x[k] < c;
            }
            return above && below;
        }
        default: return false;
    }
}

}  // namespace

std::vector<std::uint8_t> nelson_rules(std::span<const double> x, double center, double sigma) {
    if (!(sigma > 0.0)) throw InputError(cat("Nelson rules: sigma ", sigma, " is not positive"));
    std::vector<std::uint8_t> out(x.size(), 0);
    for (std::size_t i = 0; i < x.size(); ++i)
        for (int r = 1; r <= kNelsonRules; ++r)
            if (rule_holds(x, center, sigma, r, i)) out[i] = static_cast<std::uint8_t>(out[i] | (1u << (r - 1)));
    return out;
}

std::size_t nelson_window_start(std::span<const double> x, double center, double sigma, int rule, std::size_t i) {
    if (rule < 1 || rule > kNelsonRules) throw InputError(cat("Nelson rules: no rule ", rule));
    if (i >= x.size()) throw InputError(cat("Nelson rules: point ", i, " of ", x.size()));
    const std::size_t len = kWindow[rule - 1];
    std::size_t a = i + 1 >= len ? i + 1 - len : 0;
    if (rule == 2) {  // the run extended back to where it began
        const int sd = side(x[i], center);
        while (a > 0 && sd != 0 && side(x[a - 1], center) == sd) --a;
    } else if (rule == 3 && i > 0) {  // the trend extended back
        const bool up = x[i] > x[i - 1];
        while (a > 0 && (up ? x[a] > x[a - 1] : x[a] < x[a - 1])) --a;
    } else if (rule == 5 || rule == 6) {  // the first point beyond the limit on the firing side
        const double lim = (rule == 5 ? 2.0 : 1.0) * sigma;
        std::size_t hi = 0;
        for (std::size_t k = a; k <= i; ++k) hi += x[k] > center + lim ? 1u : 0u;
        const bool upper = hi >= (rule == 5 ? 2u : 4u);
        while (a < i && !(upper ? x[a] > center + lim : x[a] < center - lim)) ++a;
    }
    return a;
}

ControlChart chart_of_points(std::vector<ChartPoint> points, const ChartSettings& settings) {
    ControlChart ch;
    std::sort(points.begin(), points.end(), [](const ChartPoint& a, const ChartPoint& b) { return a.day < b.day; });
    ch.points = std::move(points);
    const std::size_t m = ch.points.size();
    std::vector<double> x(m);
    for (std::size_t i = 0; i < m; ++i) x[i] = ch.points[i].value;

    const bool baseline = settings.baseline_first_day != kNoDay || settings.baseline_last_day != kNoDay;
    if (baseline) {
        const std::int32_t lo = settings.baseline_first_day;  // kNoDay is the lowest int: open start
        const std::int32_t hi = settings.baseline_last_day == kNoDay ? std::numeric_limits<std::int32_t>::max()
                                                                     : settings.baseline_last_day;
        std::vector<double> b;
        for (std::size_t i = 0; i < m; ++i)
            if (ch.points[i].day >= lo && ch.points[i].day <= hi) b.push_back(x[i]);
        if (b.size() < 2)
            throw InputError(cat("control chart: baseline ", day_to_iso(settings.baseline_first_day), " … ",
                                 day_to_iso(settings.baseline_last_day), " has ", b.size(),
                                 " day(s); at least 2 needed"));
        double sum = 0.0, mr = 0.0;
        for (double v : b) sum += v;
        for (std::size_t k = 1; k < b.size(); ++k) mr += std::fabs(b[k] - b[k - 1]);
        ch.center = sum / static_cast<double>(b.size());
        ch.sigma = mr / static_cast<double>(b.size() - 1) / 1.128;
        ch.from_baseline = true;
    } else if (m >= 2) {
        std::vector<double> tmp(x);
        ch.center = median_inplace(tmp);
        std::vector<double> mr(m - 1);
        for (std::size_t k = 1; k < m; ++k) mr[k - 1] = std::fabs(x[k] - x[k - 1]);
        ch.sigma = median_inplace(mr) / 0.9539;
    }
    ch.fired.assign(m, 0);
    if (m < 2 || !(ch.sigma > 0.0)) {
        ch.note = m < 2 ? "fewer than 2 days: rules not evaluated" : "sigma is zero: rules not evaluated";
        return ch;
    }
    ch.evaluated = true;
    ch.fired = nelson_rules(x, ch.center, ch.sigma);
    for (int r = 1; r <= kNelsonRules; ++r) {
        RuleSignal& sig = ch.rules[static_cast<std::size_t>(r - 1)];
        for (std::size_t i = 0; i < m; ++i) {
            if ((ch.fired[i] & (1u << (r - 1))) == 0) continue;
            if (!sig.fired) {
                sig.fired = true;
                sig.first_index = i;
                const std::size_t a = nelson_window_start(x, ch.center, ch.sigma, r, i);
                sig.start_index = a;
                sig.first_day = ch.points[i].day;
                sig.start_day = ch.points[a].day;
            }
            ++sig.points;
        }
    }
    return ch;
}

ControlChart daily_median_chart(std::span<const double> values, std::span<const std::int32_t> day_of_row,
                                const ChartSettings& settings) {
    if (values.size() != day_of_row.size())
        throw InputError(cat("control chart: ", values.size(), " values but ", day_of_row.size(), " days"));
    // Group by day: a counting sort over the day range (a plain sort when the
    // range is absurdly wide), then the median of each day.
    std::int32_t lo = std::numeric_limits<std::int32_t>::max(), hi = std::numeric_limits<std::int32_t>::min();
    std::size_t usable = 0;
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (day_of_row[i] == kNoDay || std::isnan(values[i])) continue;
        lo = std::min(lo, day_of_row[i]);
        hi = std::max(hi, day_of_row[i]);
        ++usable;
    }
    std::vector<ChartPoint> points;
    const std::size_t min_count = std::max<std::size_t>(1, settings.min_count_per_day);
    if (usable == 0) return chart_of_points(std::move(points), settings);
    std::vector<double> grouped(usable);
    std::vector<std::int32_t> group_day;
    std::vector<std::size_t> offsets;  // per group: [offsets[g], offsets[g+1])
    if (static_cast<std::int64_t>(hi) - lo < 4'000'000) {
        const auto span = static_cast<std::size_t>(static_cast<std::int64_t>(hi) - lo + 1);
        std::vector<std::size_t> start(span + 1, 0);
        for (std::size_t i = 0; i < values.size(); ++i)
            if (day_of_row[i] != kNoDay && !std::isnan(values[i])) ++start[static_cast<std::size_t>(day_of_row[i] - lo) + 1];
        for (std::size_t k = 0; k < span; ++k) start[k + 1] += start[k];
        std::vector<std::size_t> pos(start.begin(), start.end() - 1);
        for (std::size_t i = 0; i < values.size(); ++i)
            if (day_of_row[i] != kNoDay && !std::isnan(values[i]))
                grouped[pos[static_cast<std::size_t>(day_of_row[i] - lo)]++] = values[i];
        for (std::size_t k = 0; k < span; ++k) {
            if (start[k + 1] == start[k]) continue;
            group_day.push_back(lo + static_cast<std::int32_t>(k));
            offsets.push_back(start[k]);
        }
        offsets.push_back(usable);
    } else {
        std::vector<std::pair<std::int32_t, double>> rows;
        rows.reserve(usable);
        for (std::size_t i = 0; i < values.size(); ++i)
            if (day_of_row[i] != kNoDay && !std::isnan(values[i])) rows.emplace_back(day_of_row[i], values[i]);
        std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        for (std::size_t k = 0; k < rows.size(); ++k) {
            grouped[k] = rows[k].second;
            if (k == 0 || rows[k].first != rows[k - 1].first) {
                group_day.push_back(rows[k].first);
                offsets.push_back(k);
            }
        }
        offsets.push_back(usable);
    }
    for (std::size_t g = 0; g < group_day.size(); ++g) {
        const std::size_t count = offsets[g + 1] - offsets[g];
        if (count < min_count) continue;
        points.push_back({group_day[g], median_inplace(std::span<double>(grouped.data() + offsets[g], count)), count});
    }
    return chart_of_points(std::move(points), settings);
}

}  // namespace eol::models
