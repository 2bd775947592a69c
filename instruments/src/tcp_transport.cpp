#include "eol/instruments/tcp_transport.hpp"

#include <algorithm>
#include <thread>

#include "line_io.hpp"

namespace eol::instruments {

namespace asio = boost::asio;
using asio::ip::tcp;
using detail::error_code;

struct TcpTransport::Impl {
    Impl(std::string h, std::uint16_t p, const TransportOptions& o)
        : host(std::move(h)), port(p), opt(o), home(o.io_context), socket(home.io), timer(home.io),
          lines(home, socket, o.max_line_bytes) {}

    std::string where() const { return "tcp://" + host + ":" + std::to_string(port); }

    void connect_once() {
        tcp::resolver resolver(home.io);
        tcp::resolver::results_type endpoints;
        const auto r = detail::run_with_deadline(
            home, timer, opt.connect_timeout_s,
            [&](auto done) {
                resolver.async_resolve(host, std::to_string(port),
                                       [&endpoints, done](const error_code& ec,
                                                          tcp::resolver::results_type res) {
                                           endpoints = std::move(res);
                                           done(ec, 0);
                                       });
            },
            [&] { resolver.cancel(); });
        if (r.timed_out) throw TimeoutError(where(), "connect", "name resolution timed out");
        if (r.ec) throw ConnectionError(where(), "connect", "cannot resolve host: " + r.ec.message());

        const auto c = detail::run_with_deadline(
            home, timer, opt.connect_timeout_s,
            [&](auto done) {
                asio::async_connect(socket, endpoints,
                                    [done](const error_code& ec, const tcp::endpoint&) { done(ec, 0); });
            },
            [&] {
                error_code ignored;
                socket.close(ignored);
            });
        if (c.timed_out) {
            error_code ignored;
            socket.close(ignored);
            throw TimeoutError(where(), "connect",
                               "no connection within " + std::to_string(opt.connect_timeout_s) + " s");
        }
        if (c.ec) {
            error_code ignored;
            socket.close(ignored);
            throw ConnectionError(where(), "connect", c.ec.message());
        }
        // SCPI is request/response with small messages: do not wait for Nagle.
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        lines.clear();
        connected = true;
    }

    void open() {
        if (connected) return;
        const int attempts = std::max(1, opt.connect_attempts);
        double backoff = opt.backoff_initial_s;
        std::string last;
        bool last_timeout = false;
        for (int k = 0; k < attempts; ++k) {
            if (k > 0) {
                std::this_thread::sleep_for(detail::seconds(backoff));
                backoff = std::min(backoff * 2, opt.backoff_max_s);
            }
            try {
                connect_once();
                return;
            } catch (const TimeoutError& e) {
                last = e.detail();
                last_timeout = true;
            } catch (const ConnectionError& e) {
                last = e.detail();
                last_timeout = false;
            }
        }
        const std::string msg = "could not connect after " + std::to_string(attempts) +
                                (attempts == 1 ? " attempt: " : " attempts: ") + last;
        if (last_timeout) throw TimeoutError(where(), "connect", msg);
        throw ConnectionError(where(), "connect", msg);
    }

    void close() {
        error_code ignored;
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
        lines.clear();
        connected = false;
    }

    std::string host;
    std::uint16_t port;
    TransportOptions opt;
    detail::IoHome home;
    tcp::socket socket;
    asio::steady_timer timer;
    detail::LineIo<tcp::socket> lines;
    bool connected = false;
};

TcpTransport::TcpTransport(std::string host, std::uint16_t port, TransportOptions options)
    : LineTransport(options), impl_(std::make_unique<Impl>(std::move(host), port, options)) {}

TcpTransport::~TcpTransport() { impl_->close(); }

void TcpTransport::open() { impl_->open(); }
void TcpTransport::close() { impl_->close(); }
bool TcpTransport::is_open() const { return impl_->connected; }

void TcpTransport::write_line(std::string_view text, double timeout_s) { detail::write_line(*impl_, text, timeout_s); }
std::string TcpTransport::read_line(double timeout_s) { return detail::read_line(*impl_, timeout_s); }
std::string TcpTransport::read_exact(std::size_t n, double timeout_s) { return detail::read_exact(*impl_, n, timeout_s); }
std::string TcpTransport::describe() const { return impl_->where(); }

}  // namespace eol::instruments
