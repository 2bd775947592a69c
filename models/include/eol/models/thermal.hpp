// eol/models/thermal.hpp — lumped thermal model of a cell in its fixture.
//
//   C_th·dT/dt = P(t) + P_x − (T − T_amb)/R_th,     τ = R_th·C_th
//
// P is the electrical heat, P_x any unexplained heat (an internal short shows
// up there). With P, T_amb held between samples the exact update is
//   T[n] = a·T[n−1] + (1 − a)·(T_amb[n−1] + R_th·(P[n] + P_x)),  a = exp(−Δt/τ)
// (P[n] is the mean heat over the interval ending at sample n).
//
// Heating P, in order of preference by the caller (ThermalOptions::heating):
//   circuit        P = R0·I² + Σ Vk²/Rk per interval, the Joule heat of an
//                  equivalent-circuit fit (fit_ecm, heating_rc_pairs) of the same
//                  window's (t, I, V), so the heat of the RC branches lags the
//                  current as it does in the cell. A pair slower than the window
//                  is the open-circuit voltage following the charge drawn (the
//                  state of charge), not a resistance: it adds no heat (noted).
//                  Over a long step that changes the state of charge, give the
//                  circuit one pair more than the polarisation needs (3 for a
//                  10-minute step): with too few, the state-of-charge change takes
//                  a polarisation pair and the fit shows the timing error as a
//                  negative P_x. heating_ohm reports ∫P dt / ∫I² dt.
//   overpotential  P = I·(OCV₀ − V), OCV₀ the voltage at rest before the current
//                  starts (the window must start at rest). Includes the heat of
//                  the state-of-charge (OCV) change, a proxy for the reversible heat.
//   fixed          P = I²·heating_ohm as given.
// The temperature alone fixes only R_th·P: the heat scale must come from the
// electrical side, which is why heating is not a free parameter of this fit.
//
// Ambient: ThermalOptions::ambient_c if set, else the series' t_amb_c column
// (held between samples), else fitted as a constant — then it absorbs
// R_th·P_x and P_x is reported 0 and not identifiable.
//
// Method: variable projection. For fixed τ the model is linear in
// (T0, R_th, R_th·P_x) (or (T0, R_th, T_∞) with a fitted ambient); τ is
// searched in log τ by Levenberg–Marquardt (Golub–Pereyra Jacobian) from the
// best point of a geometric τ grid. 95 % half-widths from the full Jacobian,
// with the relative uncertainty of the heating added in quadrature to R_th,
// C_th and P_x.
//
// Identifiability: heating only (no cooling after the last heat, window
// shorter than 3τ) cannot separate C_th from R_th — both, τ and P_x are
// flagged and `heating_only` is set. Also flagged: a 95 % half-width wider
// than half the value (for P_x: wider than half the mean heating power).
//
// Errors: InputError for the window errors of Series::validate (cell
// temperature required), no heat (zero current), non-positive heating_ohm,
// and the circuit fit's errors when heating comes from the circuit.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "eol/models/ecm.hpp"
#include "eol/models/series.hpp"

namespace eol::models {

enum class HeatingSource { circuit, overpotential, fixed };

struct ThermalOptions {
    HeatingSource heating = HeatingSource::circuit;
    double heating_ohm = 0.0;          // with HeatingSource::fixed
    int heating_rc_pairs = 2;          // circuit used for HeatingSource::circuit
    std::optional<double> ambient_c;   // constant ambient; else t_amb_c; else fitted
    int max_iterations = 100;
};

struct ThermalFit {
    Estimate c_th_j_per_k, r_th_k_per_w, tau_s;
    Estimate heating_ohm;  // effective I² resistance of the heating used
    Estimate p_extra_w;    // unexplained heat P_x
    Estimate t0_c;         // fitted cell temperature at the first sample
    Estimate ambient_c;    // the ambient used (mean of the column) or fitted
    double rmse_k = 0.0;
    double mean_heat_w = 0.0;  // mean electrical heat over the window
    std::size_t samples = 0;
    int iterations = 0;
    bool converged = false;
    bool heating_only = false;
    std::string heating_source;  // "circuit", "overpotential", "fixed"
    std::string ambient_source;  // "fixed", "column", "fitted"
    std::vector<std::string> notes;
};

ThermalFit fit_thermal(const Series& s, const ThermalOptions& options = {});

/// Cell temperature of the model for given heat per interval (heat_w[n] over
/// (t[n−1], t[n]], index 0 unused) and ambient per sample (held).
std::vector<double> thermal_temperature(const std::vector<double>& t_s, const std::vector<double>& heat_w,
                                        const std::vector<double>& ambient_c, double c_th_j_per_k,
                                        double r_th_k_per_w, double p_extra_w, double t0_c);

}  // namespace eol::models
