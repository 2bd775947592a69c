// Lumped thermal fit: recovery of C_th, R_th, P_x from synthetic heating +
// cooling records generated here with the exact recursion, each heating
// source, the heating-only flag, the fitted-ambient case and input errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "eol/models/ecm.hpp"
#include "eol/models/thermal.hpp"

using eol::models::HeatingSource;
using eol::models::InputError;
using eol::models::Series;
using eol::models::ThermalFit;
using eol::models::ThermalOptions;

namespace {

struct Cell {
    double c_th = 120.0, r_th = 12.0, p_x = 0.02, t0 = 20.3;
    double ocv = 3.9, r0 = 0.030, r1 = 0.010, tau1 = 5.0, r2 = 0.015, tau2 = 60.0;
};

/// 1 Hz record: `rest0` s at rest, a `heat_s` s discharge at `amps`, then
/// `cool_s` s of rest. Voltage from the circuit, temperature from the thermal
/// model driven by `heat(n)` (interval n), ambient 20 °C with a slow ±0.1 K
/// swing. Noise: 0.5 mV, 1 mA, 5 mK.
template <class Heat>
Series make_record(const Cell& c, double rest0, double heat_s, double cool_s, double amps, Heat heat,
                   unsigned seed, std::vector<double>* true_v = nullptr) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    Series s;
    const double total = rest0 + heat_s + cool_s;
    double v1 = 0.0, v2 = 0.0, temp = c.t0, i_prev = 0.0;
    std::vector<double> vt;
    for (double t = 0.0; t <= total; t += 1.0) {
        const double i = (t >= rest0 && t < rest0 + heat_s) ? amps : 0.0;
        const double amb = 20.0 + 0.1 * std::sin(t / 900.0);
        if (!s.t_s.empty()) {
            const double a1 = std::exp(-1.0 / c.tau1), a2 = std::exp(-1.0 / c.tau2);
            v1 = a1 * v1 + c.r1 * (1.0 - a1) * i_prev;
            v2 = a2 * v2 + c.r2 * (1.0 - a2) * i_prev;
            const double a = std::exp(-1.0 / (c.r_th * c.c_th));
            const double q = heat(s.t_s.size(), i_prev, vt.back());
            temp = a * temp + (1.0 - a) * (s.t_amb_c.back() + c.r_th * (q + c.p_x));
        }
        const double v = c.ocv - c.r0 * i - v1 - v2;
        vt.push_back(v);
        s.t_s.push_back(t);
        s.i_a.push_back(i + 1e-3 * n01(rng));
        s.v_v.push_back(v + 5e-4 * n01(rng));
        s.t_cell_c.push_back(temp + 5e-3 * n01(rng));
        s.t_amb_c.push_back(amb);
        i_prev = i;
    }
    if (true_v) *true_v = vt;
    return s;
}

double rel_err(double est, double truth) { return std::abs(est - truth) / std::abs(truth); }

}  // namespace

TEST_CASE("thermal: fixed heating resistance, heating then cooling, ambient column") {
    const Cell c;
    const double r_heat = 0.05;
    const Series s = make_record(c, 60.0, 600.0, 5400.0, 3.0,
                                 [&](std::size_t, double i, double) { return i * i * r_heat; }, 1);
    ThermalOptions o;
    o.heating = HeatingSource::fixed;
    o.heating_ohm = r_heat;
    const ThermalFit f = eol::models::fit_thermal(s, o);
    CHECK(f.converged);
    CHECK(rel_err(f.c_th_j_per_k.value, c.c_th) < 0.01);
    CHECK(rel_err(f.r_th_k_per_w.value, c.r_th) < 0.01);
    CHECK(rel_err(f.tau_s.value, c.c_th * c.r_th) < 0.01);
    CHECK(std::abs(f.p_extra_w.value - c.p_x) < 0.002);
    CHECK(std::abs(f.t0_c.value - c.t0) < 0.01);
    CHECK(f.rmse_k == doctest::Approx(5e-3).epsilon(0.1));
    CHECK_FALSE(f.heating_only);
    CHECK(f.c_th_j_per_k.identifiable);
    CHECK(f.r_th_k_per_w.identifiable);
    CHECK(f.p_extra_w.identifiable);
    CHECK(f.ambient_source == "column");
    CHECK(f.heating_source == "fixed");
    // Intervals cover the truth.
    CHECK(std::abs(f.c_th_j_per_k.value - c.c_th) < 2.0 * f.c_th_j_per_k.ci95);
    CHECK(std::abs(f.r_th_k_per_w.value - c.r_th) < 2.0 * f.r_th_k_per_w.ci95);
}

