#include "eol/instruments/scpi.hpp"

#include <fmt/format.h>

#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "eol/instruments/errors.hpp"
#include "line_io.hpp"

namespace eol::instruments {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

bool parse_double(std::string_view s, double& out) {
    s = trim(s);
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    if (s.empty()) return false;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

int element_size(ArrayFormat f) {
    return f == ArrayFormat::real32_be || f == ArrayFormat::real32_le ? 4 : 8;
}
bool big_endian(ArrayFormat f) { return f == ArrayFormat::real32_be || f == ArrayFormat::real64_be; }

}  // namespace

std::string_view to_string(ArrayFormat f) {
    switch (f) {
    case ArrayFormat::ascii: return "ascii";
    case ArrayFormat::ascii_block: return "ascii-block";
    case ArrayFormat::real32_be: return "real32-be";
    case ArrayFormat::real32_le: return "real32-le";
    case ArrayFormat::real64_be: return "real64-be";
    case ArrayFormat::real64_le: return "real64-le";
    }
    return "?";
}

ArrayFormat parse_array_format(std::string_view name) {
    for (auto f : {ArrayFormat::ascii, ArrayFormat::ascii_block, ArrayFormat::real32_be, ArrayFormat::real32_le,
                   ArrayFormat::real64_be, ArrayFormat::real64_le})
        if (to_string(f) == name) return f;
    throw std::invalid_argument("unknown array format '" + std::string(name) +
                                "' (expected ascii, ascii-block, real32-be, real32-le, real64-be or "
                                "real64-le)");
}

Identity parse_identity(std::string_view reply) {
    std::vector<std::string> f;
    std::size_t start = 0;
    for (std::size_t k = 0; k <= reply.size(); ++k) {
        if (k == reply.size() || (reply[k] == ',' && f.size() < 3)) {
            f.emplace_back(trim(reply.substr(start, k - start)));
            start = k + 1;
        }
    }
    if (f.size() != 4)
        throw std::invalid_argument("expected manufacturer,model,serial,firmware (4 fields), got " +
                                    std::to_string(f.size()));
    if (f[0].empty() || f[1].empty())
        throw std::invalid_argument("empty manufacturer or model field");
    for (char c : reply)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            throw std::invalid_argument("non-printable character in identity");
    return Identity{f[0], f[1], f[2], f[3]};
}

ScpiErrorEntry parse_error_entry(std::string_view reply) {
    ScpiErrorEntry e;
    e.text = std::string(trim(reply));
    const std::size_t comma = reply.find(',');
    if (comma == std::string_view::npos)
        throw std::invalid_argument("expected <code>,\"<message>\"");
    std::string_view code = trim(reply.substr(0, comma));
    if (!code.empty() && code.front() == '+') code.remove_prefix(1);
    const auto [p, ec] = std::from_chars(code.data(), code.data() + code.size(), e.code);
    if (ec != std::errc{} || p != code.data() + code.size() || code.empty())
        throw std::invalid_argument("error code '" + std::string(code) + "' is not an integer");
    std::string_view msg = trim(reply.substr(comma + 1));
    if (msg.size() >= 2 && msg.front() == '"' && msg.back() == '"') msg = msg.substr(1, msg.size() - 2);
    e.message = std::string(msg);
    return e;
}

double parse_number(std::string_view text) {
    double v = 0;
    if (!parse_double(text, v))
        throw std::invalid_argument("expected a number, got " + detail::preview(text));
    return v;
}

std::vector<double> parse_number_list(std::string_view text) {
    std::vector<double> out;
    if (trim(text).empty()) return out;
    std::size_t start = 0;
    for (std::size_t k = 0; k <= text.size(); ++k) {
        if (k == text.size() || text[k] == ',') {
            double v = 0;
            const std::string_view item = text.substr(start, k - start);
            if (!parse_double(item, v))
                throw std::invalid_argument("item " + std::to_string(out.size() + 1) +
                                            " at character " + std::to_string(start + 1) +
                                            " is not a number: " + detail::preview(item, 20));
            out.push_back(v);
            start = k + 1;
        }
    }
    return out;
}

std::vector<double> decode_binary_block(std::string_view payload, ArrayFormat format) {
    if (!is_binary(format)) return parse_number_list(payload);
    const auto size = static_cast<std::size_t>(element_size(format));
    if (payload.size() % size != 0)
        throw std::invalid_argument("block of " + std::to_string(payload.size()) +
                                    " bytes is not a whole number of " + std::to_string(size) +
                                    "-byte values");
    const bool swap = big_endian(format) != (std::endian::native == std::endian::big);
    std::vector<double> out;
    out.reserve(payload.size() / size);
    for (std::size_t k = 0; k < payload.size(); k += size) {
        unsigned char b[8];
        std::memcpy(b, payload.data() + k, size);
        if (swap)
            for (std::size_t i = 0; i < size / 2; ++i) std::swap(b[i], b[size - 1 - i]);
        if (size == 4) {
            float f;
            std::memcpy(&f, b, 4);
            out.push_back(static_cast<double>(f));
        } else {
            double d;
            std::memcpy(&d, b, 8);
            out.push_back(d);
        }
    }
    return out;
}

std::string encode_binary_block(const std::vector<double>& values, ArrayFormat format) {
    if (!is_binary(format)) {
        std::string s;
        for (std::size_t k = 0; k < values.size(); ++k) {
            if (k) s += ',';
            s += fmt::format("{:.7g}", values[k]);
        }
        return s;
    }
    const auto size = static_cast<std::size_t>(element_size(format));
    const bool swap = big_endian(format) != (std::endian::native == std::endian::big);
    std::string out(values.size() * size, '\0');
    for (std::size_t k = 0; k < values.size(); ++k) {
        unsigned char b[8];
        if (size == 4) {
            const auto f = static_cast<float>(values[k]);
            std::memcpy(b, &f, 4);
        } else {
            std::memcpy(b, &values[k], 8);
        }
        if (swap)
            for (std::size_t i = 0; i < size / 2; ++i) std::swap(b[i], b[size - 1 - i]);
        std::memcpy(out.data() + k * size, b, size);
    }
    return out;
}

std::string definite_length_block(std::string_view payload) {
    // fmt rather than operator+: GCC 12 at -O3 warns (-Wrestrict, a known
    // false positive) on "#" + std::string.
    const std::string len = std::to_string(payload.size());
    std::string out = fmt::format("#{}{}", len.size(), len);
    out.append(payload);
    return out;
}

std::string format_number(double v) { return fmt::format("{}", v); }

// ------------------------------------------------------------------ client

ScpiClient::ScpiClient(std::string name, std::unique_ptr<LineTransport> transport, double timeout_s)
    : name_(std::move(name)), transport_(std::move(transport)), timeout_s_(timeout_s) {
    if (!transport_) throw std::invalid_argument("ScpiClient: no transport");
    check_duration_s(timeout_s_, name_ + ": SCPI reply timeout");
}

void ScpiClient::rethrow_transport(std::string_view command) {
    const std::string cmd(command);
    try {
        throw;
    } catch (const TimeoutError& e) {
        throw TimeoutError(name_, cmd, e.detail() + " [" + e.instrument() + "]");
    } catch (const ConnectionError& e) {
        throw ConnectionError(name_, cmd,
                              (e.command() == "connect" ? "" : e.command() + ": ") + e.detail() +
                                  " [" + e.instrument() + "]");
    } catch (const ProtocolError& e) {
        throw ProtocolError(name_, cmd, e.detail() + " [" + e.instrument() + "]");
    }
}

void ScpiClient::protocol(std::string_view command, const std::string& detail, bool resync) {
    if (resync) transport_->close();
    throw ProtocolError(name_, std::string(command), detail);
}

void ScpiClient::open() {
    try {
        transport_->open();
    } catch (const InstrumentError&) {
        rethrow_transport("connect");
    }
}

void ScpiClient::close() { transport_->close(); }

void ScpiClient::write(std::string_view command) {
    try {
        transport_->write_line(command, timeout_s_);
    } catch (const InstrumentError&) {
        rethrow_transport(command);
    }
}

void ScpiClient::command(std::string_view cmd) {
    write(cmd);
    check_errors(cmd);
}

std::string ScpiClient::query(std::string_view q, double timeout_s) {
    try {
        transport_->write_line(q, timeout_s_);
        return transport_->read_line(t(timeout_s));
    } catch (const InstrumentError&) {
        rethrow_transport(q);
    }
}

double ScpiClient::query_number(std::string_view q, double timeout_s) {
    const std::string r = query(q, timeout_s);
    double v = 0;
    if (!parse_double(r, v)) protocol(q, "expected a number, got " + detail::preview(r), false);
    return v;
}

std::vector<double> ScpiClient::query_numbers(const std::vector<std::string>& queries, double timeout_s) {
    std::string q;
    for (const std::string& unit : queries) {
        if (!q.empty()) {
            q += ';';
            // A common command (*…) has no path; any other unit starts from the root.
            if (!unit.starts_with(':') && !unit.starts_with('*')) q += ':';
        }
        q += unit;
    }
    const std::string r = query(q, timeout_s);
    std::vector<double> out;
    out.reserve(queries.size());
    std::string_view rest = r;
    for (;;) {
        const std::size_t semi = rest.find(';');
        double v = 0;
        if (!parse_double(rest.substr(0, semi), v))
            protocol(q, "expected " + std::to_string(queries.size()) + " numbers separated by ';', got " +
                            detail::preview(r), false);
        out.push_back(v);
        if (semi == std::string_view::npos) break;
        rest.remove_prefix(semi + 1);
    }
    if (out.size() != queries.size())
        protocol(q, "expected " + std::to_string(queries.size()) + " numbers separated by ';', got " +
                        detail::preview(r), false);
    return out;
}

std::int64_t ScpiClient::query_integer(std::string_view q, double timeout_s) {
    const std::string r = query(q, timeout_s);
    std::string_view s = trim(r);
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc{} && p == s.data() + s.size() && !s.empty()) return v;
    // Some instruments answer integers in NR3 form ("+8.00000E+00").
    double d = 0;
    if (parse_double(s, d) && std::nearbyint(d) == d && std::abs(d) < 9e15)
        return static_cast<std::int64_t>(d);
    protocol(q, "expected an integer, got " + detail::preview(r), false);
}

