// SCPI over a serial line: the SerialTransport and ScpiClient talk through a
// socat pseudo-terminal pair to a tiny SCPI responder on the other end.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/scpi.hpp"
#include "eol/instruments/serial_transport.hpp"
#include "support/pty_pair.hpp"

using namespace eol;
namespace fs = std::filesystem;

namespace {

using eol::test::PtyPair;

// Answers *IDN?, MEAS:VOLT?, SYST:ERR? and a binary FETC:ARR:VOLT? block;
// "SILENT?" gets no answer. Runs until stopped.
class Responder {
public:
    explicit Responder(const fs::path& dev) {
        fd_ = ::open(dev.c_str(), O_RDWR | O_NOCTTY);
        REQUIRE(fd_ >= 0);
        termios t{};
        ::tcgetattr(fd_, &t);
        ::cfmakeraw(&t);
        ::tcsetattr(fd_, TCSANOW, &t);
        thread_ = std::thread([this] { run(); });
    }
    ~Responder() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    std::atomic<int> requests{0};

private:
    void send(const std::string& s) {
        std::size_t off = 0;
        while (off < s.size()) {
            const ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
            if (n <= 0) return;
            off += static_cast<std::size_t>(n);
        }
    }
    void answer(const std::string& line) {
        ++requests;
        if (line == "*IDN?") send("ACME Instruments,SL-1,SN42,2.0\r\n");
        else if (line == "MEAS:VOLT?") send("+3.91230E+00\n");
        else if (line == "SYST:ERR?") send("+0,\"No error\"\n");
        else if (line == "FETC:ARR:VOLT?")
            send("#212" + instruments::encode_binary_block({4.0, 3.5, 3.25}, instruments::ArrayFormat::real32_le) +
                 "\n");
    }
    void run() {
        std::string buf;
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            char c[256];
            const ssize_t n = ::read(fd_, c, sizeof c);
            if (n <= 0) continue;
            buf.append(c, static_cast<std::size_t>(n));
            std::size_t nl;
            while ((nl = buf.find('\n')) != std::string::npos) {
                std::string line = buf.substr(0, nl);
                buf.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                answer(line);
            }
        }
    }
    int fd_ = -1;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace

TEST_CASE("scpi serial: client over a socat pty pair to a SCPI responder") {
    PtyPair pty;
    Responder responder(pty.b);
    const instruments::Address addr =
        instruments::parse_address("serial://" + pty.a.string() + "?baud=115200");
    instruments::TransportOptions t;
    t.io_timeout_s = 0.5;
    auto transport = std::make_unique<instruments::SerialTransport>(addr, t);
    CHECK(transport->describe() == "serial://" + pty.a.string() + "?baud=115200");
    instruments::ScpiClient client("bench-load", std::move(transport), 0.5);
    client.open();

    const auto id = client.identify();
    CHECK(id.manufacturer == "ACME Instruments");
    CHECK(id.serial == "SN42");
    CHECK(client.query_number("MEAS:VOLT?") == doctest::Approx(3.9123));
    client.check_errors("MEAS:VOLT?");  // empty queue: no throw
    const auto arr = client.query_array("FETC:ARR:VOLT?", instruments::ArrayFormat::real32_le);
    CHECK(arr == std::vector<double>{4.0, 3.5, 3.25});

    // A query the responder ignores: a TimeoutError naming it, then the line
    // is reopened and works again.
    try {
        (void)client.query("SILENT?", 0.2);
        FAIL("expected a TimeoutError");
    } catch (const instruments::TimeoutError& e) {
        CHECK(e.instrument() == "bench-load");
        CHECK(e.command() == "SILENT?");
    }
    CHECK(client.identify().model == "SL-1");
    CHECK(responder.requests >= 6);
}

TEST_CASE("scpi serial: a device that does not exist is a ConnectionError naming it") {
    instruments::TransportOptions t;
    t.connect_attempts = 1;
    instruments::ScpiClient client(
        "ghost", std::make_unique<instruments::SerialTransport>(
                     instruments::parse_address("serial:///dev/eol-no-such-tty?baud=9600"), t));
    try {
        client.open();
        FAIL("expected a ConnectionError");
    } catch (const instruments::ConnectionError& e) {
        CHECK(e.instrument() == "ghost");
        CHECK(std::string(e.detail()).find("/dev/eol-no-such-tty") != std::string::npos);
    }
}
