// eol/station/config.hpp — the station configuration and test recipes, read
// from TOML (toml++) and validated before anything touches an instrument.
//
// A station file (config/station.example.toml is the commented reference)
// names the station id, the instruments (driver, address, dialect or
// register-map file, timeouts), which load channel and thermocouple channel
// each fixture position uses, the recipe file, limits, screening settings,
// the serial scheme, the results store, the PLC server, the panel and its
// public recall page ([recall]), and the settings `eolstation sim` uses to
// fill the virtual fixture. A recipe file
// (config/recipes/eol-18650.toml) is an ordered list of steps, each declaring
// its measurements and their limits up front (OpenHTF style).
//
// Lifecycle: load_station_config() / load_recipe() read, validate and return
// plain values; nothing is kept open. Relative paths in a file are resolved
// against that file's directory and returned resolved.
//
// Errors: every problem found is collected as a Diagnostic (file, line,
// column, dotted key path, message) — unknown keys with a did-you-mean, wrong
// types, out-of-range values, missing required keys (at the line of the
// table that lacks them), references to instruments that do not exist or are
// the wrong kind, duplicates, files that do not exist, TOML syntax errors —
// and thrown once, all together, as ConfigError (a UsageError: exit code 2).
// Loading the station file also loads and validates its recipe; the recipe's
// diagnostics name the recipe file. A recipe that measures p_x_w is refused
// at every position that reaches no ambient thermocouple (ambient_for()),
// at that position's [[channels]] line: P_x cannot be determined there.
//
// Conventions: fixture positions and load channels are 1-based (as on the
// load's front panel); thermocouple channels are 0-based (as on the modules).
// Discharge current is positive. Units are in the names.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "eol/instruments/address.hpp"
#include "eol/station/errors.hpp"

namespace eol::station {

// ---------------------------------------------------------------- errors

/// One problem in a configuration file. line/column are 1-based; 0 when the
/// problem has no place in the file (e.g. the file itself is missing).
struct Diagnostic {
    std::string file;
    int line = 0;
    int column = 0;
    std::string key_path;  // dotted, e.g. "instruments.load1.timeout_s"; array indices are
                           // 0-based: "channels[2].load" is the third [[channels]]
    std::string message;

    /// "file:line:col: key.path: message" (place and key left out when unknown).
    std::string to_string() const;
};

/// All diagnostics of one load; what() lists them one per line.
class ConfigError : public UsageError {
public:
    explicit ConfigError(std::vector<Diagnostic> diagnostics);
    const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

private:
    std::vector<Diagnostic> diagnostics_;
};

// ---------------------------------------------------------------- recipe

/// Where a spec limit was set: the file (as the recipe named it, resolved
/// against the recipe's directory) and the 1-based line of its key.
struct LimitSource {
    std::string file;
    int line = 0;
    bool known() const { return !file.empty(); }
    /// "config/limits/INR18650-30Q.toml:12" ("" when unknown).
    std::string to_string() const;
};

/// A measurement a step declares: the sequencer must record it under `name`
/// and judge it against [low, high] (either side optional, inclusive).
/// low/high are the resolved limits: the recipe's own values, overridden by
/// its limits files (see Recipe::limit_layers); low_from/high_from say which
/// file and line set each.
struct MeasurementSpec {
    std::string name;      // unique within the recipe; [a-z0-9_]
    std::string quantity;  // what is measured, one of step_quantities(kind); defaults to name
    std::string unit;      // the quantity's unit (see step_quantities)
    std::optional<double> low;
    std::optional<double> high;
    std::string description;
    LimitSource low_from;
    LimitSource high_from;

