// The real ScpiLoad driver against the simulated SCPI load over loopback,
// for every shipped dialect: identify, CC + input + measure against the cell
// physics, device errors, protection, and a hardware-timed pulse whose
// step gives the cell's R0.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>
#include <chrono>

#include "eol/instruments/errors.hpp"
#include "eol/sim/cell.hpp"
#include "instruments/test_scpi_support.hpp"

using namespace eol;
using instruments::Cmd;
using instruments::LoadMode;

namespace {

double expected_terminal_v(sim::Fixture& f, std::size_t pos, const sim::CellParams& p, double i_a) {
    const sim::CellState s = f.truth(pos);
    return sim::ocv_nmc_v(s.soc) + p.ocv_offset_v - i_a * p.r0_ohm - s.v1_v - s.v2_v;
}

// R0 from the logged step: mean of the last 5 samples before the current
// rises against the first sample after it.
double r0_from_pulse(const instruments::PulseData& d, std::size_t& k_on) {
    k_on = 0;
    while (k_on < d.i_a.size() && d.i_a[k_on] < 1.0) ++k_on;
    REQUIRE(k_on >= 5);
    REQUIRE(k_on < d.i_a.size());
    double v0 = 0, i0 = 0;
    for (std::size_t k = k_on - 5; k < k_on; ++k) {
        v0 += d.v_v[k] / 5;
        i0 += d.i_a[k] / 5;
    }
    return (v0 - d.v_v[k_on]) / (d.i_a[k_on] - i0);
}

void exercise_dialect(const std::string& file) {
    const instruments::Dialect d = instruments::load_dialect(test::dialect_path(file));
    test::SimLoad sim(d);
    auto load = sim.driver();
    load->connect();

    // Identity: parsed into fields and accepted by the dialect's pattern.
    const instruments::Identity id = load->identify();
    const instruments::Identity want = instruments::parse_identity(d.simulator.idn);
    CHECK(id.manufacturer == want.manufacturer);
    CHECK(id.model == want.model);
    CHECK(id.serial == want.serial);
    CHECK(id.firmware == want.firmware);
    load->reset();

    // CC 2 A, input on: the fixture sees it and the readings follow the physics.
    load->set_mode(1, LoadMode::cc, 2.0);
    load->set_input(1, true);
    CHECK(sim.fixture->load(0).input_on);
    CHECK(sim.fixture->load(0).level == doctest::Approx(2.0));
    const auto r = load->measure(1);
    const double v_expect = expected_terminal_v(*sim.fixture, 0, test::cell_a(), 2.0);
    CHECK(r.i_a == doctest::Approx(2.0).epsilon(0.005));
    CHECK(std::abs(r.v_v - v_expect) < 0.004);
    CHECK(r.v_v < sim::ocv_nmc_v(0.8) - 2.0 * 0.033 + 0.002);  // under load, below OCV − I·R0
    CHECK(r.p_w == doctest::Approx(r.v_v * r.i_a).epsilon(0.01));
    CHECK_FALSE(load->protection(1).any());
    load->set_input(1, false);
    CHECK_FALSE(sim.fixture->load(0).input_on);
    const auto rest = load->measure(1);
    CHECK(std::abs(rest.i_a) < 0.01);

    // A level beyond the load's rating: the device queues -222, reported
    // as a DeviceError naming the command.
    try {
        load->set_mode(1, LoadMode::cc, 1000.0);
        FAIL("expected a DeviceError");
    } catch (const instruments::DeviceError& e) {
        CHECK(e.instrument() == "load1");
        // The mode and the level are written together and checked once: both named.
        CHECK(e.command() == d.render(Cmd::mode_cc, 1) + "; " + d.render(Cmd::level_cc, 1, {{"value", "1000"}}));
        CHECK(std::string(e.what()).find("-222") != std::string::npos);
    }

    // Hardware-timed pulse: 0 A, 2 A, 0 A sampled every 10 ms.
    instruments::PulseSpec spec;
    spec.steps = {{0.0, 0.505}, {2.0, 0.5}, {0.0, 0.5}};
    spec.sample_interval_s = 0.01;
    spec.points = 150;
    const instruments::PulseData data = load->run_pulse(1, spec);
    REQUIRE(data.v_v.size() == 150);
    REQUIRE(data.i_a.size() == 150);
    REQUIRE(data.t_s.size() == 150);
    CHECK(data.t_s[51] == doctest::Approx(0.51));
    std::size_t k_on = 0;
    const double r0 = r0_from_pulse(data, k_on);
    CHECK(k_on == 51);                                         // first sample after the 0.505 s edge
    CHECK(data.i_a[k_on + 10] == doctest::Approx(2.0).epsilon(0.01));
    CHECK(std::abs(data.i_a[120]) < 0.01);                      // back to 0 A after 1.005 s
    CHECK(r0 == doctest::Approx(test::cell_a().r0_ohm).epsilon(0.03));
    // Under load the voltage keeps sagging (RC pairs), and recovers after.
    CHECK(data.v_v[100] < data.v_v[k_on]);
    CHECK(data.v_v[149] > data.v_v[100]);
    load->set_input(1, false);
    CHECK_FALSE(sim.fixture->load(0).input_on);
}

}  // namespace

