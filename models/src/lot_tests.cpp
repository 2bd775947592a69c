// Lot containment: production-window keys from day numbers and the binomial
// test of each group's outlier rate. See lot_tests.hpp.
#include "eol/models/lot_tests.hpp"

#include "eol/models/calendar.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>
#include <utility>

#include "eol/models/series.hpp"
#include "common.hpp"

namespace eol::models {
namespace {

using detail::cat;

// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian).
struct Civil {
    int year;
    unsigned month;  // 1…12
    unsigned day;    // 1…31
};

std::int32_t days_from_civil(int y, unsigned m, unsigned d) {
    y -= m <= 2 ? 1 : 0;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int32_t>(doe) - 719468;
}

Civil civil_from_days(std::int32_t z) {
    z += 719468;
    const std::int32_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int y = static_cast<int>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    return {y + (m <= 2 ? 1 : 0), m, d};
}


// "YYYY-MM-DD", "YYYY-MM", "YYYY-Www" (snprintf: GCC 12 warns falsely on
// chains of std::string + at -O3).
std::string format_date(int y, unsigned a, unsigned b, const char* pattern) {
    char buf[32];
    const int len = std::snprintf(buf, sizeof buf, pattern, y, a, b);
    return std::string(buf, static_cast<std::size_t>(std::max(0, len)));
}

// ISO 8601 week-numbering year and week of a day.
std::pair<int, unsigned> iso_week(std::int32_t day) {
    const std::int32_t wd = ((day % 7) + 7 + 3) % 7;  // Monday = 0; 1970-01-01 was a Thursday
    const std::int32_t thursday = day - wd + 3;
    const int y = civil_from_days(thursday).year;
    const std::int32_t jan1 = days_from_civil(y, 1, 1);
    return {y, static_cast<unsigned>((thursday - jan1) / 7 + 1)};
}

std::uint32_t month_code(std::int32_t day) {
    const Civil c = civil_from_days(day);
    return static_cast<std::uint32_t>((c.year + 10000) * 12) + (c.month - 1);
}
std::uint32_t week_code(std::int32_t day) {
    const auto [y, w] = iso_week(day);
    return static_cast<std::uint32_t>((y + 10000) * 100) + w;
}

}  // namespace

std::optional<std::int32_t> parse_iso_day(std::string_view text) {
    if (text.size() < 10) return std::nullopt;
    if (text.size() > 10 && text[10] != 'T' && text[10] != ' ' && text[10] != 't') return std::nullopt;
    auto digits = [&](std::size_t from, std::size_t len, unsigned& out) {
        out = 0;
        for (std::size_t i = from; i < from + len; ++i) {
            if (text[i] < '0' || text[i] > '9') return false;
            out = out * 10 + static_cast<unsigned>(text[i] - '0');
        }
        return true;
    };
    unsigned y, m, d;
    if (!digits(0, 4, y) || text[4] != '-' || !digits(5, 2, m) || text[7] != '-' || !digits(8, 2, d))
        return std::nullopt;
    if (m < 1 || m > 12 || d < 1 || d > static_cast<unsigned>(days_in_month(static_cast<int>(y), static_cast<int>(m)))) return std::nullopt;
    return days_from_civil(static_cast<int>(y), m, d);
}

std::string day_to_iso(std::int32_t day) {
    if (day == kNoDay) return "";
    const Civil c = civil_from_days(day);
    return format_date(c.year, c.month, c.day, "%04d-%02u-%02u");
}

std::string month_key(std::int32_t day) {
    if (day == kNoDay) return "";
    const Civil c = civil_from_days(day);
    return format_date(c.year, c.month, 0, "%04d-%02u");
}

std::string iso_week_key(std::int32_t day) {
    if (day == kNoDay) return "";
    const auto [y, w] = iso_week(day);
    return format_date(y, w, 0, "%04d-W%02u");
}

const char* to_string(GroupKind kind) {
    switch (kind) {
        case GroupKind::lot: return "lot";
        case GroupKind::month: return "month";
        case GroupKind::week: return "week";
    }
    return "?";
}

LotTestResult test_groups(std::span<const std::uint8_t> outlier, std::span<const std::uint32_t> lot_of_row,
                          std::span<const std::string> lot_names, std::span<const std::int32_t> day_of_row,
                          const LotTestSettings& settings) {
    const std::size_t n = outlier.size();
    if (!lot_of_row.empty() && lot_of_row.size() != n)
        throw InputError(cat("lot tests: ", lot_of_row.size(), " lot codes for ", n, " cells"));
    if (!day_of_row.empty() && day_of_row.size() != n)
        throw InputError(cat("lot tests: ", day_of_row.size(), " days for ", n, " cells"));
    if (!(settings.alpha > 0.0 && settings.alpha < 1.0))
        throw InputError(cat("lot tests: alpha ", settings.alpha, " outside (0, 1)"));
    LotTestResult r;
    std::size_t total_out = 0;
    for (auto o : outlier) total_out += o != 0 ? 1u : 0u;
    if (std::isnan(settings.baseline_rate)) {
        r.baseline_rate = n > 0 ? static_cast<double>(total_out) / static_cast<double>(n) : 0.0;
    } else {
        if (!(settings.baseline_rate >= 0.0 && settings.baseline_rate < 1.0))
            throw InputError(cat("lot tests: baseline rate ", settings.baseline_rate, " outside [0, 1)"));
        r.baseline_rate = settings.baseline_rate;
    }

    auto add_group = [&](GroupKind kind, std::string key, std::uint32_t code, std::size_t cells, std::size_t outs) {
        GroupTest g;
        g.kind = kind;
        g.key = std::move(key);
        g.code = code;
        g.cells = cells;
        g.outliers = outs;
        g.rate = cells > 0 ? static_cast<double>(outs) / static_cast<double>(cells) : 0.0;
        r.groups.push_back(std::move(g));
    };

    if (settings.by_lot && !lot_of_row.empty()) {
        std::size_t n_lots = lot_names.size();
        for (auto c : lot_of_row) n_lots = std::max<std::size_t>(n_lots, std::size_t{c} + 1);
        std::vector<std::size_t> cells(n_lots, 0), outs(n_lots, 0);
        for (std::size_t i = 0; i < n; ++i) {
            ++cells[lot_of_row[i]];
            outs[lot_of_row[i]] += outlier[i] != 0 ? 1u : 0u;
        }
        for (std::size_t c = 0; c < n_lots; ++c) {
            if (cells[c] == 0) continue;
            add_group(GroupKind::lot, c < lot_names.size() ? lot_names[c] : cat("#", c), static_cast<std::uint32_t>(c),
                      cells[c], outs[c]);
        }
    }
    const std::size_t n_lot_groups = r.groups.size();

    // Windows: counts per distinct day (dense over the day range), then per
    // month / ISO week. `skip_lot[c]`: leave lot c's cells out.
    std::vector<std::uint8_t> skip_lot;
    std::int32_t lo = std::numeric_limits<std::int32_t>::max(), hi = std::numeric_limits<std::int32_t>::min();
    for (auto d : day_of_row) {
        if (d == kNoDay) continue;
        lo = std::min(lo, d);
        hi = std::max(hi, d);
    }
    auto per_day_counts = [&]() {
        std::map<std::int32_t, std::pair<std::size_t, std::size_t>> per_day;
        auto skipped = [&](std::size_t i) {
            return !skip_lot.empty() && !lot_of_row.empty() && skip_lot[lot_of_row[i]] != 0;
        };
        if (lo <= hi && static_cast<std::int64_t>(hi) - lo < 4'000'000) {
            const auto span = static_cast<std::size_t>(static_cast<std::int64_t>(hi) - lo + 1);
            std::vector<std::size_t> cells(span, 0), outs(span, 0);
            for (std::size_t i = 0; i < n; ++i) {
                if (day_of_row[i] == kNoDay || skipped(i)) continue;
                const auto k = static_cast<std::size_t>(day_of_row[i] - lo);
                ++cells[k];
                outs[k] += outlier[i] != 0 ? 1u : 0u;
            }
            for (std::size_t k = 0; k < span; ++k)
                if (cells[k] > 0) per_day[lo + static_cast<std::int32_t>(k)] = {cells[k], outs[k]};
        } else {
            for (std::size_t i = 0; i < n; ++i) {
                if (day_of_row[i] == kNoDay || skipped(i)) continue;
                auto& e = per_day[day_of_row[i]];
                ++e.first;
                e.second += outlier[i] != 0 ? 1u : 0u;
            }
        }
        return per_day;
    };
    // Window code → (cells, outliers) for one kind.
    auto window_counts = [&](const auto& per_day, auto code_of) {
        std::map<std::uint32_t, std::pair<std::size_t, std::size_t>> agg;
        for (const auto& [day, e] : per_day) {
            auto& a = agg[code_of(day)];
            a.first += e.first;
            a.second += e.second;
        }
        return agg;
    };
    const bool windows = !day_of_row.empty() && (settings.by_month || settings.by_week);
    if (windows) {
        const auto per_day = per_day_counts();
        auto add_kind = [&](GroupKind kind, auto code_of, auto key_of) {
            std::map<std::uint32_t, std::int32_t> example;
            for (const auto& [day, e] : per_day) example.emplace(code_of(day), day);
            for (const auto& [c, e] : window_counts(per_day, code_of)) add_group(kind, key_of(example[c]), c, e.first, e.second);
        };
        if (settings.by_month) add_kind(GroupKind::month, month_code, month_key);
        if (settings.by_week) add_kind(GroupKind::week, week_code, iso_week_key);
    }

    // Bonferroni over every group big enough to test (decided on the full counts).
    r.tests = 0;
    for (auto& g : r.groups) {
        g.tested = g.cells >= settings.min_cells;
        r.tests += g.tested ? 1u : 0u;
    }
    r.alpha_per_test = r.tests > 0 ? settings.alpha / static_cast<double>(r.tests) : settings.alpha;
    auto test = [&](GroupTest& g) {
        if (!g.tested) return;
        g.p_value = g.cells > 0 ? binomial_upper_tail(g.outliers, g.cells, r.baseline_rate) : 1.0;
        g.held = g.p_value < r.alpha_per_test;
    };
    for (std::size_t k = 0; k < n_lot_groups; ++k) test(r.groups[k]);

    // Windows are judged on the cells outside the lots already held, so one bad
    // lot does not hold the month it was made in; a drift spread over many
    // lots (each below the lot threshold) still does.
    if (windows && settings.windows_exclude_held_lots) {
        for (std::size_t k = 0; k < n_lot_groups; ++k) {
            if (!r.groups[k].held) continue;
            if (skip_lot.empty()) skip_lot.assign(lot_names.size() + 1, 0);
            if (r.groups[k].code >= skip_lot.size()) skip_lot.resize(r.groups[k].code + 1, 0);
            skip_lot[r.groups[k].code] = 1;
        }
        if (!skip_lot.empty()) {
            const auto per_day = per_day_counts();
            const auto months = window_counts(per_day, month_code);
            const auto weeks = window_counts(per_day, week_code);
            for (std::size_t k = n_lot_groups; k < r.groups.size(); ++k) {
                GroupTest& g = r.groups[k];
                const auto& m = g.kind == GroupKind::month ? months : weeks;
                const auto it = m.find(g.code);
                const std::size_t cells = it == m.end() ? 0 : it->second.first;
                const std::size_t outs = it == m.end() ? 0 : it->second.second;
                g.excluded = g.cells - cells;
                g.cells = cells;
                g.outliers = outs;
                g.rate = cells > 0 ? static_cast<double>(outs) / static_cast<double>(cells) : 0.0;
            }
        }
    }
    for (std::size_t k = n_lot_groups; k < r.groups.size(); ++k) test(r.groups[k]);
    return r;
}

std::vector<std::uint8_t> held_cells(const LotTestResult& result, std::span<const std::uint32_t> lot_of_row,
                                     std::span<const std::int32_t> day_of_row) {
    const std::size_t n = std::max(lot_of_row.size(), day_of_row.size());
    std::vector<std::uint8_t> held(n, 0);
    std::vector<std::uint32_t> lots, months, weeks;
    for (const auto& g : result.groups) {
        if (!g.held) continue;
        (g.kind == GroupKind::lot ? lots : g.kind == GroupKind::month ? months : weeks).push_back(g.code);
    }
    auto in = [](const std::vector<std::uint32_t>& v, std::uint32_t c) {
        for (auto x : v)
            if (x == c) return true;
        return false;
    };
    if (lots.empty() && months.empty() && weeks.empty()) return held;
    std::int32_t last_day = kNoDay;
    bool last_held = false;  // rows usually come in day order: memoize the day's answer
    for (std::size_t i = 0; i < n; ++i) {
        bool h = false;
        if (!lots.empty() && i < lot_of_row.size()) h = in(lots, lot_of_row[i]);
        if (!h && i < day_of_row.size() && day_of_row[i] != kNoDay) {
            const std::int32_t d = day_of_row[i];
            if (d != last_day) {
                last_day = d;
                last_held = (!months.empty() && in(months, month_code(d))) ||
                            (!weeks.empty() && in(weeks, week_code(d)));
            }
            h = last_held;
        }
        held[i] = h ? 1 : 0;
    }
    return held;
}

}  // namespace eol::models