    /// "r0_ohm high 0.045 from config/limits/INR18650-30Q.toml:12; low none".
    std::string describe_limits() const;
};

/// One layer of spec limits applied over a recipe's own values (docs/limits.md):
/// the generic file the station file's [station] spec_limits names, then the file
/// of the recipe's cell model beside it ("<dir>/<cell model>.toml"), which
/// may be absent.
struct LimitLayer {
    std::filesystem::path file;  // resolved
    bool present = true;         // false: the cell-model file does not exist (generic limits only)
    std::size_t overrides = 0;   // limits (low or high) this file set
    /// Limits the file gives for quantities this recipe does not measure
    /// (one file serves every recipe of a cell model): skipped. A name that
    /// no step kind measures is an error (a typo).
    std::vector<std::string> not_measured;
};

/// Open circuit, no load, for a fixed time (settling).
struct RestParams {
    double duration_s = 0;
};
/// Open-circuit voltage: mean of `samples` readings `interval_s` apart.
struct OcvParams {
    int samples = 1;
    double interval_s = 0.1;
};
/// IEC 61960 two-level DC resistance: low_c·C for low_s, then high_c·C for
/// high_s; R = (U1 − U2)/(I2 − I1) at the end of each level. Currents are
/// C-rates × the recipe's cell capacity_ah.
struct DcirParams {
    double low_c = 0.2;
    double low_s = 10.0;
    double high_c = 1.0;
    double high_s = 1.0;
    double low_a = 0;   // resolved: low_c × capacity_ah
    double high_a = 0;  // resolved: high_c × capacity_ah
};
/// Hardware-timed current pulse recorded by the load's data logger:
/// pre_s at 0 A, current_a for duration_s, then relaxation_s at 0 A, sampled
/// every sample_interval_s from the trigger. The trace feeds the
/// equivalent-circuit fit.
struct PulseParams {
    double current_a = 0;
    double duration_s = 0;
    double pre_s = 1.0;
    double relaxation_s = 0;
    double sample_interval_s = 0.01;
    /// Logger points the profile needs: (pre + duration + relaxation)/interval, rounded up.
    std::size_t points() const;
};
/// Heating step for the thermal model: current_a for duration_s, then
/// cooling_s at 0 A; temperature (and V, I) read every sample_interval_s
/// (software timed). entropic_v (optional): the cell model's known
/// reversible-heat coefficient k = −T·dU/dT in V at the recipe's state of
/// charge when the current starts (discharge positive), and
/// entropic_v_per_ah (optional, needs entropic_v) how k moves with the
/// charge drawn, V/Ah; the thermal fit adds k·I to the heat as known instead
/// of leaving it to R_th (docs/models.md, "A known entropic coefficient").
struct HeatParams {
    double current_a = 0;
    double duration_s = 0;
    double cooling_s = 0;
    double sample_interval_s = 1.0;
    std::optional<double> entropic_v;
    std::optional<double> entropic_v_per_ah;
};

enum class StepKind { rest, ocv, dcir, pulse, heat };
std::string_view to_string(StepKind kind);

struct RecipeStep {
    std::string name;  // unique within the recipe
    std::variant<RestParams, OcvParams, DcirParams, PulseParams, HeatParams> params;
    std::vector<MeasurementSpec> measurements;
    int line = 0;  // where the step starts in the recipe file
    /// Station seconds the step may take, the fits' computing time not counted;
    /// past it the step ends with outcome timeout (input off). `timeout_s`
    /// in the recipe (at least duration_s()); default default_timeout_s().
    double timeout_s = 0;

    StepKind kind() const { return static_cast<StepKind>(params.index()); }
    /// Time the step takes at the cell (excluding instrument overhead).
    double duration_s() const;
    /// duration_s() + max(30 s, 50 % of it).
    double default_timeout_s() const;
};

/// The cell model's entropic coefficient dU/dT against its state of charge,
/// with its open-circuit voltage on the same grid (the recipe's
/// `[cell.entropy]`: what a potentiometric characterisation of the model
/// gives). A heat step that does not declare entropic_v takes, from the OCV
/// the same test measured before it, the cell's state of charge soc(OCV),
/// k = −T·dU/dT there (T the cell's temperature when the current starts, K)
/// and how k moves over the step's charge (the secant to where the step ends)
/// — so a cell tested at another state of charge (a retest, a partly drained
/// cell) is fitted with its own reversible heat (docs/models.md).
/// soc strictly increasing in [0, 1], ocv_v strictly increasing, at least two
/// points; values outside the grid are clamped to its ends.
struct CellEntropy {
    std::vector<double> soc;
    std::vector<double> ocv_v;
    std::vector<double> du_dt_v_per_k;
    int line = 0;  // where [cell.entropy] starts in the recipe file

