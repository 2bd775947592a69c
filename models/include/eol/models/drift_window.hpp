// eol/models/drift_window.hpp — when did the process shift? An epidemic
// change-point (scan) statistic over production days: the evidence of every
// lot and day pooled, so a drift window is found — and its start and end
// estimated with their uncertainty — even when each lot alone is too small
// to tell (15–30 cells a lot).
//
//   find_drift_windows(values, rows, features, day, settings) → DriftWindowResult
//
// The method (docs/screening.md, "Drift windows"):
//  1. Each cell's feature is turned into a robust z-score against the whole
//     table (median, IQR/1.349) and clipped at ±winsor_z, so one shorted cell
//     cannot move its day; each production day is summarized by the mean of
//     its cells' clipped z-scores (one p-vector per day).
//  2. The day vectors are whitened with the covariance of successive day
//     differences / 2 (trimmed at χ²_p(0.99), with its consistency factor):
//     a level shift enters the differences only at its two edges, so a long
//     drift does not inflate its own noise; lot-to-lot noise (ambient, one
//     lot per day) is part of that covariance.
//  3. For every run of consecutive days S = [a, b] (at most
//     max_window_fraction of the days: the baseline is the majority), the
//     Gaussian likelihood ratio of "days in S have another mean than the days
//     outside" is T(a, b) = m(D−m)/D · |w̄_S − w̄_out|² (m days in S, D days).
//     The window is the S with the largest T (all O(D²) runs from prefix
//     sums).
//  4. Significance by permutation: the days are shuffled B times (a seeded
//     Mersenne Twister, so the result is deterministic) and the maximum of T
//     recomputed; p = (1 + #{T* ≥ T}) / (B + 1). Under no change the days are
//     exchangeable, so the chance of reporting a window in a production
//     without one is at most alpha, whatever the features' distributions and
//     correlations.
//  5. Uncertainty of the boundaries: with the other boundary at its estimate,
//     the posterior of the start (flat prior over the admissible days) is
//     ∝ exp(T(a', b̂)/2) — the profile likelihood of a Gaussian mean shift —
//     and likewise the end. Reported: the probability of the estimate and the
//     smallest set of days holding `credible` of the mass (its first and
//     last day).
//  6. Further windows (up to max_windows): the days of the windows found are
//     taken out and the search repeated on the rest (runs do not cross a
//     window taken out), each at level alpha — a second window is only looked
//     for once the first has been found.
//  7. Material shifts only: a significant window whose features all moved by
//     less than min_shift_sigma robust cell sigmas is left out of `windows`
//     (listed in `immaterial`; its days are taken out of the further search).
//
// Days with fewer than min_day_fraction × the median cells a day (and fewer
// than 2) are not used (their mean is too noisy); a window's date range still
// covers them. Features with a zero robust scale or without values on most
// days are left out (a note says so).
//
// Pure computation, O(B · D² · p). Errors: InputError (sizes, settings out
// of range).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace eol::models {

struct DriftWindowSettings {
    double alpha = 0.01;                 // false-alarm rate of a window, per screen (permutation test)
    std::size_t permutations = 999;      // B
    std::uint64_t seed = 1;              // of the permutations
    double winsor_z = 3.0;               // per-cell robust z clipped at ±winsor_z
    double min_day_fraction = 0.5;       // days with fewer cells than this × the median: not used
    double max_window_fraction = 0.5;    // a window covers at most this fraction of the days used
    std::size_t max_windows = 3;
    double credible = 0.95;              // mass of the reported start/end day sets
    std::size_t min_days = 8;            // fewer usable days: not evaluated
    // A significant window whose largest feature shift |shift_z| is below this
    // (robust cell sigmas) is not reported as a window: its days are taken
    // out of the further search like a window's, and a note names it. At a
    // large production a shift far smaller than the cells' own spread is
    // significant; holding its days stops good cells for nothing the cell
    // screen does not already judge one by one. 0: every significant window.
    double min_shift_sigma = 0.25;
};

/// Posterior of a boundary (start or end) over production days.
struct BoundaryEstimate {
    std::int32_t day = 0;                // estimate (the maximum of the posterior)
    double probability = 0.0;            // posterior mass of the estimate
    std::int32_t credible_first = 0;     // smallest set of days with ≥ `credible` mass: its first …
    std::int32_t credible_last = 0;      // … and last day
    std::vector<std::int32_t> days;      // the admissible days …
    std::vector<double> posterior;       // … and their posterior probabilities
};

struct DriftWindow {
    BoundaryEstimate start;              // first production day of the shifted process
    BoundaryEstimate end;                // last production day of it
    std::int32_t last_day_before = 0;    // last used production day before the start (kNoDay: none)
    std::int32_t first_day_after = 0;    // first used production day after the end (kNoDay: none)
    std::size_t days = 0;                // used days in [start, end]
    std::size_t cells = 0;               // cells on those days
    double statistic = 0.0;              // T of the window
    double p_value = 1.0;                // permutation p-value
    double critical = 0.0;               // the (1 − alpha) permutation quantile of max T
    std::vector<double> shift_z;         // per feature (result.features): mean day z inside − outside,
                                         // in robust cell sigmas
    std::vector<double> shift;           // the same in the feature's units

    /// Index into shift_z of the largest |shift_z| (0 when there are none).
    std::size_t largest_shift() const;
};

struct DriftDay {
    std::int32_t day = 0;
    std::size_t cells = 0;
    bool used = false;
    std::vector<double> mean_z;          // per feature: mean clipped robust z of the day (used days)
};

struct DriftWindowResult {
    bool evaluated = false;
    std::vector<std::size_t> features;   // indices of the features used
    std::vector<DriftDay> days;          // every production day, in order
    std::size_t days_used = 0;
    std::vector<DriftWindow> windows;    // significant windows, by start day
    std::vector<DriftWindow> immaterial; // significant, but every |shift_z| < min_shift_sigma: not windows
    double first_p_value = 1.0;          // of the best run in the first search (also when not significant)
    double first_statistic = 0.0;
    std::vector<std::string> notes;
};

/// `values`: column-major rows × features (NaN = missing); `day[i]`: days
/// since 1970-01-01 of row i (kNoDay = unknown: not used).
DriftWindowResult find_drift_windows(std::span<const double> values, std::size_t rows, std::size_t features,
                                     std::span<const std::int32_t> day, const DriftWindowSettings& settings = {});

}  // namespace eol::models
