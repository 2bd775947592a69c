// eol/instruments/scpi.hpp — a SCPI client over a LineTransport: commands,
// queries, IEEE 488.2 identification, the SYST:ERR? queue, *OPC?
// synchronization and arrays (comma-separated text or definite-length blocks
// `#<n><len><bytes>`, ASCII or binary float32/float64 in either byte order).
//
// Lifecycle: ScpiClient owns its transport; open() connects, every call
// reconnects if the connection was lost before it (see transport.hpp).
//
// Errors: every failure is an eol::instruments error naming this client's
// instrument name and the SCPI command at fault:
//   TimeoutError    no (complete) reply in time — also for truncated replies
//   ConnectionError could not connect, or the peer dropped the connection
//   ProtocolError   a reply that does not parse as what was asked; the message
//                   quotes what came back
//   DeviceError     the instrument queued errors after a command (command());
//                   the message lists the queue entries, e.g. -222,"Data out of range"
// After a timeout or a malformed block the connection is closed so a late
// reply cannot be mistaken for the next answer.
//
// Threading: one client is used from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eol/instruments/roles.hpp"
#include "eol/instruments/transport.hpp"

namespace eol::instruments {

/// How a fetched array comes back: comma-separated text on one line, the
/// same text inside a definite-length block, or binary IEEE 754 values in a
/// block (single/double precision, big/little endian).
enum class ArrayFormat { ascii, ascii_block, real32_be, real32_le, real64_be, real64_le };
/// "ascii", "ascii-block", "real32-be", "real32-le", "real64-be", "real64-le".
std::string_view to_string(ArrayFormat f);
/// Throws std::invalid_argument for an unknown name.
ArrayFormat parse_array_format(std::string_view name);
inline bool is_binary(ArrayFormat f) { return f != ArrayFormat::ascii && f != ArrayFormat::ascii_block; }

/// One entry of the SYST:ERR? queue.
struct ScpiErrorEntry {
    int code = 0;
    std::string message;
    std::string text;  // as it came back
};

// ----- reply parsing (pure; throw std::invalid_argument saying what and where)

/// "manufacturer,model,serial,firmware" (surrounding spaces trimmed).
Identity parse_identity(std::string_view reply);
/// `-222,"Data out of range"` or `+0,"No error"`.
ScpiErrorEntry parse_error_entry(std::string_view reply);
/// One number in SCPI NR1/NR2/NR3 form.
double parse_number(std::string_view text);
/// "1.5,2,3e-3" → {1.5, 2, 0.003}; the error names the 1-based item and its character position.
std::vector<double> parse_number_list(std::string_view text);
/// Decodes the payload of a binary block (float32/float64, either byte order).
std::vector<double> decode_binary_block(std::string_view payload, ArrayFormat format);
/// Encodes values as a block payload (text for the ASCII formats; used by the simulator).
std::string encode_binary_block(const std::vector<double>& values, ArrayFormat format);
/// "#<n><len>" + payload.
std::string definite_length_block(std::string_view payload);
/// Shortest decimal text that reads back the same double (for commands).
std::string format_number(double v);

class ScpiClient {
public:
    ScpiClient(std::string name, std::unique_ptr<LineTransport> transport, double timeout_s = 2.0);

    const std::string& name() const { return name_; }
    LineTransport& transport() { return *transport_; }
    double timeout_s() const { return timeout_s_; }
    void set_timeout_s(double t) { timeout_s_ = t; }
    /// The queries used for the error queue and synchronization
    /// (defaults "SYST:ERR?" and "*OPC?").
    void set_error_query(std::string q) { error_query_ = std::move(q); }
    void set_opc_query(std::string q) { opc_query_ = std::move(q); }

    void open();
    void close();

    /// Sends a command; expects no reply and does not check the error queue.
    void write(std::string_view command);
    /// Sends a configuration command, then drains the error queue: throws
    /// DeviceError naming `command` if the instrument queued any error.
    void command(std::string_view command);
    /// Sends a query and returns its reply line.
    std::string query(std::string_view query, double timeout_s = 0);
    double query_number(std::string_view query, double timeout_s = 0);
    /// Several numeric queries as ONE program message (IEEE 488.2 compound:
    /// "Q1;:Q2;:Q3", a leading ':' resets the header path), answered in one
    /// line "R1;R2;R3" — one round trip instead of one per query. A reply
    /// with another number of fields (an instrument that stopped at an
    /// error) or a field that is not a number is a ProtocolError naming the
    /// message and the reply.
    std::vector<double> query_numbers(const std::vector<std::string>& queries, double timeout_s = 0);
    std::int64_t query_integer(std::string_view query, double timeout_s = 0);
    /// An array reply: a definite-length block (binary per `format`, or
    /// ASCII text inside the block) or a plain comma-separated line.
    std::vector<double> query_array(std::string_view query, ArrayFormat format,
                                    double timeout_s = 0);

    Identity identify(std::string_view idn_query = "*IDN?");
    /// Reads the error queue until "0,…" (at most 32 entries).
    std::vector<ScpiErrorEntry> drain_errors();
    /// drain_errors(); DeviceError naming `after` if there were any.
    void check_errors(std::string_view after);
    /// *OPC? — waits (up to timeout_s) until pending operations completed.
    void sync(double timeout_s = 0);

private:
    double t(double timeout_s) const { return timeout_s > 0 ? timeout_s : timeout_s_; }
    [[noreturn]] void rethrow_transport(std::string_view command);
    [[noreturn]] void protocol(std::string_view command, const std::string& detail, bool resync);

    std::string name_;
    std::unique_ptr<LineTransport> transport_;
    double timeout_s_;
    std::string error_query_ = "SYST:ERR?";
    std::string opc_query_ = "*OPC?";
};

}  // namespace eol::instruments