TEST_CASE("thermal: heating from the circuit fit of the same window") {
    const Cell c;
    // The true heat is the circuit's Joule heat per interval, R0·I² + Σ Vk²/Rk
    // (the RC branches lag the current); R_heat its I²-weighted mean.
    eol::models::EcmParams ecm;
    ecm.ocv_v = c.ocv;
    ecm.r0_ohm = c.r0;
    ecm.rc = {{c.r1, c.tau1}, {c.r2, c.tau2}};
    std::vector<double> t, i;
    for (double x = 0.0; x <= 6060.0; x += 1.0) {
        t.push_back(x);
        i.push_back(x >= 60.0 && x < 660.0 ? 3.0 : 0.0);
    }
    const auto pw = eol::models::ecm_joule_power_w(t, i, ecm);
    double e = 0.0, i2 = 0.0;
    for (std::size_t k = 1; k < t.size(); ++k) {
        e += pw[k];
        i2 += i[k - 1] * i[k - 1];
    }
    const double r_heat = e / i2;
    CHECK(r_heat == doctest::Approx(c.r0 + c.r1 + c.r2).epsilon(0.05));
    const Series s = make_record(c, 60.0, 600.0, 5400.0, 3.0,
                                 [&](std::size_t n, double, double) { return pw[n]; }, 2);
    const ThermalFit f = eol::models::fit_thermal(s);  // default: circuit heating, ambient column
    CHECK(f.heating_source == "circuit");
    CHECK(rel_err(f.heating_ohm.value, r_heat) < 0.01);
    CHECK(f.heating_ohm.ci95 > 0.0);
    CHECK(rel_err(f.c_th_j_per_k.value, c.c_th) < 0.02);
    CHECK(rel_err(f.r_th_k_per_w.value, c.r_th) < 0.02);
    CHECK(std::abs(f.p_extra_w.value - c.p_x) < 0.003);
}

TEST_CASE("thermal: overpotential heating I·(OCV0 − V)") {
    const Cell c;
    std::vector<double> vt;
    // Heat over interval n is I[n−1]·(OCV − V[n−1]) of the true circuit.
    const Series s = make_record(
        c, 60.0, 600.0, 5400.0, 3.0, [&](std::size_t, double i, double v_prev) { return i * (c.ocv - v_prev); }, 3,
        &vt);
    ThermalOptions o;
    o.heating = HeatingSource::overpotential;
    const ThermalFit f = eol::models::fit_thermal(s, o);
    CHECK(f.heating_source == "overpotential");
    CHECK(rel_err(f.c_th_j_per_k.value, c.c_th) < 0.02);
    CHECK(rel_err(f.r_th_k_per_w.value, c.r_th) < 0.02);
    CHECK(f.heating_ohm.value > c.r0);
}

TEST_CASE("thermal: heating only cannot separate C_th from R_th") {
    const Cell c;
    const Series s = make_record(c, 30.0, 900.0, 0.0, 3.0, [&](std::size_t, double i, double) { return i * i * 0.05; },
                                 4);
    ThermalOptions o;
    o.heating = HeatingSource::fixed;
    o.heating_ohm = 0.05;
    const ThermalFit f = eol::models::fit_thermal(s, o);
    CHECK(f.heating_only);
    CHECK_FALSE(f.c_th_j_per_k.identifiable);
    CHECK_FALSE(f.r_th_k_per_w.identifiable);
    bool noted = false;
    for (const auto& n : f.notes) noted = noted || n.find("not separable") != std::string::npos;
    CHECK(noted);
}

