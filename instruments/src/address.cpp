#include "eol/instruments/address.hpp"

#include <charconv>
#include <string_view>

namespace eol::instruments {
namespace {

[[noreturn]] void fail(const std::string& text, std::size_t pos0, const std::string& what) {
    throw AddressError("address '" + text + "' at character " + std::to_string(pos0 + 1) + ": " +
                       what);
}

long parse_int(const std::string& text, std::size_t pos0, std::string_view s, const char* what) {
    long v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty())
        fail(text, pos0, std::string("expected a number for ") + what + ", got '" +
                             std::string(s) + "'");
    return v;
}

void parse_query(const std::string& text, std::size_t q0, Address& a) {
    std::size_t pos = q0;
    while (pos < text.size()) {
        std::size_t amp = text.find('&', pos);
        if (amp == std::string::npos) amp = text.size();
        const std::string_view item(text.data() + pos, amp - pos);
        const std::size_t eq = item.find('=');
        if (eq == std::string_view::npos) fail(text, pos, "expected key=value");
        const std::string_view key = item.substr(0, eq);
        const std::string_view val = item.substr(eq + 1);
        const std::size_t vpos = pos + eq + 1;
        if (key == "baud") {
            const long b = parse_int(text, vpos, val, "baud");
            if (b <= 0 || b > 4'000'000) fail(text, vpos, "baud out of range");
            a.baud = static_cast<unsigned>(b);
        } else if (key == "parity") {
            if (val != "N" && val != "E" && val != "O") fail(text, vpos, "parity must be N, E or O");
            a.parity = val[0];
        } else if (key == "unit") {
            const long u = parse_int(text, vpos, val, "unit");
            if (u < 0 || u > 247) fail(text, vpos, "unit must be 0..247");
            a.unit = static_cast<int>(u);
        } else if (key == "data") {
            const long d = parse_int(text, vpos, val, "data bits");
            if (d < 5 || d > 8) fail(text, vpos, "data bits must be 5..8");
            a.data_bits = static_cast<int>(d);
        } else if (key == "stop") {
            const long s = parse_int(text, vpos, val, "stop bits");
            if (s != 1 && s != 2) fail(text, vpos, "stop bits must be 1 or 2");
            a.stop_bits = static_cast<int>(s);
        } else {
            fail(text, pos, "unknown option '" + std::string(key) +
                                "' (known: baud, parity, unit, data, stop)");
        }
        pos = amp + 1;
    }
}

}  // namespace

Address parse_address(const std::string& text) {
    Address a;
    const std::size_t sep = text.find("://");
    if (sep == std::string::npos) fail(text, 0, "expected tcp://, rtu:// or serial://");
    const std::string scheme = text.substr(0, sep);
    const std::size_t rest = sep + 3;
    if (scheme == "tcp") {
        a.kind = Address::Kind::tcp;
        std::size_t q = text.find('?', rest);
        const std::size_t end = q == std::string::npos ? text.size() : q;
        const std::size_t colon = text.rfind(':', end - 1);
        if (colon == std::string::npos || colon < rest) fail(text, rest, "expected HOST:PORT");
        a.host = text.substr(rest, colon - rest);
        if (a.host.empty()) fail(text, rest, "empty host");
        const long p = parse_int(text, colon + 1,
                                 std::string_view(text).substr(colon + 1, end - colon - 1), "port");
        if (p < 1 || p > 65535) fail(text, colon + 1, "port must be 1..65535");
        a.port = static_cast<std::uint16_t>(p);
        if (q != std::string::npos) parse_query(text, q + 1, a);
    } else if (scheme == "rtu" || scheme == "serial") {
        a.kind = scheme == "rtu" ? Address::Kind::rtu : Address::Kind::serial;
        if (a.kind == Address::Kind::serial) a.baud = 115200;
        std::size_t q = text.find('?', rest);
        a.device = text.substr(rest, (q == std::string::npos ? text.size() : q) - rest);
        if (a.device.empty() || a.device[0] != '/')
            fail(text, rest, "expected a device path such as /dev/ttyUSB0");
        if (q != std::string::npos) parse_query(text, q + 1, a);
    } else {
        fail(text, 0, "unknown scheme '" + scheme + "' (expected tcp, rtu or serial)");
    }
    return a;
}

std::string Address::to_string() const {
    switch (kind) {
    case Kind::tcp: return "tcp://" + host + ":" + std::to_string(port);
    case Kind::rtu:
        return "rtu://" + device + "?baud=" + std::to_string(baud) + "&parity=" + parity +
               "&unit=" + std::to_string(unit);
    case Kind::serial: return "serial://" + device + "?baud=" + std::to_string(baud);
    }
    return {};
}

}  // namespace eol::instruments