std::vector<double> ScpiClient::query_array(std::string_view q, ArrayFormat format,
                                            double timeout_s) {
    const double to = t(timeout_s);
    std::string payload;
    bool block = false;
    try {
        transport_->write_line(q, timeout_s_);
        const std::string first = transport_->read_exact(1, to);
        if (first == "#") {
            block = true;
            const std::string nd = transport_->read_exact(1, to);
            if (nd.empty() || !std::isdigit(static_cast<unsigned char>(nd[0])))
                protocol(q, "block header '#' followed by " + detail::preview(nd) +
                                " instead of a digit count", true);
            const int ndigits = nd[0] - '0';
            if (ndigits == 0) {
                payload = transport_->read_line(to);  // indefinite-length block: to the newline
            } else {
                const std::string len_text = transport_->read_exact(static_cast<std::size_t>(ndigits), to);
                std::size_t len = 0;
                const auto [p, ec] =
                    std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
                if (ec != std::errc{} || p != len_text.data() + len_text.size())
                    protocol(q, "block length " + detail::preview(len_text) + " is not a number",
                             true);
                payload = transport_->read_exact(len, to);
                const std::string rest = transport_->read_line(to);
                if (!rest.empty())
                    protocol(q, "unexpected " + detail::preview(rest) + " after the " +
                                    std::to_string(len) + "-byte block", true);
            }
        } else if (first == "\n") {
            payload.clear();
        } else {
            payload = first + transport_->read_line(to);
            while (!payload.empty() && payload.back() == '\r') payload.pop_back();
        }
    } catch (const ProtocolError& e) {
        if (e.instrument() == name_) throw;
        rethrow_transport(q);
    } catch (const InstrumentError&) {
        rethrow_transport(q);
    }
    try {
        if (block && is_binary(format)) return decode_binary_block(payload, format);
        if (trim(payload).empty()) protocol(q, "empty reply where an array was expected", false);
        return parse_number_list(payload);
    } catch (const std::invalid_argument& e) {
        protocol(q, std::string(e.what()) + " (reply " + detail::preview(payload) + ")", false);
    }
}