TEST_CASE("thermal: without an ambient the steady temperature is fitted and P_x is not identifiable") {
    Cell c;
    c.p_x = 0.0;
    Series s = make_record(c, 60.0, 600.0, 5400.0, 3.0, [&](std::size_t, double i, double) { return i * i * 0.05; }, 5);
    for (auto& a : s.t_amb_c) a = 20.0;
    // Regenerate with a constant ambient: rebuild the temperature column.
    {
        double temp = c.t0;
        std::mt19937_64 rng(9);
        std::normal_distribution<double> n01(0.0, 1.0);
        const double a = std::exp(-1.0 / (c.r_th * c.c_th));
        for (std::size_t k = 0; k < s.size(); ++k) {
            if (k > 0) {
                const double i = (s.t_s[k - 1] >= 60.0 && s.t_s[k - 1] < 660.0) ? 3.0 : 0.0;
                temp = a * temp + (1.0 - a) * (20.0 + c.r_th * i * i * 0.05);
            }
            s.t_cell_c[k] = temp + 5e-3 * n01(rng);
        }
    }
    s.t_amb_c.clear();
    ThermalOptions o;
    o.heating = HeatingSource::fixed;
    o.heating_ohm = 0.05;
    const ThermalFit f = eol::models::fit_thermal(s, o);
    CHECK(f.ambient_source == "fitted");
    CHECK(f.ambient_c.value == doctest::Approx(20.0).epsilon(0.001));
    CHECK_FALSE(f.p_extra_w.identifiable);
    CHECK(std::isnan(f.p_extra_w.value));  // missing, not a 0 that reads as "no extra heat"
    CHECK(rel_err(f.c_th_j_per_k.value, c.c_th) < 0.02);
    CHECK(rel_err(f.r_th_k_per_w.value, c.r_th) < 0.02);

    // A fixed ambient gives P_x back (here zero).
    o.ambient_c = 20.0;
    const ThermalFit g = eol::models::fit_thermal(s, o);
    CHECK(g.ambient_source == "fixed");
    CHECK(std::abs(g.p_extra_w.value) < 0.002);
}

TEST_CASE("thermal: the model helper reproduces the fitted curve") {
    const std::vector<double> t = {0, 10, 20, 30, 40};
    const std::vector<double> heat = {0, 1.0, 1.0, 0.0, 0.0};
    const std::vector<double> amb(5, 20.0);
    const auto temp = eol::models::thermal_temperature(t, heat, amb, 100.0, 10.0, 0.0, 20.0);
    const double a = std::exp(-10.0 / 1000.0);
    CHECK(temp[1] == doctest::Approx(a * 20.0 + (1 - a) * 30.0));
    CHECK(temp[3] < temp[2] + 1e-12);
}

