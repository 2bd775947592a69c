// The Maynuo M97-style Modbus load driver against the simulated load, whose
// current flows through the fixture's cell physics.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/modbus_client.hpp"
#include "eol/sim/cell.hpp"
#include "instruments/test_modbus_util.hpp"

using namespace eol;
using instruments::LoadMode;
using instruments::RegisterMap;

namespace {

RegisterMap m97() { return instruments::load_register_map(test::map_path("maynuo-m97.toml")); }

/// Terminal voltage the physics predicts while `i_a` flows.
double expected_v(sim::Fixture& f, double i_a) {
    const auto s = f.truth(0);
    sim::CellParams p;  // the rig loads default cells
    return sim::ocv_nmc_v(s.soc) + p.ocv_offset_v - s.v1_v - s.v2_v - i_a * p.r0_ohm;
}

}  // namespace

TEST_CASE("modbus load: identify, CC discharge and measurement follow the cell physics") {
    test::LoadRig rig(m97());
    const auto id = rig.load->identify();
    CHECK(id.manufacturer == "Maynuo");
    CHECK(id.model == "M97 (model code 9712)");
    CHECK(id.firmware == "100");
    CHECK(rig.load->channels() == 1);

    rig.load->set_mode(1, LoadMode::cc, 2.5);
    rig.load->set_input(1, true);
    const auto s = rig.fixture->load(0);
    CHECK(s.input_on);
    CHECK(s.mode == sim::LoadMode::cc);
    CHECK(s.level == doctest::Approx(2.5));

    const auto r = rig.load->measure(1);
    CHECK(r.i_a == doctest::Approx(2.5).epsilon(0.004));  // discharge positive
    CHECK(std::abs(r.v_v - expected_v(*rig.fixture, 2.5)) < 0.005);
    CHECK(r.v_v < sim::ocv_nmc_v(rig.fixture->truth(0).soc) - 0.05);  // R0 drop is visible
    CHECK(r.p_w == doctest::Approx(r.v_v * r.i_a));

    rig.load->set_input(1, false);
    CHECK_FALSE(rig.fixture->load(0).input_on);
    CHECK(std::abs(rig.load->measure(1).i_a) < 0.01);
}

TEST_CASE("modbus load: CV, CR and CP set the fixture's mode and level") {
    test::LoadRig rig(m97());
    rig.load->set_mode(1, LoadMode::cr, 2.0);
    CHECK(rig.fixture->load(0).mode == sim::LoadMode::cr);
    CHECK(rig.fixture->load(0).level == doctest::Approx(2.0));
    rig.load->set_input(1, true);
    const auto r = rig.load->measure(1);
    CHECK(r.i_a == doctest::Approx(r.v_v / 2.0).epsilon(0.01));
    rig.load->set_mode(1, LoadMode::cp, 5.0);
    CHECK(rig.fixture->load(0).mode == sim::LoadMode::cp);
    CHECK(rig.load->measure(1).p_w == doctest::Approx(5.0).epsilon(0.01));
    rig.load->set_mode(1, LoadMode::cv, 3.9);
    CHECK(rig.fixture->load(0).mode == sim::LoadMode::cv);
    CHECK(rig.fixture->load(0).level == doctest::Approx(3.9));
    CHECK_THROWS_AS(rig.load->set_mode(1, LoadMode::cc, -1.0), std::invalid_argument);
    CHECK_THROWS_AS(rig.load->set_mode(2, LoadMode::cc, 1.0), std::invalid_argument);
    rig.load->reset();
    CHECK_FALSE(rig.fixture->load(0).input_on);
    CHECK(rig.fixture->load(0).level == 0.0);
}

TEST_CASE("modbus load: protection coils report trips, input stays off until cleared") {
    sim::ModbusLoadLimits limits;
    limits.max_current_a = 10.0;
    test::LoadRig rig(m97(), 1.0, limits);
    CHECK_FALSE(rig.load->protection(1).any());
    rig.load->set_mode(1, LoadMode::cc, 12.0);  // above the load's limit
    rig.load->set_input(1, true);
    auto p = rig.load->protection(1);
    CHECK(p.over_current);
    CHECK_FALSE(p.over_voltage);
    CHECK_FALSE(rig.fixture->load(0).input_on);
    rig.load->set_input(1, true);  // latched: stays off
    CHECK_FALSE(rig.fixture->load(0).input_on);
    rig.load->set_input(1, false);  // clears the latch
    CHECK_FALSE(rig.load->protection(1).any());

    rig.load->set_mode(1, LoadMode::cc, 1.0);
    rig.load->set_input(1, true);
    CHECK(rig.fixture->load(0).input_on);
    instruments::Protection trip;
    trip.over_temperature = true;
    rig.server->set_protection(trip);
    p = rig.load->protection(1);
    CHECK(p.over_temperature);
    CHECK_FALSE(p.over_current);
    CHECK_FALSE(rig.fixture->load(0).input_on);
}

