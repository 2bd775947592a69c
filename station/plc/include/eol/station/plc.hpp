// eol/station/plc.hpp — the line PLC's interface: a Modbus TCP server
// (holding registers, libmodbus for the framing) with a documented handshake
// per fixture position: the PLC writes serial, recipe id and cycle id and
// sets START; the station tests the cell through the controller and answers
// with a result code, status bits, a PackML state and the measurements. The
// register map, the cycle, the fault codes and the PackML transitions are in
// docs/plc.md — this header and that document must agree.
//
// Lifecycle: PlcServer binds and listens in its constructor ([plc] bind,
// port; port 0 takes a free one, see port()) and from then on runs entirely
// on the executor it is given (a strand of it): accepting, reading frames
// (Asio, never a blocking receive: an idle or half-open client stalls
// nothing), answering them (libmodbus modbus_reply / modbus_reply_exception
// on a per-connection modbus_t over the accepted socket), the station
// heartbeat (register 1, every 100 ms) and the PLC heartbeat watch. The two
// station calls that may block (start: a store lookup; fault_reset: the load
// switched off and read back, up to seconds) run on two worker threads of the
// server; their answers, and every cell's result (the `done` callback, which
// may come from any thread), are posted back to the strand. stop() (and the
// destructor) closes the listener and every connection, stops the timers and
// joins the workers (waiting for a fault reset in flight); cells still under
// test are left to the station (serve's shutdown aborts them).
//
// Safety: when the PLC heartbeat (register 0) has not changed for
// [plc] heartbeat_timeout_s, every cell the PLC started is aborted through
// the station ("stale PLC heartbeat": the step engine switches the load off,
// the controller confirms it off), the channel goes Aborted with result 4 and
// fault code 8, and no START is accepted until the heartbeat moves again.
// A client that disconnects mid-cycle changes nothing (the result stays
// valid until acknowledged); if it never comes back, its heartbeat goes stale.
//
// Errors: the constructor throws UsageError when the address cannot be
// bound (naming it) or a position does not fit the map. Everything a client
// sends gets a defined answer: Modbus exceptions for bad requests (ILLEGAL
// FUNCTION, ILLEGAL DATA ADDRESS for reads out of the map and for writes to
// anything but the PLC→station registers, ILLEGAL DATA VALUE for a PDU whose
// length does not match its function, GATEWAY TARGET for a unit id other
// than [plc] unit and 0xFF), a
// fault code in the channel's block for a command the state does not allow,
// and a closed connection for a broken MBAP header, a client not on the
// allow list, a client idle longer than idle_timeout_s, or one more client
// than max_clients (the longest idle is closed). All of it is logged (spdlog).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/controller.hpp"
#include "eol/station/serial.hpp"

