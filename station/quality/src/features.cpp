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

// OCV lost per day since the earliest earlier completed run with an OCV:
// runs of `serial` other than `exclude_run_id` that started at least
// min_interval_days before `latest_start_unix_s`.
double k_value(Store& store, const std::string& serial, double ocv_now, double latest_start_unix_s,
               std::int64_t exclude_run_id, double min_interval_days) {
    if (!std::isfinite(ocv_now)) return kNaN;
    for (const RunInfo& r : store.runs_for(serial)) {
        if (r.id == exclude_run_id) continue;
        if (r.verdict != Verdict::pass && r.verdict != Verdict::fail) continue;
        const double dt_days = (latest_start_unix_s - r.start_unix_s) / 86400.0;
        if (dt_days < min_interval_days) continue;  // runs are by start time: later ones are closer still
        for (const Measurement& m : store.measurements(r.id))
            if (m.name == "ocv_v" && std::isfinite(m.value)) return (m.value - ocv_now) * 1000.0 / dt_days;
    }
    return kNaN;
}

// One row of features of `cf` (a stored run, or a finished record seen as
// one), the one resolution both the table and the record use. `store`
// nullptr: the K-value is NaN.
void feature_row(Store* store, const CellFeatures& cf, std::span<const Kind> kinds,
                 std::span<const std::string> names, const FeatureOptions& options, std::span<double> out) {
    double k = kNaN;
    bool k_done = false;
    for (std::size_t j = 0; j < names.size(); ++j) {
        double v = kNaN;
        switch (kinds[j]) {
            case Kind::k_value:
            case Kind::k_log:
                if (!k_done && store)  // the store nests reads
                    k = k_value(*store, cf.cell.serial, get(cf, "ocv_v"), cf.run.start_unix_s, cf.run.id,
                                options.min_k_interval_days);
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
        out[j] = std::isfinite(v) ? v : kNaN;
    }
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
        Verdict verdict = Verdict::error;
        std::vector<double> v;
    };
    std::vector<Row> rows;
    store.for_each_latest(filter, [&](const CellFeatures& cf) {
        Row r;
        r.serial = cf.cell.serial;
        r.lot = cf.cell.lot;
        r.date = cf.cell.production_date;
        r.run_id = cf.run.id;
        r.verdict = cf.run.verdict;
        r.v.resize(p, kNaN);
        feature_row(&store, cf, kinds, names, options, r.v);
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
    t.verdicts.reserve(n);
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
        t.verdicts.push_back(r.verdict);
    }
    return t;
}

std::vector<double> record_features(const TestRecord& record, std::span<const std::string> names, Store* store,
                                    const FeatureOptions& options) {
    // The record seen as a stored run is seen by for_each_latest: finite
    // measurements by name, each converged fit's "<kind>.rmse" and
    // "<kind>.<param>".
    CellFeatures cf;
    cf.cell.serial = record.serial;
    cf.cell.cell_model = record.cell_model;
    cf.cell.lot = record.lot;
    cf.cell.production_date = record.production_date;
    cf.run.id = -1;  // not stored (if it is, its start is < min interval away: never the K reference)
    cf.run.serial = record.serial;
    cf.run.start_unix_s = record.start_unix_s;
    cf.run.end_unix_s = record.end_unix_s;
    cf.run.verdict = record.verdict;
    for (const Measurement& m : record.measurements)
        if (std::isfinite(m.value)) cf.features.emplace_back(m.name, m.value);
    for (const ModelFit& f : record.fits) {
        if (!f.converged) continue;
        if (std::isfinite(f.rmse)) cf.features.emplace_back(f.kind + ".rmse", f.rmse);
        for (const auto& [name, v] : f.parameters)
            if (std::isfinite(v)) cf.features.emplace_back(f.kind + "." + name, v);
    }
    std::vector<Kind> kinds;
    for (const auto& n : names) kinds.push_back(kind_of(n));
    std::vector<double> out(names.size(), kNaN);
    feature_row(store, cf, kinds, names, options, out);
    return out;
}

}  // namespace eol::station
