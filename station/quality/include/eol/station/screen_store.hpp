// eol/station/screen_store.hpp — screening over the results store, and the
// quarantine holds it leads to.
//
//   screen_store(store, config, filter, apply, actor) → ScreenReport
//
// 1. Features (features.hpp) of every stored cell matching the filter (a lot,
//    production dates since a day, or all), from each cell's latest
//    completed run — the names in ScreeningConfig::features, which may also
//    name derived features such as k_mv_per_day.
// 2. models::screen() with settings from the ScreeningConfig
//    (screening_settings(): PAT k, minimum counts, static/dynamic mode, MCD
//    quantile and support fraction, binomial alpha and baseline, Nelson rules)
//    and, when a recipe is given, the specification limits of the features
//    that are its measurements (PAT never widens them).
// 3. What would be held and why:
//      - every outlier cell (PAT or MCD) → a serial-scope hold, reason e.g.
//        "screen: PAT: p_x_w 0.012 above 0.004 (dynamic); MCD: d² 41 > 24 …";
//      - every lot whose outlier rate fails the binomial test → a lot hold;
//      - every production window (month, ISO week) that fails → a window
//        hold over that month's / week's dates;
//      - drift days: a production day whose daily median of a screened
//        feature (models' control chart of daily medians) lies more than
//        z_crit chart sigmas from the chart centre, z_crit Bonferroni-
//        adjusted over every charted (feature, day) point at family-wise
//        error lot_alpha → a lot hold of every lot made that day. A lot-wide
//        shift (a drifting process) need not make single cells outliers, but
//        it moves the day's median by many of its sigmas. Days with fewer
//        than half the median cells a day are not judged. The Nelson rules
//        in force that fired are reported in notes (when a drift began).
//      - drift windows: a change-point scan over production days pools the
//        evidence of every lot (models/drift_window.hpp); each window found
//        at false-alarm rate drift_alpha → a window hold over its dates
//        (the estimate, or with drift_window = "credible" the hull of both
//        boundaries' 95 % credible days), reported with the estimated
//        first/last day of the shift and their uncertainty. Lots, months
//        and weeks keep their binomial tests on all cells (a boundary day
//        the scan misplaces is still held when its month or week fails);
//        drift days inside a drift window are not listed again.
//    Targets that already have a hold in force (their latest event is a hold)
//    are not held again (counted as already_held); a scrapped unit is not
//    held. Cells of a held group are not also held one by one unless they are
//    outliers themselves.
// 4. With `apply`, all those holds are written in ONE transaction
//    (Store::append_quarantine_batch), actor/role from `actor`, so a crash
//    leaves all or none.
// 5. Re-screening (new settings over cells that were tested long ago): units
//    that would now be held but have already shipped (a "shipment" station
//    event, see quarantine.hpp) are listed in `shipped` — they cannot be
//    stopped at the gate any more; recall them.
//
// Dry run by default: nothing is written unless `apply`.
//
// Errors: UsageError (no feature, a feature no stored cell has, a filter date
// that is not YYYY-MM-DD), models::InputError from screening (names the
// feature or lot), StoreError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eol/models/screening.hpp"
#include "eol/station/config.hpp"
#include "eol/station/features.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/store.hpp"

