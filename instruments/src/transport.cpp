#include "eol/instruments/transport.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "eol/instruments/serial_transport.hpp"
#include "eol/instruments/tcp_transport.hpp"

namespace eol::instruments {

void check_duration_s(double value_s, std::string_view what, double max_s) {
    if (!(value_s > 0 && value_s <= max_s))  // false for NaN
        throw std::invalid_argument(fmt::format("{}: {} s is outside the allowed range (0, {}] s", what,
                                                value_s, max_s));
}

std::unique_ptr<LineTransport> make_line_transport(const Address& address,
                                                   const TransportOptions& options) {
    switch (address.kind) {
    case Address::Kind::tcp:
        return std::make_unique<TcpTransport>(address.host, address.port, options);
    case Address::Kind::serial: return std::make_unique<SerialTransport>(address, options);
    case Address::Kind::rtu: break;
    }
    throw std::invalid_argument("address '" + address.to_string() +
                                "' is Modbus RTU; a SCPI instrument needs tcp:// or serial://");
}

}  // namespace eol::instruments
