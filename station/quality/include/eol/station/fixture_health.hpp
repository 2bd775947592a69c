// eol/station/fixture_health.hpp — fixture health over the results store and
// over live records: what each fixture position's contacts and thermocouple
// add to what it measures (models/fixture_health.hpp does the statistics),
// positions taken out of service, and the contact correction screening
// subtracts from resistance features.
//
// A reading per finished record (fixture_reading): the record's `resistance`
// measurement (FixtureHealthConfig, default r0_ohm), the thermal fit's
// rest_delta_k (the cell's thermocouple minus the ambient one before the heat
// step's current; absent without an ambient sensor) and its steady offset
// c = o + R_th·P_x (steady_offset_k; R_th·P_x for plain fits recorded before
// it was) — the position's thermocouple calibration is learned from c.
// Records that did not complete (abort, error) give none.
//
// Replay (replay_fixture): the latest completed run of every stored cell,
// grouped by station and run through one monitor per station in the order
// the station stored them (run id: a live station learns each record as it
// stores it, and sim-production stores in test order) — never by the
// records' clocks, which may be scaled, virtual or restarted, and which two
// channels finishing together may stamp in either order. A station event
// "fixture_service" (detail {"position": N, "after_run_id": K}) — what a
// fault reset of an out-of-service position writes — resets that position
// before its first run with an id above K. A stored "fixture_flag" event
// (detail {"position": N, "quantity", "value", "limit", "serial"}; message:
// the reason) keeps its position out of service until a later service
// event, whatever the replay decides now (other settings; a retested cell
// counts once here, at each test live). The result: each position's state
// now, every flag the replay raises (with the run that raised it) and, per
// run, the contact correction its position had when it was tested.
//
// Errors: StoreError from the store; models::InputError for settings out of
// range.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eol/models/fixture_health.hpp"
#include "eol/station/config.hpp"
#include "eol/station/features.hpp"
#include "eol/station/record.hpp"
#include "eol/station/store.hpp"

namespace eol::station {

/// The station event a serviced position writes (fault reset after a fixture flag).
inline constexpr std::string_view kFixtureServiceEvent = "fixture_service";
/// The station event a position taken out of service writes.
inline constexpr std::string_view kFixtureFlagEvent = "fixture_flag";

models::FixtureHealthSettings fixture_settings(const FixtureHealthConfig& cfg);

/// The monitor's reading of one finished record (NaN parts when missing).
models::FixtureReading fixture_reading(const TestRecord& record, const FixtureHealthConfig& cfg);

/// A record with the configured resistance measurements corrected by
/// `contact_offset_ohm` (what screening at test time judges); values only.
TestRecord corrected_for_fixture(const TestRecord& record, const FixtureHealthConfig& cfg, double contact_offset_ohm);

struct FixtureFlag {
    std::string station_id;
    models::FixtureAlarm alarm;
    std::int64_t run_id = 0;   // the run whose reading raised it
    std::string serial;
    double time_unix_s = 0.0;  // that run's start (unix s)
};

struct FixtureHistory {
    /// Per station: each position's state now.
    std::map<std::string, std::vector<models::PositionHealth>> positions;
    std::vector<FixtureFlag> flags;  // in test order
    /// Per run: its position's contact correction when it was tested (Ω):
    /// its offset beyond the other positions' (FixtureMonitor::contact_correction_ohm).
    std::unordered_map<std::int64_t, double> contact_offset_ohm;
    /// Per run fitted without a sensor offset (calibrate_thermocouples): what
    /// its position's thermocouple calibration o adds to its P_x, o/R_th (W),
    /// with o as the position had it before this cell; a run before the
    /// position's first calibration (since commissioning or its service)
    /// takes that first one, so that all of a position's cells are read
    /// against one reference (a position that never had one: none).
    std::unordered_map<std::int64_t, double> p_x_correction_w;
    std::size_t runs = 0;            // runs replayed
};

/// Replays the store's history (see the top). `station_id` empty: every
/// station. `monitor` (optional) receives the monitor of `station_id` as it
/// stands after the replay (for a controller to carry on from).
FixtureHistory replay_fixture(Store& store, const FixtureHealthConfig& cfg, std::string_view station_id = {},
                              models::FixtureMonitor* monitor = nullptr);

/// Subtracts each row's run correction from the columns named in cfg.correct
/// and, with cfg.calibrate_thermocouples, its P_x correction from p_x_mw
/// (NaN stays NaN). Returns a note for the screen report.
std::string apply_fixture_correction(FeatureTable& table, const FixtureHistory& history,
                                     const FixtureHealthConfig& cfg);

}  // namespace eol::station
