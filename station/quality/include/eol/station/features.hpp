// eol/station/features.hpp — the per-cell feature table screening reads,
// built from the results store.
//
// One row per stored cell that matches the filter and has a completed run,
// one column per requested feature name (ScreeningConfig::features), in the
// order requested. A name is resolved, in this order:
//   1. a derived feature computed here (derived_features() lists them):
//        k_mv_per_day       self-discharge K: the OCV the cell lost per day
//                           between an earlier run of the same serial (any
//                           station, e.g. formation) and the latest run,
//                           (OCV_early − OCV_latest) / Δt — positive when the
//                           cell loses charge. The earliest earlier completed
//                           run with ocv_v at least `min_k_interval_days`
//                           before the latest is used; Δt from the runs'
//                           start times. NaN without such a run.
//        k_log10_mv_per_day log10(max(K, 0.01 mV/day)): good cells' self-
//                           discharge is right-skewed; its log is close to
//                           normal, as the multivariate distance assumes
//                           (NaN stays NaN).
//        heat_rise_k_per_w  temperature rise of the heat step per watt of
//                           I²R heating: temp_rise_k / thermal.p_heat_w.
//                           An internal short heats beyond I²R: larger.
//        thermal_rmse_k     thermal.rmse (residual of the thermal fit).
//        p_x_mw             p_x_w in mW (unexplained heat), for readability.
//   2. a measurement of the latest completed run with that name (e.g. r0_ohm);
//   3. a converged fit value "<kind>.<param>" or "<kind>.rmse" (e.g.
//      "ecm2.tau2_s", "thermal.rmse").
// A value that is missing is NaN (screening skips or handles it).
//
// Lot and production date come from the stored cell (the serial's fields).
//
// Errors: UsageError when no feature is requested or a name is given twice;
// StoreError from the store. Unknown names are not errors here (a column of
// NaN; `missing` counts them) — screen_store() reports them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eol/station/feature_catalog.hpp"
#include "eol/station/store.hpp"

namespace eol::station {

struct FeatureOptions {
    double min_k_interval_days = 0.5;
};

struct FeatureTable {
    std::vector<std::string> names;             // p columns
    std::vector<std::string> serials;           // n rows, ordered by serial
    std::vector<std::string> lots;
    std::vector<std::string> production_dates;  // "YYYY-MM-DD" or ""
    std::vector<std::int64_t> run_ids;          // the latest completed run used
    std::vector<Verdict> verdicts;              // that run's verdict (pass or fail)
    std::vector<double> values;                 // column-major: values[j * n + i]
    std::vector<std::size_t> missing;           // per column: rows with NaN

    std::size_t rows() const { return serials.size(); }
    std::size_t cols() const { return names.size(); }
    double at(std::size_t row, std::size_t col) const { return values[col * rows() + row]; }
    std::span<const double> column(std::size_t col) const {
        return std::span<const double>(values).subspan(col * rows(), rows());
    }
};

/// Builds the table for the cells matching `filter`.
FeatureTable build_feature_table(Store& store, const CellFilter& filter, std::span<const std::string> names,
                                 const FeatureOptions& options = {});

/// The features `names` of one finished record — stored or not — resolved
/// exactly as build_feature_table() resolves a stored run (same derived
/// features, measurement names and fit values "<kind>.<param>" of converged
/// fits), so test-time and lot screening see the same numbers. The K-value
/// reads the serial's earlier runs from `store` (the reference run is the
/// earliest completed one with an OCV at least min_k_interval_days before
/// the record's start); with store == nullptr it is NaN. Values that are
/// missing are NaN. Errors: StoreError.
std::vector<double> record_features(const TestRecord& record, std::span<const std::string> names, Store* store,
                                    const FeatureOptions& options = {});

}  // namespace eol::station
