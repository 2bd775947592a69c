// The simulated servers under hostile load (issue 11, items 6 and 12):
// descriptors beyond FD_SETSIZE, connection floods past the per-server cap,
// many clients at once, and latency faults that must not leave clients
// queued behind each other. Loopback only; every wait is bounded.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <modbus/modbus.h>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/errors.hpp"
#include "eol/instruments/modbus_thermo.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/instruments/scpi.hpp"
#include "eol/instruments/tcp_transport.hpp"
#include "eol/sim/modbus_thermo_server.hpp"
#include "eol/sim/scpi_load_server.hpp"

using namespace eol;
using sim::TcChannel;
using Clock = std::chrono::steady_clock;

namespace {

double since_s(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::shared_ptr<sim::Fixture> fixture(std::size_t n = 2) {
    auto f = std::make_shared<sim::Fixture>(n, std::make_shared<sim::SimClock>(1.0), 25.0, 3);
    for (std::size_t k = 0; k < n; ++k) f->load_cell(k, "C" + std::to_string(k), {});
    return f;
}

std::unique_ptr<sim::ModbusThermoServer> thermo_server(sim::ModbusServerOptions opt = {}) {
    auto s = std::make_unique<sim::ModbusThermoServer>(
        fixture(), instruments::load_register_map(std::string(EOL_CONFIG_DIR) + "/maps/advantech-adam6018.toml"),
        "127.0.0.1", 0, std::vector<TcChannel>{TcChannel::cell(0)}, opt);
    s->start();
    return s;
}

/// A TCP socket connected to 127.0.0.1:port (blocking connect: loopback).
int connect_raw(std::uint16_t port) {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(s >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return s;
}

/// One Modbus TCP "read holding registers 0..7" on a raw socket, waited on
/// with poll() (so it works on any descriptor number): the reply's length,
/// 0 when the server closed the connection, -1 on timeout.
int raw_read_holding(int fd, double timeout_s = 2.0) {
    const std::uint8_t req[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x00, 0x00, 0x00, 0x08};
    if (::send(fd, req, sizeof req, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof req)) return 0;
    std::uint8_t buf[300];
    std::size_t got = 0;
    const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
    while (got < 9 + 16) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return -1;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
        const ssize_t n = ::recv(fd, buf + got, sizeof buf - got, 0);
        if (n <= 0) return 0;
        got += static_cast<std::size_t>(n);
    }
    return static_cast<int>(got);
}

/// Holds /dev/null open on every free descriptor up to `top` (and raises
/// the soft RLIMIT_NOFILE to allow it), so the next socket gets a number
/// above FD_SETSIZE. `inheritable`: without O_CLOEXEC (children get them).
class FdFlood {
public:
    explicit FdFlood(int top, bool inheritable = false) {
        rlimit r{};
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &r) == 0);
        const rlim_t want = static_cast<rlim_t>(top) + 256;
        if (r.rlim_cur < want) {
            REQUIRE_MESSAGE(r.rlim_max >= want, "RLIMIT_NOFILE hard limit " << r.rlim_max << " is too low");
            r.rlim_cur = want;
            REQUIRE(::setrlimit(RLIMIT_NOFILE, &r) == 0);
        }
        for (;;) {
            const int fd = ::open("/dev/null", O_RDONLY | (inheritable ? 0 : O_CLOEXEC));
            REQUIRE(fd >= 0);
            fds_.push_back(fd);
            if (fd >= top) break;
        }
    }
    ~FdFlood() { release(); }
    FdFlood(const FdFlood&) = delete;
    FdFlood& operator=(const FdFlood&) = delete;
    void release() {
        for (int fd : fds_) ::close(fd);
        fds_.clear();
    }

private:
    std::vector<int> fds_;
};