TEST_CASE("thermal: input errors") {
    const Cell c;
    const Series good = make_record(c, 10.0, 100.0, 200.0, 3.0,
                                    [&](std::size_t, double i, double) { return i * i * 0.05; }, 6);
    auto message = [](const Series& s, ThermalOptions o) {
        try {
            (void)eol::models::fit_thermal(s, o);
        } catch (const InputError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    ThermalOptions fixed;
    fixed.heating = HeatingSource::fixed;
    fixed.heating_ohm = 0.05;

    Series no_temp = good;
    no_temp.t_cell_c.clear();
    CHECK(message(no_temp, fixed).find("'cell_temp' is missing") != std::string::npos);

    Series nan = good;
    nan.t_cell_c[5] = std::numeric_limits<double>::quiet_NaN();
    CHECK(message(nan, fixed).find("'cell_temp' sample 5 is not finite") != std::string::npos);

    Series zero = good;
    for (auto& i : zero.i_a) i = 0.0;
    CHECK(message(zero, fixed).find("no heat") != std::string::npos);
    CHECK(message(zero, ThermalOptions{}).find("current is constant") != std::string::npos);

    ThermalOptions bad = fixed;
    bad.heating_ohm = -1.0;
    CHECK(message(good, bad).find("heating_ohm must be a positive") != std::string::npos);

    ThermalOptions over;
    over.heating = HeatingSource::overpotential;
    CHECK(message(good.slice(20, good.size()), over).find("start at rest") != std::string::npos);

    CHECK(message(Series{}, fixed).find("empty") != std::string::npos);
    CHECK(message(good.slice(0, 5), fixed).find("too short") != std::string::npos);

    Series back = good;
    back.t_s[50] = 0.0;
    CHECK(message(back, fixed).find("time is not increasing at sample 50") != std::string::npos);
}

namespace {

/// The station's heat step (60 s rest, 600 s at 3 A, 600 s cooling, 1 Hz) of
/// a cell whose true heat is its circuit's Joule heat plus a reversible heat
/// k·I (k = k_v + k_per_ah·Q, Q the charge drawn) plus P_x; its thermocouple
/// reads `offset_k` above the ambient sensor. Open-circuit voltage falling
/// with the charge drawn.
Series entropic_window(double k_v, double p_x_w, double offset_k, unsigned seed, double k_per_ah = 0.0) {
    eol::models::EcmParams truth;
    truth.ocv_v = 4.02;
    truth.r0_ohm = 0.033;
    truth.rc = {{0.012, 10.0}, {0.010, 90.0}};
    const double c_th = 170.0, r_th = 11.0;
    std::vector<double> t, i;
    for (double x = 0.0; x <= 1260.0; x += 1.0) {
        t.push_back(x);
        i.push_back(x >= 60.0 && x < 660.0 ? 3.0 : 0.0);
    }
    const auto pw = eol::models::ecm_joule_power_w(t, i, truth);
    auto v = eol::models::ecm_voltage(t, i, truth);
    double q_ah = 0.0;
    for (std::size_t k = 1; k < t.size(); ++k) {
        q_ah += i[k - 1] * (t[k] - t[k - 1]) / 3600.0;
        v[k] -= 0.3 * q_ah;
    }
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    Series s;
    double temp = 25.0;
    q_ah = 0.0;
    for (std::size_t k = 0; k < t.size(); ++k) {
        if (k > 0) {
            q_ah += i[k - 1] * (t[k] - t[k - 1]) / 3600.0;
            const double a = std::exp(-(t[k] - t[k - 1]) / (r_th * c_th));
            const double q_mid = q_ah - 0.5 * i[k - 1] / 3600.0;
            temp = a * temp + (1.0 - a) * (25.0 + r_th * (pw[k] + (k_v + k_per_ah * q_mid) * i[k - 1] + p_x_w));
        }
        s.t_s.push_back(t[k]);
        s.i_a.push_back(i[k] + 1e-3 * n01(rng));
        s.v_v.push_back(v[k] + 5e-4 * n01(rng));
        s.t_cell_c.push_back(temp + offset_k + 5e-3 * n01(rng));
        s.t_amb_c.push_back(25.0);
    }
    return s;
}

}  // namespace

TEST_CASE("thermal: circuit heating over a step that changes the state of charge (station heat step)") {
    // The station's heat step: 600 s at 3 A, 600 s cooling, 1 Hz, τ_th ≈ 1870 s
    // (longer than the window). The open-circuit voltage falls with the charge
    // drawn (0.3 V/Ah: 150 mV over the step). The temperature follows the
    // circuit's true Joule heat plus P_x. With three pairs for the heating
    // circuit (one goes to the state-of-charge change and adds no heat) P_x
    // and R_th come out right; the heat of a short shows as P_x.
    for (const double p_x : {0.0, 0.05}) {
        // The same window as the known-k tests below, without reversible heat or offset.
        const Series s = entropic_window(0.0, p_x, 0.0, 31);
        const double c_th = 170.0, r_th = 11.0;
        ThermalOptions o;
        o.heating_rc_pairs = 3;
        const ThermalFit f = eol::models::fit_thermal(s, o);
        INFO("P_x truth " << p_x << ": fitted " << f.p_extra_w.value << " ± " << f.p_extra_w.ci95 << " W, R_th "
                          << f.r_th_k_per_w.value << ", C_th " << f.c_th_j_per_k.value << ", heating "
                          << f.heating_ohm.value);
        CHECK(f.converged);
        CHECK(std::abs(f.p_extra_w.value - p_x) < 0.008);
        CHECK(rel_err(f.r_th_k_per_w.value, r_th) < 0.1);
        CHECK(rel_err(f.c_th_j_per_k.value, c_th) < 0.05);
        CHECK(rel_err(f.heating_ohm.value, 0.055) < 0.05);
        bool noted = false;  // the slow pair was taken as the state-of-charge change
        for (const auto& n : f.notes) noted = noted || n.find("state-of-charge") != std::string::npos;
        CHECK(noted);
    }
}

TEST_CASE("thermal: a known entropic coefficient pins the heat: R_th, C_th and P_x of the station heat step recovered") {
    // k = −60 mV (dU/dT ≈ +0.2 mV/K at 298 K, an NMC cell at 80 % SoC): the
    // reversible heat k·I = −180 mW cools the cell against ~530 mW of Joule heat.
    const double k_v = -0.060, c_th = 170.0, r_th = 11.0;
    for (const double p_x : {0.0, 0.015}) {
        const Series s = entropic_window(k_v, p_x, 0.3, 41);
        // Without k: the heat is taken for the Joule heat alone and R_th reads high.
        ThermalOptions plain;
        plain.heating_rc_pairs = 3;
        plain.sensor_offset_c = 0.3;
        const ThermalFit without = eol::models::fit_thermal(s, plain);
        // With k given (the channel's offset given too, as the station fits a
        // calibrated position): no free parameter more than the plain model.
        ThermalOptions known = plain;
        known.entropic_v = k_v;
        const ThermalFit f = eol::models::fit_thermal(s, known);
        INFO("P_x truth " << p_x << ": with k " << f.p_extra_w.value << " W, R_th " << f.r_th_k_per_w.value
                          << ", C_th " << f.c_th_j_per_k.value << "; without k: P_x " << without.p_extra_w.value
                          << ", R_th " << without.r_th_k_per_w.value << ", C_th " << without.c_th_j_per_k.value);
        CHECK(f.converged);
        CHECK(f.entropic_source == "given");
        CHECK(f.entropic_v.value == k_v);
        CHECK(f.entropic_v.identifiable);
        CHECK(f.p_extra_identifiable);
        // As close as the circuit heat of this window allows (the plain fit of a
        // cell without reversible heat: R_th within 10 %, P_x within 8 mW, the
        // "station heat step" case above).
        CHECK(rel_err(f.r_th_k_per_w.value, r_th) < 0.1);
        CHECK(rel_err(f.c_th_j_per_k.value, c_th) < 0.05);
        CHECK(std::abs(f.p_extra_w.value - p_x) < 0.006);
        // Without k a third of the heat is missing; with 600 s of cooling the fit
        // puts it into a slower approach (C_th) and a negative P_x.
        CHECK(rel_err(without.c_th_j_per_k.value, c_th) > 0.3);
        CHECK(without.p_extra_w.value - p_x < -0.02);
        // heating_ohm stays the circuit's Joule heat.
        CHECK(rel_err(f.heating_ohm.value, 0.055) < 0.05);
    }
    // The plain model (no offset given, none in the data) with k given: the same.
    const Series s0 = entropic_window(k_v, 0.015, 0.0, 42);
    ThermalOptions o;
    o.heating_rc_pairs = 3;
    o.entropic_v = k_v;
    const ThermalFit p = eol::models::fit_thermal(s0, o);
    CHECK_FALSE(p.extended);
    CHECK(p.entropic_source == "given");
    CHECK(rel_err(p.r_th_k_per_w.value, r_th) < 0.1);
    CHECK(std::abs(p.p_extra_w.value - 0.015) < 0.006);
    // k known and k fitted exclude each other.
    ThermalOptions both = o;
    both.reversible_heat = true;
    CHECK_THROWS_AS(eol::models::fit_thermal(s0, both), InputError);
    ThermalOptions nan_k = o;
    nan_k.entropic_v = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(eol::models::fit_thermal(s0, nan_k), InputError);
}

TEST_CASE("thermal: a wrong entropic coefficient moves C_th and P_x, P_x by about a fifth of dk*I") {
    // The true k = −60 mV; the fit is given k ∓ 20 % (Δk·I = ±36 mW of heat
    // while the current flows, unmodelled). With 600 s of cooling (a third of
    // τ) the fit takes Δk·I mostly into τ, so C_th moves by ~10 %, R_th hardly
    // at all, and P_x — a heat over the whole window — by about −0.2·Δk·I
    // (Δk = given − true).
    const double k_v = -0.060, p_x = 0.015;
    const Series s = entropic_window(k_v, p_x, 0.3, 43);
    ThermalOptions o;
    o.heating_rc_pairs = 3;
    o.sensor_offset_c = 0.3;
    o.entropic_v = k_v;
    const ThermalFit right = eol::models::fit_thermal(s, o);
    for (const double rel : {-0.2, 0.2}) {
        ThermalOptions w = o;
        w.entropic_v = k_v * (1.0 + rel);
        const double dk_i = (w.entropic_v.value() - k_v) * 3.0;  // W, given − true
        const ThermalFit f = eol::models::fit_thermal(s, w);
        const double dpx = f.p_extra_w.value - right.p_extra_w.value;
        INFO("k " << rel * 100 << " %: dk*I " << dk_i * 1e3 << " mW: R_th " << f.r_th_k_per_w.value << " (right k "
                  << right.r_th_k_per_w.value << "), C_th " << f.c_th_j_per_k.value << " (" << right.c_th_j_per_k.value
                  << "), P_x moved " << dpx * 1e3 << " mW");
        CHECK(f.converged);
        CHECK(rel_err(f.r_th_k_per_w.value, right.r_th_k_per_w.value) < 0.03);
        const double dc = f.c_th_j_per_k.value / right.c_th_j_per_k.value - 1.0;
        CHECK(std::abs(dc) > 0.05);
        CHECK(std::abs(dc) < 0.2);
        CHECK(dc * dk_i > 0.0);  // k assumed weaker (Δk·I > 0): more heat assumed, a slower cell read
        CHECK(-dpx / dk_i > 0.1);
        CHECK(-dpx / dk_i < 0.3);
    }
}

TEST_CASE("thermal: k that moves with the state of charge over the step needs its slope: a constant k leaves R_th off") {
    // An NMC cell at 79 % SoC: k = −58 mV when the current starts, rising by
    // +50 mV per Ah drawn as dU/dT falls with the state of charge (the
    // simulator's curve: 0.5 mV/K per unit SoC, 3 Ah, 299 K): −33 mV after the
    // 0.5 Ah of the step. Given k and its slope the fit recovers the cell;
    // given the step's mean k as a constant, the growing heat reads as a slower
    // approach and R_th is far off (the station heat step's 600 s of cooling
    // do not pin τ).
    const double k0 = -0.058, k1 = 0.050, r_th = 11.0, c_th = 170.0;
    const Series s = entropic_window(k0, 0.015, 0.3, 44, k1);
    ThermalOptions o;
    o.heating_rc_pairs = 3;
    o.sensor_offset_c = 0.3;
    o.entropic_v = k0;
    o.entropic_v_per_ah = k1;
    const ThermalFit f = eol::models::fit_thermal(s, o);
    INFO("k and slope: R_th " << f.r_th_k_per_w.value << ", C_th " << f.c_th_j_per_k.value << ", P_x "
                              << f.p_extra_w.value);
    CHECK(f.entropic_v_per_ah == k1);
    CHECK(rel_err(f.r_th_k_per_w.value, r_th) < 0.1);
    CHECK(rel_err(f.c_th_j_per_k.value, c_th) < 0.05);
    CHECK(std::abs(f.p_extra_w.value - 0.015) < 0.006);
    ThermalOptions mean_k = o;
    mean_k.entropic_v = k0 + k1 * 0.25;  // the mean over the 0.5 Ah drawn
    mean_k.entropic_v_per_ah.reset();
    const ThermalFit m = eol::models::fit_thermal(s, mean_k);
    MESSAGE("constant mean k: R_th " << m.r_th_k_per_w.value << ", C_th " << m.c_th_j_per_k.value << ", tau "
                                     << m.tau_s.value << ", P_x " << m.p_extra_w.value * 1e3 << " mW");
    CHECK(m.r_th_k_per_w.value > 1.5 * r_th);
    // A slope without the coefficient is refused.
    ThermalOptions bad;
    bad.entropic_v_per_ah = k1;
    CHECK_THROWS_AS(eol::models::fit_thermal(s, bad), InputError);
}
