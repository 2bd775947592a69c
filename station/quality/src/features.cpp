#include "eol/station/features.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "eol/station/errors.hpp"

namespace eol::station {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kMinK = 0.01;  // mV/day: floor of k_log10_mv_per_day

enum class Kind { k_value, k_log, heat_rise, thermal_rmse, p_x_mw, stored };

Kind kind_of(std::string_view name) {
    if (name == "k_mv_per_day") return Kind::k_value;
    if (name == "k_log10_mv_per_day") return Kind::k_log;
    if (name == "heat_rise_k_per_w") return Kind::heat_rise;
    if (name == "thermal_rmse_k") return Kind::thermal_rmse;
    if (name == "p_x_mw") return Kind::p_x_mw;
    return Kind::stored;
}

double get(const CellFeatures& cf, std::string_view name) { return cf.get(name).value_or(kNaN); }

// OCV lost per day since the earliest earlier completed run with an OCV.
double k_value(Store& store, const CellFeatures& cf, double min_interval_days) {
    const double ocv_now = get(cf, "ocv_v");
    if (!std::isfinite(ocv_now)) return kNaN;
    const double latest = cf.run.start_unix_s;
    for (const RunInfo& r : store.runs_for(cf.cell.serial)) {
        if (r.id == cf.run.id) continue;
        if (r.verdict != Verdict::pass && r.verdict != Verdict::fail) continue;
        const double dt_days = (latest - r.start_unix_s) / 86400.0;
        if (dt_days < min_interval_days) continue;  // runs are by start time: later ones are closer still
        for (const Measurement& m : store.measurements(r.id))
            if (m.name == "ocv_v" && std::isfinite(m.value)) return (m.value - ocv_now) * 1000.0 / dt_days;
    }
    return kNaN;
}

}  // namespace


FeatureTable build_feature_table(Store& store, const CellFilter& filter, std::span<const std::string> names,
                                 const FeatureOptions& options) {
    if (names.empty()) throw UsageError("features: no feature requested");
    {
        std::set<std::string_view> seen;
        for (const auto& n : names)
            if (!seen.insert(n).second) throw UsageError(fmt::format("features: '{}' is requested twice", n));
    }
    const std::size_t p = names.size();
    std::vector<Kind> kinds;
    for (const auto& n : names) kinds.push_back(kind_of(n));

    struct Row {
        std::string serial, lot, date;
        std::int64_t run_id = 0;
        std::vector<double> v;
    };
    std::vector<Row> rows;
    store.for_each_latest(filter, [&](const CellFeatures& cf) {
        Row r;
        r.serial = cf.cell.serial;
        r.lot = cf.cell.lot;
        r.date = cf.cell.production_date;
        r.run_id = cf.run.id;
        r.v.resize(p, kNaN);
        double k = kNaN;
        bool k_done = false;
        for (std::size_t j = 0; j < p; ++j) {
            double v = kNaN;
            switch (kinds[j]) {
                case Kind::k_value:
                case Kind::k_log:
                    if (!k_done) k = k_value(store, cf, options.min_k_interval_days);  // the store nests reads
                    k_done = true;
                    v = kinds[j] == Kind::k_value ? k : std::log10(std::max(k, kMinK));
                    break;
                case Kind::heat_rise: {
                    const double rise = get(cf, "temp_rise_k"), heat = get(cf, "thermal.p_heat_w");
                    if (heat > 0) v = rise / heat;
                    break;
                }
                case Kind::thermal_rmse: v = get(cf, "thermal.rmse"); break;
                case Kind::p_x_mw: v = get(cf, "p_x_w") * 1000.0; break;
                case Kind::stored: v = get(cf, names[j]); break;
            }
            r.v[j] = std::isfinite(v) ? v : kNaN;
        }
        rows.push_back(std::move(r));
    });

    std::vector<std::size_t> order(rows.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return rows[a].serial < rows[b].serial; });

    FeatureTable t;
    t.names = std::vector<std::string>(names.begin(), names.end());
    const std::size_t n = rows.size();
    t.values.assign(n * p, kNaN);
    t.missing.assign(p, 0);
    t.serials.reserve(n);
    t.lots.reserve(n);
    t.production_dates.reserve(n);
    t.run_ids.reserve(n);
    for (std::size_t k = 0; k < n; ++k) {
        Row& r = rows[order[k]];
        for (std::size_t j = 0; j < p; ++j) {
            t.values[j * n + k] = r.v[j];
            if (!std::isfinite(r.v[j])) ++t.missing[j];
        }
        t.serials.push_back(std::move(r.serial));
        t.lots.push_back(std::move(r.lot));
        t.production_dates.push_back(std::move(r.date));
        t.run_ids.push_back(r.run_id);
    }
    return t;
}

}  // namespace eol::station
