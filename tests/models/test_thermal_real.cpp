// The extended thermal model on the eight real 3 A heating windows of the
// Samsung 30Q record (../shared/data/real; tools/thermal_real_data prints the
// full before/after table quoted in docs/models.md). What is asserted is what
// the data say:
//   - without a known sensor offset P_x is declared not identifiable in every
//     window (the plain model reported 1–28 mW with ±0.2 mW intervals);
//   - the joint fit of all eight windows with shared τ and R_th converges to a
//     C_th of a bare 18650 (≈ 45 J/K) and, with the channel offset taken as the
//     median steady offset, every window's P_x is within ±20 mW of 0;
//   - per-window τ stays within −20 %/+30 % of its median (the cooling rests
//     themselves differ by that much; docs/models.md).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../../tools/thermal_real_data/real_record.hpp"
#include "eol/models/thermal.hpp"

using eol::models::Series;

namespace {

std::vector<Series> real_windows() {
    static const Series s =
        eol::realdata::read_labview(std::string(EOL_SHARED_DIR) + "/data/real/samsung-30q-hppc-20c-10pct-soc-steps.txt");
    std::vector<Series> out;
    for (const auto& w : eol::realdata::windows(s, 3)) out.push_back(s.slice(w.first, w.last));
    return out;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return 0.5 * (v[(v.size() - 1) / 2] + v[v.size() / 2]);
}

}  // namespace

TEST_CASE("real data thermal: without a sensor offset P_x is not identifiable in any window, tau within -20/+30 %") {
    const auto ws = real_windows();
    REQUIRE(ws.size() == 8);
    std::vector<double> taus;
    for (const auto& w : ws) {
        eol::models::ThermalOptions o;
        o.heating_rc_pairs = 3;
        const auto plain = eol::models::fit_thermal(w, o);
        CHECK_FALSE(plain.p_extra_identifiable);  // the plain model assumes no offset and says so
        CHECK(std::isfinite(plain.corr_p_extra_r_th));
        CHECK(plain.corr_p_extra_r_th < -0.5);  // P_x trades against R_th
        o.reversible_heat = true;
        o.offset_from_rest = true;  // 10 samples of rest: too short, declared
        const auto f = eol::models::fit_thermal(w, o);
        INFO("tau " << f.tau_s.value << " R " << f.r_th_k_per_w.value << " c " << f.steady_offset_k.value << " k "
                    << f.entropic_v.value);
        CHECK(f.converged);
        CHECK(f.extended);
        CHECK_FALSE(f.p_extra_identifiable);
        CHECK_FALSE(f.p_extra_w.identifiable);
        CHECK(std::isnan(f.p_extra_w.value));
        CHECK(f.offset_source == "none");
        CHECK(f.rmse_k < 0.030);
        CHECK(f.rmse_k <= plain.rmse_k + 1e-4);  // the reversible term never fits worse
        CHECK(std::abs(f.entropic_v.value) < 0.15);  // |T·dU/dT| < 0.5 mV/K × 300 K
        taus.push_back(f.tau_s.value);
    }
    const double md = median(taus);
    for (double t : taus) {
        CHECK(t > 0.8 * md);
        CHECK(t < 1.3 * md);
    }
}

