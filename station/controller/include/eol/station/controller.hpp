// eol/station/controller.hpp — the station controller: the configured
// instruments, connected once and shared between fixture positions, and per
// position a state machine that tests one cell at a time through the step
// engine (steps.hpp), hands each record to its sinks (the results store
// first) and keeps the channel safe.
//
// Channel states (ChannelState):
//
//   idle ──start──▶ testing ──▶ complete   (pass, fail; a hold never leaves idle/complete)
//                          ├──▶ aborted    (a safety limit of the cell, an operator, a shutdown)
//                          └──▶ faulted    (verdict error: an instrument failed or timed out, an
//                                           open thermocouple; or the load input could not be
//                                           confirmed off after the run)
//   complete, aborted ──start──▶ testing
//   faulted ──fault_reset (load input confirmed off)──▶ idle
//   complete ──fixture health flags the position──▶ faulted (out_of_service)
//
// Fixture health ([fixture_health] enabled; fixture_health.hpp): every
// stored record's reading (its resistance and the thermocouple at rest) goes
// to a monitor carried on from the store's history of this station; a
// position beyond a limit is taken out of service — its channel faulted with
// the reason, a station event "fixture_flag" stored — and a fault reset of it
// means "serviced": a "fixture_service" event is stored and its baseline is
// learned again. Screening at test time judges a record with its resistance
// features corrected by its position's learned contact offset.
//
// Golden cell ([fixture_health] golden_serials): a golden check is due at the
// controller's start and at each configured shift start (local time); while
// it is due, start() refuses any other serial (GoldenCheckRequired). A golden
// serial's stored record is compared with the median of its last
// golden_history completed runs at this station (resistance and OCV within
// their tolerances; the first run starts the history and passes): passed →
// not due; failed (or not completed) → its channel faulted and the station
// blocked (every start refused) until that position's fault reset, after which
// the check is due again. A golden cell is never screened at test time.
// Station events "golden_check" record each check.
//
// Starting a cell: the serial is normalized and validated with the station's
// serial scheme (ControllerRefused naming the position of a bad character);
// a serial that is held or scrapped — its own hold, its lot's, a production
// window's — is answered verdict "hold" WITHOUT touching the channel's
// instruments (not even connecting them); otherwise the channel's load and
// thermocouple reader are connected (once per instrument) and the recipe runs
// on a worker thread of its own. A busy, faulted or unknown channel refuses
// (ControllerRefused).
//
// Screening at test time: a record that passed its limits is judged by the
// static PAT limits and the MCD model of the EARLIER lots of its cell model
// (test_time_screen.hpp, built on the store lane at the first record and
// refitted when the lot changes); an outlier gets verdict "hold" with the
// features and distances that made it so, and a serial hold written in the
// same transaction as its record; with no history yet the record is judged
// by its spec limits only and a station event says so. Lots still get the
// full screening when they close (`eolstation screen`).
//
// After every run: when the verdict is abort or error, the channel's load
// input is switched off and confirmed off by a reading (|I| < 50 mA),
// retried for ControllerOptions::make_safe_timeout_s; a cell aborted for
// over-temperature is held in quarantine (serial scope, reason "hazardous:
// …", actor "eolstation controller", role "station") in the same store
// transaction as its record. The record goes to the store (one transaction
// per record) and then to every added sink; a record
// the store refuses turns the result into verdict error (never a silent
// pass) and faults the channel.
//
// Concurrency (Boost.Asio). ONE io_context, the controller's, run by one
// thread it owns: every channel's test is a C++20 coroutine on it (the step
// engine, steps.hpp), as are the safety monitors, the reconnect loops and
// whatever the caller puts on executor() (signals, the PLC server, the
// panel). No thread per channel: driver calls go to their instrument's
// Lane — a strand on a small pool of driver threads (one per instrument, at
// most 8) — so the commands to one instrument never interleave (the
// positions of a load mainframe, every thermocouple of one module) and the
// loop never waits on a socket. The drivers themselves are synchronous:
// each transport still owns a private io_context that a lane thread runs
// for the length of one command (docs/controller.md says why). The store
// is one connection behind a mutex; records are written on a store lane.
// The fits (tens of ms each) run on a compute pool (one thread per core, at
// most 4), a strand per channel: channels finishing together fit side by
// side and the loop stays free for the monitors.
//
// Instruments have a lifecycle (InstrumentState: disconnected → connecting
// → ready ⇄ active → safe, and error) and health (commands, errors, command
// time p50/p99, reconnects), in instruments(). An instrument that fails
// with a connection error or a timeout goes to error: the channels that use
// it fault, and a reconnect loop retries with exponential backoff (0.5 s
// doubling to 8 s) until it answers again; the channels stay faulted until
// a fault reset. Every 2 s each connected instrument no channel is testing
// on answers an identification query (keepalive): a connection closed for
// idleness stays open, and an instrument lost while idle is found before a
// cell is put on it. make_safe() reconnects a closed connection at once.
//
// Safety monitor (one coroutine per testing channel, separate from the
// steps, owning the make-safe path): every control period
// (limits.control_period_s of wall time; in virtual time
// ControllerOptions::virtual_monitor_period_s station seconds) it reads the channel's
// load (V, I) and thermocouple and trips on: cell temperature over
// limits.temp_abort_c or rising faster than limits.temp_rate_max_k_per_s;
// terminal voltage outside [v_min_v, v_max_v]; measured current not
// following the setpoint (|I − I_set| > max(i_follow_tol_a, 5 % of I_set)
// for 3 periods, or current flowing with the input off); an open (or
// otherwise not ok) thermocouple; an instrument error or timeout. A trip
// switches the load input off AT ONCE (the next command on the load's lane)
// and then aborts the run, whose record names the cause; the time from the
// tripping reading to the input confirmed off is CellResult::trip_to_off_s.
// The other causes — operator abort, a stale PLC heartbeat (abort_all from
// the PLC server), SIGTERM/SIGINT (shutdown) — abort the run the same way.
//
// Stopping: abort()/abort_all() interrupt a running cell at its next clock
// wait (the run's clock throws RunAborted): the step ends aborted, the input
// is switched off, the aborted record is stored. shutdown() aborts every
// channel, waits for the workers, switches every configured load channel off
// (best effort, reported) and closes the store; the destructor calls it.
//
// Errors: ControllerRefused (a domain "no": bad serial, busy or faulted
// channel), UsageError (unknown position, configuration), StoreError. A
// failure inside one channel never ends the process or another channel: it
// becomes that cell's verdict error.
#pragma once

