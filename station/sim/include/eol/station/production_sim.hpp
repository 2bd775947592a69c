// eol/station/production_sim.hpp — a simulated production written to the
// results store: months of lots, each cell formed, stored for days and
// tested end-of-line through the simulator's cell physics, with a defect
// window, and the ground truth for judging a screen.
//
// The line: cells are made on working days (Mon–Fri) between `from` and
// `to` (or on the given `lot_days`), spread evenly; one lot per production day (lot ids count up from
// `first_lot`); serials per the serial scheme (plant, line, production date,
// lot, sequence within the lot). Parameters come from eol::sim::draw_cell
// (PopulationSpec `population`), plus a normal self-discharge (a leakage
// current, log-normal) the cell model itself does not have.
//
// The defect: lots produced inside `defect_window` draw with
// short_fraction = defect_short_fraction (internal shorts log-uniform in
// [short_min_ohm, short_max_ohm] of `population`) and a lot-wide R0 shift of
// defect_r0_shift_rel × U(0.7, 1.3). `background_short_fraction` of cells in
// every lot have a short too (isolated defects the screen must also catch).
//
// Each cell's history, all through eol::sim::Cell / Fixture (noisy,
// quantized instrument readings) and the station's own step engine
// (steps.hpp) over the in-process simulated roles (sim_roles.hpp) — the
// same steps, fits and judgement the station runs on real instruments:
//   1. formation station: the `formation` recipe (config/recipes/
//      formation.toml: a minute's rest, then the OCV) on the production day;
//   2. storage for U(rest_days_min, rest_days_max) days: SoC drains by the
//      leakage and the short (OCV²/R_isc), integrated in 1-hour steps (the
//      last `fixture_wait_s` in the EOL fixture, so a short's heat settles);
//   3. EOL station: the `recipe` (config/recipes/eol-18650.toml), judged by
//      its own limits under the safety `limits`. The pulse trace is stored
//      only with store_traces (~10 kB a cell).
// Both records go to the store with Store::write_batch, `batch_cells` cells
// a transaction, in the order the EOL station tests the cells (EOL start,
// then production order) — the order a live station stores its runs in, so
// that run ids count up in test order (fixture health replays by run id).
//
// Assembly (after every cell is written; before any screening, so some
// devices contain cells whose lots screening will hold later): each cell
// that passed EOL goes, with probability `assembly_fraction`, into the device
// being built; devices take consecutive such cells (so cells of one lot end
// up together), their model drawn per device from `device_models` by
// `share`. Every device is linked through the genealogy interlock
// (genealogy.hpp: Genealogy::link, one transaction per device, batched under
// one outer write transaction per `batch_cells` devices) and assembled 1–5
// days after the latest EOL test of its cells, at `assembly_station`.
// Device serials per `device_scheme` (default device_serial_scheme()):
// plant and line as the cells', sequence 1, 2, … A started device whose
// cells run out is not built. The device truth says which devices contain
// a shorted cell or a cell of a defect-window lot.
//
// Determinism: every cell draws from its own RNG seeded by (seed, cell
// index), so the result does not depend on `threads` (0 = all cores).
//
// Errors: UsageError for a bad spec (no working day, cells = 0, a recipe
// missing; a defect window outside the dates is allowed); StoreError from the
// store. A cell whose steps fail (a fit that throws, …) is recorded with
// verdict error, as the station would.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "eol/sim/cell.hpp"
#include "eol/station/config.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/steps.hpp"
#include "eol/station/store.hpp"

