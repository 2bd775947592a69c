// A TcpTransport on a shared io_context waits for its replies on the calling
// thread (LineIo::wait_here, poll on the socket): against a scripted peer
// over loopback, every way a reply can arrive or fail gives the same result
// as the io_context's own reads did — a line in pieces, two lines in one
// segment, a block in pieces, a partial line at the deadline, a line over the
// limit, the peer closing — and the transport is usable again afterwards.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <istream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/tcp_transport.hpp"
#include "instruments/test_scpi_support.hpp"

using namespace eol;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

/// A peer on loopback that answers each line it reads with the script's
/// next action (blocking, on its own thread). An action writes pieces with
/// pauses between them, or closes the connection. One connection at a time;
/// it accepts the next after a close.
struct Peer {
    using Action = std::function<void(tcp::socket&)>;
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)};
    std::vector<Action> script;
    std::thread thread;

    explicit Peer(std::vector<Action> s) : script(std::move(s)) {
        thread = std::thread([this] { serve(); });
    }
    ~Peer() {
        // shutdown() wakes an accept() that blocks (close() alone does not
        // on Linux): a test that failed before the script's end must not hang.
        ::shutdown(acceptor.native_handle(), SHUT_RDWR);
        thread.join();
    }
    std::uint16_t port() const { return acceptor.local_endpoint().port(); }

    void serve() {
        std::size_t next = 0;
        while (next < script.size()) {
            tcp::socket s(io);
            boost::system::error_code ec;
            acceptor.accept(s, ec);
            if (ec) return;
            s.set_option(tcp::no_delay(true), ec);
            asio::streambuf in;
            while (next < script.size()) {
                asio::read_until(s, in, '\n', ec);
                if (ec) break;
                std::string line;
                std::istream is(&in);
                std::getline(is, line);
                script[next++](s);
                if (!s.is_open()) break;
            }
        }
    }
};

Peer::Action pieces(std::vector<std::string> parts, int pause_ms = 20) {
    return [parts = std::move(parts), pause_ms](tcp::socket& s) {
        for (std::size_t k = 0; k < parts.size(); ++k) {
            if (k > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
            asio::write(s, asio::buffer(parts[k]));
        }
    };
}

Peer::Action hang_up() {
    return [](tcp::socket& s) {
        boost::system::error_code ignored;
        s.shutdown(tcp::socket::shutdown_both, ignored);
        s.close(ignored);
    };
}

std::unique_ptr<instruments::TcpTransport> shared_transport(const Peer& peer, asio::io_context& io) {
    instruments::TransportOptions t;
    t.io_context = &io;
    t.connect_timeout_s = 1.0;
    t.max_line_bytes = 64;
    return std::make_unique<instruments::TcpTransport>("127.0.0.1", peer.port(), t);
}

/// What `f` threw as an E ("no error" when it returned, "other error: …"
/// for another exception).
template <class E, class F>
std::string thrown(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("other error: ") + e.what();
    }
    return "no error";
}

double since_s(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("scpi transport on a shared io_context reads on the caller's thread: a line in pieces, two lines at once, a block in pieces") {
    Peer peer({pieces({"3.9", "87", "6\r\n"}), pieces({"1\n2\n"}), pieces({"#2", "1", "0abcde", "fghij\n"}, 15),
               pieces({"after\n"})});
    test::LoopThread loop;
    auto t = shared_transport(peer, loop.io);
    t->write_line("MEAS:VOLT?", 1.0);
    CHECK(t->read_line(1.0) == "3.9876");  // three segments, 20 ms apart; "\r\n" dropped
    t->write_line("TWO?", 1.0);
    CHECK(t->read_line(1.0) == "1");
    CHECK(t->read_line(1.0) == "2");  // already in the buffer: no wait
    t->write_line("FETCH?", 1.0);
    CHECK(t->read_exact(1, 1.0) == "#");
    CHECK(t->read_exact(1, 1.0) == "2");
    CHECK(t->read_exact(2, 1.0) == "10");
    CHECK(t->read_exact(10, 1.0) == "abcdefghij");  // the block arrives in two pieces
    CHECK(t->read_line(1.0).empty());              // the block's terminator
    t->write_line("NEXT?", 1.0);
    CHECK(t->read_line(1.0) == "after");
}

TEST_CASE("hostile: scpi transport on a shared io_context reading on the caller's thread: a partial line at the deadline, a line over the limit, the peer closing") {
    Peer peer({pieces({"4.1"}),                       // no terminator: times out with what came
               pieces({std::string(100, 'x') + "\n"}),  // over max_line_bytes = 64
               hang_up(),                              // the peer closes instead of answering
               pieces({"back\n"})});
    test::LoopThread loop;
    auto t = shared_transport(peer, loop.io);

    t->write_line("MEAS:VOLT?", 1.0);
    auto t0 = std::chrono::steady_clock::now();
    std::string what = thrown<instruments::TimeoutError>([&] { (void)t->read_line(0.2); });
    INFO(what);
    CHECK(what.find("no line terminator within 0.2 s") != std::string::npos);
    CHECK(what.find("'4.1'") != std::string::npos);  // what came before the deadline
    const double took = since_s(t0);
    CHECK(took >= 0.19);
    CHECK(took < 0.6);
    CHECK_FALSE(t->is_open());  // a failed read closes: the next command starts on a fresh connection

    t->write_line("LONG?", 1.0);
    what = thrown<instruments::ProtocolError>([&] { (void)t->read_line(1.0); });
    CHECK(what.find("longer than 64 bytes") != std::string::npos);

    t->write_line("CLOSE?", 1.0);
    t0 = std::chrono::steady_clock::now();
    what = thrown<instruments::ConnectionError>([&] { (void)t->read_line(2.0); });
    CHECK(what.find("connection closed by the peer") != std::string::npos);
    CHECK(since_s(t0) < 1.0);  // at once, not at the deadline

    t->write_line("AGAIN?", 1.0);  // reconnects
    CHECK(t->read_line(1.0) == "back");
}
