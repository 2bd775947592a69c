// eol/models/screening.hpp — screening of a production table: per-feature
// PAT, multivariate FAST-MCD outliers, lot/window containment and control
// charts, in one call.
//
//   screen(table, settings) → ScreeningResult
//
// A FeatureTable holds one row per cell: the feature values (column-major,
// NaN = missing), and optionally its serial, lot and production day. Which
// features are screened, their spec limits and all thresholds are settings.
// A cell is an *outlier* when PAT or MCD flags it; a lot or production window
// whose outlier rate fails the binomial test is *held whole* (every cell of it
// gets the held_group flag, flagged or not).
//
// Missing values: PAT skips them feature by feature. For MCD (see
// docs/screening.md) the default `marginal` fits on the complete rows and
// scores a row with missing features by its Mahalanobis distance on the
// features it has (the marginal location and scatter), cut at the chi-square
// quantile for that many degrees of freedom; `impute_median` replaces a
// missing value by the feature's median before fitting and scoring.
//
// At most 64 features are screened together. Pure computation (eol::models:
// no I/O). Errors: InputError naming the feature, lot or size at fault.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "eol/models/control_chart.hpp"
#include "eol/models/lot_tests.hpp"
#include "eol/models/mcd.hpp"
#include "eol/models/pat.hpp"
#include "eol/models/series.hpp"  // InputError

namespace eol::models {

struct FeatureTable {
    std::vector<std::string> features;    // column names
    std::size_t rows = 0;
    std::vector<double> values;           // column-major rows × features; NaN = missing
    std::vector<std::string> serials;     // empty, or one per row
    std::vector<std::uint32_t> lot;       // empty, or a code into lot_names per row
    std::vector<std::string> lot_names;
    std::vector<std::int32_t> day;        // empty, or days since 1970-01-01 per row (kNoDay: unknown)

    std::span<const double> column(std::size_t j) const {
        return {values.data() + j * rows, rows};
    }
    /// Index of a feature; InputError listing the features when absent.
    std::size_t feature_index(std::string_view name) const;
    /// InputError unless the sizes agree and lot codes are in range.
    void validate() const;
};

/// Gives lot names codes while a table is filled (new names are appended to
/// the table's lot_names).
class LotCoder {
public:
    explicit LotCoder(std::vector<std::string>& names);
    std::uint32_t code(std::string_view name);

private:
    std::vector<std::string>* names_;
    std::unordered_map<std::string, std::uint32_t> index_;
};

enum class MissingPolicy : std::uint8_t { marginal, impute_median };

struct ScreeningSettings {
    std::vector<std::string> features;            // screened; empty = all columns of the table
    std::map<std::string, SpecLimits> spec;       // per feature; absent = no spec limit
    PatSettings pat;
    std::vector<std::string> reference_lots;      // static PAT reference; empty = all lots
    bool use_mcd = true;
    McdSettings mcd;
    double mcd_quantile = 0.999;                  // flag d² > χ²_p(mcd_quantile)
    // MCD needs n > 5·p rows at the very least (Rousseeuw & Van Driessen
    // 1999), and the χ²_p cut-off holds only for n ≫ p (Hardin & Rocke 2005):
    // with 40 cells × 8 features a lot of good cells had 5 of 40 flagged.
    // Fewer than this many rows per feature: MCD is skipped with a note (PAT
    // still runs).
    std::size_t mcd_min_rows_per_feature = 10;
    MissingPolicy missing = MissingPolicy::marginal;
    std::size_t top_features = 3;                 // features reported per MCD outlier
    bool lot_tests = true;
    LotTestSettings lots;
    bool charts = true;                           // per-feature daily-median charts (needs days)
    ChartSettings chart;
    unsigned threads = 0;                         // 0 = all cores
};

/// Bits of ScreeningResult::status.
enum CellFlag : std::uint8_t { kFlagPat = 1, kFlagMcd = 2, kFlagHeldGroup = 4 };

struct PatViolation {
    std::size_t feature = 0;  // index into ScreeningResult::features
    double value = 0.0;
    double limit = 0.0;
    bool high = false;        // above the high limit (else below the low one)
    PatSource source = PatSource::static_reference;
};

struct FlaggedCell {
    std::size_t row = 0;
    std::uint8_t flags = 0;   // CellFlag bits
    double distance_sq = std::numeric_limits<double>::quiet_NaN();  // MCD d², NaN if not scored
    double cutoff_sq = std::numeric_limits<double>::quiet_NaN();    // its χ² cutoff
    std::vector<PatViolation> pat;
    std::vector<FeatureContribution> top;   // MCD outliers: largest shares first (feature = screened index)
    std::vector<std::size_t> held_by;       // indices into ScreeningResult::lots.groups
};

struct McdSummary {
    bool ran = false;
    std::size_t rows_fitted = 0;            // complete (or imputed) rows the MCD was fitted on
    std::size_t rows_scored = 0;
    std::size_t h = 0;
    double correction = 1.0;
    double cutoff_sq = 0.0;                 // χ²_p(mcd_quantile)
    Eigen::VectorXd raw_location, location;
    Eigen::MatrixXd raw_covariance, covariance;
    std::size_t subsets_used = 0, full_c_steps = 0;
};

struct ScreeningTimings {
    double pat_s = 0, mcd_s = 0, lots_s = 0, charts_s = 0, total_s = 0;
};

struct ScreeningResult {
    std::vector<std::string> features;      // screened, in order
    std::vector<std::uint8_t> status;       // per row, CellFlag bits
    std::vector<double> distance_sq;        // per row MCD d² (NaN: not scored)
    std::vector<FlaggedCell> flagged;       // every row with a flag, by row
    std::vector<PatFeatureResult> pat;      // per screened feature
    McdSummary mcd;
    LotTestResult lots;
    std::vector<ControlChart> charts;       // per screened feature (empty without days)
    std::vector<std::string> notes;         // fallbacks and skipped steps, for people
    ScreeningTimings timings;

    std::size_t count(std::uint8_t flag) const;
};

ScreeningResult screen(const FeatureTable& table, const ScreeningSettings& settings = {});

/// One line per reason a cell is flagged or held, e.g.
/// "PAT: dcir_ohm 0.0213 above 0.0201 (dynamic limit)",
/// "MCD: d² 41.2 > 26.12 (ocv_v 61% (z -3.1), r0_ohm 22% (z 1.2), tau1_s 9% (z 0.4))",
/// "held: lot 0042 outlier rate 7.5% (15/200) vs baseline 0.95%, p = 1.29e-09".
std::vector<std::string> reasons(const FlaggedCell& cell, const ScreeningResult& result);

}  // namespace eol::models
