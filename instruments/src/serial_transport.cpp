#include "eol/instruments/serial_transport.hpp"

#include <algorithm>
#include <thread>

#include "line_io.hpp"

namespace eol::instruments {

namespace asio = boost::asio;
using detail::error_code;

struct SerialTransport::Impl {
    Impl(Address a, const TransportOptions& o)
        : line(std::move(a)), opt(o), home(o.io_context), port(home.io), lines(home, port, o.max_line_bytes) {}

    std::string where() const { return line.to_string(); }

    void open_once() {
        error_code ec;
        port.open(line.device, ec);
        if (ec) throw ConnectionError(where(), "connect", "cannot open " + line.device + ": " + ec.message());
        using sp = asio::serial_port_base;
        const sp::parity::type parity = line.parity == 'E'   ? sp::parity::even
                                        : line.parity == 'O' ? sp::parity::odd
                                                             : sp::parity::none;
        port.set_option(sp::baud_rate(line.baud), ec);
        if (!ec) port.set_option(sp::character_size(static_cast<unsigned>(line.data_bits)), ec);
        if (!ec) port.set_option(sp::parity(parity), ec);
        if (!ec)
            port.set_option(sp::stop_bits(line.stop_bits == 2 ? sp::stop_bits::two : sp::stop_bits::one),
                            ec);
        if (!ec) port.set_option(sp::flow_control(sp::flow_control::none), ec);
        if (ec) {
            error_code ignored;
            port.close(ignored);
            throw ConnectionError(where(), "connect", "cannot configure the line: " + ec.message());
        }
        lines.clear();
        connected = true;
    }

    void open() {
        if (connected) return;
        const int attempts = std::max(1, opt.connect_attempts);
        double backoff = opt.backoff_initial_s;
        std::string last;
        for (int k = 0; k < attempts; ++k) {
            if (k > 0) {
                std::this_thread::sleep_for(detail::seconds(backoff));
                backoff = std::min(backoff * 2, opt.backoff_max_s);
            }
            try {
                open_once();
                return;
            } catch (const ConnectionError& e) {
                last = e.detail();
            }
        }
        throw ConnectionError(where(), "connect",
                              "could not open after " + std::to_string(attempts) +
                                  (attempts == 1 ? " attempt: " : " attempts: ") + last);
    }

    void close() {
        error_code ignored;
        port.close(ignored);
        lines.clear();
        connected = false;
    }

    Address line;
    TransportOptions opt;
    detail::IoHome home;
    asio::serial_port port;
    detail::LineIo<asio::serial_port> lines;
    bool connected = false;
};

SerialTransport::SerialTransport(Address line, TransportOptions options)
    : LineTransport(options), impl_(std::make_unique<Impl>(std::move(line), options)) {}

SerialTransport::~SerialTransport() { impl_->close(); }

void SerialTransport::open() { impl_->open(); }
void SerialTransport::close() { impl_->close(); }
bool SerialTransport::is_open() const { return impl_->connected; }

void SerialTransport::write_line(std::string_view text, double timeout_s) { detail::write_line(*impl_, text, timeout_s); }
std::string SerialTransport::read_line(double timeout_s) { return detail::read_line(*impl_, timeout_s); }
std::string SerialTransport::read_exact(std::size_t n, double timeout_s) { return detail::read_exact(*impl_, n, timeout_s); }
std::string SerialTransport::describe() const { return impl_->where(); }

}  // namespace eol::instruments
