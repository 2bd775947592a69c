// The real ScpiLoad driver against the simulated SCPI load over loopback,
// for every shipped dialect: identify, CC + input + measure against the cell
// physics, device errors, protection, and a hardware-timed pulse whose
// step gives the cell's R0.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

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
        CHECK(e.command() == d.render(Cmd::level_cc, 1, {{"value", "1000"}}));
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