namespace eol::station::plc {

// ---------------------------------------------------------------- the register map (holding registers, 0-based)

inline constexpr std::uint16_t kPlcHeartbeat = 0;      // PLC → station: the PLC changes it
inline constexpr std::uint16_t kStationHeartbeat = 1;  // station → PLC: +1 every 100 ms
inline constexpr int kBlockStride = 100;               // block of position c at B = 100·c
inline constexpr int kMaxPosition = 654;                // B + 99 must fit 16 bits

/// First register of position `position`'s block.
constexpr std::uint16_t block(int position) { return static_cast<std::uint16_t>(kBlockStride * position); }

/// Offsets inside a block.
namespace reg {
inline constexpr std::uint16_t command = 0;       // PLC → station: Command bits
inline constexpr std::uint16_t recipe_id = 1;     // PLC → station
inline constexpr std::uint16_t cycle_id = 2;      // PLC → station
inline constexpr std::uint16_t serial = 3;        // PLC → station: 8 registers, 16 ASCII characters
inline constexpr std::uint16_t serial_words = 8;
inline constexpr std::uint16_t last_plc_written = 10;  // B+0..B+10 are the only writable registers of a block
inline constexpr std::uint16_t packml = 20;       // PackMl
inline constexpr std::uint16_t status = 21;       // Status bits
inline constexpr std::uint16_t cycle_echo = 22;
inline constexpr std::uint16_t result = 23;       // ResultCode
inline constexpr std::uint16_t fault = 24;        // FaultCode
inline constexpr std::uint16_t serial_echo = 25;  // 8 registers, the normalized serial
inline constexpr std::uint16_t measurements = 40; // int32 each, high word first (measurement_slots())
}  // namespace reg

/// B+0, PLC → station; acted on at the rising edge (a bit held does nothing more).
namespace command {
inline constexpr std::uint16_t start = 1u << 0;
inline constexpr std::uint16_t result_ack = 1u << 1;
inline constexpr std::uint16_t abort = 1u << 2;
inline constexpr std::uint16_t fault_reset = 1u << 3;
}  // namespace command

/// B+21, station → PLC.
namespace status {
inline constexpr std::uint16_t ready = 1u << 0;         // a START would be accepted now
inline constexpr std::uint16_t busy = 1u << 1;          // a cycle is latched and under test
inline constexpr std::uint16_t result_valid = 1u << 2;  // B+22.. hold this cycle's answer until RESULT_ACK
inline constexpr std::uint16_t pass = 1u << 3;
inline constexpr std::uint16_t fail = 1u << 4;
inline constexpr std::uint16_t hold = 1u << 5;          // quarantined or outlier: to the hold bin
inline constexpr std::uint16_t fault = 1u << 6;         // B+24 is not 0
}  // namespace status

/// B+20 (ISA-TR88 state numbers).
enum class PackMl : std::uint16_t {
    stopped = 2,     // the channel is faulted: FAULT_RESET first
    idle = 4,
    execute = 6,
    aborting = 8,
    aborted = 9,     // the last cycle ended without a valid test (result 4)
    completing = 16, // not held: results are written in one step
    completed = 17,
};

/// B+23.
enum class ResultCode : std::uint16_t {
    none = 0,
    pass = 1,
    fail = 2,            // spec limits
    hold = 3,            // tested, quarantined or an outlier
    aborted = 4,         // no valid test: an abort, a safety limit, an instrument error
    invalid_serial = 5,  // not tested
    serial_held = 6,     // the serial was already held: not tested, the channel never energized
};

/// B+24 (docs/plc.md lists them with what the PLC should do).
enum class FaultCode : std::uint16_t {
    none = 0,
    result_not_acknowledged = 1,  // START while RESULT_VALID: acknowledge first
    channel_busy = 2,             // START or FAULT_RESET while a cycle runs
    unknown_recipe = 3,           // START with a recipe id the station does not have
    heartbeat_missing = 4,        // START while the PLC heartbeat is stale
    channel_faulted = 5,          // the channel is faulted: FAULT_RESET
    start_refused = 6,            // the station refused the cell (shutting down, busy at the station)
    ack_without_result = 7,       // RESULT_ACK without RESULT_VALID
    heartbeat_abort = 8,          // the test was aborted: stale PLC heartbeat
    plc_abort = 9,                // the test was aborted by the PLC's ABORT
    station_abort = 10,           // aborted by the station: a safety limit, an operator, shutdown
    instrument_error = 11,        // the test ended in error (the channel is faulted)
    load_not_off = 12,            // the load input could not be confirmed off (the channel is faulted)
    reset_failed = 13,            // FAULT_RESET: the load input could not be confirmed off
    start_with_abort = 14,        // START and ABORT rose in the same write: START ignored
    position_out_of_service = 15, // fixture health: the position's contacts or thermocouple drifted beyond
                                  // their limit; service it, then FAULT_RESET (with a result: that cell's
                                  // verdict stands, the position tests no more)
    golden_check = 16,            // START refused: a golden (reference) cell check is due (station start, shift
                                  // start) or failed (the station is blocked until the fault reset of the
                                  // position it failed at)
};
std::string_view describe(FaultCode f);

/// Where a recipe quantity goes in the block: B + offset, as int32 of value × scale.
struct MeasurementSlot {
    std::string_view quantity;  // the recipe's quantity name (config.hpp step_quantities)
    std::uint16_t offset;       // from B
    double scale;               // register value = round(value × scale)
    std::string_view unit;      // of the register value
};
/// The fixed table: OCV (0.1 mV) at B+40, R0 (µΩ) at B+42, temperature rise
/// (mK) at B+44, then the others. A value not measured reads 0x8000 0000.
const std::vector<MeasurementSlot>& measurement_slots();
inline constexpr std::int32_t kNotMeasured = std::numeric_limits<std::int32_t>::min();

// ---------------------------------------------------------------- what the server drives

/// The station as the PLC server sees it (Controller's public API; tests use
/// a fake). start() and fault_reset() may block and are called from the
/// server's worker threads; abort() and snapshot() must be quick and are
/// called on the server's strand. `done` may be called from any thread.
class PlcStation {
public:
    virtual ~PlcStation() = default;
    virtual const SerialScheme& scheme() const = 0;
    virtual const StationConfig& config() const = 0;
    /// Throws ControllerRefused (no `done`) or calls `done` exactly once.
    virtual void start(int position, const std::string& serial, std::function<void(const CellResult&)> done) = 0;
    virtual bool abort(int position, const std::string& reason) = 0;
    /// Throws ControllerRefused when the fault cannot be reset.
    virtual void fault_reset(int position) = 0;
    virtual std::vector<ChannelSnapshot> snapshot() const = 0;
};

/// PlcStation over the real Controller (it must outlive the adapter).
std::unique_ptr<PlcStation> controller_station(Controller& controller);

/// The 16 characters of 8 serial registers (trailing NULs and spaces dropped).
std::string serial_from_registers(const std::uint16_t* words, PlcConfig::ByteOrder order);
/// The other way: up to 16 characters into 8 registers, NUL padded.
void serial_to_registers(std::string_view serial, std::uint16_t* words, PlcConfig::ByteOrder order);

// ---------------------------------------------------------------- the server

class PlcServer {
public:
    /// Binds [plc] bind:port and starts serving on `executor`. `station`
    /// must outlive the server. Throws UsageError.
    PlcServer(boost::asio::any_io_executor executor, PlcStation& station, PlcConfig cfg);
    /// The same, owning its station (the Controller adapter).
    PlcServer(boost::asio::any_io_executor executor, std::unique_ptr<PlcStation> station, PlcConfig cfg);
    ~PlcServer();
    PlcServer(const PlcServer&) = delete;
    PlcServer& operator=(const PlcServer&) = delete;

    /// The port listened on (the bound one when [plc] port was 0).
    std::uint16_t port() const;
    /// Whether the PLC heartbeat is missing (none seen since start) or stale
    /// now (what the operator panel shows as an alarm). Any thread.
    bool heartbeat_stale() const;
    /// Closes the listener and every connection, stops the timers, joins the
    /// workers. Idempotent; call it from outside the executor's threads or
    /// from the executor (it does not wait for the loop).
    void stop();

private:
    struct Core;
    std::unique_ptr<PlcStation> owned_;
    std::shared_ptr<Core> core_;
};

/// What `serve` calls: a PlcServer over `controller` on `executor` (the
/// controller's own loop: Controller::executor()) when the station
/// file has an enabled [plc] table, else nullptr (serve then works from
/// standard input only). Logs where it listens.
std::unique_ptr<PlcServer> start_plc_if_configured(boost::asio::any_io_executor executor, Controller& controller);

}  // namespace eol::station::plc
