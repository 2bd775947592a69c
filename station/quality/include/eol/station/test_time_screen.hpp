// eol/station/test_time_screen.hpp — screening at test time: a finished
// record judged against the history of its cell model before the cell
// leaves the fixture, and the serial hold written with the record.
//
//   TestTimeScreen screen = TestTimeScreen::build(store, "INR18650-30Q", config.screening, &config.recipe);
//   … per finished record, with the store under the caller's lock:
//   TestTimeVerdict v = screen.judge(record, store);
//   write_record_screened(store, record, v, Actor{"eolstation controller", "station"});
//
// The model (what judges). From the store, the cells of ONE cell model with
// a completed run (their latest one, as the lot screen reads them), minus
//   - the lot under test (the record's lot: a lot is judged by its elders),
//   - cells whose latest run failed its limits (not good production),
//   - cells held or scrapped now (quarantine_state()),
// give the reference table. Features are those of ScreeningConfig::features,
// extracted by features.hpp (build_feature_table for the reference,
// record_features for the record: the same code), and the statistics are the
// lot screen's: models::screen() run once on the reference with static PAT
// (median ± pat_k·IQR/1.35 over the pooled reference, clipped to the recipe's
// spec limits, never widened) and FAST-MCD (support fraction, seed 0, the
// reweighted location and scatter). A record is an outlier when a feature
// lies outside its static PAT limits, or when its squared robust Mahalanobis
// distance from the MCD location exceeds χ²_k(mcd_quantile), k = the
// features the record has (a record missing some features is scored on the
// marginal location and scatter of those it has — models::screen's
// `marginal` policy). A derived feature without a value in any reference
// cell (the K-value at a station without formation records) is left out,
// as screen_store() does.
//
// No history. Fewer than TestTimeScreenOptions::min_history_cells reference cells (default
// 200: MCD needs ≥ 10 rows per feature and the χ² cut-off n ≫ p; the IQR
// is poor under ~20 parts a feature), or fewer than min_history_lots lots
// (default 2): the verdict is no_history — "no history for model M (n
// earlier cells < K): spec limits only" — and only the recipe's limits
// judged the record. AEC-Q001's own adequacy (6 lots × 30 parts) is
// reported in the verdict's notes but does not stop judging.
//
// Cost and refresh. The model is fitted once (build(); for 20,000 cells the
// store read dominates, see docs/screening.md) and kept immutable behind a
// shared pointer; judge() is a feature extraction (one indexed read of the
// serial's earlier runs for the K-value), p comparisons and one p×p
// triangular solve — microseconds. judge(record, store) refits first when
//   - the record's lot is not the lot the model was built without (a new lot
//     began at this station: the lot before is finished and joins the
//     history; with two lots interleaved on one station this refits at each
//     change), or
//   - TestTimeScreenOptions::refresh_every_records records were judged since the fit.
// Lots that close elsewhere join at the next refit. The pure overload
// judge(record, features) never touches a store and never refits.
//
// Thread safety. judge() may be called from many threads at once: each call
// takes a snapshot of the current model (a shared_ptr copy under a mutex);
// a refit builds the new model outside that mutex and swaps it in, and one
// refit at a time runs (a mutex; a concurrent caller that finds the model
// already refitted for its lot does not refit again). The Store passed in
// is used from the calling thread only: the caller serializes its use as for
// any Store (one connection, one thread at a time).
//
// Errors: build()/refit: UsageError when no features are configured or a
// configured non-derived feature has no value in any reference cell (named);
// StoreError. judge(): StoreError (reads). write_record_screened: StoreError
// (nothing is written then: one transaction).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eol/models/screening.hpp"
#include "eol/station/config.hpp"
#include "eol/station/features.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/record.hpp"
#include "eol/station/store.hpp"