TEST_CASE("scpi load: keysight-el30000 dialect against the simulator") {
    exercise_dialect("keysight-el30000");
}
TEST_CASE("scpi load: itech-it8500 dialect against the simulator") {
    exercise_dialect("itech-it8500");
}
TEST_CASE("scpi load: siglent-sdl1000x dialect against the simulator") {
    exercise_dialect("siglent-sdl1000x");
}

namespace {

// One round trip per reading: measure() is one compound message (every
// shipped dialect), measure_voltage_v() one query, set_mode() two commands
// and one error query — counted by the simulator, which handles each line
// it receives once.
void count_messages(const std::string& file) {
    const instruments::Dialect d = instruments::load_dialect(test::dialect_path(file));
    test::SimLoad sim(d);
    auto load = sim.driver();
    load->connect();
    load->set_mode(1, LoadMode::cc, 1.5);
    load->set_input(1, true);
    std::uint64_t before = sim.server->commands();
    const auto r = load->measure(1);
    CHECK(sim.server->commands() == before + 1);
    CHECK(r.i_a == doctest::Approx(1.5).epsilon(0.005));
    CHECK(std::abs(r.v_v - expected_terminal_v(*sim.fixture, 0, test::cell_a(), 1.5)) < 0.004);
    if (d.has(Cmd::measure_power)) CHECK(r.p_w == doctest::Approx(r.v_v * r.i_a).epsilon(0.01));
    before = sim.server->commands();
    const double v = load->measure_voltage_v(1);
    CHECK(sim.server->commands() == before + 1);
    CHECK(std::abs(v - expected_terminal_v(*sim.fixture, 0, test::cell_a(), 1.5)) < 0.004);
    before = sim.server->commands();
    load->set_mode(1, LoadMode::cc, 0.5);
    CHECK(sim.server->commands() == before + 3);
    CHECK(sim.fixture->load(0).level == doctest::Approx(0.5));
    load->set_input(1, false);
    CHECK(std::abs(load->measure_voltage_v(1) - load->measure(1).v_v) < 0.002);
}

}  // namespace

TEST_CASE("scpi load: a reading is one message for every shipped dialect") {
    for (const char* f : {"keysight-el30000", "itech-it8500", "siglent-sdl1000x"}) {
        CAPTURE(f);
        count_messages(f);
    }
}

