// eol/instruments/tcp_transport.hpp — SCPI raw socket (port 5025 is usual)
// over TCP with Boost.Asio: connect, read and write deadlines, reconnect with
// backoff. See transport.hpp for the contract and the errors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "eol/instruments/transport.hpp"

namespace eol::instruments {

class TcpTransport final : public LineTransport {
public:
    TcpTransport(std::string host, std::uint16_t port, TransportOptions options = {});
    ~TcpTransport() override;
    TcpTransport(const TcpTransport&) = delete;
    TcpTransport& operator=(const TcpTransport&) = delete;

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
