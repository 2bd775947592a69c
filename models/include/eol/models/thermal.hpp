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
// R_th·P_x and P_x is reported NaN (missing, never 0) and not identifiable.
//
// Callers that pass P_x on (the station's p_x_w measurement, screening) take
// p_extra_w.value only when p_extra_w.identifiable; else the value is missing
// (NaN), never 0. p_extra_w.identifiable means "determined under the model's
// assumptions" (in the plain model: a zero sensor offset);
// p_extra_identifiable (below) is the stronger "separated from the sensor
// offset by data or calibration".
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
// than half the value (for P_x: wider than half of the larger of the mean
// heating power and |P_x|).
//
// Extended model (any of reversible_heat, sensor_offset_c, offset_from_rest,
// ambient_drift set; the defaults keep the plain model above):
//
//   T_cell,meas = T + o,   C_th·dT/dt = P(t) + k·I(t) + P_x − (T − T_amb − d·(t − t0))/R_th
//
//   k·I      reversible (entropic) heat, k = −T·dU/dT in V (= W per A,
//            discharge positive; k < 0 when discharge cools the cell),
//            fitted per window (reversible_heat).
//   T0       free start-of-window temperature: the cell need not be at
//            equilibrium when the window starts (decays with τ).
//   o        offset of the cell's sensor against the ambient sensor: given
//            (sensor_offset_c, a channel calibration) or estimated from the
//            rest at the start of the window (offset_from_rest: only when the
//            rest is long and the cell temperature is flat over it).
//   d        optional slow drift of the cell's true ambient against the
//            ambient sensor (ambient_drift).
// A known k (ThermalOptions::entropic_v, with entropic_v_per_ah the change of
// k with the charge drawn) is not fitted: (k + k'·Q)·I is added to the heat
// P of every interval, in the plain and the extended model. A wrong k leaves
// Δk·I unmodelled while the current flows; with a cooling rest shorter than
// τ the fit puts it mostly into τ (C_th ±10 % for Δk·I = ±36 mW at 3 A),
// R_th hardly moves, and P_x moves by about −0.2·Δk·I (tests/models/
// test_thermal.cpp). A constant k on a step that moves the state of charge
// (k of an NMC cell changes by ~25 mV over 0.5 Ah) leaves a heat growing
// through the step that reads as a slower cell: give the slope too.
// For fixed τ the model is linear in (R_th, T0, c, R_th·k, d) with
// c = o + R_th·P_x. In one window a constant sensor offset and a constant
// P_x have the same shape: c is determined, P_x only once o is known. With
// o unknown, p_extra_w is NaN and p_extra_identifiable is false; the fitted
// c is reported as steady_offset_k. Under a constant-current step the
// reversible heat k·I has almost the shape of the Joule heat, so R_th (and
// C_th) trade against k: their intervals say how well one window separates
// them; τ is determined by the shape alone. fit_thermal_joint fits several
// windows of one cell with shared τ and R_th (hence C_th).
// corr_p_extra_r_th is the correlation of P_x with R_th from the covariance
// (also in the plain model).
//
// Failure: heat_determined (below) — a circuit heat over the physical bound
// I·(V_rest − V) leaves R_th, C_th and P_x missing, never a number (it was
// P_x = 212 W for a drained cell with a 202 Ω short).
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
    // Records of up to this many samples are searched on every sample, longer
    // ones on a reduced record first and polished on every sample (the
    // circuit fit's too: EcmOptions, where the default is 3000). Where the
    // reduced search leaves the circuit's heat over its bound, the circuit is
    // searched again on every sample. Over the 600 heat windows of a
    // simulated production (good and shorted cells; tools/bench/
    // bench_thermal_search) the results agree with the search on every
    // sample within 0.15 % (P_x within 0.04 mW), in a third of the time.
    std::size_t search_every_sample_up_to = 1000;
    // Extended model (see above); all off = the plain model.
    bool reversible_heat = false;           // fit k·I beside the Joule heat
    std::optional<double> sensor_offset_c;  // calibrated T_cell − T_amb sensor offset, K
    bool offset_from_rest = false;          // else: estimate it from the leading rest
    bool ambient_drift = false;             // fit a linear drift of the true ambient
    // A known reversible-heat coefficient k = −T·dU/dT, V (W per A, discharge
    // positive; k < 0 when discharge cools the cell), e.g. characterised for
    // the cell model at the recipe's state of charge: k·I is added to the
    // heat of every interval as known — no free parameter — in the plain and
    // the extended model alike (it pins the heat scale that the temperature
    // alone cannot). Excludes reversible_heat (k fitted).
    std::optional<double> entropic_v;
    // With entropic_v: how k changes with the charge drawn since the window's
    // first sample, V/Ah (k = entropic_v + entropic_v_per_ah·Q). A 600 s step
    // at 3 A draws 0.5 Ah of a 3 Ah cell, and dU/dT follows the state of
    // charge: an NMC cell's k moves by ~25 mV over such a step.
    std::optional<double> entropic_v_per_ah;
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
    // False when the heating is not physical: the circuit's heat over a
    // window that starts at rest exceeds 1.5 × ∫I·(V_rest − V)dt, the most a
    // cell can dissipate (the circuit does not describe the window, e.g. a
    // cell driven into its empty knee). The fit then failed: converged =
    // false, R_th, C_th, P_x (and k) NaN and not identifiable; τ is kept.
    bool heat_determined = true;
    std::string heating_source;  // "circuit", "overpotential", "fixed"
    std::string ambient_source;  // "fixed", "column", "fitted"
    std::vector<std::string> notes;
    // Extended model (NaN / "none" where not fitted).
    Estimate entropic_v;            // k = −T·dU/dT, V (reversible heat per ampere): fitted or given
    std::string entropic_source = "none";  // "none", "fitted" (reversible_heat), "given" (entropic_v)
    double entropic_v_per_ah = 0.0;        // the given slope of k with the charge drawn (0: none)
    Estimate steady_offset_k;       // c = sensor offset + R_th·P_x
    Estimate sensor_offset_c;       // the offset used, or NaN
    Estimate ambient_drift_k_per_s; // d
    std::string offset_source = "none";  // "none", "given", "rest"
    bool extended = false;               // the extended model was fitted
    // P_x is separable from the sensor offset only when the offset is known
    // (given or from a rest at equilibrium). The plain model assumes a zero
    // offset: there this is false too, and p_extra_w keeps its old meaning.
    bool p_extra_identifiable = false;
    double corr_p_extra_r_th = 0.0;  // correlation of P_x with R_th (NaN if unknown)
    double corr_entropic_r_th = 0.0; // correlation of k with R_th (extended, reversible_heat)
};

ThermalFit fit_thermal(const Series& s, const ThermalOptions& options = {});

/// Several windows of one cell (e.g. each heating step with its cooling
/// rest) fitted together: τ and R_th (so C_th) shared, every other term of
/// the extended model per window. The options apply to every window
/// (sensor_offset_c: the same calibrated channel offset for all).
struct ThermalJointFit {
    Estimate c_th_j_per_k, r_th_k_per_w, tau_s;
    std::vector<ThermalFit> windows;  // per-window T0, k, c, P_x, rmse (τ, R_th, C_th: the shared ones)
    double rmse_k = 0.0;
    std::size_t samples = 0;
    int iterations = 0;
    bool converged = false;
    std::vector<std::string> notes;
};
ThermalJointFit fit_thermal_joint(const std::vector<Series>& windows, const ThermalOptions& options = {});

/// Cell temperature of the model for given heat per interval (heat_w[n] over
/// (t[n−1], t[n]], index 0 unused) and ambient per sample (held).
std::vector<double> thermal_temperature(const std::vector<double>& t_s, const std::vector<double>& heat_w,
                                        const std::vector<double>& ambient_c, double c_th_j_per_k,
                                        double r_th_k_per_w, double p_extra_w, double t0_c);

}  // namespace eol::models