TEST_CASE("hostile: scpi load a compound reply cut short by an instrument error is a ProtocolError") {
    const auto d = instruments::load_dialect(test::dialect_path("keysight-el30000"));
    test::SimLoad sim(d);
    auto load = sim.driver();
    load->connect();
    // The simulator, as SCPI instruments do, stops the message at the
    // unknown header: one number comes back for two queries.
    try {
        (void)load->client().query_numbers({"MEAS:VOLT? (@1)", "MEAS:BOGUS? (@1)"});
        FAIL("expected a ProtocolError");
    } catch (const instruments::ProtocolError& e) {
        CHECK(e.command() == "MEAS:VOLT? (@1);:MEAS:BOGUS? (@1)");
        CHECK(std::string(e.what()).find("expected 2 numbers") != std::string::npos);
    }
    // The error it queued is still there for the next look, and the
    // connection answers the next reading.
    CHECK_THROWS_AS(load->check_error_queue(), instruments::DeviceError);
    CHECK(load->measure(1).v_v > 3.0);
}

TEST_CASE("scpi load: second channel of a two-channel load reaches its own cell") {
    const auto d = instruments::load_dialect(test::dialect_path("keysight-el30000"));
    REQUIRE(d.channels == 2);
    test::SimLoad sim(d);
    auto load = sim.driver();
    load->connect();
    load->set_mode(2, LoadMode::cc, 1.0);
    load->set_input(2, true);
    CHECK(sim.fixture->load(1).input_on);
    CHECK_FALSE(sim.fixture->load(0).input_on);
    const auto r = load->measure(2);
    CHECK(r.i_a == doctest::Approx(1.0).epsilon(0.005));
    CHECK(std::abs(r.v_v - expected_terminal_v(*sim.fixture, 1, test::cell_b(), 1.0)) < 0.004);
    // Channel 2's pulse gives channel 2's cell's R0 (50 mΩ, not 33).
    instruments::PulseSpec spec{{{0.0, 0.205}, {3.0, 0.2}, {0.0, 0.1}}, 0.01, 50};
    const auto data = load->run_pulse(2, spec);
    std::size_t k_on = 0;
    CHECK(r0_from_pulse(data, k_on) == doctest::Approx(test::cell_b().r0_ohm).epsilon(0.03));
    CHECK_THROWS_AS(load->measure(3), std::out_of_range);
}

