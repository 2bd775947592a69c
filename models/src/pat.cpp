// Part Average Testing: type-7 quantiles by selection, static and dynamic
// limits. See pat.hpp for the definitions.
#include "eol/models/pat.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "eol/models/series.hpp"
#include "common.hpp"

namespace eol::models {
namespace {

using detail::cat;

constexpr double kIqrToSigma = 1.35;

// numpy's lerp: a + t(b-a) below t = 0.5, b - (1-t)(b-a) from there (keeps
// the result exact at both ends); used so quantiles equal numpy's bit for bit.
double lerp(double a, double b, double t) {
    const double d = b - a;
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}


// The type-7 quantile at h = (n-1)q of v[0,n) when v[first,last) already
// holds exactly the ranks [first,last) (so selections stay inside it).
double quantile_in_range(double* v, std::size_t first, std::size_t last, std::size_t n, double q) {
    const double h = static_cast<double>(n - 1) * q;
    const auto lo = static_cast<std::size_t>(std::floor(h));
    const double t = h - static_cast<double>(lo);
    std::nth_element(v + first, v + lo, v + last);
    const double a = v[lo];
    if (t == 0.0 || lo + 1 >= n) return a;
    double b;
    if (lo + 1 < last) {
        b = *std::min_element(v + lo + 1, v + last);
    } else {
        b = *std::min_element(v + last, v + n);
    }
    return lerp(a, b, t);
}

}  // namespace

const char* to_string(PatSource s) {
    switch (s) {
        case PatSource::static_reference: return "static";
        case PatSource::dynamic_lot: return "dynamic";
        case PatSource::spec_only: return "spec";
    }
    return "?";
}

double quantile_inplace(std::span<double> values, double q) {
    if (values.empty()) throw InputError("quantile of an empty sample");
    if (!(q >= 0.0 && q <= 1.0)) throw InputError(cat("quantile level ", q, " outside [0, 1]"));
    return quantile_in_range(values.data(), 0, values.size(), values.size(), q);
}

double median_inplace(std::span<double> values) {
    if (values.empty()) throw InputError("median of an empty sample");
    const std::size_t n = values.size();
    const std::size_t m = (n - 1) / 2;
    double* v = values.data();
    std::nth_element(v, v + m, v + n);
    if (n % 2 == 1) return v[m];
    const double b = *std::min_element(v + m + 1, v + n);
    return (v[m] + b) / 2.0;
}

namespace {

// Median and type-7 quartiles of v (no NaN), reordering v: the median first,
// then each quartile selected inside its half, about two passes in all.
RobustSummary summary_inplace(std::span<double> values) {
    RobustSummary s;
    s.count = values.size();
    if (s.count == 0) return s;
    const std::size_t n = s.count;
    double* v = values.data();
    const std::size_t m = (n - 1) / 2;
    std::nth_element(v, v + m, v + n);
    s.median = (n % 2 == 1) ? v[m] : (v[m] + *std::min_element(v + m + 1, v + n)) / 2.0;
    const double h1 = static_cast<double>(n - 1) * 0.25;
    const auto lo1 = static_cast<std::size_t>(std::floor(h1));
    if (lo1 < m) {
        s.q1 = quantile_in_range(v, 0, m, n, 0.25);
    } else {  // lo1 == m (n ≤ 2)
        s.q1 = quantile_in_range(v, m, n, n, 0.25);
    }
    s.q3 = quantile_in_range(v, m, n, n, 0.75);
    s.robust_sigma = (s.q3 - s.q1) / kIqrToSigma;
    return s;
}

// median ± k·sigma of a summary intersected with `spec`.
PatLimits limits_from(const RobustSummary& stats, double k, SpecLimits spec) {
    PatLimits L;
    L.stats = stats;
    L.low = spec.low;
    L.high = spec.high;
    L.source = PatSource::spec_only;
    if (stats.count == 0 || !(stats.robust_sigma > 0.0)) return L;
    const double lo = stats.median - k * stats.robust_sigma;
    const double hi = stats.median + k * stats.robust_sigma;
    L.source = PatSource::static_reference;  // caller says which
    if (lo >= spec.low) {
        L.low = lo;
    } else {
        L.spec_clipped_low = true;
    }
    if (hi <= spec.high) {
        L.high = hi;
    } else {
        L.spec_clipped_high = true;
    }
    return L;
}

}  // namespace

RobustSummary robust_summary(std::span<const double> values, std::vector<double>& scratch) {
    scratch.clear();
    scratch.reserve(values.size());
    for (double x : values)
        if (!std::isnan(x)) scratch.push_back(x);
    return summary_inplace(scratch);
}

PatLimits pat_limits(std::span<const double> values, double k, SpecLimits spec,
                     std::vector<double>& scratch) {
    if (!(k > 0.0)) throw InputError(cat("PAT k must be positive (got ", k, ")"));
    return limits_from(robust_summary(values, scratch), k, spec);
}

PatFeatureResult pat_feature(std::span<const double> column,
                             std::span<const std::uint32_t> lot_of_row, std::size_t n_lots,
                             std::span<const std::uint8_t> reference_lot, SpecLimits spec,
                             const PatSettings& settings, std::span<const std::string> lot_names) {
    const std::size_t n = column.size();
    if (!lot_of_row.empty() && lot_of_row.size() != n)
        throw InputError(cat("PAT: ", lot_of_row.size(), " lot codes for ", n, " values"));
    if (lot_of_row.empty()) n_lots = 1;
    if (n_lots == 0) throw InputError("PAT: no lots");
    if (!reference_lot.empty() && reference_lot.size() != n_lots)
        throw InputError(cat("PAT: ", reference_lot.size(), " reference flags for ", n_lots, " lots"));
    if (spec.low > spec.high)
        throw InputError(cat("PAT: spec low ", spec.low, " above spec high ", spec.high));
    auto lot_name = [&](std::size_t c) {
        return c < lot_names.size() ? lot_names[c] : cat("#", c);
    };

    // Counting sort of the non-missing values by lot: offsets[c]..offsets[c+1].
    std::vector<std::size_t> offsets(n_lots + 1, 0);
    for (std::size_t i = 0; i < n; ++i) {
        if (std::isnan(column[i])) continue;
        const std::size_t c = lot_of_row.empty() ? 0 : lot_of_row[i];
        if (c >= n_lots) throw InputError(cat("PAT: row ", i, " has lot code ", c, " ≥ ", n_lots));
        ++offsets[c + 1];
    }
    for (std::size_t c = 0; c < n_lots; ++c) offsets[c + 1] += offsets[c];
    std::vector<double> grouped(offsets[n_lots]);
    {
        std::vector<std::size_t> pos(offsets.begin(), offsets.end() - 1);
        for (std::size_t i = 0; i < n; ++i) {
            if (std::isnan(column[i])) continue;
            const std::size_t c = lot_of_row.empty() ? 0 : lot_of_row[i];
            grouped[pos[c]++] = column[i];
        }
    }
    auto lot_values = [&](std::size_t c) {
        return std::span<const double>(grouped.data() + offsets[c], offsets[c + 1] - offsets[c]);
    };

    if (!(settings.k > 0.0)) throw InputError(cat("PAT k must be positive (got ", settings.k, ")"));
    PatFeatureResult r;
    // Per-lot summaries first, in place (selection reorders only inside each
    // lot's segment), then the static summary over the reference lots.
    std::vector<RobustSummary> lot_stats(n_lots);
    if (settings.dynamic)
        for (std::size_t c = 0; c < n_lots; ++c)
            if (offsets[c + 1] - offsets[c] >= settings.min_dynamic_count)
                lot_stats[c] = summary_inplace(std::span<double>(grouped.data() + offsets[c], offsets[c + 1] - offsets[c]));
    {
        bool all_reference = true;
        for (std::size_t c = 0; c < n_lots; ++c) {
            if (!reference_lot.empty() && reference_lot[c] == 0) {
                all_reference = false;
                continue;
            }
            if (offsets[c + 1] - offsets[c] >= settings.min_reference_parts) ++r.reference_lots;
        }
        RobustSummary st;
        if (all_reference) {
            st = summary_inplace(grouped);  // the last use of the grouping
        } else {
            std::vector<double> pooled;
            for (std::size_t c = 0; c < n_lots; ++c) {
                if (reference_lot[c] == 0) continue;
                auto v = lot_values(c);
                pooled.insert(pooled.end(), v.begin(), v.end());
            }
            st = summary_inplace(pooled);
        }
        r.static_limits = limits_from(st, settings.k, spec);
        r.static_adequate = r.reference_lots >= settings.min_reference_lots &&
                            r.static_limits.source == PatSource::static_reference;
        if (r.static_limits.source == PatSource::spec_only) {
            r.notes.push_back(r.static_limits.stats.count == 0
                                  ? "no reference values: static PAT limits not set (spec limits only)"
                                  : "reference IQR is zero: static PAT limits not set (spec limits only)");
        } else if (!r.static_adequate) {
            r.notes.push_back(cat("static limits from ", r.reference_lots, " reference lot(s) with ≥ ",
                settings.min_reference_parts, " values; AEC-Q001 asks for ≥ ",
                settings.min_reference_lots, " lots: not adequate"));
        }
    }

    // Dynamic limits per lot, else the static ones.
    SpecLimits dyn_spec = spec;
    if (settings.dynamic_within_static && r.static_limits.source == PatSource::static_reference) {
        dyn_spec.low = std::max(dyn_spec.low, r.static_limits.low);
        dyn_spec.high = std::min(dyn_spec.high, r.static_limits.high);
    }
    r.lot_limits.resize(n_lots);
    std::size_t fell_back = 0;
    std::string fallback_names;
    for (std::size_t c = 0; c < n_lots; ++c) {
        auto v = lot_values(c);
        bool dynamic = false;
        if (!settings.dynamic) {
            r.lot_limits[c] = r.static_limits;
            continue;
        }
        if (v.size() >= settings.min_dynamic_count) {
            PatLimits d = limits_from(lot_stats[c], settings.k, dyn_spec);
            if (d.source != PatSource::spec_only) {
                d.source = PatSource::dynamic_lot;
                r.lot_limits[c] = d;
                dynamic = true;
            }
        }
        if (!dynamic) {
            r.lot_limits[c] = r.static_limits;
            if (v.empty()) continue;  // nothing to judge in this lot
            ++fell_back;
            if (fell_back <= 5) {
                if (!fallback_names.empty()) fallback_names += ", ";
                fallback_names += cat(lot_name(c), " (", v.size(), " values)");
            }
        }
    }
    if (fell_back > 0) {
        r.notes.push_back(cat(fell_back, " lot(s) below ", settings.min_dynamic_count,
                               " values (or with zero IQR) judged by the static limits: ",
                               fallback_names, fell_back > 5 ? ", …" : ""));
    }
    return r;
}

}  // namespace eol::models