Identity ScpiClient::identify(std::string_view idn_query) {
    const std::string r = query(idn_query);
    try {
        return parse_identity(r);
    } catch (const std::invalid_argument& e) {
        protocol(idn_query, std::string(e.what()) + "; got " + detail::preview(r), false);
    }
}

std::vector<ScpiErrorEntry> ScpiClient::drain_errors() {
    std::vector<ScpiErrorEntry> out;
    for (int k = 0; k < 32; ++k) {
        const std::string r = query(error_query_);
        ScpiErrorEntry e;
        try {
            e = parse_error_entry(r);
        } catch (const std::invalid_argument& ex) {
            protocol(error_query_, std::string(ex.what()) + "; got " + detail::preview(r), false);
        }
        if (e.code == 0) return out;
        out.push_back(std::move(e));
    }
    return out;
}

void ScpiClient::check_errors(std::string_view after) {
    const auto errors = drain_errors();
    if (errors.empty()) return;
    std::string text = "instrument reported ";
    for (std::size_t k = 0; k < errors.size(); ++k) {
        if (k) text += "; ";
        text += errors[k].text;
    }
    throw DeviceError(name_, std::string(after), text);
}

void ScpiClient::sync(double timeout_s) {
    const std::string r = query(opc_query_, timeout_s);
    if (trim(r) != "1" && trim(r) != "+1")
        protocol(opc_query_, "expected 1, got " + detail::preview(r), false);
}

}  // namespace eol::instruments
