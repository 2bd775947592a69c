// eol/models/ecm.hpp — equivalent-circuit (Thevenin) fit: OCV + R0 + n RC pairs.
//
//   V(t) = OCV − R0·I(t) − Σk Vk(t),   dVk/dt = I/Ck − Vk/(Rk·Ck),   τk = Rk·Ck
//
// with the current held between samples, so that for any (uneven) sampling
//   Vk[n] = a·Vk[n−1] + Rk·(1 − a)·I[n−1],   a = exp(−(t[n] − t[n−1])/τk)
// is exact. Discharge current is positive.
//
// Method: variable projection. For fixed τ the model is linear in (OCV, R0,
// R1..Rn) and those are solved exactly; the τ are searched in log τ by
// Levenberg–Marquardt on the projected residual with the Golub–Pereyra
// Jacobian (derivatives of the recursion by a second recursion). Starts: the
// three best combinations of a geometric τ grid over [2·median Δt,
// 4·window length], each refined, the best result kept — deterministic, no
// random restarts. Each iteration is one O(N) pass accumulating a small Gram
// matrix; nothing is allocated inside the search. Records over 3000 samples
// are searched on a reduced record first (every sample just after a current
// change, ~8 per octave of time later, weighted) and polished on all samples.
//
// Unless `free_initial_state` is set, the RC branches are taken as relaxed at
// the first sample (the window starts at rest or with the first current).
// With it, each branch's voltage at t0 is fitted too.
//
// Uncertainty: 95 % half-widths from the full Jacobian at the optimum,
// cov = s²(JᵀJ)⁻¹ with s² = SS/(N − p) and Student's t (Ck by the delta
// method). They assume white noise; real residuals are correlated, so treat
// them as a lower bound.
//
// Identifiability (flag false, reason in `notes`): τ longer than the window,
// τ shorter than the median sampling interval, two τ within a factor 1.5,
// a negative resistance, or a 95 % half-width wider than half the value.
//
// Errors: InputError for an empty or too short window (fewer than 2 + 2n + 2
// samples), non-finite values, time not strictly increasing, a current with
// no change to fit (constant within its noise), or rc_pairs outside 1..3.
// A non-positive R0 is reported, flagged, with a note on the current's sign.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "eol/models/series.hpp"

namespace eol::models {

/// A fitted value with its 95 % half-width (value ± ci95) and whether the
/// window determines it.
struct Estimate {
    double value = 0.0;
    double ci95 = 0.0;
    bool identifiable = true;
};

struct RcBranch {
    double r_ohm = 0.0;
    double tau_s = 0.0;
};

/// Plain circuit parameters (for simulation and heating).
struct EcmParams {
    double ocv_v = 0.0;
    double r0_ohm = 0.0;
    std::vector<RcBranch> rc;
    std::vector<double> v0_v;  // branch voltages at t0 (empty: relaxed)
};

struct EcmOptions {
    int rc_pairs = 2;                 // 1..3
    bool free_initial_state = false;  // fit the branch voltages at t0
    int max_iterations = 100;
    /// Records of up to this many samples are searched on every sample;
    /// longer ones on a reduced record first, then polished on every sample.
    std::size_t search_every_sample_up_to = 3000;
};

struct EcmRc {
    Estimate r_ohm, tau_s, c_f;
};

struct EcmFit {
    Estimate ocv_v, r0_ohm;
    std::vector<EcmRc> rc;            // ordered by τ, shortest first
    std::vector<Estimate> v0_v;       // with free_initial_state, same order as rc
    double rmse_v = 0.0;
    std::size_t samples = 0;
    int iterations = 0;               // accepted Levenberg–Marquardt steps
    int passes = 0;                   // O(N) passes over the data, grid start included
    bool converged = false;
    std::vector<std::string> notes;   // why a parameter is flagged, e.g. "tau2_s: ..."

    EcmParams params() const;
};

/// Fits the circuit to the window. Throws InputError (see the header comment).
EcmFit fit_ecm(const Series& s, const EcmOptions& options = {});

/// Terminal voltage of the circuit for the current record (same recursion).
std::vector<double> ecm_voltage(const std::vector<double>& t_s, const std::vector<double>& i_a,
                                const EcmParams& p);

/// Heat dissipated in R0 and the Rk over each interval (t[n−1], t[n]]
/// (exact integral with the current held), divided by the interval: the
/// average power in W for interval n, index 0 is 0. Branches with a
/// non-positive resistance (a non-physical fit) contribute nothing.
std::vector<double> ecm_joule_power_w(const std::vector<double>& t_s,
                                      const std::vector<double>& i_a, const EcmParams& p);

}  // namespace eol::models