    /// State of charge at open-circuit voltage `ocv_v` (linear between points).
    double soc_at(double ocv_v) const;
    /// dU/dT in V/K at state of charge `soc` (linear between points).
    double du_dt_at(double soc) const;

    /// The reversible heat a heat step gives its fit as known.
    struct Reversible {
        double soc = 0;          // the state of charge the OCV says
        double k_v = 0;          // k = −T·dU/dT there (V, discharge positive)
        double k_v_per_ah = 0;   // the secant of k to where `charge_ah` leaves the cell
    };
    /// For a cell at open-circuit voltage `ocv_v` and temperature `t_cell_c`
    /// (°C) from which a step draws `charge_ah` of its `capacity_ah`
    /// (capacity ≤ 0: the state of charge taken as not moving).
    Reversible reversible(double ocv_v, double t_cell_c, double charge_ah, double capacity_ah) const;
};

struct Recipe {
    std::filesystem::path file;
    std::string name;
    std::string description;
    std::string cell_model;
    double capacity_ah = 0;
    std::optional<CellEntropy> entropy;  // [cell.entropy]; none: heat steps fit without known reversible heat
    std::vector<RecipeStep> steps;
    std::vector<LimitLayer> limit_layers;  // applied in order over the steps' own limits (apply_limits); empty: none

    /// Every measurement of every step, in order.
    std::vector<const MeasurementSpec*> measurements() const;
    const MeasurementSpec* find_measurement(std::string_view name) const;
    double duration_s() const;
};

/// A quantity a step kind can produce and its unit.
struct Quantity {
    std::string_view name;
    std::string_view unit;
};
/// The quantities a step of `kind` can measure (the sequencer produces these):
///   rest  —
///   ocv   ocv_v [V]
///   dcir  dcir_ohm [ohm]
///   pulse r0_ohm r1_ohm r2_ohm [ohm], tau1_s tau2_s [s], fit_rmse_v pulse_v_min_v [V]
///   heat  temp_rise_k [K], c_th_j_per_k [J/K], r_th_k_per_w [K/W], p_x_w [W]
const std::vector<Quantity>& step_quantities(StepKind kind);

/// Reads and validates a recipe file (its own limits; layers are applied by
/// the station file's [station] spec_limits, or apply_limits()). Throws ConfigError.
Recipe load_recipe(const std::filesystem::path& file);
/// Same, from text (nullopt: read as_file); diagnostics name as_file.
Recipe parse_recipe(std::optional<std::string_view> toml_text, const std::filesystem::path& as_file);

/// Reads a file a configuration refers to: the text, or nullopt when there
/// is no such file. Empty function: the filesystem.
using ConfigFileReader = std::function<std::optional<std::string>(const std::filesystem::path&)>;

/// Layers spec limits over the recipe's own (docs/limits.md): the generic
/// file, then "<its directory>/<recipe.cell_model>.toml" when it exists.
/// Each [measurements.NAME] low/high overrides the value so far and records
/// its file:line in low_from/high_from; recipe.limit_layers lists the files.
/// Throws ConfigError naming file:line for an unknown measurement (with a
/// did-you-mean), low above high (naming where each came from), a unit that
/// is not the measurement's, a wrong type, an unknown key, a [safety] table
/// (safety limits are the station file's [limits]), a missing generic file.
void apply_limits(Recipe& recipe, const std::filesystem::path& generic_file, const ConfigFileReader& read = {});

// ---------------------------------------------------------------- station

struct InstrumentConfig {
    enum class Driver { scpi_load, modbus_load, modbus_thermo };

    std::string name;  // the key under [instruments]
    Driver driver = Driver::scpi_load;
    std::string address;               // as written, e.g. "tcp://127.0.0.1:5025"
    instruments::Address endpoint;     // parse_address(address)
    std::filesystem::path definition;  // dialect (scpi_load) or register map (modbus_*), resolved
    int channels = 1;
    double timeout_s = 1.0;
    double connect_timeout_s = 3.0;
    int unit = 1;  // Modbus unit id (modbus_* only)
    // modbus_thermo only: the module's own channel that reads the fixture's
    // air (key `ambient_channel`): the ambient of every position whose cell
    // thermocouple is on this module. Unset: they use [station] ambient.
    std::optional<int> ambient_channel;

