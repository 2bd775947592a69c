// eol/instruments/transport.hpp — line-oriented byte transports for SCPI.
//
// A LineTransport carries newline-terminated text (and the raw bytes of
// IEEE 488.2 definite-length blocks) to one instrument: TCP raw socket
// (tcp_transport.hpp) or a serial line (serial_transport.hpp), both on
// Boost.Asio with a deadline on every operation — no call waits without a
// timeout.
//
// Lifecycle: construct (no I/O) → open() → write_line / read_line /
// read_exact … → close(). After any timeout or disconnect the transport
// closes itself (a late reply would otherwise be read as the answer to the
// next question); the next operation reopens it, retrying with exponential
// backoff (TransportOptions). open() may be called explicitly too.
//
// Errors (eol/instruments/errors.hpp), with instrument() = the address and
// command() = the operation ("connect", "write", "read"):
//   ConnectionError — could not connect (after all attempts), peer closed or reset
//   TimeoutError    — the operation did not complete within its timeout
//   ProtocolError   — a line longer than max_line_bytes
// Callers that know the command (ScpiClient) re-throw them naming it.
//
// Threading: one transport is used from one thread at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "eol/instruments/address.hpp"

namespace eol::instruments {

/// Longest reply / connect timeout a driver accepts (1 h): anything longer,
/// zero, negative, NaN or infinite is a mistake, never "wait forever".
inline constexpr double kMaxTimeout_s = 3600.0;

/// For timeouts and other durations: throws std::invalid_argument
/// "WHAT: VALUE s is outside the allowed range
/// (0, MAX] s" unless 0 < value_s ≤ max_s (NaN and ±∞ are outside).
void check_duration_s(double value_s, std::string_view what, double max_s = kMaxTimeout_s);

struct TransportOptions {
    double connect_timeout_s = 3.0;   // per connection attempt
    double io_timeout_s = 2.0;        // default for reads and writes
    int connect_attempts = 3;         // attempts per (re)open, ≥ 1
    double backoff_initial_s = 0.05;  // wait after the first failed attempt, doubled each time
    double backoff_max_s = 1.0;
    std::size_t max_line_bytes = 64u << 20;  // longer lines are a ProtocolError
};

class LineTransport {
public:
    virtual ~LineTransport() = default;

    /// Connects (with retries and backoff). No-op when already open.
    virtual void open() = 0;
    virtual void close() = 0;
    virtual bool is_open() const = 0;

    /// Sends `line` followed by "\n" (opens first if needed).
    virtual void write_line(std::string_view line, double timeout_s) = 0;
    /// The next line without its terminator ("\n" or "\r\n").
    virtual std::string read_line(double timeout_s) = 0;
    /// Exactly `n` bytes (for definite-length blocks).
    virtual std::string read_exact(std::size_t n, double timeout_s) = 0;

    /// "tcp://HOST:PORT" or "serial:///dev/ttyX?baud=…" — for messages.
    virtual std::string describe() const = 0;
    const TransportOptions& options() const { return opt_; }

protected:
    explicit LineTransport(TransportOptions opt) : opt_(opt) {}
    TransportOptions opt_;
};

/// A TCP or serial transport for `address` (kind tcp or serial). Throws
/// std::invalid_argument for an rtu:// address (that is Modbus, not SCPI).
std::unique_ptr<LineTransport> make_line_transport(const Address& address,
                                                   const TransportOptions& options = {});

}  // namespace eol::instruments
