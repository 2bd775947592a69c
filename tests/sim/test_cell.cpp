// Cell physics: the exact RC update, thermal steady state and time constant,
// the internal short's heat and drain, and population draws.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "eol/sim/cell.hpp"
#include "eol/sim/fixture.hpp"

using namespace eol::sim;

TEST_CASE("OCV curve is monotone and spans an NMC cell's range") {
    double prev = ocv_nmc_v(0.0);
    CHECK(prev == doctest::Approx(3.0));
    for (int k = 1; k <= 100; ++k) {
        const double v = ocv_nmc_v(k / 100.0);
        CHECK(v > prev);
        prev = v;
    }
    CHECK(ocv_nmc_v(1.0) == doctest::Approx(4.18));
    CHECK(ocv_nmc_v(2.0) == doctest::Approx(4.18));  // clamped
}

TEST_CASE("A current step gives V = OCV - I*R0 at once and the RC pairs relax with their tau") {
    CellParams p;
    p.r_isc_ohm = INFINITY;
    Cell c(p, 25.0);
    const double ocv0 = c.ocv_v();
    CHECK(c.terminal_v(6.0) == doctest::Approx(ocv0 - 6.0 * p.r0_ohm));
    // After one tau1 under 6 A, V1 = R1*I*(1-1/e) (SoC drop is small but included in OCV).
    c.advance(p.tau1_s, 6.0, 25.0);
    CHECK(c.state().v1_v == doctest::Approx(p.r1_ohm * 6.0 * (1 - std::exp(-1.0))).epsilon(1e-9));
    CHECK(c.state().v2_v ==
          doctest::Approx(p.r2_ohm * 6.0 * (1 - std::exp(-p.tau1_s / p.tau2_s))).epsilon(1e-9));
    // Charge drawn: 6 A for tau1 seconds.
    CHECK(c.state().soc == doctest::Approx(p.soc0 - 6.0 * p.tau1_s / (3600.0 * p.capacity_ah)));
}

TEST_CASE("Thermal model reaches ambient + P*Rth with time constant Rth*Cth") {
    CellParams p;
    p.r1_ohm = 1e-9;  // keep heat = I^2 R0 only
    p.r2_ohm = 1e-9;
    p.capacity_ah = 1e6;  // SoC, hence OCV, stays put
    Cell c(p, 20.0);
    const double i = 3.0, q = i * i * p.r0_ohm;
    const double tau = p.r_th_k_per_w * p.c_th_j_per_k;
    c.advance(tau, i, 20.0);
    CHECK(c.state().temp_c - 20.0 == doctest::Approx(q * p.r_th_k_per_w * (1 - std::exp(-1.0))).epsilon(1e-3));
    c.advance(20 * tau, i, 20.0);
    CHECK(c.state().temp_c - 20.0 == doctest::Approx(q * p.r_th_k_per_w).epsilon(1e-4));
}

TEST_CASE("An internal short heats the cell at rest and drains it") {
    CellParams good, shorted;
    shorted.r_isc_ohm = 200.0;
    Cell a(good, 25.0), b(shorted, 25.0);
    a.advance(3600, 0.0, 25.0);
    b.advance(3600, 0.0, 25.0);
    CHECK(a.state().temp_c == doctest::Approx(25.0));
    const double p_isc = b.ocv_v() * b.ocv_v() / 200.0;  // ~75 mW
    const double tau_th = shorted.r_th_k_per_w * shorted.c_th_j_per_k;
    CHECK(b.state().temp_c - 25.0 ==
          doctest::Approx(p_isc * shorted.r_th_k_per_w * (1 - std::exp(-3600.0 / tau_th))).epsilon(0.03));
    CHECK(b.state().soc < a.state().soc - 0.005);
}

TEST_CASE("Population draws spread around nominal, shift R0 and plant shorts at the given rate") {
    std::mt19937_64 rng(7);
    PopulationSpec spec;
    spec.r0_shift_rel = 0.05;
    spec.short_fraction = 0.1;
    double sum_r0 = 0;
    int shorts = 0;
    const int n = 4000;
    for (int k = 0; k < n; ++k) {
        const CellParams p = draw_cell(spec, rng);
        sum_r0 += p.r0_ohm;
        if (std::isfinite(p.r_isc_ohm)) {
            ++shorts;
            CHECK(p.r_isc_ohm >= spec.short_min_ohm);
            CHECK(p.r_isc_ohm <= spec.short_max_ohm);
        }
    }
    CHECK(sum_r0 / n == doctest::Approx(spec.nominal.r0_ohm * 1.05).epsilon(0.005));
    CHECK(shorts == doctest::Approx(0.1 * n).epsilon(0.15));
}

TEST_CASE("Fixture logs a hardware-timed profile on the simulated clock") {
    auto clock = std::make_shared<SimClock>(1.0);
    MeasurementNoise quiet{0, 0, 0, 0, 0, 0};
    Fixture fx(2, clock, 25.0, 3, quiet);
    CellParams p;
    fx.load_cell(0, "TESTSERIAL000001", p);
    fx.start_profile(0, {{0.0, 1.0}, {6.0, 10.0}, {0.0, 5.0}}, 0.5, 33);
    clock->skip(20.0);
    CHECK(fx.profile_done(0));
    const auto log = fx.fetch_log(0);
    REQUIRE(log.t_s.size() == 33);
    CHECK(log.t_s[2] == doctest::Approx(1.0));
    CHECK(log.i_a[1] == doctest::Approx(0.0));
    CHECK(log.i_a[2] == doctest::Approx(6.0));
    CHECK(log.i_a[22] == doctest::Approx(0.0));
    // The step at t = 1 s: ΔV/ΔI is R0 (the RC pairs have not moved yet).
    CHECK((log.v_v[1] - log.v_v[2]) / 6.0 == doctest::Approx(p.r0_ohm).epsilon(1e-6));
    // Position 1 is empty: no current flows, zero volts.
    CHECK(fx.measure_voltage_v(1) == doctest::Approx(0.0));
    CHECK_THROWS_AS(fx.measure_voltage_v(2), std::out_of_range);
}