    bool is_load() const { return driver != Driver::modbus_thermo; }
    bool is_thermo() const { return driver == Driver::modbus_thermo; }
};
std::string_view to_string(InstrumentConfig::Driver driver);

/// A thermocouple input: instrument name and 0-based channel.
struct ThermoRef {
    std::string thermo;
    int channel = 0;
};

/// One fixture position and the instrument channels that serve it.
struct ChannelConfig {
    int position = 0;  // 1-based fixture position
    std::string load;  // name of a load instrument
    int load_channel = 1;  // 1-based
    std::string thermo;    // name of a modbus_thermo instrument
    int thermo_channel = 0;  // 0-based
    /// The position's thermocouple offset measured at commissioning (K: its
    /// reading minus the ambient sensor's with the cell at the ambient's
    /// temperature). Set: every heat step at the position fits with it
    /// (P_x separated from the offset from the first cell on) instead of the
    /// calibration fixture health learns from its first cells; only with
    /// an ambient sensor. Unset: learned ([fixture_health]).
    std::optional<double> thermo_offset_k;
    int line = 0;            // of its [[channels]] table in the station file
};

/// Safety limits of the line ([limits], every key required). Spec limits
/// (what a good cell measures) are the recipe's: each measurement's low/high.
struct Limits {
    double temp_abort_c = 0;     // abort the run and switch the load off above this cell temperature
    double v_min_v = 0;          // abort below this terminal voltage under load
    double i_max_a = 0;          // no recipe step may command more current
    // The controller's safety monitor (optional keys; defaults here):
    double v_max_v = 4.4;                  // abort above this terminal voltage
    double temp_rate_max_k_per_s = 0.5;    // abort when the cell warms faster (over >= 5 s)
    double i_follow_tol_a = 0.1;           // current-following tolerance floor (or 5 % of the setpoint)
    double control_period_s = 0.1;         // the monitor's period, wall seconds
};

enum class PatMode { dynamic, static_ };
/// Drift windows: hold the estimated window, or each boundary's whole 95 %
/// credible set of days too, or do not look for windows.
enum class DriftHold { estimate, credible, off };

struct ScreeningConfig {
    std::vector<std::string> features;  // recipe measurement names used for screening
    PatMode pat_mode = PatMode::dynamic;
    double pat_k = 6.0;        // limits at median ± k robust sigma
    int pat_min_count = 20;    // fewer parts: no PAT limits (IQR too poor)
    int static_pat_min_lots = 6;
    int static_pat_min_parts = 30;
    double mcd_quantile = 0.999;          // chi-square cutoff quantile for robust distances
    double mcd_support_fraction = 0.75;   // h/n for FAST-MCD
    double lot_alpha = 0.001;             // binomial test significance for holding a lot
    double lot_baseline_rate = 0.01;      // expected outlier rate of a good lot
    int lot_min_count = 20;               // lots smaller than this are not tested
    std::vector<int> nelson_rules{1, 2, 3, 4, 5, 6, 7, 8};  // control-chart rules in force
    // Drift windows (models/drift_window.hpp): a change-point scan over production days.
    DriftHold drift_window = DriftHold::estimate;  // which days of a window found are held
    double drift_alpha = 0.01;            // false-alarm rate of a window per screen (permutation test)
    int drift_permutations = 999;
    int drift_max_windows = 3;
    // A significant window whose every feature moved by less than this many
    // robust cell sigmas is not held (a note names it): 0 holds every one.
    double drift_min_shift_sigma = 0.25;
};

/// Fixture health ([fixture_health]; models/fixture_health.hpp, docs/screening.md
/// "Fixture health"): what each position's contacts and thermocouple add,
/// learned from the cells it tests; a position beyond a limit is taken out of
/// service (its channel faulted until a fault reset after service).
struct FixtureHealthConfig {
    bool enabled = false;               // the table is present and not `enabled = false`
    std::string resistance = "r0_ohm";  // the measurement a contact resistance shows in
    /// Resistance features screening corrects by the position's learned
    /// contact offset (lot screen and screening at test time).
    std::vector<std::string> correct{"r0_ohm", "dcir_ohm"};
    int window_cells = 15;              // a position's offset: median of its last N cells
    int reference_cells = 64;           // the reference: last N cells at the other positions
    double contact_limit_ohm = 0.002;   // |contact offset| beyond: out of service
    double tc_drift_limit_k = 1.0;      // |thermocouple offset − its baseline| beyond: out of service
    /// Thermocouple calibration: each position's offset against the ambient
    /// sensor learned as the median steady offset of its FIRST
    /// `calibration_cells` heat fits since commissioning or its last service,
    /// then held; with `calibrate_thermocouples` the heat
    /// step fits with it (ChannelIo::thermo_offset_k, P_x separated from the
    /// offset) and the lot screen corrects p_x_w of records tested without it.
    bool calibrate_thermocouples = true;
    int calibration_cells = 31;
    /// Golden (reference) cells: serials of cells kept to check the station
    /// itself. With any, a golden check is due when the controller starts and
    /// at every shift start ([panel] shifts, the station's shifts); until one
    /// passes, other cells are refused; a
    /// failed one blocks the station until the fault reset of the position it
    /// failed at (and is due again). Normalized by the serial scheme at start.
    std::vector<std::string> golden_serials;
    int golden_history = 5;             // compared with the median of its last N completed runs here
    double golden_resistance_tol_ohm = 0.002;  // |resistance − history median| beyond: failed
    double golden_ocv_tol_v = 0.02;     // |ocv_v − history median| beyond: failed
};

/// The Modbus TCP server the line PLC talks to ([plc]; docs/plc.md).
struct PlcConfig {
    enum class ByteOrder { high_first, low_first };