TEST_CASE("scpi load: a pulse prepared on both channels of one load starts only where it is armed and triggered") {
    // The Keysight trigger (*TRG) is the load's, not a channel's: prepared
    // lists must not be armed, or channel 1's trigger would start channel
    // 2's pulse too (and channel 2's own trigger would find nothing armed).
    const auto d = instruments::load_dialect(test::dialect_path("keysight-el30000"));
    test::SimLoad sim(d);
    auto load = sim.driver();
    load->connect();
    const instruments::PulseSpec spec{{{0.0, 0.205}, {3.0, 0.2}, {0.0, 0.1}}, 0.01, 50};
    load->prepare_pulse(1, spec);
    load->prepare_pulse(2, spec);
    CHECK_FALSE(sim.fixture->load(0).input_on);  // preparing leaves the input off
    CHECK_FALSE(sim.fixture->load(1).input_on);
    std::uint64_t before = sim.server->commands();
    load->arm_pulse(1, spec);  // prepared: the input on and the arming only, one error query
    const std::uint64_t arm_lines = sim.server->commands() - before;
    CHECK(arm_lines == 1 + d.pulse_arm.size() + 1);
    load->trigger(1);
    CHECK(sim.fixture->load(0).input_on);
    CHECK_FALSE(sim.fixture->load(1).input_on);
    const auto t0 = std::chrono::steady_clock::now();
    while (!load->pulse_done(1)) {
        REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::size_t k_on = 0;
    CHECK(r0_from_pulse(load->fetch_pulse(1), k_on) == doctest::Approx(test::cell_a().r0_ohm).epsilon(0.03));
    load->set_input(1, false);
    // Channel 2 is still only prepared: its own arm and trigger run its own pulse.
    const auto data2 = load->run_pulse(2, spec);
    CHECK(r0_from_pulse(data2, k_on) == doctest::Approx(test::cell_b().r0_ohm).epsilon(0.03));
    // A different spec than the prepared one is programmed in full.
    load->prepare_pulse(1, spec);
    instruments::PulseSpec other = spec;
    other.steps[1].current_a = 2.0;
    before = sim.server->commands();
    load->arm_pulse(1, other);
    CHECK(sim.server->commands() - before > arm_lines);
    load->set_input(1, false);
    load->set_input(2, false);
}

TEST_CASE("scpi load: protection trips the input off, latches and clears") {
    auto d = instruments::load_dialect(test::dialect_path("keysight-el30000"));
    d.simulator.max_power_w = 5.0;  // a 2 A load on a ~3.9 V cell is ~7.8 W
    test::SimLoad sim(d);
    auto load = sim.driver();
    load->connect();
    load->set_mode(1, LoadMode::cc, 2.0);
    load->set_input(1, true);
    const auto p = load->protection(1);
    CHECK(p.over_power);
    CHECK_FALSE(p.over_voltage);
    CHECK_FALSE(sim.fixture->load(0).input_on);
    // Latched: the input refuses to come back until cleared.
    CHECK_THROWS_AS(load->set_input(1, true), instruments::DeviceError);
    load->clear_protection(1);
    CHECK_FALSE(load->protection(1).any());
    load->set_mode(1, LoadMode::cc, 0.5);
    load->set_input(1, true);
    CHECK(sim.fixture->load(0).input_on);
    CHECK_FALSE(load->protection(1).any());
}

TEST_CASE("scpi load: a new dialect file (prefix addressing, negative current) needs no code") {
    // Derive a dialect from the ITECH file: two channels addressed with a
    // `CHAN n;:` prefix, and a load that reports discharge current negative.
    std::ifstream in(test::dialect_path("itech-it8500"));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto replace = [&](const std::string& a, const std::string& b) {
        const auto at = text.find(a);
        REQUIRE(at != std::string::npos);
        text.replace(at, a.size(), b);
    };
    replace("\nchannels = 1", "\nchannels = 2");
    replace("\nchannel_style = \"none\"", "\nchannel_style = \"prefix\"\nprefix = \"CHAN {ch};:\"");
    replace("\ncurrent_sign = \"positive\"", "\ncurrent_sign = \"negative\"");
    replace("\nname = \"itech-it8500\"", "\nname = \"test-mainframe\"");
    const auto dir = std::filesystem::temp_directory_path() / "eol-test-dialect";
    std::filesystem::create_directories(dir);
    const auto file = dir / "mainframe.toml";
    std::ofstream(file) << text;
    const auto d = instruments::load_dialect(file);
    CHECK(d.channel_style == instruments::ChannelStyle::prefix);
    CHECK(d.current_sign == -1.0);
    CHECK(d.render(Cmd::level_cc, 2, {{"value", "1.5"}}) == "CHAN 2;:CURR 1.5");

    test::SimLoad sim(d);
    auto load = sim.driver();
    load->connect();
    load->set_mode(2, LoadMode::cc, 1.5);
    load->set_input(2, true);
    CHECK(sim.fixture->load(1).input_on);
    // On the wire the current is negative …
    instruments::ScpiClient raw("raw", std::make_unique<instruments::TcpTransport>("127.0.0.1", sim.server->port()));
    CHECK(raw.query_number("CHAN 2;:MEAS:CURR:DC?") < -1.4);
    // … the driver reports it discharge-positive, readings and pulse arrays alike.
    CHECK(load->measure(2).i_a == doctest::Approx(1.5).epsilon(0.01));
    instruments::PulseSpec spec{{{0.0, 0.105}, {2.0, 0.1}}, 0.01, 20};
    const auto data = load->run_pulse(2, spec);
    CHECK(data.i_a[15] == doctest::Approx(2.0).epsilon(0.01));
    std::size_t k_on = 0;
    CHECK(r0_from_pulse(data, k_on) == doctest::Approx(test::cell_b().r0_ohm).epsilon(0.03));
    std::filesystem::remove_all(dir);
}
