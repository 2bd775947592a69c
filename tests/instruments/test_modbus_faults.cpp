// One test per injected fault kind: the driver turns each into the right
// typed error naming the instrument and the register, and recovers after it.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <thread>

#include "eol/instruments/errors.hpp"
#include "instruments/test_modbus_util.hpp"

using namespace eol;
using instruments::RegisterMap;
using instruments::TcStatus;
using sim::TcChannel;

namespace {

struct Rig : test::ThermoRig {
    explicit Rig(double timeout_s = 0.5)
        : test::ThermoRig(instruments::load_register_map(test::map_path("icpdas-et7018z.toml")),
                          test::make_fixture(2), {TcChannel::cell(0), TcChannel::cell(1)},
                          timeout_s) {}
    void set(const std::function<void(sim::FaultSettings&)>& f) { server->faults().update(f); }
    bool reads_ok() { return reader->read_all()[0].status == TcStatus::ok; }
};

/// The first request of a scan is the value block: FC04 input registers 0 ×10.
template <class E>
E expect(Rig& rig) {
    try {
        rig.reader->read_all();
    } catch (const E& e) {
        CHECK(e.instrument() == "tc1");
        CHECK(e.command() == "FC04 input register 0 ×10");
        return e;
    } catch (const std::exception& e) {
        FAIL("unexpected error type: " << e.what());
    }
    FAIL("no error");
    throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("modbus fault: added latency within the timeout is tolerated, beyond it times out") {
    Rig rig(0.5);
    rig.set([](auto& s) { s.latency_s = 0.05; });
    CHECK(rig.reads_ok());
    rig.set([](auto& s) { s.latency_s = 1.0; });
    const auto e = expect<instruments::TimeoutError>(rig);
    CHECK(e.detail().find("0.500 s") != std::string::npos);
    rig.set([](auto& s) { s.latency_s = 0; });
    std::this_thread::sleep_for(std::chrono::milliseconds(700));  // the server is free again
    CHECK(rig.reads_ok());
}

TEST_CASE("modbus fault: a dropped connection is reconnected once and the request answered, a device gone is a ConnectionError") {
    Rig rig;
    CHECK(rig.reads_ok());
    const auto before = rig.server->connections_accepted();
    rig.set([](auto& s) { s.drop_connection = true; });  // one request's connection closed instead of a reply
    CHECK(rig.reads_ok());
    CHECK(rig.server->connections_accepted() == before + 1);
    // Nobody to reconnect to: the request's connection is reset, the one
    // reconnect is refused, and the error says both.
    rig.server.reset();
    const auto e = expect<instruments::ConnectionError>(rig);
    CHECK(e.detail().find("connection lost") != std::string::npos);
    CHECK(e.detail().find("reconnect failed") != std::string::npos);
}

TEST_CASE("modbus fault: a garbage reply is a ProtocolError, the next scan works") {
    Rig rig;
    rig.set([](auto& s) { s.garbage_reply = true; });
    const auto e = expect<instruments::ProtocolError>(rig);
    CHECK(e.detail().find("malformed reply") != std::string::npos);
    CHECK(rig.reads_ok());
}

TEST_CASE("modbus fault: a truncated reply times out waiting for the rest, the next scan works") {
    Rig rig;
    rig.set([](auto& s) { s.truncated_reply = true; });
    expect<instruments::TimeoutError>(rig);
    CHECK(rig.reads_ok());
}

TEST_CASE("modbus fault: exception responses are DeviceErrors named after the exception") {
    Rig rig;
    rig.set([](auto& s) { s.modbus_exception = 2; });
    auto e = expect<instruments::DeviceError>(rig);
    CHECK(e.detail() == "Modbus exception 2 (illegal data address)");
    rig.set([](auto& s) { s.modbus_exception = 4; });
    e = expect<instruments::DeviceError>(rig);
    CHECK(e.detail() == "Modbus exception 4 (server device failure)");
    CHECK(rig.reads_ok());  // the connection stayed up
}

TEST_CASE("modbus fault: no reply times out every scan until the device answers again") {
    Rig rig;
    rig.set([](auto& s) { s.no_reply = true; });
    expect<instruments::TimeoutError>(rig);
    expect<instruments::TimeoutError>(rig);
    rig.set([](auto& s) { s.no_reply = false; });
    CHECK(rig.reads_ok());
}

TEST_CASE("modbus fault: thermocouple burn-out reads open, not a temperature") {
    Rig rig;
    rig.set([](auto& s) { s.burnout_channels = {1}; });
    const auto r = rig.reader->read_all();
    CHECK(r[0].status == TcStatus::ok);
    CHECK(r[1].status == TcStatus::open);
    CHECK(std::isnan(r[1].temp_c));
}

TEST_CASE("modbus fault: nobody listening is a ConnectionError naming the address") {
    std::uint16_t port = 0;
    {
        Rig rig;
        port = rig.server->port();
    }  // server stopped: the port is closed now
    auto reader = instruments::make_modbus_thermo(
        "tc9", test::loopback(port),
        instruments::load_register_map(test::map_path("icpdas-et7018z.toml")), 0.3);
    try {
        reader->connect();
        FAIL("connected to a closed port");
    } catch (const instruments::ConnectionError& e) {
        CHECK(e.instrument() == "tc9");
        CHECK(e.command() == "connect tcp://127.0.0.1:" + std::to_string(port));
    }
    // A scan without connect() tries to connect and names the request it could not send.
    try {
        reader->read_all();
        FAIL("read from a closed port");
    } catch (const instruments::ConnectionError& e) {
        CHECK(e.command() == "FC04 input register 0 ×10");
        CHECK(e.detail().find("(re)connect failed") != std::string::npos);
    }
}