    bool present = false;  // the file has a [plc] table
    bool enabled = true;   // `enabled = false` keeps the table but starts no server
    std::string bind = "0.0.0.0";
    int port = 1502;
    int unit = 1;                      // Modbus unit id the server answers (others: exception 0x0B)
    double heartbeat_timeout_s = 2.0;  // PLC heartbeat older than this: make the fixture safe
    /// Client addresses allowed to connect: IP literals or networks ("10.1.2.0/24");
    /// others are refused and logged. Default: loopback only.
    std::vector<std::string> allow{"127.0.0.1", "::1"};
    ByteOrder serial_byte_order = ByteOrder::high_first;  // of the two characters in a register
    int recipe_id = 1;                // the id the PLC writes for the station's recipe
    int max_clients = 8;              // connections at once; a new one beyond closes the longest idle
    double idle_timeout_s = 60.0;     // a client silent (or mid-frame) this long is disconnected

    /// A server is to be started: a [plc] table with enabled = true.
    bool active() const { return present && enabled; }
};

/// The operator panel, an HTTP server ([panel]; docs/panel.md).
struct PanelConfig {
    bool present = false;  // the file has a [panel] table
    bool enabled = true;   // `enabled = false` keeps the table but starts no server
    std::string bind = "127.0.0.1";
    int port = 8080;
    /// The language of every operator-facing text: "en" or "zh-CN".
    std::string language = "en";
    /// When shifts start, minutes after local midnight (the station host's
    /// time zone), increasing: the panel's yield counters count one shift.
    /// From `shifts = ["06:00", "14:00", "22:00"]` (the default).
    std::vector<int> shift_start_min = {6 * 60, 14 * 60, 22 * 60};

