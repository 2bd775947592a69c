// The virtual fixture: scaled clock, exact piecewise-constant integration of
// the Thevenin model, load modes, hardware-timed profile and data logger,
// heating, internal shorts, noisy quantized readings.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <thread>

#include "eol/sim/fixture.hpp"

using namespace eol::sim;

namespace {

// Deterministic time: a very slow clock (wall time adds microseconds of
// simulated time) advanced with skip().
std::shared_ptr<SimClock> frozen() { return std::make_shared<SimClock>(1e-6); }

MeasurementNoise no_noise() { return MeasurementNoise{0, 0, 0, 0, 0, 0}; }

}  // namespace

TEST_CASE("fixture: the clock runs scale × wall time plus skips") {
    SimClock fast(1000.0);
    const double t0 = fast.now_s();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const double dt = fast.now_s() - t0;
    CHECK(dt >= 20.0 * 0.9);
    CHECK(dt < 20.0 * 10);
    CHECK(fast.wall(10.0) == std::chrono::milliseconds(10));
    SimClock c(1e-6);
    const double a = c.now_s();
    c.skip(3600);
    CHECK(c.now_s() - a == doctest::Approx(3600).epsilon(1e-6));
    CHECK_THROWS_AS(SimClock(0.0), std::invalid_argument);
}

TEST_CASE("fixture: constant current follows the exact RC solution") {
    auto clock = frozen();
    Fixture f(1, clock, 25.0, 1, no_noise());
    CellParams p;
    f.load_cell(0, "S1", p);
    f.set_load(0, LoadSetting{LoadMode::cc, 2.0, true});
    clock->skip(10.0);
    const CellState s = f.truth(0);
    const double t = 10.0;
    CHECK(s.v1_v == doctest::Approx(p.r1_ohm * 2.0 * (1 - std::exp(-t / p.tau1_s))).epsilon(1e-4));
    CHECK(s.v2_v == doctest::Approx(p.r2_ohm * 2.0 * (1 - std::exp(-t / p.tau2_s))).epsilon(1e-4));
    CHECK(s.soc == doctest::Approx(p.soc0 - 2.0 * t / 3600.0 / p.capacity_ah).epsilon(1e-6));
    // The terminal voltage is OCV − I·R0 − V1 − V2.
    const double v = f.measure_voltage_v(0);
    CHECK(v == doctest::Approx(ocv_nmc_v(s.soc) - 2.0 * p.r0_ohm - s.v1_v - s.v2_v).epsilon(1e-6));
    CHECK(f.measure_current_a(0) == doctest::Approx(2.0));
    // Input off: the RC pairs relax exactly.
    f.set_load(0, LoadSetting{LoadMode::cc, 2.0, false});
    const CellState s0 = f.truth(0);
    clock->skip(5.0);
    CHECK(f.truth(0).v1_v == doctest::Approx(s0.v1_v * std::exp(-5.0 / p.tau1_s)).epsilon(1e-4));
    CHECK(f.measure_current_a(0) == 0.0);
}

TEST_CASE("fixture: CR, CV and CP modes draw the current the load equation gives") {
    auto clock = frozen();
    Fixture f(3, clock, 25.0, 1, no_noise());
    for (std::size_t k = 0; k < 3; ++k) f.load_cell(k, "S", CellParams{});
    f.set_load(0, LoadSetting{LoadMode::cr, 2.0, true});
    f.set_load(1, LoadSetting{LoadMode::cv, 3.8, true});
    f.set_load(2, LoadSetting{LoadMode::cp, 8.0, true});
    clock->skip(1.0);
    const double v0 = f.measure_voltage_v(0), i0 = f.measure_current_a(0);
    CHECK(v0 / i0 == doctest::Approx(2.0).epsilon(0.01));
    CHECK(f.measure_voltage_v(1) == doctest::Approx(3.8).epsilon(0.002));
    CHECK(f.measure_voltage_v(2) * f.measure_current_a(2) == doctest::Approx(8.0).epsilon(0.01));
}

TEST_CASE("fixture: a profile is logged at exact instants and then the static setting applies") {
    auto clock = frozen();
    Fixture f(1, clock, 25.0, 1, no_noise());
    CellParams p;
    f.load_cell(0, "S", p);
    f.start_profile(0, {{0.0, 1.0}, {3.0, 1.0}, {0.0, 1.0}}, 0.25, 12);
    CHECK_FALSE(f.profile_done(0));
    clock->skip(2.5);
    CHECK_FALSE(f.profile_done(0));
    clock->skip(1.0);
    CHECK(f.profile_done(0));
    const LoggedSamples log = f.fetch_log(0);
    REQUIRE(log.t_s.size() == 12);
    for (std::size_t k = 0; k < 12; ++k) CHECK(log.t_s[k] == doctest::Approx(0.25 * static_cast<double>(k)));
    CHECK(log.i_a[3] == 0.0);   // t = 0.75
    CHECK(log.i_a[4] == 3.0);   // t = 1.00: the step has started
    CHECK(log.i_a[7] == 3.0);   // t = 1.75
    CHECK(log.i_a[8] == 0.0);   // t = 2.00
    // The sample at the step edge: R0 only (the RC pairs have not moved yet).
    CHECK(log.v_v[3] - log.v_v[4] == doctest::Approx(3.0 * p.r0_ohm).epsilon(1e-3));
    CHECK(f.measure_current_a(0) == 0.0);  // input off statically
}

