// eol/instruments/modbus_client.hpp — a Modbus master (TCP or RTU) over
// libmodbus for one device.
//
// Lifecycle: construct (no I/O) → connect() → read/write … → close(). One
// modbus_t per client; a client is NOT thread-safe and must be used from one
// thread or strand at a time (libmodbus contexts are not thread-safe).
//
// Timeouts: every request has a response timeout of `timeout_s` (also the
// connect timeout for TCP); libmodbus' own error recovery is OFF (it can
// block for seconds). After a timeout, a connection error or a reply that
// does not parse, the context is closed (a late reply must not be taken for
// the answer to the next request); the next request reconnects — one
// attempt, its failure is a ConnectionError. A connection that was open
// before a request and turns out closed or reset by the peer (a device or
// gateway that drops idle clients) is reconnected at once and the request
// sent once more (reads, and writes of absolute values: safe to repeat);
// a second failure is the ConnectionError. A Modbus exception response
// leaves the connection up.
//
// Descriptors: libmodbus waits with select(), which aborts the process on a
// descriptor ≥ FD_SETSIZE (1024). TCP connections are made here with
// poll() instead of modbus_connect(), and every connection's descriptor is
// moved below FD_SETSIZE (select_fd.hpp) — when none is free, connect()
// fails with a ConnectionError saying so, the process goes on.
//
// Errors (errors.hpp), all naming the instrument, the function code, the
// table, start address and count ("FC04 input register 2048 ×8"), and what
// came back:
//   TimeoutError     no (complete) reply in time
//   ConnectionError  connect failed, peer closed / reset the connection
//   ProtocolError    garbage, bad CRC, wrong length / unit / function
//   DeviceError      Modbus exception response, with the exception's name
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eol/instruments/address.hpp"
#include "eol/instruments/register_map.hpp"

namespace eol::instruments {

/// "illegal data address" for 2, … ; "exception N" for unknown codes.
std::string modbus_exception_name(int code);

class ModbusClient {
public:
    /// `address`: tcp://HOST:PORT[?unit=N] or rtu:///dev/ttyX?baud=…&parity=…&unit=N.
    ModbusClient(std::string instrument, Address address, double timeout_s = 1.0);
    ~ModbusClient();
    ModbusClient(const ModbusClient&) = delete;
    ModbusClient& operator=(const ModbusClient&) = delete;

    const std::string& instrument() const { return instrument_; }
    const Address& address() const { return address_; }
    int unit() const { return address_.unit; }
    void set_unit(int unit);

    void connect();
    void close();
    bool connected() const;

    /// FC03 / FC04 (table holding or input), 1..125 registers.
    std::vector<std::uint16_t> read_registers(RegTable table, int start, int count);
    /// FC01 / FC02 (table coils or discrete_inputs), 1..2000 bits.
    std::vector<bool> read_bits(RegTable table, int start, int count);
    void write_register(int address, std::uint16_t value);                  // FC06
    void write_registers(int start, const std::vector<std::uint16_t>& v);  // FC16
    void write_coil(int address, bool on);                                 // FC05

    /// Requests sent since construction (benchmarks, tests).
    std::uint64_t requests() const { return requests_; }

private:
    struct Ctx;
    template <class F>
    void transact(const std::string& what, F&& f);

    std::string instrument_;
    Address address_;
    double timeout_s_;
    std::unique_ptr<Ctx> ctx_;
    std::uint64_t requests_ = 0;
};

}  // namespace eol::instruments
