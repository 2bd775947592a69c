// eol/sim/scpi_load_server.hpp — a simulated SCPI electronic load on a TCP
// port, speaking any dialect table (eol/instruments/dialect.hpp): it parses
// each incoming command against the dialect's own templates (case-insensitive,
// whitespace-tolerant, the dialect's spellings only), so the real driver —
// or any SCPI client using those spellings — can drive it over loopback.
//
// What it does: N channels mapped to fixture positions; modes CC/CV/CR/CP,
// levels, input on/off and measurements from the cell physics (Fixture);
// list pulses and the data logger via Fixture::start_profile / fetch_log,
// armed by the dialect's arm commands and started by its trigger; the pulse
// status register; protection (over voltage/current/power trips the input
// off and latches until cleared); a device-wide SYST:ERR? queue (-113
// Undefined header, -222 Data out of range, -221 Settings conflict, …);
// *IDN? from the dialect's [simulator] section, *RST, *CLS, *OPC?. Several
// commands on one line separated by ';' are answered on one line.
//
// Fault injection (faults()): added latency before each reply, dropped
// connection, garbage or truncated reply (one-shot), no reply (while set),
// SCPI error-queue entries (queued on the next command).
//
// Lifecycle: construct → start() (binds, listens, starts its I/O thread;
// port 0 picks a free port, see port()) → stop() (or destroy). Several
// clients may be connected at once, up to max_clients (default
// kScpiMaxClients = 64); more are accepted and closed at once, counted
// (refused()) and logged to stderr at most once a second ("sim: NAME at
// HOST:PORT: refused N client connection(s): …"). Out of descriptors, it retries
// accepting after 100 ms. start() throws std::runtime_error naming
// host:port if it cannot listen. Thread-safe accessors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eol/instruments/dialect.hpp"
#include "eol/sim/faults.hpp"
#include "eol/sim/fixture.hpp"

namespace eol::sim {

/// Default cap on simultaneous clients of one simulated SCPI load.
inline constexpr std::size_t kScpiMaxClients = 64;

struct ScpiLoadServerOptions {
    std::string name = "scpi-load";  // for logs
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;          // 0: any free port
    /// Fixture position (0-based) of channel 1, 2, …; empty: channel k ↔ position k−1
    /// for every channel of the dialect. At most dialect.channels entries.
    std::vector<std::size_t> positions;
    std::size_t max_clients = kScpiMaxClients;  // more are refused
};

class ScpiLoadServer {
public:
    ScpiLoadServer(instruments::Dialect dialect, std::shared_ptr<Fixture> fixture,
                   ScpiLoadServerOptions options = {});
    ~ScpiLoadServer();
    ScpiLoadServer(const ScpiLoadServer&) = delete;
    ScpiLoadServer& operator=(const ScpiLoadServer&) = delete;

    void start();
    void stop();
    bool running() const;

    /// The bound port (valid after start()).
    std::uint16_t port() const;
    const std::string& host() const;
    /// "host:port".
    std::string endpoint() const;
    const std::string& name() const;
    const instruments::Dialect& dialect() const;
    Faults& faults();

    /// Snapshot of the error queue (oldest first), for tests.
    std::vector<std::string> error_queue() const;
    /// Commands executed so far (all clients).
    std::uint64_t commands() const;
    /// Client connections refused since start (over max_clients).
    std::uint64_t refused() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace eol::sim
