// eol/models/lot_tests.hpp — lot containment: is a lot's (or a production
// window's) outlier rate significantly above the baseline? Then the whole
// group is held, not only its flagged cells.
//
// Each group (a lot, a calendar month, an ISO week) with k outliers among n
// cells gets the exact binomial upper tail p = P(X ≥ k | n, p0) against the
// baseline rate p0 (the table's overall outlier rate unless given). The
// family of all groups tested (lots + months + weeks together) is protected
// by Bonferroni: a group is held when p < alpha / m, m = number of groups
// tested, so the chance of holding any group of an in-control production is
// at most alpha. Lots are tested first; a window is then tested on its cells
// outside the lots already held (so one bad lot does not hold the month it
// was made in, while a drift spread over many lots still holds the window).
//
// Days are integers: days since 1970-01-01 (proleptic Gregorian), kNoDay when
// unknown. Pure computation. Errors: InputError (mismatched lengths, rates or
// alpha outside (0, 1), a malformed date).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace eol::models {

/// Regularized incomplete beta I_x(a, b) (continued fraction, log-gamma prefactor).
double regularized_beta(double a, double b, double x);
/// Exact binomial upper tail P(X ≥ k) for X ~ Bin(n, p), = I_p(k, n-k+1)
/// (scipy.stats.binom.sf(k-1, n, p)). 1 for k = 0, 0 for k > n.
double binomial_upper_tail(std::uint64_t k, std::uint64_t n, double p);

constexpr std::int32_t kNoDay = std::numeric_limits<std::int32_t>::min();
/// "YYYY-MM-DD" (a longer timestamp is cut at the 10th character) to a day
/// number; nullopt when it is not a valid date.
std::optional<std::int32_t> parse_iso_day(std::string_view text);
std::string day_to_iso(std::int32_t day);    // "2023-03-14"
std::string month_key(std::int32_t day);     // "2023-03"
std::string iso_week_key(std::int32_t day);  // "2023-W11" (ISO 8601 week-numbering year)

enum class GroupKind : std::uint8_t { lot, month, week };
const char* to_string(GroupKind kind);

struct GroupTest {
    GroupKind kind = GroupKind::lot;
    std::string key;             // lot name, "2023-03" or "2023-W11"
    std::uint32_t code = 0;      // lot code / day-derived code (see group_of_row)
    std::size_t cells = 0;       // cells tested (a window: outside held lots, see below)
    std::size_t outliers = 0;
    std::size_t excluded = 0;    // a window's cells in held lots, left out of its test
    double rate = 0.0;           // outliers / cells
    double p_value = 1.0;        // P(X ≥ outliers | cells, baseline)
    bool tested = false;         // cells ≥ min_cells
    bool held = false;           // p_value < alpha / tests
};

struct LotTestSettings {
    double alpha = 0.01;         // family-wise error rate over all groups tested
    double baseline_rate = std::numeric_limits<double>::quiet_NaN();  // NaN: overall rate
    bool by_lot = true;
    bool by_month = true;
    bool by_week = true;
    std::size_t min_cells = 0;   // smaller groups are listed but not tested (p = 1, not counted in m)
    bool windows_exclude_held_lots = true;  // test windows on the cells outside held lots
};

struct LotTestResult {
    double baseline_rate = 0.0;
    std::size_t tests = 0;       // groups tested (Bonferroni m): those with ≥ min_cells cells
    double alpha_per_test = 0.0; // alpha / tests
    std::vector<GroupTest> groups;  // lots (code order), then months, then weeks (time order)
};

/// `outlier[i]` ≠ 0 when cell i was flagged. `lot_of_row` (codes into
/// `lot_names`) and `day_of_row` may be empty (then no lot / window groups).
LotTestResult test_groups(std::span<const std::uint8_t> outlier,
                          std::span<const std::uint32_t> lot_of_row,
                          std::span<const std::string> lot_names,
                          std::span<const std::int32_t> day_of_row,
                          const LotTestSettings& settings);

/// Whether cell i belongs to a held group of `result`.
std::vector<std::uint8_t> held_cells(const LotTestResult& result,
                                     std::span<const std::uint32_t> lot_of_row,
                                     std::span<const std::int32_t> day_of_row);

}  // namespace eol::models