template <class F>
bool eventually(F&& f, double timeout_s = 3.0) {
    const auto t0 = Clock::now();
    while (since_s(t0) < timeout_s) {
        if (f()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return f();
}

struct Bare {
    modbus_t* ctx;
    explicit Bare(std::uint16_t port, int timeout_s = 2) : ctx(modbus_new_tcp("127.0.0.1", port)) {
        REQUIRE(ctx != nullptr);
        modbus_set_response_timeout(ctx, static_cast<std::uint32_t>(timeout_s), 0);
        REQUIRE(modbus_connect(ctx) == 0);
    }
    ~Bare() {
        modbus_close(ctx);
        modbus_free(ctx);
    }
    bool read() {
        std::uint16_t regs[8];
        return modbus_read_registers(ctx, 0, 8, regs) == 8;
    }
};

}  // namespace

TEST_CASE("hostile: modbus server: a client beyond FD_SETSIZE is refused cleanly, the server keeps serving") {
    auto server = thermo_server();
    Bare before(server->port());  // connected while descriptors are low
    REQUIRE(before.read());
    {
        FdFlood flood(FD_SETSIZE + 64);
        // Every descriptor below FD_SETSIZE is taken: the server's accept()
        // returns one above it; libmodbus would abort in select(). Refused.
        const int high = connect_raw(server->port());
        CHECK(high >= FD_SETSIZE);
        CHECK(raw_read_holding(high) == 0);  // closed, not answered, no abort
        ::close(high);
        CHECK(eventually([&] { return server->refused() == 1; }));
        CHECK(server->running());
        CHECK(before.read());  // the client it already had is still served
    }
    // Descriptors free again: new clients are served.
    Bare after(server->port());
    CHECK(after.read());
    CHECK(before.read());
    CHECK(server->refused() == 1);
}

TEST_CASE("hostile: modbus driver: with no descriptor below FD_SETSIZE, connect fails with a ConnectionError") {
    auto server = thermo_server();
    const auto map = instruments::load_register_map(std::string(EOL_CONFIG_DIR) + "/maps/advantech-adam6018.toml");
    const auto address = instruments::parse_address("tcp://127.0.0.1:" + std::to_string(server->port()));
    auto reader = instruments::make_modbus_thermo("tc1", address, map, 1.0);
    {
        FdFlood flood(FD_SETSIZE + 64);
        try {
            reader->connect();
            FAIL("connected on a descriptor above FD_SETSIZE");
        } catch (const instruments::ConnectionError& e) {
            CHECK(e.command() == "connect " + address.to_string());
            CHECK(e.detail().find("is not below FD_SETSIZE (1024) and no lower one is free") != std::string::npos);
        }
    }
    reader->connect();
    CHECK(reader->read_all().size() == static_cast<std::size_t>(map.thermo.channels));
}

TEST_CASE("hostile: modbus server: 40 clients at once are all served") {
    auto server = thermo_server();
    std::vector<std::unique_ptr<Bare>> clients;
    for (int k = 0; k < 40; ++k) clients.push_back(std::make_unique<Bare>(server->port()));
    int ok = 0;
    for (int round = 0; round < 2; ++round)
        for (auto& c : clients) ok += c->read() ? 1 : 0;
    CHECK(ok == 80);
    CHECK(server->refused() == 0);
}

TEST_CASE("hostile: modbus server: a flood past max_clients is refused and counted, its clients keep being served") {
    auto server = thermo_server();
    Bare first(server->port());
    REQUIRE(first.read());
    std::vector<int> flood;
    for (int k = 0; k < 150; ++k) flood.push_back(connect_raw(server->port()));
    // 1 + 63 accepted (kModbusMaxClients = 64), the other 87 refused.
    CHECK(eventually([&] { return server->refused() == static_cast<std::uint64_t>(150 + 1 - sim::kModbusMaxClients); }));
    CHECK(first.read());
    for (int fd : flood) ::close(fd);
    // The server sees them go and takes new clients again.
    CHECK(eventually([&] {
        Bare b(server->port());
        return b.read();
    }));
    CHECK(server->running());
}

TEST_CASE("hostile: modbus server: clients that send half a request hold up nobody and are dropped") {
    auto server = thermo_server();
    std::vector<int> stalled;
    const std::uint8_t half[] = {0x00, 0x01, 0x00, 0x00, 0x00};  // 5 of the MBAP header's 7 bytes
    for (int k = 0; k < 30; ++k) {
        stalled.push_back(connect_raw(server->port()));
        REQUIRE(::send(stalled.back(), half, sizeof half, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof half));
    }
    // A well-behaved client is answered at once, not after 30 × 0.5 s.
    Bare good(server->port());
    const auto t0 = Clock::now();
    for (int k = 0; k < 5; ++k) CHECK(good.read());
    CHECK(since_s(t0) < 0.5);
    // A request that arrives in two parts is answered.
    const int split = connect_raw(server->port());
    const std::uint8_t req[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x00, 0x00, 0x00, 0x08};
    REQUIRE(::send(split, req, 4, MSG_NOSIGNAL) == 4);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE(::send(split, req + 4, sizeof req - 4, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof req - 4));
    std::uint8_t reply[64];
    std::size_t got = 0;
    while (got < 9 + 16) {
        pollfd p{split, POLLIN, 0};
        if (::poll(&p, 1, 2000) != 1) break;
        const ssize_t n = ::recv(split, reply + got, sizeof reply - got, 0);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    CHECK(got == 9 + 16);  // MBAP + FC03 + byte count + 8 registers
    CHECK(reply[1] == 0x07);  // its transaction id
    ::close(split);
    // The stalled ones are dropped after 0.5 s: their sockets read end of
    // stream, or a reset (the server closed with their half request unread).
    for (int fd : stalled) {
        pollfd p{fd, POLLIN, 0};
        CHECK(::poll(&p, 1, 3000) == 1);
        char b;
        const ssize_t n = ::recv(fd, &b, 1, 0);
        CHECK((n == 0 || (n < 0 && errno == ECONNRESET)));
        ::close(fd);
    }
    CHECK(good.read());
}

TEST_CASE("hostile: modbus server: latency is per request, clearing it answers every held request at once") {
    auto server = thermo_server();
    constexpr int kClients = 20;
    std::vector<std::unique_ptr<Bare>> clients;
    for (int k = 0; k < kClients; ++k) clients.push_back(std::make_unique<Bare>(server->port(), 10));

    // 0.5 s each, 20 at once: about 0.5 s in all, not 20 × 0.5 s.
    server->faults().update([](sim::FaultSettings& s) { s.latency_s = 0.5; });
    auto t0 = Clock::now();
    {
        std::atomic<int> ok{0};
        std::vector<std::thread> ts;
        for (auto& c : clients) ts.emplace_back([&ok, &c] { ok += c->read() ? 1 : 0; });
        for (auto& t : ts) t.join();
        CHECK(ok == kClients);
    }
    const double took_s = since_s(t0);
    CHECK(took_s >= 0.45);
    CHECK(took_s < 3.0);

    // 30 s of latency, cleared after 0.3 s: everyone answered right away.
    server->faults().update([](sim::FaultSettings& s) { s.latency_s = 30.0; });
    std::atomic<int> ok{0};
    std::vector<std::thread> ts;
    for (auto& c : clients) ts.emplace_back([&ok, &c] { ok += c->read() ? 1 : 0; });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    t0 = Clock::now();
    server->faults().update([](sim::FaultSettings& s) { s.latency_s = 0; });
    for (auto& t : ts) t.join();
    CHECK(ok == kClients);
    CHECK(since_s(t0) < 1.5);
}

TEST_CASE("hostile: scpi server: a flood past max_clients is refused, clearing latency answers at once") {
    auto fx = fixture();
    auto server = std::make_unique<sim::ScpiLoadServer>(
        instruments::load_dialect(std::string(EOL_CONFIG_DIR) + "/dialects/keysight-el30000.toml"), fx);
    server->start();
    instruments::ScpiClient first("first", std::make_unique<instruments::TcpTransport>("127.0.0.1", server->port()),
                                  10.0);
    CHECK(first.query("*IDN?").find("EL34243A") != std::string::npos);
    std::vector<int> flood;
    for (int k = 0; k < 100; ++k) flood.push_back(connect_raw(server->port()));
    CHECK(eventually([&] { return server->refused() == 100 + 1 - sim::kScpiMaxClients; }));
    CHECK(first.query("*IDN?").find("EL34243A") != std::string::npos);
    for (int fd : flood) ::close(fd);

    // A reply held by 30 s of latency goes out as soon as the fault is cleared.
    server->faults().update([](sim::FaultSettings& s) { s.latency_s = 30.0; });
    std::string reply;
    std::thread t([&] { reply = first.query("*IDN?"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto t0 = Clock::now();
    server->faults().update([](sim::FaultSettings& s) { s.latency_s = 0; });
    t.join();
    CHECK(since_s(t0) < 1.0);
    CHECK(reply.find("EL34243A") != std::string::npos);
    CHECK(eventually([&] {
        instruments::ScpiClient c("late", std::make_unique<instruments::TcpTransport>("127.0.0.1", server->port()),
                                  2.0);
        try {
            return c.query("*IDN?").find("EL34243A") != std::string::npos;
        } catch (const std::exception&) {
            return false;
        }
    }));
}
