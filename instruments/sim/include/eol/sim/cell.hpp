// eol/sim/cell.hpp — the physics of one simulated cell.
//
// A Cell is OCV(SoC) + R0 + two RC pairs (Thevenin), a lumped thermal model
// (C_th, R_th to ambient) and an optional internal short R_isc that heats the
// cell (≈ OCV²/R_isc) and drains it. advance() integrates exactly for a
// current held constant over the step (the RC update
// V_k ← a·V_k + R_k(1−a)·I, a = exp(−Δt/τ_k)); heat and SoC are integrated in
// sub-steps of at most 0.5 s with the same exact exponential for temperature.
// Discharge current is positive. A Cell is a value type, not thread-safe.
//
// Reversible (entropic) heat: −I·T·dU/dT with T in kelvin and dU/dT from
// entropic_du_dt_v_per_k(SoC) (an NMC/graphite-like curve, −0.3 … +0.3 mV/K)
// times CellParams::entropic_scale (0 = none, the default; 1 = the curve).
// With dU/dT > 0 a discharge cools the cell and a charge warms it.
//
// Population draws parameters for a production: nominal values with
// cell-to-cell spread, an optional lot-wide R0 shift and a fraction of cells
// with internal shorts, so lots and defects can be simulated.
#pragma once

#include <cstdint>
#include <limits>
#include <random>

namespace eol::sim {

/// Open-circuit voltage of an NMC 18650 cell (Samsung 30Q-like) at state of
/// charge `soc` in [0, 1] (clamped), by monotone interpolation of a table.
double ocv_nmc_v(double soc);

/// Entropic coefficient dU/dT in V/K of the NMC cell at `soc` (clamped):
/// −0.3 mV/K when empty, through 0 near 40 % to +0.3 mV/K when full.
double entropic_du_dt_v_per_k(double soc);

struct CellParams {
    double capacity_ah = 3.0;
    double r0_ohm = 0.033;
    double r1_ohm = 0.012;
    double tau1_s = 10.0;
    double r2_ohm = 0.010;
    double tau2_s = 90.0;
    double c_th_j_per_k = 170.0;
    double r_th_k_per_w = 11.0;
    double r_isc_ohm = std::numeric_limits<double>::infinity();  // internal short; inf = none
    double soc0 = 0.8;            // state of charge when loaded into the fixture
    double ocv_offset_v = 0.0;    // cell-to-cell OCV spread
    double entropic_scale = 0.0;  // × entropic_du_dt_v_per_k(SoC); 1 = realistic, 0 = no reversible heat
};

struct CellState {
    double soc = 0.8;
    double v1_v = 0.0;  // RC-pair voltages (positive while discharging)
    double v2_v = 0.0;
    double temp_c = 25.0;
};

class Cell {
public:
    Cell(const CellParams& p, double ambient_c);

    /// Integrates `dt_s` seconds with discharge current `i_a` held constant.
    void advance(double dt_s, double i_a, double ambient_c);

    double ocv_v() const;
    /// Terminal voltage while `i_a` flows (after the last advance()).
    double terminal_v(double i_a) const;
    /// Heat dissipated at current `i_a`: I²R0 + Σ V_k²/R_k + OCV²/R_isc
    /// + reversible heat −(I + I_isc)·T·dU/dT (may be negative).
    double heat_w(double i_a) const;
    /// The reversible part of heat_w alone.
    double reversible_heat_w(double i_a) const;

    const CellParams& params() const { return p_; }
    const CellState& state() const { return s_; }

private:
    CellParams p_;
    CellState s_;
};

/// What a production looks like, for simulated lots.
struct PopulationSpec {
    CellParams nominal{};
    double r0_sd_rel = 0.03;        // cell-to-cell spread, relative
    double r1_sd_rel = 0.05;
    double tau_sd_rel = 0.05;
    double cth_sd_rel = 0.03;
    double rth_sd_rel = 0.03;
    double ocv_sd_v = 0.002;
    double r0_shift_rel = 0.0;      // lot-wide shift of R0 (a drifting process)
    double short_fraction = 0.0;    // fraction of cells with an internal short
    double short_min_ohm = 100.0;   // shorts are log-uniform in [min, max]
    double short_max_ohm = 5000.0;
};

/// Draws one cell's parameters from `spec`.
CellParams draw_cell(const PopulationSpec& spec, std::mt19937_64& rng);

}  // namespace eol::sim
