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
//
// Where the I/O runs: by default each transport owns a private io_context
// and runs it inside each call. With TransportOptions::io_context set (the
// station controller's loop), the socket, its timers and name resolution
// live on that io_context instead, which another thread runs: a call starts
// its operation there and waits for it, so every instrument's I/O is on the
// one event loop while the caller (a driver lane) blocks only itself. Calling
// such a transport from that io_context's own thread is a std::logic_error
// (it would wait on itself); if the io_context stops while a call waits, the
// call ends with a ConnectionError saying so.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "eol/instruments/address.hpp"

namespace boost::asio {
class io_context;
}

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
    /// Run the I/O on this io_context (run by another thread; it must outlive
    /// the transport), or nullptr: a private one (see the top).
    boost::asio::io_context* io_context = nullptr;
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