namespace eol::station {

/// Which stored cells to screen: one lot, production dates from `since`, or
/// (both empty) all.
struct ScreenFilter {
    std::optional<std::string> lot;
    std::optional<Date> since;
};

/// A cell the screen would hold by serial.
struct ScreenedCell {
    std::string serial;
    std::string lot;
    std::string production_date;
    std::uint8_t flags = 0;             // models::CellFlag bits (PAT, MCD, held group)
    double distance_sq = 0.0;           // MCD d² (NaN when not scored)
    std::vector<std::string> reasons;   // models::reasons(): one line per reason
    bool already_held = false;          // its own serial hold is in force
    bool scrapped = false;
};

/// A lot or production window the screen would hold whole.
struct ScreenedGroup {
    QuarantineScope scope = QuarantineScope::lot;  // lot or window
    std::string target;                  // lot id, or "FROM..TO"
    std::string group;                   // "lot 0042", "month 2023-03", "week 2023-W11", "drift lot 0042"
    std::string window_from, window_to;  // window scope
    std::size_t cells = 0;
    std::size_t outliers = 0;            // binomial groups: flagged cells in the group
    double rate = 0.0;
    double p_value = 1.0;                // binomial tail, or (drift) the two-sided normal tail of |z|
    std::string reason;
    bool already_held = false;
};

/// A drift window: production days on which the process had shifted, found
/// by the change-point scan over days (models/drift_window.hpp), with the
/// uncertainty of its first and last day.
struct DriftWindowReport {
    std::string start, end;                          // estimated first and last day of the shift (YYYY-MM-DD)
    double start_probability = 0.0, end_probability = 0.0;  // posterior mass of those days
    std::string start_credible_from, start_credible_to;     // 95 % credible days of the start
    std::string end_credible_from, end_credible_to;         // … and of the end
    std::string last_day_before, first_day_after;    // neighbouring production days ("" if none)
    std::string held_from, held_to;                  // the dates held (the estimate, or the credible hull)
    std::size_t days = 0, cells = 0;                 // production days and cells in [start, end]
    double statistic = 0.0, critical = 0.0, p_value = 1.0;  // scan T, its 1-alpha permutation quantile, p
    struct Shift {
        std::string feature;
        double shift = 0.0;                          // mean of the day means inside − outside, feature units
        double shift_z = 0.0;                        // the same in robust cell sigmas
    };
    std::vector<Shift> shifts;                       // every feature of the scan, largest |shift_z| first
};

/// A unit that would now be held but has already shipped.
struct ShippedUnit {
    std::string serial;
    std::string lot;
    std::string production_date;
    double shipped_unix_s = 0.0;
    std::string why;                     // "outlier" or the group that holds it
};

struct ScreenReport {
    std::size_t cells_screened = 0;
    std::vector<std::string> features;
    std::vector<std::size_t> missing;    // per feature: cells without a value
    double baseline_rate = 0.0;          // outlier rate the groups were tested against
    std::size_t outliers = 0;            // cells flagged by PAT or MCD
    std::vector<ScreenedCell> cells;     // outliers, by serial
    std::vector<ScreenedGroup> groups;   // drift windows, then failed lots and months/weeks, then drift lots
    bool drift_evaluated = false;        // the change-point scan over days ran
    double drift_p_value = 1.0;          // of the strongest run of days (significant or not)
    std::vector<DriftWindowReport> drift_windows;
    std::size_t cells_held_by_groups = 0;  // screened cells inside a failed group
    std::vector<ShippedUnit> shipped;    // would now be held, already shipped
    std::vector<std::string> notes;      // from screening (fallbacks, skipped steps)
    bool applied = false;
    std::vector<std::int64_t> event_ids; // written holds (apply)
    double seconds = 0.0;
};

/// models::ScreeningSettings from a station's [screening] section; with a
/// recipe, the spec limits (low/high) of the features that are its
/// measurements.
models::ScreeningSettings screening_settings(const ScreeningConfig& config, const Recipe* recipe = nullptr);

/// The station FeatureTable as the screening input.
models::FeatureTable to_screening_table(const FeatureTable& table);

/// `fixture` (optional, enabled): resistance features corrected by each
/// run's position contact offset before screening (fixture_health.hpp; a
/// note in the report says how many).
ScreenReport screen_store(Store& store, const ScreeningConfig& config, const ScreenFilter& filter, bool apply,
                          const Actor& actor, const Recipe* recipe = nullptr,
                          const FixtureHealthConfig* fixture = nullptr);

}  // namespace eol::station