TEST_CASE("real data thermal: joint fit with shared tau and R_th, P_x within 20 mW once the offset is known") {
    const auto ws = real_windows();
    eol::models::ThermalOptions o;
    o.heating_rc_pairs = 3;
    o.reversible_heat = true;
    const auto j = eol::models::fit_thermal_joint(ws, o);
    CHECK(j.converged);
    CHECK(j.windows.size() == 8);
    CHECK(j.tau_s.value > 1000.0);
    CHECK(j.tau_s.value < 1600.0);
    CHECK(j.c_th_j_per_k.value > 30.0);  // a bare 18650: ~45 g × ~1 J/(g·K)
    CHECK(j.c_th_j_per_k.value < 70.0);
    CHECK(j.r_th_k_per_w.value > 15.0);
    CHECK(j.r_th_k_per_w.value < 40.0);
    CHECK(j.rmse_k < 0.05);
    std::vector<double> cs;
    for (const auto& f : j.windows) {
        CHECK_FALSE(f.p_extra_identifiable);
        cs.push_back(f.steady_offset_k.value);
    }
    // A channel calibration would give the offset; here the median over the
    // windows stands in for it (a healthy cell: the true P_x is ~0).
    o.sensor_offset_c = median(cs);
    const auto k = eol::models::fit_thermal_joint(ws, o);
    CHECK(k.tau_s.value == doctest::Approx(j.tau_s.value).epsilon(1e-6));
    for (const auto& f : k.windows) {
        CHECK(f.p_extra_identifiable);
        CHECK(f.offset_source == "given");
        CHECK(std::abs(f.p_extra_w.value) < 0.020);
    }
}

TEST_CASE("thermal: an offset from an equilibrium rest separates P_x, a given offset is the same fit shifted") {
    // Synthetic: 300 s at rest at equilibrium, 600 s at 3 A, 3000 s cooling;
    // sensor offset 0.3 K, P_x 20 mW, reversible heat k = −0.05 V.
    const double c_th = 50.0, r_th = 25.0, px = 0.020, off = 0.3, k = -0.05, r_heat = 0.05;
    Series s;
    double temp = 20.0 + r_th * px;  // at equilibrium with its own P_x
    unsigned state = 12345;
    auto noise = [&] {
        state = state * 1103515245u + 12345u;
        return 0.004 * ((static_cast<double>(state >> 8) / 16777216.0) - 0.5);
    };
    double i_prev = 0.0;
    for (int n = 0; n <= 3900; ++n) {
        const double t = n;
        const double i = (t >= 300.0 && t < 900.0) ? 3.0 : 0.0;
        if (n > 0) {
            const double a = std::exp(-1.0 / (r_th * c_th));
            temp = a * temp + (1.0 - a) * (20.0 + r_th * (i_prev * i_prev * r_heat + k * i_prev + px));
        }
        s.t_s.push_back(t);
        s.i_a.push_back(i);
        s.v_v.push_back(3.9 - r_heat * i);
        s.t_cell_c.push_back(temp + off + noise());
        s.t_amb_c.push_back(20.0 + noise());
        i_prev = i;
    }
    eol::models::ThermalOptions o;
    o.heating = eol::models::HeatingSource::fixed;
    o.heating_ohm = r_heat;
    o.reversible_heat = true;
    o.offset_from_rest = true;
    const auto f = eol::models::fit_thermal(s, o);
    // The rest sees offset + R_th·P_x (the cell was at equilibrium with its
    // own P_x): the offset from the rest absorbs a steady P_x — that is why a
    // calibrated channel offset is the one to screen with.
    CHECK(f.offset_source == "rest");
    CHECK(f.sensor_offset_c.value == doctest::Approx(off + r_th * px).epsilon(0.02));
    CHECK(f.p_extra_identifiable);
    CHECK(std::abs(f.p_extra_w.value) < 0.003);
    o.offset_from_rest = false;
    o.sensor_offset_c = off;
    const auto g = eol::models::fit_thermal(s, o);
    CHECK(g.steady_offset_k.value == doctest::Approx(off + r_th * px).epsilon(0.02));
    // Heat I²·R_heat and k·I are both constant during a constant-current
    // step: R_th and k are not separable and the fit says so; τ is.
    CHECK_FALSE(g.r_th_k_per_w.identifiable);
    CHECK(g.tau_s.identifiable);
    CHECK(g.tau_s.value == doctest::Approx(r_th * c_th).epsilon(0.05));
    CHECK(g.tau_s.value == doctest::Approx(f.tau_s.value).epsilon(1e-9));
}