TEST_CASE("fixture: aborting a profile stops the list and the logger") {
    auto clock = frozen();
    Fixture f(1, clock, 25.0, 1, no_noise());
    f.load_cell(0, "S", CellParams{});
    f.start_profile(0, {{2.0, 10.0}}, 0.5, 100);
    clock->skip(1.2);
    f.abort_profile(0);
    CHECK(f.profile_done(0));
    CHECK(f.fetch_log(0).t_s.size() == 3);  // 0, 0.5, 1.0
    CHECK(f.measure_current_a(0) == 0.0);
}

TEST_CASE("fixture: a 3 A load warms the cell about as the lumped model says") {
    auto clock = frozen();
    Fixture f(1, clock, 25.0, 1, no_noise());
    CellParams p;
    f.load_cell(0, "S", p);
    f.set_load(0, LoadSetting{LoadMode::cc, 3.0, true});
    clock->skip(600.0);
    const double rise = f.truth(0).temp_c - 25.0;
    // Steady-state heat ≈ I²(R0 + R1 + R2); the rise after 600 s is a
    // fraction 1 − exp(−600/τ_th) of that times R_th (τ_th = R_th·C_th).
    const double q = 9.0 * (p.r0_ohm + p.r1_ohm + p.r2_ohm);
    const double tau = p.r_th_k_per_w * p.c_th_j_per_k;
    const double expect = q * p.r_th_k_per_w * (1 - std::exp(-600.0 / tau));
    CHECK(rise > 0.5);
    CHECK(rise == doctest::Approx(expect).epsilon(0.15));
    // It cools back towards ambient with the input off.
    f.set_load(0, LoadSetting{LoadMode::cc, 3.0, false});
    clock->skip(3 * tau);
    CHECK(f.truth(0).temp_c - 25.0 < 0.1 * rise);
}

TEST_CASE("fixture: an internal short heats and drains a cell at rest") {
    auto clock = frozen();
    Fixture f(2, clock, 25.0, 1, no_noise());
    CellParams good, shorted;
    shorted.r_isc_ohm = 50.0;
    f.load_cell(0, "GOOD", good);
    f.load_cell(1, "SHORT", shorted);
    clock->skip(3600.0);
    const CellState g = f.truth(0), s = f.truth(1);
    CHECK(g.soc == doctest::Approx(good.soc0));
    // ~4 V / 50 Ω = 80 mA for an hour: 0.08 Ah of 3 Ah.
    CHECK(good.soc0 - s.soc == doctest::Approx(0.08 / 3.0).epsilon(0.05));
    CHECK(s.temp_c - 25.0 > 0.2);   // ~0.32 W × 11 K/W, most of the way there
    CHECK(g.temp_c == doctest::Approx(25.0));
    CHECK(f.measure_voltage_v(1) < f.measure_voltage_v(0));
}

TEST_CASE("fixture: readings are noisy and quantized like an instrument's") {
    auto clock = frozen();
    Fixture f(1, clock, 25.0, 11);
    f.load_cell(0, "S", CellParams{});
    double lo = 1e9, hi = -1e9;
    for (int k = 0; k < 200; ++k) {
        const double v = f.measure_voltage_v(0);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        const double steps = v / 0.0001;
        CHECK(std::abs(steps - std::round(steps)) < 1e-6);  // 0.1 mV resolution
    }
    CHECK(hi - lo > 0.0003);   // noise: sd 0.3 mV
    CHECK(hi - lo < 0.005);
    CHECK(f.measure_temp_c(0) == doctest::Approx(25.0).epsilon(0.01));
}

TEST_CASE("fixture: positions are checked, empty positions read nothing") {
    auto clock = frozen();
    Fixture f(2, clock);
    f.load_cell(0, "S", CellParams{});
    CHECK(f.serial(0) == "S");
    CHECK_FALSE(f.serial(1).has_value());
    CHECK(f.measure_voltage_v(1) == 0.0);
    CHECK_THROWS_AS(f.set_load(2, LoadSetting{}), std::out_of_range);
    CHECK_THROWS_AS(f.measure_voltage_v(5), std::out_of_range);
    f.unload(0);
    CHECK_FALSE(f.serial(0).has_value());
}
