#include "eol/sim/cell.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace eol::sim {
namespace {

// SoC → OCV for an NMC/graphite 18650 at 20–25 °C (shape of published 30Q data).
constexpr std::array<double, 11> kSoc{0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
constexpr std::array<double, 11> kOcv{3.00, 3.45, 3.55, 3.62, 3.68, 3.75,
                                      3.84, 3.93, 4.02, 4.10, 4.18};

// SoC → dU/dT (V/K), same SoC grid: negative at low SoC, positive when full
// (the sign change near mid SoC of NMC/graphite cells; magnitude ≤ 0.3 mV/K).
constexpr std::array<double, 11> kDuDt{-0.30e-3, -0.20e-3, -0.10e-3, -0.05e-3, 0.0,    0.05e-3,
                                       0.10e-3,  0.15e-3,  0.20e-3,  0.25e-3,  0.30e-3};

double interp(const std::array<double, 11>& y, double soc) {
    soc = std::clamp(soc, 0.0, 1.0);
    const auto it = std::upper_bound(kSoc.begin(), kSoc.end(), soc);
    if (it == kSoc.end()) return y.back();
    const auto k = static_cast<std::size_t>(it - kSoc.begin());
    const double f = (soc - kSoc[k - 1]) / (kSoc[k] - kSoc[k - 1]);
    return y[k - 1] + f * (y[k] - y[k - 1]);
}

}  // namespace

double entropic_du_dt_v_per_k(double soc) { return interp(kDuDt, soc); }

double ocv_nmc_v(double soc) {
    soc = std::clamp(soc, 0.0, 1.0);
    const auto it = std::upper_bound(kSoc.begin(), kSoc.end(), soc);
    if (it == kSoc.end()) return kOcv.back();
    const auto k = static_cast<std::size_t>(it - kSoc.begin());
    const double f = (soc - kSoc[k - 1]) / (kSoc[k] - kSoc[k - 1]);
    return kOcv[k - 1] + f * (kOcv[k] - kOcv[k - 1]);
}

Cell::Cell(const CellParams& p, double ambient_c) : p_(p) {
    s_.soc = p.soc0;
    s_.temp_c = ambient_c;
}

double Cell::ocv_v() const { return ocv_nmc_v(s_.soc) + p_.ocv_offset_v; }

double Cell::terminal_v(double i_a) const { return ocv_v() - i_a * p_.r0_ohm - s_.v1_v - s_.v2_v; }

double Cell::heat_w(double i_a) const {
    double q = i_a * i_a * p_.r0_ohm + s_.v1_v * s_.v1_v / p_.r1_ohm + s_.v2_v * s_.v2_v / p_.r2_ohm;
    if (std::isfinite(p_.r_isc_ohm) && p_.r_isc_ohm > 0) q += ocv_v() * ocv_v() / p_.r_isc_ohm;
    return q + reversible_heat_w(i_a);
}

double Cell::reversible_heat_w(double i_a) const {
    if (p_.entropic_scale == 0.0) return 0.0;
    double i_total = i_a;
    if (std::isfinite(p_.r_isc_ohm) && p_.r_isc_ohm > 0) i_total += ocv_v() / p_.r_isc_ohm;
    return -i_total * (s_.temp_c + 273.15) * p_.entropic_scale * entropic_du_dt_v_per_k(s_.soc);
}

void Cell::advance(double dt_s, double i_a, double ambient_c) {
    constexpr double kMaxStep = 0.5;
    while (dt_s > 0) {
        const double h = std::min(dt_s, kMaxStep);
        dt_s -= h;
        // Heat at the start of the sub-step, held over it (exact exponential response).
        const double q = heat_w(i_a);
        const double t_inf = ambient_c + q * p_.r_th_k_per_w;
        const double e_th = std::exp(-h / (p_.r_th_k_per_w * p_.c_th_j_per_k));
        s_.temp_c = t_inf + (s_.temp_c - t_inf) * e_th;

        double i_total = i_a;
        if (std::isfinite(p_.r_isc_ohm) && p_.r_isc_ohm > 0) i_total += ocv_v() / p_.r_isc_ohm;
        s_.soc -= i_total * h / (3600.0 * p_.capacity_ah);
        s_.soc = std::clamp(s_.soc, 0.0, 1.0);

        const double a1 = std::exp(-h / p_.tau1_s);
        const double a2 = std::exp(-h / p_.tau2_s);
        s_.v1_v = a1 * s_.v1_v + p_.r1_ohm * (1 - a1) * i_a;
        s_.v2_v = a2 * s_.v2_v + p_.r2_ohm * (1 - a2) * i_a;
    }
}

CellParams draw_cell(const PopulationSpec& spec, std::mt19937_64& rng) {
    std::normal_distribution<double> n01(0.0, 1.0);
    auto rel = [&](double nominal, double sd_rel) {
        return nominal * std::max(0.5, 1.0 + sd_rel * n01(rng));
    };
    CellParams p = spec.nominal;
    p.r0_ohm = rel(spec.nominal.r0_ohm, spec.r0_sd_rel) * (1.0 + spec.r0_shift_rel);
    p.r1_ohm = rel(spec.nominal.r1_ohm, spec.r1_sd_rel);
    p.r2_ohm = rel(spec.nominal.r2_ohm, spec.r1_sd_rel);
    p.tau1_s = rel(spec.nominal.tau1_s, spec.tau_sd_rel);
    p.tau2_s = rel(spec.nominal.tau2_s, spec.tau_sd_rel);
    p.c_th_j_per_k = rel(spec.nominal.c_th_j_per_k, spec.cth_sd_rel);
    p.r_th_k_per_w = rel(spec.nominal.r_th_k_per_w, spec.rth_sd_rel);
    p.ocv_offset_v = spec.ocv_sd_v * n01(rng);
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    if (spec.short_fraction > 0 && u01(rng) < spec.short_fraction) {
        const double lo = std::log(spec.short_min_ohm), hi = std::log(spec.short_max_ohm);
        p.r_isc_ohm = std::exp(lo + (hi - lo) * u01(rng));
    }
    return p;
}

}  // namespace eol::sim
