// eol/sim/modbus_server.hpp — the common engine of the simulated Modbus
// servers (thermocouple module, electronic load): a libmodbus slave on TCP
// (several clients at once) or RTU (a serial device, e.g. one end of a
// socat pty pair), on its own thread, with run-time fault injection.
//
// Lifecycle: construct (no I/O) → start() (binds; the port is known after
// it returns; throws std::runtime_error when it cannot bind/open) → … →
// stop() (joins promptly, within ~0.1 s; also done by the destructor).
// start() after stop() is not supported.
//
// Serving: the server accepts TCP clients itself and waits on all sockets
// with poll(); each request is read with modbus_receive() and answered with
// modbus_reply() from a modbus_mapping_t that the subclass refreshes from the
// physics before the reply (refresh()) and reads back after writes
// (apply_writes()). An idle client is dropped after `idle_timeout_s` without
// a request (the indication timeout). TCP requests are handed to
// modbus_receive() only once they are whole in the socket buffer, so a
// client that sends half a request holds up nobody; it is dropped when the
// rest has not come 0.5 s later. (RTU: the line is read as it comes, a
// stalled frame waits at most 0.5 s.)
//
// Connections: up to `max_clients` (default kModbusMaxClients = 64) at once;
// more are refused (accepted and closed at once). modbus_receive() waits
// with select(), which cannot take a descriptor ≥ FD_SETSIZE (1024; glibc
// aborts the process): a client whose descriptor is that high is moved to
// the lowest free one below it, or refused when there is none — so a
// process holding thousands of sockets keeps serving instead of aborting.
// Refusals are counted (refused()) and logged to stderr ("sim: NAME at
// ADDRESS: refused N client connection(s): why"), at most once a second. Out of
// descriptors (EMFILE), the server pauses accepting for 100 ms rather than
// spinning. An RTU line whose descriptor is ≥ FD_SETSIZE is moved below it
// the same way, or start() throws.
//
// Faults (faults.hpp), consulted on every request: latency_s (delay before
// the reply: the request is held, not slept on, so other clients are served
// meanwhile and each waits its own latency; the latency in force when the
// reply falls due counts, so clearing the fault answers every held request at
// once), drop_connection (close instead of replying; RTU: no reply),
// garbage_reply (a frame that does not answer the request: an unknown
// function code on TCP, a bad CRC on RTU), truncated_reply (the first half
// of the real reply), no_reply (swallow requests while set),
// modbus_exception (an exception response with that code via
// modbus_reply_exception). burnout_channels is the thermocouple server's.
//
// Thread-safety: start/stop/port from the owner's thread; faults() from any.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <modbus/modbus.h>

#include "eol/instruments/address.hpp"
#include "eol/sim/faults.hpp"

namespace eol::sim {

/// Default cap on simultaneous TCP clients of one simulated Modbus server.
inline constexpr int kModbusMaxClients = 64;

struct ModbusServerOptions {
    double idle_timeout_s = 10.0;  // drop a client that sent nothing for this long
    int max_clients = kModbusMaxClients;  // more are refused
    int unit = 1;                  // RTU: the slave id answered; TCP answers any unit
};

class ModbusServer {
public:
    virtual ~ModbusServer();
    ModbusServer(const ModbusServer&) = delete;
    ModbusServer& operator=(const ModbusServer&) = delete;

    void start();
    void stop();
    bool running() const { return running_; }
    /// The bound TCP port (after start(); the ephemeral one when constructed with 0).
    std::uint16_t port() const { return port_; }
    const std::string& host() const { return listen_.host; }
    /// tcp://host:port or the RTU address the server listens on.
    std::string address() const;
    Faults& faults() { return faults_; }
    /// Requests answered (or faulted) since start.
    std::uint64_t requests() const { return requests_; }
    /// Client connections refused since start (over max_clients, or no
    /// descriptor below FD_SETSIZE for them).
    std::uint64_t refused() const { return refused_; }
    /// Client connections accepted (and served) since start.
    std::uint64_t connections_accepted() const { return accepted_; }

protected:
    /// `listen`: tcp (host, port 0 = ephemeral) or rtu (device, line settings).
    ModbusServer(std::string name, instruments::Address listen, ModbusServerOptions opt);

    /// Allocates the register image: called by the subclass constructor.
    void allocate(int coils, int discrete_inputs, int holding, int input);
    /// Before answering a request (any function): bring the image up to date.
    virtual void refresh(modbus_mapping_t& map) = 0;
    /// After a write request was applied to the image: act on it.
    /// `function`, `address`, `count` describe the write.
    virtual void apply_writes(modbus_mapping_t& map, int function, int address, int count) = 0;
    /// Called with the image locked; subclasses use it for their own state too.
    std::mutex& image_mutex() { return image_m_; }
    const std::string& name() const { return name_; }

private:
    struct Impl;
    void run();

    std::string name_;
    instruments::Address listen_;
    ModbusServerOptions opt_;
    Faults faults_;
    modbus_mapping_t* map_ = nullptr;
    std::mutex image_m_;
    std::unique_ptr<Impl> impl_;
    std::thread thread_;
    std::atomic<bool> running_{false}, stop_{false};
    std::atomic<std::uint64_t> requests_{0}, refused_{0}, accepted_{0};
    std::uint16_t port_ = 0;
};

}  // namespace eol::sim
