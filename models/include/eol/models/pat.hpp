// eol/models/pat.hpp — Part Average Testing (AEC-Q001): per-feature robust
// limits median ± k·IQR/1.35, never wider than the specification limits.
//
// Quantiles are type 7 (Hyndman & Fan 1996; numpy's and R's default): for the
// n non-missing values sorted x[0] ≤ … ≤ x[n-1] and 0 ≤ q ≤ 1,
//     h = (n-1)·q,  Q(q) = x[⌊h⌋] + (h-⌊h⌋)·(x[⌊h⌋+1] - x[⌊h⌋]).
// They are found with std::nth_element (O(n)), never by sorting.
//
// Static limits come from pooled reference lots (AEC-Q001 asks for at least
// 6 lots of at least 30 parts; with fewer they are still computed but marked
// not adequate, with a note saying why). Dynamic limits are recomputed per
// lot from that lot's own parts; a lot with fewer than `min_dynamic_count`
// values of a feature gets the static limits instead (noted). Missing values
// (NaN) are skipped feature by feature.
//
// Pure computation, no state. Errors: InputError (empty input where a value
// is needed, q outside [0,1], k ≤ 0, mismatched lengths).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace eol::models {

/// Type-7 quantile of `values` (no NaN allowed); reorders `values`. O(n).
double quantile_inplace(std::span<double> values, double q);

/// Median as numpy defines it (mean of the two middle values when n is
/// even); reorders `values`. O(n).
double median_inplace(std::span<double> values);

/// Robust location and scale of the non-missing values of a sample.
struct RobustSummary {
    std::size_t count = 0;  // non-NaN values used
    double median = std::numeric_limits<double>::quiet_NaN();
    double q1 = std::numeric_limits<double>::quiet_NaN();  // type-7 25 % quantile
    double q3 = std::numeric_limits<double>::quiet_NaN();  // type-7 75 % quantile
    double robust_sigma = std::numeric_limits<double>::quiet_NaN();  // (q3-q1)/1.35
};

/// Summary of `values`, skipping NaN; `scratch` is reused storage. Count 0
/// (and NaN statistics) when there is no value.
RobustSummary robust_summary(std::span<const double> values, std::vector<double>& scratch);

/// Specification limits of a feature; infinite = no limit on that side.
struct SpecLimits {
    double low = -std::numeric_limits<double>::infinity();
    double high = std::numeric_limits<double>::infinity();
};

enum class PatSource : std::uint8_t {
    static_reference,  // pooled reference lots
    dynamic_lot,       // this lot's own parts
    spec_only,         // no PAT limits could be computed: spec limits only
};
const char* to_string(PatSource s);

/// Effective limits a value is judged against.
struct PatLimits {
    double low = -std::numeric_limits<double>::infinity();
    double high = std::numeric_limits<double>::infinity();
    RobustSummary stats;        // what the PAT limits were computed from
    PatSource source = PatSource::spec_only;
    bool spec_clipped_low = false;   // the spec (or static) limit was tighter
    bool spec_clipped_high = false;
    bool contains(double v) const { return !(v < low) && !(v > high); }  // NaN: contained
};

struct PatSettings {
    double k = 6.0;                          // limits at median ± k robust sigma
    std::size_t min_dynamic_count = 20;      // fewer values in a lot: static limits
    std::size_t min_reference_lots = 6;      // static limits adequate from …
    std::size_t min_reference_parts = 30;    // … this many lots of this many parts
    bool dynamic_within_static = true;       // dynamic limits also clipped to static
    bool dynamic = true;                     // false: every lot is judged by the static limits
};

/// median ± k·robust_sigma of `values` (NaN skipped) intersected with `spec`.
/// With no value the result is spec-only.
PatLimits pat_limits(std::span<const double> values, double k, SpecLimits spec,
                     std::vector<double>& scratch);

/// PAT of one feature over lots.
struct PatFeatureResult {
    PatLimits static_limits;                 // from the reference lots (∩ spec)
    bool static_adequate = false;            // ≥ min_reference_lots lots of ≥ min_reference_parts
    std::size_t reference_lots = 0;          // reference lots with ≥ min_reference_parts values
    std::vector<PatLimits> lot_limits;       // per lot code: the limits its parts are judged by
    std::vector<std::string> notes;          // inadequate reference, fallbacks to static
};

/// `column[i]` is part i's value (NaN = missing), `lot_of_row[i]` its lot code
/// in [0, n_lots) (empty span: everything is one lot, code 0), and
/// `reference_lot[c]` whether lot c contributes to the static limits (empty:
/// all lots do). `lot_names` (optional) is only used in notes.
PatFeatureResult pat_feature(std::span<const double> column,
                             std::span<const std::uint32_t> lot_of_row, std::size_t n_lots,
                             std::span<const std::uint8_t> reference_lot, SpecLimits spec,
                             const PatSettings& settings,
                             std::span<const std::string> lot_names = {});

}  // namespace eol::models
