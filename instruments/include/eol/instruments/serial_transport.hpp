// eol/instruments/serial_transport.hpp — SCPI over a serial line
// (serial:///dev/ttyX?baud=115200&parity=N&data=8&stop=1) with
// boost::asio::serial_port: the same deadlines and reopen-with-backoff as the
// TCP transport. See transport.hpp for the contract and the errors.
#pragma once

#include <memory>
#include <string>

#include "eol/instruments/address.hpp"
#include "eol/instruments/transport.hpp"

namespace eol::instruments {

class SerialTransport final : public LineTransport {
public:
    /// `line` must be a serial address (device, baud, parity, data and stop bits).
    explicit SerialTransport(Address line, TransportOptions options = {});
    ~SerialTransport() override;
    SerialTransport(const SerialTransport&) = delete;
    SerialTransport& operator=(const SerialTransport&) = delete;

    void open() override;
    void close() override;
    bool is_open() const override;
    void write_line(std::string_view line, double timeout_s) override;
    std::string read_line(double timeout_s) override;
    std::string read_exact(std::size_t n, double timeout_s) override;
    std::string describe() const override;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace eol::instruments