namespace eol::station {

struct TestTimeScreenOptions {
    std::size_t min_history_cells = 200;     // fewer reference cells: no history
    std::size_t min_history_lots = 2;        // fewer reference lots: no history
    std::size_t refresh_every_records = 2000;  // judge(record, store) refits after this many (0: never by count)
    FeatureOptions features;                 // as the lot screen (K-value interval)
    unsigned threads = 1;                    // FAST-MCD threads at a fit (1: leave the cores to the channels)
    /// Fixture health (enabled): the reference cells' features corrected as
    /// the lot screen corrects them (contact offsets; P_x against each
    /// position's thermocouple calibration) — the judged record must come
    /// corrected the same way (corrected_for_fixture; the heat step's
    /// calibrated fit). A replay of the store's history at every fit.
    const FixtureHealthConfig* fixture = nullptr;
};

/// A feature outside its static PAT limits.
struct PatOutside {
    std::string feature;
    double value = 0.0;
    double low = -std::numeric_limits<double>::infinity();   // the static PAT limits (∩ spec)
    double high = std::numeric_limits<double>::infinity();
};

/// A feature's part of an MCD distance (largest first).
struct DistanceShare {
    std::string feature;
    double share = 0.0;  // of d², 0..1
    double z = 0.0;      // marginal robust z-score
};

struct TestTimeVerdict {
    enum class Kind {
        not_outlier,  // judged: inside every PAT limit and the distance cut-off
        outlier,      // judged: hold it (pat and/or distance say why)
        no_history,   // too little history of the model: spec limits only
        not_judged,   // the record did not pass its limits (fail/abort/error): nothing to screen
    };
    Kind kind = Kind::not_judged;
    std::string cell_model;
    std::vector<std::string> features;   // screened, in order
    std::vector<double> values;          // the record's, same order (NaN = missing)
    std::vector<PatOutside> pat;         // features outside the static PAT limits
    double distance_sq = std::numeric_limits<double>::quiet_NaN();  // robust d² (NaN: not scored)
    double cutoff_sq = std::numeric_limits<double>::quiet_NaN();    // χ²_k(mcd_quantile)
    std::size_t distance_features = 0;   // k: features the distance used
    bool distance_outlier = false;       // distance_sq > cutoff_sq
    std::vector<DistanceShare> top;      // outlier by distance, all features present: the top 3
    std::size_t history_cells = 0;       // reference cells / lots of the model used
    std::size_t history_lots = 0;
    std::string excluded_lot;            // the lot under test the model left out
    std::string reason;                  // one line for people (the hold's reason for an outlier)
    std::vector<std::string> notes;      // e.g. static PAT reference below AEC-Q001's 6 lots × 30 parts

    bool outlier() const { return kind == Kind::outlier; }
};
std::string_view to_string(TestTimeVerdict::Kind k);

/// What the fitted model is (for logs and the report).
struct TestTimeModelInfo {
    std::string cell_model;
    std::string excluded_lot;
    bool history = false;
    std::size_t cells = 0, lots = 0;
    std::size_t cells_failed = 0, cells_held = 0;  // left out of the reference
    std::vector<std::string> features;
    std::vector<double> pat_low, pat_high;         // per feature
    bool mcd = false;
    double cutoff_sq = std::numeric_limits<double>::quiet_NaN();  // all features present
    double fit_seconds = 0.0;                      // store read + screen
    std::vector<std::string> notes;
};

class TestTimeScreen {
public:
    /// Fits the model of `cell_model` from `store` (the cells of other lots
    /// than `lot_under_test`), with the settings of `config` and, with a
    /// recipe, its spec limits (PAT never widens them).
    static TestTimeScreen build(Store& store, std::string cell_model, const ScreeningConfig& config,
                                const Recipe* recipe = nullptr, std::string_view lot_under_test = {},
                                const TestTimeScreenOptions& options = {});

    TestTimeScreen(TestTimeScreen&&) noexcept;
    TestTimeScreen& operator=(TestTimeScreen&&) noexcept;
    ~TestTimeScreen();

    /// Judges a finished record: reads the serial's earlier runs for the
    /// K-value from `store` and refits first when due (see the top).
    /// A record of another cell model: UsageError (one screen per model).
    TestTimeVerdict judge(const TestRecord& record, Store& store);
    /// Judges with the given feature values (order of info().features);
    /// never reads a store, never refits.
    TestTimeVerdict judge(const TestRecord& record, std::span<const double> features) const;
    /// The record's feature values as judge(record, store) computes them.
    std::vector<double> features_of(const TestRecord& record, Store* store) const;

    /// Refits now (the lot under test left out).
    void refit(Store& store, std::string_view lot_under_test);
    TestTimeModelInfo info() const;
    /// Records judged by judge(record, store) since the last fit.
    std::size_t records_since_fit() const;

private:
    struct Model;
    struct Shared;
    explicit TestTimeScreen(std::unique_ptr<Shared> s);
    std::shared_ptr<const Model> snapshot() const;
    static TestTimeVerdict judge_with(const Model& m, const TestTimeScreenOptions& opt, const TestRecord& record,
                                      std::span<const double> x);
    std::unique_ptr<Shared> s_;
};

/// What write_record_screened() wrote.
struct ScreenedWrite {
    std::int64_t run_id = 0;
    std::optional<std::int64_t> hold_event_id;  // the serial hold (outlier), unless already held
    bool already_held = false;                  // an outlier whose serial was held already
    std::optional<std::int64_t> note_event_id;  // no_history: the station event that says so
};

/// Writes `record` and what test-time screening decided about it in ONE
/// write transaction (it joins an open one): for an outlier, a serial-scope
/// hold by `actor` with verdict.reason (a serial already held is not held
/// twice); for no_history, a station event of kind "screen_at_test" saying
/// the record was judged by spec limits only. A crash leaves the record and
/// its hold both or neither. StoreError (nothing written).
ScreenedWrite write_record_screened(Store& store, const TestRecord& record, const TestTimeVerdict& verdict,
                                    const Actor& actor, const SerialScheme& scheme = SerialScheme::default_scheme());

}  // namespace eol::station