namespace eol::station {

/// A fixture position that wears (fixture health): from `start` on, its
/// contact resistance grows by ohm_per_week and its thermocouple offset by
/// tc_k_per_week (linear in the EOL test time).
struct FixtureDrift {
    int position = 1;
    Date start{2023, 1, 1};
    double ohm_per_week = 0.0;
    double tc_k_per_week = 0.0;
};

/// A device model the simulated line assembles.
struct DeviceModelSpec {
    std::string model;       // e.g. "A1112"
    std::size_t cells = 3;   // cells per device
    double share = 1.0;      // relative frequency
};

/// The default models: power bank A1112 (3 cells), speaker A3102 (2 cells).
std::vector<DeviceModelSpec> default_device_models();

struct ProductionSpec {
    std::size_t cells = 20000;
    Date from{2023, 1, 1};
    Date to{2023, 6, 30};
    std::vector<Date> lot_days;  // non-empty: one lot on each of these days (increasing), not from..to
    std::optional<std::pair<Date, Date>> defect_window;  // inclusive production dates
    double defect_short_fraction = 0.03;
    double defect_r0_shift_rel = 0.04;
    double background_short_fraction = 0.0005;
    sim::PopulationSpec population{};  // the good production (short_fraction/r0_shift ignored)
    double leak_median_ma = 0.05;      // normal self-discharge current, log-normal
    double leak_sigma_log = 0.25;
    double rest_days_min = 3.0;        // formation OCV → EOL test
    double rest_days_max = 10.0;
    double ambient_c = 25.0;           // ± 0.5 °C from day to day
    std::uint64_t seed = 1;
    unsigned threads = 0;              // 0 = hardware concurrency
    std::string plant = "01";
    std::string line = "A";
    std::uint64_t first_lot = 1;
    std::string cell_model = "INR18650-30Q";
    std::string formation_station = "FORM-01";
    std::string eol_station = "EOL-01";
    const Recipe* recipe = nullptr;    // the EOL recipe (required)
    const Recipe* formation = nullptr; // the formation recipe (required)
    Limits limits{60.0, 2.5, 10.0};    // safety: temp_abort_c, v_min_v, i_max_a
    double fixture_wait_s = 7200.0;    // storage time spent in the EOL fixture before the test
    bool store_traces = false;         // keep the pulse trace in the EOL record
    bool store_all_traces = false;     // keep every step's samples (the heat step's too): ~60 kB a cell
    // The EOL fixture: cell i (production order) is tested at position
    // 1 + i mod fixture_positions; each position's thermocouple reads a
    // constant offset U(±tc_offset_c) (drawn from the seed), its contacts
    // add contact_ohm plus any drift below. Defaults: one ideal position
    // (the records of earlier versions, bit for bit).
    int fixture_positions = 1;
    double contact_ohm = 0.0;
    double tc_offset_c = 0.0;
    std::vector<FixtureDrift> fixture_drift;
    // Reversible (entropic) heat of the cells at the EOL test
    // (eol::sim::CellParams::entropic_scale; 0: none, 1: an NMC cell's
    // dU/dT of ±0.3 mV/K, what the shipped recipe's [cell.entropy]
    // declares). Default 1; 0 gives the records of versions before it.
    double entropic_scale = 1.0;
    // The station's thermocouple calibration (fixture health,
    // calibrate_thermocouples): each position's first `calibration_cells`
    // cells in test order are fitted plain, the median of their heat fits'
    // steady offset is the position's calibration, and its later cells' heat
    // steps fit with it — what the controller does. Default off.
    bool calibrate_thermocouples = false;
    std::size_t calibration_cells = 31;
    // Commissioned thermocouple offsets (a station's [[channels]]
    // thermo_offset_k): each position's offset measured before its first
    // cell — its simulated offset then, plus an error N(0, commission_sd_k)
    // drawn from the seed — and every heat step at the position fits with
    // it from the first cell (a drift after commissioning is not followed).
    // Takes the place of calibrate_thermocouples. Default off.
    bool commissioned_thermocouples = false;
    double commission_sd_k = 0.05;
    std::size_t batch_cells = 500;
    // Assembly (empty device_models: none).
    std::vector<DeviceModelSpec> device_models;
    double assembly_fraction = 0.6;
    std::string assembly_station = "ASSY-01";
    const SerialScheme* device_scheme = nullptr;  // nullptr: device_serial_scheme()
};

/// What went into a simulated device.
struct DeviceTruth {
    std::string serial;
    std::string model;
    std::vector<std::string> cells;
    double assembled_unix_s = 0.0;
    bool shorted = false;      // a cell inside has an internal short
    bool defect_lot = false;   // a cell inside is from a defect-window lot
    bool affected() const { return shorted || defect_lot; }
};

/// What was really made (for judging a screen; never read by it).
struct CellTruth {
    std::string serial;
    std::string lot;
    std::string production_date;
    bool defect_lot = false;
    bool shorted = false;
    double r_isc_ohm = 0.0;  // 0 when no short
    double r0_ohm = 0.0;
    double leak_ma = 0.0;
    double rest_days = 0.0;
    bool eol_pass = false;   // the EOL verdict by the limits
    int position = 1;        // EOL fixture position
    double contact_ohm = 0.0;  // that position's contact resistance at the test
    double tc_offset_c = 0.0;  // and its thermocouple offset
    double eol_unix_s = 0.0;   // the EOL test's start
};

struct ProductionSummary {
    std::vector<CellTruth> truth;  // in production order
    std::size_t lots = 0;
    std::size_t defect_lots = 0;
    std::size_t shorted = 0;
    std::size_t eol_failed = 0;
    std::vector<DeviceTruth> devices;  // in assembly order
    std::size_t devices_refused = 0;   // by the interlock (0 in a fresh store)
    double seconds = 0.0;          // wall time
};

/// One cell of a production as drawn before any test: what it really is
/// (truth, eol_pass not yet known), the parameters of its physics at
/// formation, and its life before the EOL station.
struct DrawnCell {
    CellTruth truth;
    CellIdentity identity;
    sim::CellParams params;         // at formation
    double leak_a = 0.0;            // normal self-discharge current [A]
    double rest_days = 0.0;         // formation → EOL test [days]
    double formation_unix_s = 0.0;  // on its production day
    double ambient_c = 25.0;        // the day's ambient
    std::uint64_t noise_seed = 0;   // for the instruments' noise in its tests
};

/// The cells of the production `spec` describes, in production order, drawn
/// exactly as simulate_production draws them (same seed, same cells), but not
/// tested: for a station that tests them itself (the demo). Errors: UsageError
/// for a bad spec (as simulate_production). `lots`/`defect_lots` receive the counts.
std::vector<DrawnCell> draw_production(const ProductionSpec& spec, const SerialScheme& scheme,
                                       std::size_t* lots = nullptr, std::size_t* defect_lots = nullptr);

/// A drawn cell's life before a live EOL test at `t_eol_unix_s`: its
/// formation record (spec.formation at spec.formation_station, `rest_days`
/// before) and its parameters in the EOL fixture (state of charge drained over
/// the rest by the leakage and any short; spec.entropic_scale's reversible heat).
struct FormedCell {
    TestRecord formation;
    sim::CellParams at_eol;
};
FormedCell form_and_store(const ProductionSpec& spec, const DrawnCell& cell, double t_eol_unix_s);

/// Simulates the production and writes it to `store`. `progress(done, total)`
/// is called from the calling thread after each batch is written.
ProductionSummary simulate_production(Store& store, const ProductionSpec& spec,
                                      const SerialScheme& scheme = SerialScheme::default_scheme(),
                                      const std::function<void(std::size_t, std::size_t)>& progress = {});

/// Truth as CSV: serial,lot,production_date,defect_lot,shorted,r_isc_ohm,r0_ohm,leak_ma,rest_days,eol_pass,
/// position,contact_ohm,tc_offset_c,eol_unix_s
void write_truth_csv(const std::filesystem::path& file, std::span<const CellTruth> truth);

/// Device truth as CSV: device_serial,model,cells (';'-separated),assembled_unix_s,shorted,defect_lot,affected
void write_device_truth_csv(const std::filesystem::path& file, std::span<const DeviceTruth> devices);

/// Where the device truth goes beside a cell truth file: truth.csv → truth.devices.csv.
std::filesystem::path device_truth_path(const std::filesystem::path& truth);

}  // namespace eol::station