TEST_CASE("modbus load: software-timed pulse steps the current and samples V and I") {
    test::LoadRig rig(m97());
    instruments::PulseSpec spec;
    spec.steps = {{0.0, 0.2}, {3.0, 0.4}, {0.5, 0.2}};
    spec.sample_interval_s = 0.02;
    spec.points = 40;
    const auto d = rig.load->run_pulse(1, spec);
    REQUIRE(d.t_s.size() >= 20);  // samples missed by a slow poll are skipped, never faked
    REQUIRE(d.t_s.size() <= spec.points);
    REQUIRE(d.v_v.size() == d.t_s.size());
    REQUIRE(d.i_a.size() == d.t_s.size());
    int rest = 0, pulse = 0, tail = 0;
    for (std::size_t k = 0; k < d.t_s.size(); ++k) {
        CAPTURE(d.t_s[k]);
        if (k > 0) CHECK(d.t_s[k] > d.t_s[k - 1]);
        // Away from the edges (a poll interval plus a round trip of jitter).
        if (d.t_s[k] < 0.15) {
            CHECK(std::abs(d.i_a[k]) < 0.01);
            ++rest;
        } else if (d.t_s[k] > 0.3 && d.t_s[k] < 0.55) {
            CHECK(d.i_a[k] == doctest::Approx(3.0).epsilon(0.004));
            ++pulse;
        } else if (d.t_s[k] > 0.7 && d.t_s[k] < 0.78) {
            CHECK(d.i_a[k] == doctest::Approx(0.5).epsilon(0.01));
            ++tail;
        }
    }
    CHECK(rest >= 3);
    CHECK(pulse >= 5);
    CHECK(tail >= 1);
    // The profile ended: the input is off again.
    CHECK_FALSE(rig.fixture->load(0).input_on);
}

TEST_CASE("modbus load: an error during a pulse switches the input off before it propagates") {
    test::LoadRig rig(m97());
    instruments::PulseSpec spec;
    spec.steps = {{2.0, 5.0}};
    spec.sample_interval_s = 0.05;
    spec.points = 100;
    rig.load->arm_pulse(1, spec);
    rig.load->trigger(1);
    CHECK(rig.fixture->load(0).input_on);
    rig.server->faults().update([](sim::FaultSettings& s) { s.garbage_reply = true; });
    std::this_thread::sleep_for(std::chrono::milliseconds(60));  // a sample is due
    CHECK_THROWS_AS(rig.load->pulse_done(1), instruments::ProtocolError);
    CHECK_FALSE(rig.fixture->load(0).input_on);
    CHECK(rig.load->pulse_done(1));  // the pulse is over
}

TEST_CASE("modbus load: typed errors name the instrument and the register") {
    test::LoadRig rig(m97(), 0.3);
    rig.server->faults().update([](sim::FaultSettings& s) { s.modbus_exception = 3; });
    try {
        rig.load->set_mode(1, LoadMode::cc, 1.0);
        FAIL("no error");
    } catch (const instruments::DeviceError& e) {
        CHECK(e.instrument() == "load1");
        CHECK(e.command() == "FC16 holding register 2561 ×2");  // IFIX 0x0A01
        CHECK(e.detail() == "Modbus exception 3 (illegal data value)");
    }
    rig.server->faults().update([](sim::FaultSettings& s) { s.no_reply = true; });
    try {
        rig.load->measure(1);
        FAIL("no error");
    } catch (const instruments::TimeoutError& e) {
        CHECK(e.command() == "FC03 holding register 2816 ×4");  // U, I at 0x0B00
    }
    rig.server->faults().update([](sim::FaultSettings& s) { s.no_reply = false; });
    CHECK(rig.load->protection(1).any() == false);
}

TEST_CASE("modbus load: a device that reports discharge current negative is normalized") {
    RegisterMap map = m97();
    map.load.current_reported_negative = true;  // both sides use the map
    test::LoadRig rig(map);
    rig.load->set_mode(1, LoadMode::cc, 1.5);
    rig.load->set_input(1, true);
    const auto r = rig.load->measure(1);
    CHECK(r.i_a == doctest::Approx(1.5).epsilon(0.005));
    CHECK(r.p_w > 0);
    // On the wire the current is negative.
    instruments::ModbusClient raw("raw", test::loopback(rig.server->port()));
    raw.connect();
    const auto w = raw.read_registers(instruments::RegTable::holding, 0x0B02, 2);
    CHECK(instruments::words_to_float(w[0], w[1], instruments::WordOrder::big) < -1.4f);
}
