// eol/instruments/address.hpp — instrument addresses as operators write them.
//
//   tcp://HOST:PORT                              SCPI raw socket or Modbus TCP
//   rtu:///dev/ttyX?baud=9600&parity=N&unit=1    Modbus RTU on a serial line
//   serial:///dev/ttyX?baud=115200               SCPI on a serial line
//
// parse_address() throws AddressError naming the text and the 1-based
// character position of the first thing it could not read.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace eol::instruments {

class AddressError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

struct Address {
    enum class Kind { tcp, rtu, serial } kind = Kind::tcp;
    std::string host;        // tcp
    std::uint16_t port = 0;  // tcp
    std::string device;      // rtu, serial: /dev/ttyX
    unsigned baud = 9600;    // rtu, serial
    char parity = 'N';       // 'N', 'E' or 'O'
    int data_bits = 8;
    int stop_bits = 1;
    int unit = 1;            // Modbus unit (slave) id; also settable for tcp

    std::string to_string() const;
};

Address parse_address(const std::string& text);

}  // namespace eol::instruments
