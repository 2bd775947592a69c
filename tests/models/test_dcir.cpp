// DCIR at stated times after a current step, and the IEC 61960 two-level
// method, against the closed-form response of a known circuit.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "eol/models/dcir.hpp"

using eol::models::InputError;
using eol::models::Series;

namespace {

constexpr double kOcv = 3.9, kR0 = 0.03, kR1 = 0.01, kTau1 = 0.5, kR2 = 0.02, kTau2 = 20.0;

/// Noise-free record at `dt_s`: current(t) held between samples.
template <class Current>
Series record(double dt_s, double total_s, Current current) {
    Series s;
    double v1 = 0.0, v2 = 0.0, ip = 0.0;
    const auto n = static_cast<std::size_t>(std::llround(total_s / dt_s)) + 1;
    for (std::size_t k = 0; k < n; ++k) {
        const double t = static_cast<double>(k) * dt_s;
        const double i = current(t);
        if (k > 0) {
            const double a1 = std::exp(-dt_s / kTau1), a2 = std::exp(-dt_s / kTau2);
            v1 = a1 * v1 + kR1 * (1 - a1) * ip;
            v2 = a2 * v2 + kR2 * (1 - a2) * ip;
        }
        s.t_s.push_back(t);
        s.i_a.push_back(i);
        s.v_v.push_back(kOcv - kR0 * i - v1 - v2);
        ip = i;
    }
    return s;
}

double r_after(double dt) { return kR0 + kR1 * (1 - std::exp(-dt / kTau1)) + kR2 * (1 - std::exp(-dt / kTau2)); }

std::string error_of(auto&& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("dcir: resistance at 10 ms, 1 s and 10 s after a 6 A step") {
    const Series s = record(0.001, 30.0, [](double t) { return t >= 5.0 - 1e-9 ? 6.0 : 0.0; });
    const auto r = eol::models::dcir_at(s, {0.01, 1.0, 10.0});
    CHECK(r.step_time_s == doctest::Approx(5.0));
    REQUIRE(r.points.size() == 3);
    CHECK(r.points[0].r_ohm == doctest::Approx(r_after(0.01)).epsilon(1e-9));
    CHECK(r.points[1].r_ohm == doctest::Approx(r_after(1.0)).epsilon(1e-9));
    CHECK(r.points[2].r_ohm == doctest::Approx(r_after(10.0)).epsilon(1e-9));
    CHECK(r.points[0].r_ohm < r.points[1].r_ohm);
    CHECK(r.points[2].i_after_a == doctest::Approx(6.0));
    // Between samples the voltage is interpolated.
    const auto mid = eol::models::dcir_at(s, {0.0105});
    CHECK(mid.points[0].r_ohm > r_after(0.010));
    CHECK(mid.points[0].r_ohm < r_after(0.011));
}

TEST_CASE("dcir: IEC 61960 two-level method") {
    // 0.2 C (0.6 A) for 10 s, then 1 C (3 A) for 1 s and a little more.
    const Series s = record(0.01, 13.0, [](double t) {
        if (t < 1.0 - 1e-9) return 0.0;
        if (t < 11.0 - 1e-9) return 0.6;
        return 3.0;
    });
    const auto r = eol::models::dcir_iec61960(s);
    CHECK(r.i1_a == doctest::Approx(0.6));
    CHECK(r.i2_a == doctest::Approx(3.0));
    CHECK(r.step_time_s == doctest::Approx(11.0));
    // Closed form: U1 is the last sample at I1 (9.99 s into the level), U2 is
    // 1 s after the step to I2 (11 s after the start of I1).
    auto branch = [](double rk, double tau) {
        return rk * ((1 - std::exp(-1.0 / tau)) * 2.4 + 0.6 * (std::exp(-9.99 / tau) - std::exp(-11.0 / tau))) / 2.4;
    };
    CHECK(r.r_ohm == doctest::Approx(kR0 + branch(kR1, kTau1) + branch(kR2, kTau2)).epsilon(1e-9));
}

TEST_CASE("dcir: errors") {
    const Series s = record(1.0, 60.0, [](double t) { return t >= 10.0 && t < 40.0 ? 6.0 : 0.0; });
    CHECK(error_of([&] { (void)eol::models::dcir_at(s, {0.01}); }) ==
          "cannot resolve 0.01 s after the step: the sampling interval at the step is 1 s");
    CHECK(error_of([&] { (void)eol::models::dcir_at(s, {100.0}); }).find("record ends") != std::string::npos);
    CHECK(error_of([&] { (void)eol::models::dcir_at(s, {-1.0}); }).find("must be ≥ 0") != std::string::npos);
    // The largest step is the one at 10 s or the release at 40 s (equal size): 35 s crosses a change.
    CHECK(error_of([&] { (void)eol::models::dcir_at(s, {35.0}); }).find("changes again") != std::string::npos);
    const Series flat = record(1.0, 20.0, [](double) { return 1.0; });
    CHECK(error_of([&] { (void)eol::models::dcir_at(flat, {1.0}); }).find("current is constant") != std::string::npos);
    CHECK(error_of([&] { (void)eol::models::dcir_iec61960(s); }).find("no step up from a discharge level") !=
          std::string::npos);
    CHECK(error_of([&] { (void)eol::models::dcir_at(Series{}, {1.0}); }).find("empty") != std::string::npos);
}