    /// A panel is to be started: a [panel] table with enabled = true.
    bool active() const { return present && enabled; }
};

/// The public recall lookup page the panel serves ([recall];
/// docs/genealogy.md, "The recall lookup page"): a customer types a device
/// serial and learns whether the device contains affected cells and what to
/// do. Served only when the panel runs and this table is present and enabled.
/// Every text of the page comes from here — `texts = "FILE"` (the shipped
/// config/recall-texts.toml) or an inline [recall.texts] table, not both;
/// every key of recall_text_keys() is required and no other is allowed; a
/// file's errors name that file:line.
struct RecallConfig {
    bool present = false;  // the file has a [recall] table
    bool enabled = true;   // `enabled = false` keeps the table but serves no /recall
    /// The device serial scheme file, resolved; empty: the built-in
    /// device_serial_scheme() (= config/device-serial-scheme.toml).
    std::filesystem::path device_scheme;
    /// The texts file, resolved; empty when the texts are inline.
    std::filesystem::path texts_file;
    /// The page's texts by key (recall_text_keys()), "{0}", "{1}" placeholders.
    std::map<std::string, std::string, std::less<>> texts;
    int rate_burst = 10;           // lookups one client address may make in a row
    double rate_per_minute = 10;   // … after which its allowance refills at this rate
    double min_answer_s = 0.1;     // no lookup is answered sooner (timing: docs/genealogy.md)

    /// /recall is to be served (when the panel runs): a [recall] table with enabled = true.
    bool active() const { return present && enabled; }
};

/// One text of the recall page: its key and the placeholders its value must contain.
struct RecallTextKey {
    std::string_view key;
    std::string_view placeholders;  // e.g. "{0}{1}": each "{N}" listed must occur in the text
};
/// Every key a recall texts table must have (sorted by key).
const std::vector<RecallTextKey>& recall_text_keys();

/// How `eolstation sim` fills the virtual fixture ([sim], optional).
struct SimConfig {
    double time_scale = 1.0;  // simulated seconds per wall second
    std::uint64_t seed = 1;
    double ambient_c = 25.0;
    std::string lot = "0001";
    std::string production_date = "2023-03-14";  // YYYY-MM-DD
    double short_fraction = 0.0;  // fraction of cells with an internal short
    double r0_shift_rel = 0.0;    // lot-wide R0 shift (a drifting process)
    int cells = 100;              // cells the simulated line feeds
    // Reversible (entropic) heat of the simulated cells (eol::sim::CellParams::
    // entropic_scale): 1, an NMC cell's dU/dT as the shipped recipes'
    // [cell.entropy] declares it; 0 none (a kinder cell than a real one).
    double entropic_scale = 1.0;
};

struct StationConfig {
    std::filesystem::path file;  // the station file as given
    std::filesystem::path dir;   // its directory (base of relative paths)
    std::string station_id;
    std::filesystem::path recipe_file;    // resolved
    std::filesystem::path limits_file;    // [station] spec_limits: generic spec limits file, resolved; empty = none
    std::filesystem::path serial_scheme;  // resolved; parsed by the serial module
    std::filesystem::path store;          // resolved
    std::vector<InstrumentConfig> instruments;  // in file order
    std::vector<ChannelConfig> channels;        // sorted by position
    std::optional<ThermoRef> ambient;           // station ambient thermocouple (any module; see ambient_for)
    Limits limits;
    ScreeningConfig screening;
    FixtureHealthConfig fixture_health;
    PlcConfig plc;
    PanelConfig panel;
    RecallConfig recall;
    SimConfig sim;
    Recipe recipe;

    const InstrumentConfig* find_instrument(std::string_view name) const;
    const ChannelConfig* find_position(int position) const;
    /// The ambient thermocouple a position's thermal fit reads: its module's
    /// own `ambient_channel`, else the station's `ambient` (which may be on
    /// another module: the controller reads it through that module), else
    /// none — the position cannot measure P_x (p_x_w is missing there).
    std::optional<ThermoRef> ambient_for(const ChannelConfig& ch) const;
    /// Whether `thermo` channel `channel` is an ambient input (the station's or a module's).
    bool is_ambient_input(std::string_view thermo, int channel) const;
};

/// Reads and validates a station file and the recipe it names. Throws ConfigError.
StationConfig load_station_config(const std::filesystem::path& file);

/// Same, from text; relative paths resolve against as_file's directory and
/// diagnostics name as_file.
StationConfig parse_station_config(std::string_view toml_text, const std::filesystem::path& as_file);

}  // namespace eol::station