#include <utility>  // before Asio (Boost 1.74's awaitable.hpp needs std::exchange)

#include <boost/asio/any_io_executor.hpp>
#include <filesystem>
#include <functional>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/record.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/test_time_screen.hpp"
#include "eol/station/virtual_time.hpp"

namespace eol::station {

enum class ChannelState { idle, testing, complete, aborted, faulted };
/// "idle", "testing", "complete", "aborted", "faulted".
std::string_view to_string(ChannelState s);

/// A request the controller does not carry out (bad serial, busy or faulted
/// channel): a domain "no", exit code 1.
class ControllerRefused : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A cell refused because a golden check is due or has failed (the PLC's
/// fault code 16; docs/screening.md "Golden cell").
class GoldenCheckRequired : public ControllerRefused {
public:
    using ControllerRefused::ControllerRefused;
};

/// The golden (reference) cell check ([fixture_health] golden_serials).
struct GoldenStatus {
    bool configured = false;       // golden serials are configured
    bool due = false;              // other cells are refused until a golden cell passes
    std::string blocked;           // a golden check failed: why ("" = not blocked)
    int blocked_position = 0;      // the position whose fault reset lifts the block
    double last_pass_unix_s = 0;   // 0: none since the start
    double next_shift_unix_s = 0;  // the next shift start (0: none configured)
    std::vector<std::string> serials;  // normalized
};

/// The answer for one cell.
struct CellResult {
    int position = 0;
    /// Set when the safety monitor tripped: the cause, and wall seconds from
    /// the tripping reading to the load input read back off (negative: not
    /// confirmed off by the monitor).
    std::string trip_cause;
    double trip_to_off_s = -1;
    std::string serial;       // normalized
    std::string verdict;      // "pass", "fail", "hold", "abort", "error"
    std::string reason;       // why not pass (the failing limits, the hold, the cause); empty on pass
    std::optional<TestRecord> record;  // absent for a hold (nothing was tested)
    bool load_off_confirmed = true;    // after an abort or error: the input was read back off
    bool held_hazardous = false;       // quarantined after an over-temperature abort
    bool stored = false;               // the record is in the store
    /// Screening at test time (a record that passed its limits): the
    /// verdict of the model of earlier lots; outlier → verdict "hold" and a
    /// serial hold stored with the record. Absent when not screened.
    std::optional<TestTimeVerdict> screening;
    /// Fixture health: this cell's reading took its position beyond a limit
    /// (the reason); the channel is faulted, out of service until a fault
    /// reset after service. The cell's own verdict stands.
    std::optional<std::string> fixture_alarm;
    /// A golden cell's check against its own history: set for a golden
    /// serial; golden_reason says what was compared (or why it failed).
    std::optional<bool> golden_passed;
    std::string golden_reason;
};

/// What a panel or PLC shows of one channel (a copy, taken under the lock).
struct ChannelSnapshot {
    int position = 0;
    ChannelState state = ChannelState::idle;
    std::string serial;   // the cell under test, or the last one
    std::string verdict;  // of the last cell ("" before the first)
    std::string reason;
    double since_unix_s = 0;  // when the state was entered
    // While testing (from the safety monitor's last reading and the steps):
    std::string step;         // the running step's name
    std::size_t step_index = 0, step_count = 0;
    double elapsed_s = 0;     // station seconds since the cell started
    double v_v = NAN, i_a = NAN, temp_c = NAN;  // last monitor reading
    /// Faulted by fixture health (a contact or thermocouple drift): the
    /// position is out of service until serviced and fault-reset.
    bool out_of_service = false;
};

enum class InstrumentState { disconnected, connecting, ready, active, safe, error };
/// "disconnected", "connecting", "ready", "active", "safe", "error".
std::string_view to_string(InstrumentState s);

/// An instrument's lifecycle state and health (a copy).
struct InstrumentSnapshot {
    std::string name;
    std::string role;  // "load" or "thermo"
    std::string definition;  // the dialect or register-map file
    // Capabilities, from that file (loads; NaN: not stated):
    int channels = 0;
    double max_current_a = NAN, max_voltage_v = NAN, max_power_w = NAN;
    bool hardware_pulse = false;
    InstrumentState state = InstrumentState::disconnected;
    std::string last_error;
    std::uint64_t commands = 0, errors = 0, reconnects = 0;
    double command_p50_s = NAN, command_p99_s = NAN;  // over the last 1024 commands
};

struct ControllerOptions {
    /// Station seconds per wall second: 1 on a line; the simulators' scale
    /// when driving `eolstation sim` ([sim] time_scale).
    double time_scale = 1.0;
    /// Wall seconds to confirm a load input off after an abort or error.
    double make_safe_timeout_s = 10.0;
    /// The results store; default: the station file's `store` (created when missing).
    std::optional<std::filesystem::path> store;
    /// Simulations: station time from this virtual clock instead of the wall
    /// clock (virtual_time.hpp): each cell and its safety monitor are
    /// participants, so a run over simulated instruments is repeatable bit
    /// for bit. A control period of the monitor then stands for
    /// control_period_s × time_scale station seconds, as it does on the
    /// scaled wall clock, unless monitor_period_s says otherwise.
    /// nullptr (default): the wall clock.
    std::shared_ptr<VirtualTime> virtual_time;
    /// In virtual time: the safety monitor's period in station seconds
    /// (> 0), so that the readings do not depend on the pace. 0: as above.
    double virtual_monitor_period_s = 0.0;
    /// A thermocouple module's reading is shared by the positions and safety
    /// monitors whose requests queued behind one another on it (a read that
    /// began after a request answers it: ThermoShare in steps.hpp); false:
    /// one bus transaction per request. Never in virtual time.
    bool share_module_reads = true;
    /// Where a cell's software overhead goes: the step engine's phases
    /// (RunContext::on_phase: "pulse.fetch", "heat.fit", …) and, per stored
    /// record, "store.screen" (screening at test time) and "store.write"
    /// (the transaction its record was written in, commit included), in
    /// wall ms, with the position. Called on the controller's threads (the
    /// loop, the store lane): must be thread-safe. May be empty.
    std::function<void(int position, const char* phase, double wall_ms)> on_phase;
};

class Controller {
public:
    /// Opens (creates) the store and loads the serial scheme; builds the
    /// instrument drivers (no I/O yet). Throws UsageError, StoreError.
    explicit Controller(StationConfig cfg, ControllerOptions options = {});
    ~Controller();
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    const StationConfig& config() const;
    /// The controller's event loop (one io_context, run by the controller's
    /// thread): put signals, servers and timers here. Valid until destruction.
    boost::asio::any_io_executor executor();
    const SerialScheme& scheme() const;
    std::filesystem::path store_path() const;

    /// A further sink for every finished record (after the store). Add
    /// sinks before the first start().
    void add_sink(RecordSink& sink);

    /// Connects every instrument a fixture position uses (what `serve` does
    /// at start). Throws the first instrument's error, naming it.
    void connect_all();

    /// Starts a cell on `position`. `done` is called once with the result:
    /// for a hold before start() returns (from the caller's thread), else
    /// from the channel's worker when the cell finishes. Throws
    /// ControllerRefused / UsageError without calling `done`.
    void start(int position, std::string_view serial, std::function<void(const CellResult&)> done);
    /// start() and wait for the result.
    CellResult test(int position, std::string_view serial);

    /// Interrupts the cell on `position`; it ends aborted with `reason`.
    /// False when the channel is not testing (nothing to abort).
    bool abort(int position, const std::string& reason);
    void abort_all(const std::string& reason);
    /// Leaves faulted: switches the load input off and confirms it, then idle.
    /// ControllerRefused when the channel is testing or the input cannot be
    /// confirmed off (the channel stays faulted).
    void fault_reset(int position);

    std::vector<ChannelSnapshot> snapshot() const;
    GoldenStatus golden() const;
    std::vector<InstrumentSnapshot> instruments() const;

    /// abort_all(reason), waits for every worker (records stored), every
    /// configured load channel off (best effort; failures returned, one line
    /// each), store closed. Idempotent; start() refuses afterwards.
    std::vector<std::string> shutdown(const std::string& reason);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace eol::station
