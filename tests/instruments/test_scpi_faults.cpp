// Fault injection, one test per kind: each becomes the right typed error
// naming the instrument and the command, and a pulse that fails leaves the
// load's input off in the fixture.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "eol/instruments/errors.hpp"
#include "instruments/test_scpi_support.hpp"

using namespace eol;
using instruments::Cmd;
using instruments::LoadMode;

namespace {

instruments::Dialect keysight() {
    return instruments::load_dialect(test::dialect_path("keysight-el30000"));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

instruments::PulseSpec short_pulse() {
    return instruments::PulseSpec{{{0.0, 0.1}, {2.0, 0.1}, {0.0, 0.1}}, 0.01, 30};
}

/// What ScpiLoad::measure(1) sends: the three queries as one compound message.
std::string reading_message(const instruments::Dialect& d) {
    return d.render(Cmd::measure_voltage, 1) + ";:" + d.render(Cmd::measure_current, 1) + ";:" +
           d.render(Cmd::measure_power, 1);
}

}  // namespace

TEST_CASE("scpi faults: added latency delays replies, beyond the timeout it is a TimeoutError") {
    test::SimLoad sim(keysight());
    auto load = sim.driver(0.3);
    load->connect();
    sim.server->faults().update([](sim::FaultSettings& s) { s.latency_s = 0.1; });
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = load->measure(1);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(r.v_v > 3.0);
    CHECK(took >= 0.1);  // one compound message (V, I, P), 0.1 s late
    sim.server->faults().update([](sim::FaultSettings& s) { s.latency_s = 0.5; });
    const std::string q = reading_message(sim.server->dialect());
    try {
        (void)load->measure(1);
        FAIL("expected a TimeoutError");
    } catch (const instruments::TimeoutError& e) {
        CHECK(e.instrument() == "load1");
        CHECK(e.command() == q);
    }
    sim.server->faults().update([](sim::FaultSettings& s) { s.latency_s = 0; });
    CHECK(load->measure(1).v_v > 3.0);  // reconnected, in step again
}

TEST_CASE("scpi faults: a dropped connection is a ConnectionError, the next call reconnects") {
    test::SimLoad sim(keysight());
    auto load = sim.driver();
    load->connect();
    sim.server->faults().update([](sim::FaultSettings& s) { s.drop_connection = true; });
    try {
        (void)load->identify();
        FAIL("expected a ConnectionError");
    } catch (const instruments::ConnectionError& e) {
        CHECK(e.instrument() == "load1");
        CHECK(e.command() == "*IDN?");
        CHECK(contains(e.detail(), "closed"));
    }
    CHECK(load->identify().model == "EL34243A");
}

TEST_CASE("scpi faults: a garbage reply is a ProtocolError quoting what came back") {
    test::SimLoad sim(keysight());
    auto load = sim.driver();
    load->connect();
    sim.server->faults().update([](sim::FaultSettings& s) { s.garbage_reply = true; });
    const std::string q = reading_message(sim.server->dialect());
    try {
        (void)load->measure(1);
        FAIL("expected a ProtocolError");
    } catch (const instruments::ProtocolError& e) {
        CHECK(e.instrument() == "load1");
        CHECK(e.command() == q);
        CHECK(contains(e.detail(), "GARBAGE"));
    }
    CHECK(load->measure(1).v_v > 3.0);  // one-shot
}

TEST_CASE("scpi faults: a truncated reply is a TimeoutError showing the partial reply") {
    test::SimLoad sim(keysight());
    auto load = sim.driver(0.3);
    load->connect();
    sim.server->faults().update([](sim::FaultSettings& s) { s.truncated_reply = true; });
    try {
        (void)load->identify();
        FAIL("expected a TimeoutError");
    } catch (const instruments::TimeoutError& e) {
        CHECK(e.command() == "*IDN?");
        CHECK(contains(e.detail(), "no line terminator"));
        CHECK(contains(e.detail(), "Keysight"));  // the first half of the identity
    }
    CHECK(load->identify().manufacturer == "Keysight Technologies");
}

TEST_CASE("scpi faults: no reply is a TimeoutError naming the command") {
    test::SimLoad sim(keysight());
    auto load = sim.driver(0.2);
    load->connect();
    sim.server->faults().update([](sim::FaultSettings& s) { s.no_reply = true; });
    const std::string q = sim.server->dialect().render(Cmd::protection_query, 1);
    try {
        (void)load->protection(1);
        FAIL("expected a TimeoutError");
    } catch (const instruments::TimeoutError& e) {
        CHECK(e.instrument() == "load1");
        CHECK(e.command() == q);
        CHECK(contains(e.detail(), "no reply"));
    }
    sim.server->faults().update([](sim::FaultSettings& s) { s.no_reply = false; });
    CHECK_FALSE(load->protection(1).any());
}

TEST_CASE("scpi faults: an injected error-queue entry is a DeviceError naming the command") {
    test::SimLoad sim(keysight());
    auto load = sim.driver();
    load->connect();
    sim.server->faults().update([](sim::FaultSettings& s) { s.scpi_error = "-310,\"System error\""; });
    try {
        load->set_input(1, true);
        FAIL("expected a DeviceError");
    } catch (const instruments::DeviceError& e) {
        CHECK(e.instrument() == "load1");
        CHECK(e.command() == "INP ON,(@1)");
        CHECK(contains(e.detail(), "-310,\"System error\""));
    }
    CHECK(sim.server->error_queue().empty());  // drained
    load->set_input(1, false);                 // one-shot: no error now
}

TEST_CASE("scpi faults: an error while arming a pulse switches the input off") {
    test::SimLoad sim(keysight());
    auto load = sim.driver();
    load->connect();
    load->set_mode(1, LoadMode::cc, 1.0);
    load->set_input(1, true);
    REQUIRE(sim.fixture->load(0).input_on);
    // A list level beyond the load's 60 A rating: the device rejects it in
    // the middle of programming (-222), after the driver set up the channel.
    instruments::PulseSpec spec = short_pulse();
    spec.steps[1].current_a = 100.0;
    try {
        load->arm_pulse(1, spec);
        FAIL("expected a DeviceError");
    } catch (const instruments::DeviceError& e) {
        CHECK(contains(e.command(), "LIST:CURR"));
        CHECK(contains(e.detail(), "-222"));
    }
    CHECK_FALSE(sim.fixture->load(0).input_on);
}

TEST_CASE("scpi faults: garbage while fetching a pulse switches the input off") {
    test::SimLoad sim(keysight());
    auto load = sim.driver();
    load->connect();
    const auto spec = short_pulse();
    load->arm_pulse(1, spec);
    CHECK(sim.fixture->load(0).input_on);  // armed with the input on at 0 A
    load->trigger(1);
    while (!load->pulse_done(1)) {
    }
    sim.server->faults().update([](sim::FaultSettings& s) { s.garbage_reply = true; });
    try {
        (void)load->fetch_pulse(1);
        FAIL("expected a ProtocolError");
    } catch (const instruments::ProtocolError& e) {
        CHECK(e.instrument() == "load1");
        CHECK(e.command() == "FETC:ARR:VOLT? (@1)");
    }
    CHECK_FALSE(sim.fixture->load(0).input_on);
}

TEST_CASE("scpi faults: a dropped connection during a pulse still leaves the input off") {
    test::SimLoad sim(keysight());
    auto load = sim.driver();
    load->connect();
    load->arm_pulse(1, short_pulse());
    REQUIRE(sim.fixture->load(0).input_on);
    sim.server->faults().update([](sim::FaultSettings& s) { s.drop_connection = true; });
    CHECK_THROWS_AS(load->trigger(1), instruments::ConnectionError);
    // The driver reconnected and switched the input off before rethrowing.
    CHECK_FALSE(sim.fixture->load(0).input_on);
}

TEST_CASE("scpi faults: a load that stops answering while a pulse runs: TimeoutError") {
    test::SimLoad sim(keysight());
    auto load = sim.driver(0.2);
    load->connect();
    load->arm_pulse(1, short_pulse());
    load->trigger(1);
    sim.server->faults().update([](sim::FaultSettings& s) { s.no_reply = true; });
    try {
        (void)load->pulse_done(1);
        FAIL("expected a TimeoutError");
    } catch (const instruments::TimeoutError& e) {
        CHECK(e.command() == "STAT:OPER:COND? (@1)");
    }
    // The driver's best-effort input-off went unanswered too (the load
    // swallows everything while the fault is on); once it answers again the
    // input can be switched off — the station's safety layer retries.
    sim.server->faults().update([](sim::FaultSettings& s) { s.no_reply = false; });
    load->set_input(1, false);
    CHECK_FALSE(sim.fixture->load(0).input_on);
}

TEST_CASE("scpi faults: connecting to a port nobody listens on is a ConnectionError") {
    instruments::TransportOptions t;
    t.connect_attempts = 2;
    t.backoff_initial_s = 0.01;
    std::uint16_t port = 0;
    {
        test::SimLoad sim(keysight());
        port = sim.server->port();
    }  // stopped: the port is closed now
    instruments::ScpiLoad load("load9", keysight(),
                               std::make_unique<instruments::TcpTransport>("127.0.0.1", port, t));
    try {
        load.connect();
        FAIL("expected a ConnectionError");
    } catch (const instruments::ConnectionError& e) {
        CHECK(e.instrument() == "load9");
        CHECK(contains(e.detail(), "2 attempts"));
        CHECK(contains(e.detail(), "127.0.0.1:" + std::to_string(port)));
    }
}
