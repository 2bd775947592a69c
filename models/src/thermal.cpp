#include "eol/models/thermal.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include <Eigen/Dense>

#include "fit_common.hpp"
#include "varpro.hpp"

namespace eol::models {
namespace {

using detail::Layout;
using detail::SmallMat;
using detail::SmallVec;

constexpr double kInf = std::numeric_limits<double>::infinity();
// The circuit's heat may exceed the overpotential bound by this factor (noise,
// a voltage that recovers above its start) before the heat is called unknown;
// sound windows give 0.45–0.7 of it, broken circuit fits 20–10,000.
constexpr double kHeatBoundFactor = 1.5;

std::string fmt_num(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", x);
    return buf;
}

/// Everything one thermal pass reads.
struct ThermalData {
    const detail::Prepared* p = nullptr;
    const double* temp = nullptr;  // cell temperature per sample
    std::vector<double> heat;      // heat[n]: mean heat over (t[n−1], t[n]]
    std::vector<double> amb;       // ambient per sample (held), empty when fitted
    const double* sqrt_w = nullptr;  // row weights of a reduced record (null: 1)
};

/// A reduced record for the start search (see detail::compress): the rows of
/// detail::select_rows with the heat and the ambient averaged over the
/// intervals each row stands for.
struct ThermalReduced {
    detail::Prepared p;
    std::vector<double> t, temp, w;
    ThermalData d;
    ThermalReduced() = default;
    ThermalReduced(const ThermalReduced&) = delete;
    ThermalReduced& operator=(const ThermalReduced&) = delete;
};

void reduce(const ThermalData& full, const std::vector<detail::Row>& rows, ThermalReduced& r) {
    const detail::Prepared& f = *full.p;
    const std::size_t m = rows.size();
    r.t.resize(m);
    r.temp.resize(m);
    r.w.resize(m);
    r.d.heat.assign(m, 0.0);
    if (!full.amb.empty()) r.d.amb.assign(m, full.amb.back());
    for (std::size_t j = 0; j < m; ++j) {
        const std::size_t k = rows[j].index;
        r.t[j] = f.t[k];
        r.temp[j] = full.temp[k];
        r.w[j] = rows[j].sqrt_weight;
        if (j == 0) continue;
        double q = 0.0, a = 0.0, span = 0.0;
        for (std::size_t n = rows[j - 1].index + 1; n <= k; ++n) {
            q += full.heat[n] * f.dt[n];
            if (!full.amb.empty()) a += full.amb[n - 1] * f.dt[n];
            span += f.dt[n];
        }
        r.d.heat[j] = q / span;
        if (!full.amb.empty()) r.d.amb[j - 1] = a / span;
    }
    r.p = detail::Prepared{};
    r.p.n = m;
    r.p.t = r.t.data();
    r.p.dt = detail::snap_intervals(r.t.data(), m);
    r.p.dt_med = f.dt_med;
    r.p.span = f.span;
    r.d.p = &r.p;
    r.d.temp = r.temp.data();
    r.d.sqrt_w = r.w.data();
}

/// Gram matrix of [e, F_P, F_1, ∂e, ∂F_P, ∂F_1, (∂F_A), T − F_A] where F_u is
/// the unit-gain first-order response to u from zero, e = exp(−(t − t0)/τ),
/// F_1 = 1 − e and ∂ is ∂/∂log τ.
template <bool AMB>
struct ThermalPass {
    static constexpr int L = 3;
    static constexpr int D = AMB ? 4 : 3;
    static constexpr int Q = L + D + 1;
    using Acc = detail::GramAcc<Q>;

    const ThermalData& d;

    static Layout layout() {
        Layout lay;
        lay.n_lin = L;
        lay.n_deriv = D;
        lay.n_theta = 1;
        for (std::size_t k = 0; k < 3; ++k) {
            lay.deriv_theta[k] = 0;
            lay.deriv_lin[k] = static_cast<int>(k);
        }
        if (AMB) {
            lay.deriv_theta[3] = 0;
            lay.deriv_lin[3] = -1;  // the ambient response enters with coefficient 1
        }
        return lay;
    }

    template <bool WEIGHTED>
    EOL_ALWAYS_INLINE static void body(const ThermalData& d, double theta, Acc& acc) {
        const detail::Prepared& p = *d.p;
        const double inv_tau = std::exp(-theta);
        double e = 1.0, fp = 0.0, dfp = 0.0, fa = 0.0, dfa = 0.0;
        double a = 0.0, b = 0.0, g = 0.0, h_ref = -1.0, a_ref = 0.0, b_ref = 0.0;
        std::size_t fill = 0;
        auto emit = [&](std::size_t s) EOL_ALWAYS_INLINE_LAMBDA {
            const double w = WEIGHTED ? d.sqrt_w[s] : 1.0;
            const double de = w * e * (p.t[s] - p.t[0]) * inv_tau;
            double* z = acc.buf[fill++];
            z[0] = w * e;
            z[1] = w * fp;
            z[2] = w * (1.0 - e);
            z[3] = de;
            z[4] = w * dfp;
            z[5] = -de;
            if (AMB) z[6] = w * dfa;
            z[Q - 1] = w * (d.temp[s] - fa);
        };
        emit(0);
        std::size_t s = 1;
        while (s < p.n) {
            // As in the circuit pass: exponentials outside the inner loop, and
            // a series about the last one for jittered intervals (exact to
            // rounding for |δ| ≤ 1e-3).
            const double h = p.dt[s];
            const double dl = (h - h_ref) * inv_tau;
            if (h_ref > 0.0 && std::abs(dl) <= 1e-3) {
                const double em = dl * (1.0 - dl * (0.5 - dl * (1.0 / 6.0 - dl * (1.0 / 24.0 - dl * (1.0 / 120.0)))));
                a = a_ref * (1.0 - em);
                b = b_ref + a_ref * em;
            } else {
                const double em1 = std::expm1(-h * inv_tau);
                a = a_ref = 1.0 + em1;
                b = b_ref = -em1;
                h_ref = h;
            }
            g = a * h * inv_tau;
            do {
                const double q = d.heat[s];
                dfp = a * dfp + g * (fp - q);
                fp = a * fp + b * q;
                if (AMB) {
                    const double ta = d.amb[s - 1];
                    dfa = a * dfa + g * (fa - ta);
                    fa = a * fa + b * ta;
                }
                e *= a;
                emit(s);
                ++s;
                if (fill == Acc::B) {
                    acc.flush(fill);
                    fill = 0;
                }
            } while (s < p.n && p.dt[s] == h);
        }
        acc.flush(fill);
    }
    EOL_TARGET_AVX2 static void body_avx2(const ThermalData& d, double theta, Acc& acc) {
        if (d.sqrt_w)
            body<true>(d, theta, acc);
        else
            body<false>(d, theta, acc);
    }
    static void body_base(const ThermalData& d, double theta, Acc& acc) {
        if (d.sqrt_w)
            body<true>(d, theta, acc);
        else
            body<false>(d, theta, acc);
    }

    void operator()(const SmallVec& theta, SmallMat& m) const {
        Acc acc;
        if (detail::cpu_has_avx2())
            body_avx2(d, theta(0), acc);
        else
            body_base(d, theta(0), acc);
        acc.unpack(m);
    }
};

/// Effective resistance of the heat: ∫P dt / ∫I² dt.
double effective_ohm(const detail::Prepared& p, const std::vector<double>& heat) {
    double e = 0.0, i2 = 0.0;
    for (std::size_t s = 1; s < p.n; ++s) {
        e += heat[s] * p.dt[s];
        i2 += p.i[s - 1] * p.i[s - 1] * p.dt[s];
    }
    return i2 > 0.0 ? e / i2 : 0.0;
}

/// Joule-heat weighted resistance of a circuit over the window.
double circuit_heating_ohm(const Series& s, const detail::Prepared& p, const EcmParams& prm) {
    return effective_ohm(p, ecm_joule_power_w(s.t_s, s.i_a, prm));
}

Estimate heating_from_circuit(const Series& s, const detail::Prepared& p, const ThermalOptions& opt,
                              std::vector<std::string>& notes, std::vector<double>& heat) {
    EcmOptions eo;
    eo.rc_pairs = opt.heating_rc_pairs;
    eo.search_every_sample_up_to = opt.search_every_sample_up_to;
    EcmFit ecm;
    try {
        ecm = fit_ecm(s, eo);
    } catch (const InputError& e) {
        throw InputError(std::string("heating from the circuit fit: ") + e.what(), e.column(), e.sample());
    }
    EcmParams prm = ecm.params();
    // A branch slower than the window is the open-circuit voltage following
    // the charge drawn (V ≈ Q/C over the window: the state of charge), not a
    // resistance: it stores energy and dissipates none.
    std::size_t dropped = 0;
    for (std::size_t k = prm.rc.size(); k-- > 0;)
        if (prm.rc[k].tau_s > p.span) {
            prm.rc.erase(prm.rc.begin() + static_cast<std::ptrdiff_t>(k));
            ++dropped;
        }
    if (dropped > 0)
        notes.push_back("heating_ohm: " + std::to_string(dropped) +
                        " RC pair(s) of the circuit slower than the window taken as the state-of-charge change "
                        "(no heat)");
    heat = ecm_joule_power_w(s.t_s, s.i_a, prm);
    Estimate h{effective_ohm(p, heat), 0.0, true};
    // Uncertainty: each circuit parameter moved by its half-width, in quadrature.
    double var = ecm.r0_ohm.ci95 * ecm.r0_ohm.ci95;  // ∂R_heat/∂R0 = 1
    for (std::size_t k = 0; k < prm.rc.size(); ++k) {
        for (int which = 0; which < 2; ++which) {
            EcmParams q = prm;
            const double step = which == 0 ? ecm.rc[k].r_ohm.ci95 : ecm.rc[k].tau_s.ci95;
            if (!std::isfinite(step)) continue;
            double& x = which == 0 ? q.rc[k].r_ohm : q.rc[k].tau_s;
            x += std::min(step, 0.5 * std::abs(x));
            const double dh = circuit_heating_ohm(s, p, q) - h.value;
            var += dh * dh;
        }
    }
    h.ci95 = std::sqrt(var);
    if (!ecm.converged) notes.push_back("heating_ohm: the circuit fit of the window did not converge");
    return h;
}

template <bool AMB>
ThermalFit solve(const detail::Prepared& p, const ThermalData& d, const ThermalOptions& opt, const Estimate& heat_ohm) {
    using Pass = ThermalPass<AMB>;
    const Pass pass{d};
    const Layout lay = Pass::layout();

    detail::SearchLimits lim;
    lim.lo = SmallVec::Constant(1, std::log(p.dt_med / 10.0));
    lim.hi = SmallVec::Constant(1, std::log(100.0 * p.span));
    lim.max_iterations = opt.max_iterations;
    lim.dof = static_cast<double>(p.n) - 4.0;
    double tmean = 0.0, tt = 0.0;
    for (std::size_t s = 0; s < p.n; ++s) tmean += d.temp[s];
    tmean /= static_cast<double>(p.n);
    for (std::size_t s = 0; s < p.n; ++s) tt += (d.temp[s] - tmean) * (d.temp[s] - tmean);
    lim.ss_floor = 1e-13 * tt;

    // Long records: the start search runs on a reduced record, the result is
    // polished on every sample.
    const std::vector<detail::Row> rows = detail::select_rows(p, opt.search_every_sample_up_to);
    const bool reduced = rows.size() < p.n;
    ThermalReduced red;
    if (reduced) reduce(d, rows, red);
    const Pass coarse{reduced ? red.d : d};

    // Start: the best two points of a geometric grid of τ from a few samples
    // to 20 windows, each refined; the better result is kept.
    const double tau_lo = std::max(2.0 * p.dt_med, p.span / 500.0), tau_hi = 20.0 * p.span;
    constexpr int kGrid = 16;
    SmallMat m;
    std::vector<std::pair<double, double>> ranked;  // (ss, log τ)
    for (int j = 0; j < kGrid; ++j) {
        SmallVec theta(1);
        theta(0) = std::log(tau_lo) + std::log(tau_hi / tau_lo) * j / (kGrid - 1);
        coarse(theta, m);
        const detail::Eval ev = detail::evaluate(lay, m);
        if (ev.ok) ranked.push_back({ev.ss, theta(0)});
    }
    if (ranked.empty())
        throw InputError("thermal fit: the temperature record does not determine the model (singular at every time constant)");
    std::sort(ranked.begin(), ranked.end());
    detail::SearchResult res;
    int iterations = 0;
    for (std::size_t r = 0; r < ranked.size() && r < 2; ++r) {
        SmallVec theta(1);
        theta(0) = ranked[r].second;
        detail::SearchResult cand = detail::search(lay, coarse, theta, lim);
        iterations += cand.iterations;
        if (r == 0 || (cand.eval.ok && cand.eval.ss < res.eval.ss)) res = std::move(cand);
    }
    if (reduced) {
        lim.lambda0 = 1e-6;
        res = detail::search(lay, pass, res.theta, lim);
        iterations += res.iterations;
    }
    const detail::Eval& ev = res.eval;
    if (!ev.ok) throw InputError("thermal fit failed: the basis is singular at the optimum");

    ThermalFit fit;
    fit.samples = p.n;
    fit.iterations = iterations;
    fit.converged = res.converged;
    const double tau = std::exp(res.theta(0));
    const double t0 = ev.c(0), r = ev.c(1), c2 = ev.c(2);

    // Exact residual by the recursion.
    double ss = 0.0;
    {
        double temp = t0, h_prev = -1.0, a = 0.0;
        for (std::size_t s = 0; s < p.n; ++s) {
            if (s > 0) {
                const double h = p.dt[s];
                if (h != h_prev) {
                    a = std::exp(-h / tau);
                    h_prev = h;
                }
                const double drive = AMB ? d.amb[s - 1] + r * d.heat[s] + c2 : r * d.heat[s] + c2;
                temp = a * temp + (1.0 - a) * drive;
            }
            const double res_k = d.temp[s] - temp;
            ss += res_k * res_k;
        }
    }
    fit.rmse_k = std::sqrt(ss / static_cast<double>(p.n));

    // Covariance of (T0, R_th, c2, log τ).
    const double dof = static_cast<double>(p.n) - 4.0;
    const double s2 = ss / dof, tq = detail::t975(dof);
    SmallMat cov;
    const bool cov_ok = detail::solve_spd(detail::full_jtj(lay, res.gram, ev.c), SmallMat::Identity(4, 4), cov);
    auto var = [&](int i, int j) { return cov_ok ? s2 * cov(i, j) : kInf; };
    const double rho_h = heat_ohm.value > 0.0 ? heat_ohm.ci95 / heat_ohm.value : 0.0;  // relative, 95 %

    fit.t0_c = {t0, tq * std::sqrt(std::max(0.0, var(0, 0))), true};
    const double half_r = tq * std::sqrt(std::max(0.0, var(1, 1)));
    fit.r_th_k_per_w = {r, std::hypot(half_r, std::abs(r) * rho_h), true};
    fit.tau_s = {tau, tq * tau * std::sqrt(std::max(0.0, var(3, 3))), true};
    const double c = tau / r;
    const double rel_c2 = var(3, 3) + var(1, 1) / (r * r) - 2.0 * var(3, 1) / r;
    fit.c_th_j_per_k = {c, std::hypot(tq * std::abs(c) * std::sqrt(std::max(0.0, rel_c2)), std::abs(c) * rho_h), true};
    if (AMB) {
        const double px = c2 / r;
        const double vpx = var(2, 2) / (r * r) + c2 * c2 * var(1, 1) / (r * r * r * r) - 2.0 * c2 * var(2, 1) / (r * r * r);
        fit.p_extra_w = {px, std::hypot(tq * std::sqrt(std::max(0.0, vpx)), std::abs(px) * rho_h), true};
        const double cpr = var(2, 1) / r - c2 * var(1, 1) / (r * r);
        fit.corr_p_extra_r_th = (vpx > 0.0 && var(1, 1) > 0.0 && std::isfinite(vpx))
                                    ? cpr / std::sqrt(vpx * var(1, 1))
                                    : std::numeric_limits<double>::quiet_NaN();
    } else {
        // Missing, not 0: a 0 here read as "no extra heat" downstream.
        fit.p_extra_w = {std::numeric_limits<double>::quiet_NaN(), kInf, false};
        fit.corr_p_extra_r_th = std::numeric_limits<double>::quiet_NaN();
        fit.ambient_c = {c2, tq * std::sqrt(std::max(0.0, var(2, 2))), true};
        fit.notes.push_back("p_extra_w: no ambient temperature given; the fitted ambient (" + fmt_num(c2) +
                            " C) includes R_th·P_x");
    }
    return fit;
}


/// Heat and ambient of one window, as both fits read them.
struct WindowInput {
    detail::Prepared p;
    ThermalData d;
    Estimate heat_ohm;
    std::string source, amb_source;
    double amb_mean = 0.0, energy = 0.0;
    std::size_t last_heat = 0;
    std::vector<std::string> notes;
    // The circuit's heat is more than the cell can dissipate (see heat_determined).
    bool heat_unphysical = false;
};

/// Upper bound of the irreversible heat of a window that starts at rest:
/// ∫ I·(V_rest − V) dt (the overpotential heat with the open-circuit voltage
/// held at its start, which over a discharge only falls). NaN when the window
/// does not start at rest.
double overpotential_bound_j(const detail::Prepared& p) {
    const double thr = std::max({5.0 * p.i_noise, 0.01 * p.i_span, 1e-6});
    std::size_t rest = 0;
    while (rest < p.n && std::abs(p.i[rest]) <= thr) ++rest;
    if (rest == 0 || rest == p.n) return std::numeric_limits<double>::quiet_NaN();
    double v0 = 0.0;
    for (std::size_t k = 0; k < rest; ++k) v0 += p.v[k];
    v0 /= static_cast<double>(rest);
    double e = 0.0;
    for (std::size_t k = 1; k < p.n; ++k) e += p.i[k - 1] * (v0 - p.v[k - 1]) * p.dt[k];
    return e;
}

void prepare_window(const Series& s, const ThermalOptions& opt, WindowInput& w) {
    w.p = detail::prepare(s, 8, true);
    const detail::Prepared& p = w.p;
    ThermalData& d = w.d;
    d.p = &w.p;
    d.temp = s.t_cell_c.data();
    d.heat.assign(p.n, 0.0);
    switch (opt.heating) {
        case HeatingSource::fixed: {
            if (!(opt.heating_ohm > 0.0) || !std::isfinite(opt.heating_ohm))
                throw InputError("heating_ohm must be a positive resistance (got " + fmt_num(opt.heating_ohm) + ")");
            for (std::size_t k = 1; k < p.n; ++k) d.heat[k] = p.i[k - 1] * p.i[k - 1] * opt.heating_ohm;
            w.heat_ohm = {opt.heating_ohm, 0.0, true};
            w.source = "fixed";
            break;
        }
        case HeatingSource::circuit: {
            // The circuit's own heat per interval, R0·I² + Σ Vk²/Rk: the RC
            // branches warm up with their time constants and keep dissipating
            // after the current stops. I²·R_heat with the same total energy
            // puts that heat too early, and over a window not much longer
            // than τ the fit turns the timing error into a large, negative P_x.
            const std::size_t notes_before = w.notes.size();
            w.heat_ohm = heating_from_circuit(s, p, opt, w.notes, d.heat);
            w.source = "circuit";
            // A circuit that does not describe the window (a cell driven into
            // its empty knee: the fit puts ohms into a slow branch) can give a
            // heat a hundred times what the cell dissipates, and R_th then
            // collapses and P_x = c/R_th reads hundreds of watts. The heat is
            // bounded by I·(V_rest − V); over it the heat scale is unknown.
            const double bound = overpotential_bound_j(p);
            auto heat_j = [&] {
                double e = 0.0;
                for (std::size_t k = 1; k < p.n; ++k) e += d.heat[k] * p.dt[k];
                return e;
            };
            double e = heat_j();
            auto over_bound = [&] { return bound > 0.0 && e > kHeatBoundFactor * bound; };
            if (over_bound() && p.n > opt.search_every_sample_up_to) {
                // The circuit's start was searched on a reduced record, and
                // the polish stayed in another minimum than the search on
                // every sample finds (a shorted cell: tools/bench/
                // bench_thermal_search): searched again on every sample.
                w.notes.resize(notes_before);
                ThermalOptions every = opt;
                every.search_every_sample_up_to = p.n;
                w.heat_ohm = heating_from_circuit(s, p, every, w.notes, d.heat);
                e = heat_j();
                w.notes.push_back("heating_ohm: the circuit searched again on every sample (on the reduced record "
                                  "its heat was over the bound)");
            }
            if (over_bound()) {
                w.heat_unphysical = true;
                w.notes.push_back("heating_ohm: the circuit's heat over the window (" + fmt_num(e) +
                                  " J) exceeds what the cell can dissipate, I*(V_rest - V) (" + fmt_num(bound) +
                                  " J): the circuit does not describe this window");
            }
            break;
        }
        case HeatingSource::overpotential: {
            const double thr = std::max({5.0 * p.i_noise, 0.01 * p.i_span, 1e-6});
            std::size_t rest = 0;
            while (rest < p.n && std::abs(p.i[rest]) <= thr) ++rest;
            if (rest == 0)
                throw InputError("overpotential heating needs the window to start at rest (sample 0 carries " +
                                     fmt_num(p.i[0]) + " A)",
                                 "current", 0);
            double ocv = 0.0;
            for (std::size_t k = 0; k < rest; ++k) ocv += p.v[k];
            ocv /= static_cast<double>(rest);
            for (std::size_t k = 1; k < p.n; ++k) d.heat[k] = p.i[k - 1] * (ocv - p.v[k - 1]);
            w.heat_ohm = {effective_ohm(p, d.heat), 0.0, true};
            w.source = "overpotential";
            break;
        }
    }
    double qmax = 0.0;
    for (std::size_t k = 1; k < p.n; ++k) {
        w.energy += d.heat[k] * p.dt[k];
        qmax = std::max(qmax, d.heat[k]);
    }
    if (!(w.energy > 0.0))
        throw InputError("no heat in the window: the current is zero (or the heating is not positive); nothing to fit",
                         "current");
    for (std::size_t k = 1; k < p.n; ++k)
        if (d.heat[k] > 0.05 * qmax) w.last_heat = k;

    // A known reversible heat k·I, added to each interval's heat as known
    // (after the Joule heat's checks above: the bound, heating_ohm, the
    // window's energy and its last heat stay the electrical heat's).
    if (opt.entropic_v) {
        if (!std::isfinite(*opt.entropic_v)) throw InputError("entropic_v is not finite");
        if (opt.reversible_heat)
            throw InputError("entropic_v (a known reversible-heat coefficient) and reversible_heat (k fitted) exclude "
                             "each other");
        const double slope = opt.entropic_v_per_ah.value_or(0.0);
        if (!std::isfinite(slope)) throw InputError("entropic_v_per_ah is not finite");
        double q_ah = 0.0;  // charge drawn since the first sample
        for (std::size_t k = 1; k < p.n; ++k) {
            const double dq = p.ih[k - 1] * p.dt[k] / 3600.0;
            d.heat[k] += (*opt.entropic_v + slope * (q_ah + 0.5 * dq)) * p.ih[k - 1];
            q_ah += dq;
        }
        w.notes.push_back("heat: the reversible heat k*I with the given k = " + fmt_num(1e3 * *opt.entropic_v) +
                          " mV" + (slope != 0.0 ? " + " + fmt_num(1e3 * slope) + " mV/Ah of charge drawn" : "") +
                          " added to the electrical heat");
    } else if (opt.entropic_v_per_ah) {
        throw InputError("entropic_v_per_ah needs entropic_v (the coefficient at the window's start)");
    }

    if (opt.ambient_c) {
        if (!std::isfinite(*opt.ambient_c)) throw InputError("ambient temperature is not finite");
        d.amb.assign(p.n, *opt.ambient_c);
        w.amb_source = "fixed";
    } else if (!s.t_amb_c.empty()) {
        d.amb = s.t_amb_c;
        w.amb_source = "column";
    }
    for (double x : d.amb) w.amb_mean += x;
    if (!d.amb.empty()) w.amb_mean /= static_cast<double>(d.amb.size());
}

bool extended_model(const ThermalOptions& o) {
    return o.reversible_heat || o.sensor_offset_c.has_value() || o.offset_from_rest || o.ambient_drift;
}

// ---- extended model: dense variable projection over one shared log τ ------------------------

/// Columns of one window at one τ: [F_P, e, 1 − e, (F_I), (F_ramp)] and the
/// target T − o − F[T_amb], all per sample; F the unit-gain first-order lag
/// from zero of a quantity held over each interval.
struct ExtWindow {
    const detail::Prepared* p = nullptr;
    const double* temp = nullptr;
    const std::vector<double>* heat = nullptr;  // per interval (index 0 unused)
    const std::vector<double>* amb = nullptr;   // per sample, held
    double offset = 0.0;
    int m = 0;                     // local linear parameters: T0, c, (b), (d)
    std::vector<double> cols;      // n × (m + 2): F_P, local columns, target
};

struct ExtLayout {
    bool entropic = false, drift = false;
    int m() const { return 2 + (entropic ? 1 : 0) + (drift ? 1 : 0); }
};

/// Fills w.cols at time constant `tau`.
void ext_columns(ExtWindow& w, const ExtLayout& lay, double tau) {
    const detail::Prepared& p = *w.p;
    const int q = w.m + 2;
    w.cols.assign(p.n * static_cast<std::size_t>(q), 0.0);
    double fp = 0.0, fi = 0.0, fr = 0.0, fa = 0.0, h_prev = -1.0, a = 0.0;
    const double t0 = p.t[0];
    for (std::size_t s = 0; s < p.n; ++s) {
        if (s > 0) {
            const double h = p.dt[s];
            if (h != h_prev) {
                a = std::exp(-h / tau);
                h_prev = h;
            }
            const double b = 1.0 - a;
            fp = a * fp + b * (*w.heat)[s];
            fi = a * fi + b * p.ih[s - 1];
            fr = a * fr + b * (p.t[s - 1] - t0) * 1e-3;  // ramp in K per ks: columns of like size
            fa = a * fa + b * (*w.amb)[s - 1];
        }
        const double e = std::exp(-(p.t[s] - t0) / tau);
        double* z = &w.cols[s * static_cast<std::size_t>(q)];
        int c = 0;
        z[c++] = fp;
        z[c++] = e;
        z[c++] = 1.0 - e;
        if (lay.entropic) z[c++] = fi;
        if (lay.drift) z[c++] = fr;
        z[c] = w.temp[s] - w.offset - fa;
    }
}

/// Linear solve of all windows at one τ. x = [R_th, per window (T0, c, (b), (d))].
struct ExtSolve {
    Eigen::VectorXd x;
    double ss = kInf;
    bool ok = false;
};

ExtSolve ext_solve(std::vector<ExtWindow>& ws, const ExtLayout& lay, double tau) {
    const int m = lay.m();
    const int np = 1 + m * static_cast<int>(ws.size());
    Eigen::MatrixXd A = Eigen::MatrixXd::Zero(np, np);
    Eigen::VectorXd rhs = Eigen::VectorXd::Zero(np);
    for (std::size_t k = 0; k < ws.size(); ++k) {
        ExtWindow& w = ws[k];
        ext_columns(w, lay, tau);
        const int q = m + 2;
        Eigen::MatrixXd g = Eigen::MatrixXd::Zero(q, q);
        for (std::size_t s = 0; s < w.p->n; ++s) {
            const double* z = &w.cols[s * static_cast<std::size_t>(q)];
            for (int i = 0; i < q; ++i)
                for (int j = 0; j <= i; ++j) g(i, j) += z[i] * z[j];
        }
        const int off = 1 + m * static_cast<int>(k);
        A(0, 0) += g(0, 0);
        rhs(0) += g(q - 1, 0);
        for (int i = 0; i < m; ++i) {
            A(off + i, 0) = A(0, off + i) = g(1 + i, 0);
            rhs(off + i) = g(q - 1, 1 + i);
            for (int j = 0; j <= i; ++j) A(off + i, off + j) = A(off + j, off + i) = g(1 + i, 1 + j);
        }
    }
    ExtSolve r;
    Eigen::VectorXd dscale(np);
    for (int i = 0; i < np; ++i) dscale(i) = A(i, i) > 0.0 ? 1.0 / std::sqrt(A(i, i)) : 1.0;
    const Eigen::MatrixXd As = dscale.asDiagonal() * A * dscale.asDiagonal();
    Eigen::LDLT<Eigen::MatrixXd> ldlt(As);
    if (ldlt.info() != Eigen::Success) return r;
    const Eigen::VectorXd z = ldlt.solve(dscale.asDiagonal() * rhs);
    if (!z.allFinite()) return r;
    r.x = dscale.asDiagonal() * z;
    // Exact residual from the columns.
    double ss = 0.0;
    for (std::size_t k = 0; k < ws.size(); ++k) {
        const ExtWindow& w = ws[k];
        const int q = m + 2, off = 1 + m * static_cast<int>(k);
        for (std::size_t s = 0; s < w.p->n; ++s) {
            const double* zz = &w.cols[s * static_cast<std::size_t>(q)];
            double pred = r.x(0) * zz[0];
            for (int i = 0; i < m; ++i) pred += r.x(off + i) * zz[1 + i];
            const double e = zz[q - 1] - pred;
            ss += e * e;
        }
    }
    r.ss = ss;
    r.ok = std::isfinite(ss);
    return r;
}

/// Model prediction (temperature minus offset) of window w at τ with fixed x.
std::vector<double> ext_predict(ExtWindow& w, const ExtLayout& lay, double tau, const Eigen::VectorXd& x, int off) {
    ext_columns(w, lay, tau);
    const int m = lay.m(), q = m + 2;
    std::vector<double> out(w.p->n);
    for (std::size_t s = 0; s < w.p->n; ++s) {
        const double* z = &w.cols[s * static_cast<std::size_t>(q)];
        double pred = x(0) * z[0];
        for (int i = 0; i < m; ++i) pred += x(off + i) * z[1 + i];
        // target = T − o − F_amb, so the prediction of T − o is pred + F_amb = pred + (T − o − target)
        out[s] = pred + (w.temp[s] - w.offset - z[q - 1]);
    }
    return out;
}

/// Offset of the cell's sensor from the rest at the start of the window:
/// mean(T_cell − T_amb) over the leading rest, if it is long (≥ 60 samples
/// and ≥ 60 s) and the cell temperature is flat over it (the means of its
/// first and last thirds within 0.03 K). Else nullopt with the reason.
std::optional<double> offset_from_rest(const detail::Prepared& p, const double* temp, const std::vector<double>& amb,
                                       std::string& why) {
    const double thr = std::max({5.0 * p.i_noise, 0.01 * p.i_span, 1e-6});
    std::size_t rest = 0;
    while (rest < p.n && std::abs(p.i[rest]) <= thr) ++rest;
    if (rest < 60 || p.t[rest - 1] - p.t[0] < 60.0) {
        why = "the rest before the current is " + std::to_string(rest) + " samples (needs 60 and 60 s)";
        return std::nullopt;
    }
    const std::size_t third = rest / 3;
    double first = 0.0, last = 0.0, diff = 0.0;
    for (std::size_t k = 0; k < third; ++k) first += temp[k];
    for (std::size_t k = rest - third; k < rest; ++k) last += temp[k];
    first /= static_cast<double>(third);
    last /= static_cast<double>(third);
    if (std::abs(last - first) > 0.03) {
        why = "the cell temperature moves by " + fmt_num(last - first) + " K over the rest before the current (not at "
              "equilibrium)";
        return std::nullopt;
    }
    for (std::size_t k = 0; k < rest; ++k) diff += temp[k] - amb[k];
    return diff / static_cast<double>(rest);
}

ThermalJointFit fit_extended(const std::vector<const Series*>& series, const std::vector<WindowInput*>& in,
                             const ThermalOptions& opt) {
    (void)series;
    ExtLayout lay;
    lay.entropic = opt.reversible_heat;
    lay.drift = opt.ambient_drift;
    const int m = lay.m();
    const std::size_t nw = in.size();
    ThermalJointFit j;
    std::vector<ExtWindow> ws(nw);
    std::vector<std::string> offset_src(nw, "none");
    std::vector<std::optional<double>> offset(nw);
    double span_max = 0.0, dt_min = kInf;
    std::size_t n_total = 0;
    for (std::size_t k = 0; k < nw; ++k) {
        WindowInput& w = *in[k];
        if (w.d.amb.empty())
            throw InputError("the extended thermal model needs the ambient temperature (a column or ambient_c)");
        ExtWindow& e = ws[k];
        e.p = &w.p;
        e.temp = w.d.temp;
        e.heat = &w.d.heat;
        e.amb = &w.d.amb;
        e.m = m;
        if (opt.sensor_offset_c) {
            if (!std::isfinite(*opt.sensor_offset_c)) throw InputError("sensor_offset_c is not finite");
            offset[k] = *opt.sensor_offset_c;
            offset_src[k] = "given";
        } else if (opt.offset_from_rest) {
            std::string why;
            offset[k] = offset_from_rest(w.p, w.d.temp, w.d.amb, why);
            if (offset[k])
                offset_src[k] = "rest";
            else
                w.notes.push_back("sensor_offset_c: not estimated from the rest: " + why);
        }
        e.offset = offset[k].value_or(0.0);
        span_max = std::max(span_max, w.p.span);
        dt_min = std::min(dt_min, w.p.dt_med);
        n_total += w.p.n;
    }
    const int np = 1 + m * static_cast<int>(nw);
    if (static_cast<double>(n_total) < 2.0 * (np + 1))
        throw InputError("thermal fit: too few samples for the extended model");

    // τ: a geometric grid, then golden-section search around the best point.
    const double lo = std::log(std::max(2.0 * dt_min, span_max / 500.0)), hi = std::log(20.0 * span_max);
    constexpr int kGrid = 28;
    const double step = (hi - lo) / (kGrid - 1);
    int best = -1;
    double best_ss = kInf;
    std::vector<double> grid_ss(kGrid, kInf);
    for (int g = 0; g < kGrid; ++g) {
        const ExtSolve r = ext_solve(ws, lay, std::exp(lo + step * g));
        ++j.iterations;
        if (r.ok) grid_ss[static_cast<std::size_t>(g)] = r.ss;
        if (r.ok && r.ss < best_ss) {
            best_ss = r.ss;
            best = g;
        }
    }
    if (best < 0)
        throw InputError("thermal fit: the temperature record does not determine the model (singular at every time constant)");
    double a = lo + step * std::max(0, best - 1), b = lo + step * std::min(kGrid - 1, best + 1);
    const double gr = 0.5 * (std::sqrt(5.0) - 1.0);
    double x1 = b - gr * (b - a), x2 = a + gr * (b - a);
    auto f = [&](double th) {
        ++j.iterations;
        const ExtSolve r = ext_solve(ws, lay, std::exp(th));
        return r.ok ? r.ss : kInf;
    };
    double f1 = f(x1), f2 = f(x2);
    int it = 0;
    while (b - a > 1e-7 && it < std::max(20, opt.max_iterations)) {
        ++it;
        if (f1 < f2) {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - gr * (b - a);
            f1 = f(x1);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + gr * (b - a);
            f2 = f(x2);
        }
    }
    const double theta = 0.5 * (a + b);
    const double tau = std::exp(theta);
    const ExtSolve sol = ext_solve(ws, lay, tau);
    if (!sol.ok) throw InputError("thermal fit failed: the basis is singular at the optimum");
    j.converged = b - a <= 1e-7 && best > 0 && best < kGrid - 1;
    if (best == 0 || best == kGrid - 1)
        j.notes.push_back("tau_s: the best time constant is at the edge of the searched range");
    const Eigen::VectorXd& x = sol.x;

    // Full Jacobian: the linear columns and ∂(prediction)/∂log τ (central
    // difference with the linear parameters held), Gram assembled per window.
    const double hth = 1e-4;
    const int nf = np + 1;  // + log τ
    Eigen::MatrixXd jtj = Eigen::MatrixXd::Zero(nf, nf);
    std::vector<double> rmse(nw, 0.0);
    double lag1 = 0.0;
    for (std::size_t k = 0; k < nw; ++k) {
        ExtWindow& w = ws[k];
        const int off = 1 + m * static_cast<int>(k);
        const std::vector<double> up = ext_predict(w, lay, std::exp(theta + hth), x, off);
        const std::vector<double> dn = ext_predict(w, lay, std::exp(theta - hth), x, off);
        const std::vector<double> mid = ext_predict(w, lay, tau, x, off);  // leaves the columns at τ
        const int q = m + 2;
        std::vector<int> idx(static_cast<std::size_t>(m + 2));
        idx[0] = 0;
        for (int i = 0; i < m; ++i) idx[static_cast<std::size_t>(1 + i)] = off + i;
        idx[static_cast<std::size_t>(m + 1)] = np;
        double ssk = 0.0, e_prev = 0.0;
        for (std::size_t s = 0; s < w.p->n; ++s) {
            const double* z = &w.cols[s * static_cast<std::size_t>(q)];
            double row[8];
            for (int i = 0; i <= m; ++i) row[i] = z[i];
            row[m + 1] = (up[s] - dn[s]) / (2.0 * hth);
            for (int i = 0; i <= m + 1; ++i)
                for (int jj = 0; jj <= m + 1; ++jj)
                    jtj(idx[static_cast<std::size_t>(i)], idx[static_cast<std::size_t>(jj)]) += row[i] * row[jj];
            const double e = w.temp[s] - w.offset - mid[s];
            ssk += e * e;
            if (s > 0) lag1 += e * e_prev;
            e_prev = e;
        }
        rmse[k] = std::sqrt(ssk / static_cast<double>(w.p->n));
    }
    j.samples = n_total;
    j.rmse_k = std::sqrt(sol.ss / static_cast<double>(n_total));
    const double dof = static_cast<double>(n_total) - static_cast<double>(nf);
    // The residuals of a real record are far from white (the chamber's
    // control cycle, the sensor's own lag): the variance is inflated by
    // (1 + ρ)/(1 − ρ), ρ the lag-1 autocorrelation of the residuals (an AR(1)
    // effective sample size). Still a lower bound when the model misses a
    // slow effect: the spread between windows is the honest figure.
    const double rho = std::clamp(lag1 / sol.ss, 0.0, 0.999);
    const double inflate = std::min((1.0 + rho) / (1.0 - rho), static_cast<double>(n_total) / 10.0);
    if (inflate > 2.0)
        j.notes.push_back("intervals: residuals correlated (lag-1 " + fmt_num(rho) + "), variances inflated " +
                          fmt_num(inflate) + "x");
    const double s2 = sol.ss / dof * std::max(1.0, inflate), tq = detail::t975(dof);
    Eigen::VectorXd dsc(nf);
    for (int i = 0; i < nf; ++i) dsc(i) = jtj(i, i) > 0.0 ? 1.0 / std::sqrt(jtj(i, i)) : 1.0;
    Eigen::MatrixXd cov = Eigen::MatrixXd::Constant(nf, nf, kInf);
    {
        const Eigen::MatrixXd js = dsc.asDiagonal() * jtj * dsc.asDiagonal();
        Eigen::LDLT<Eigen::MatrixXd> ldlt(js);
        if (ldlt.info() == Eigen::Success) {
            const Eigen::MatrixXd inv = ldlt.solve(Eigen::MatrixXd::Identity(nf, nf));
            if (inv.allFinite() && inv.diagonal().minCoeff() > 0.0)
                cov = s2 * (dsc.asDiagonal() * inv * dsc.asDiagonal());
        }
    }
    auto var = [&](int i, int jj) { return cov(i, jj); };
    auto half = [&](double v) { return std::isfinite(v) ? tq * std::sqrt(std::max(0.0, v)) : kInf; };
    const int it_theta = np;
    const double r = x(0);
    // Relative uncertainty of the heating (95 %), worst window, in quadrature as in the plain fit.
    double rho_h = 0.0;
    for (const WindowInput* w : in)
        if (w->heat_ohm.value > 0.0) rho_h = std::max(rho_h, w->heat_ohm.ci95 / w->heat_ohm.value);

    j.r_th_k_per_w = {r, std::hypot(half(var(0, 0)), std::abs(r) * rho_h), true};
    j.tau_s = {tau, tau * half(var(it_theta, it_theta)), true};
    const double c = tau / r;
    const double rel_c2 = var(it_theta, it_theta) + var(0, 0) / (r * r) - 2.0 * var(it_theta, 0) / r;
    j.c_th_j_per_k = {c, std::hypot(std::abs(c) * half(rel_c2), std::abs(c) * rho_h), true};

    for (std::size_t k = 0; k < nw; ++k) {
        const int off = 1 + m * static_cast<int>(k);
        ThermalFit fit;
        fit.extended = true;
        fit.samples = in[k]->p.n;
        fit.iterations = j.iterations;
        fit.converged = j.converged;
        fit.rmse_k = rmse[k];
        fit.r_th_k_per_w = j.r_th_k_per_w;
        fit.tau_s = j.tau_s;
        fit.c_th_j_per_k = j.c_th_j_per_k;
        fit.t0_c = {x(off) + ws[k].offset, half(var(off, off)), true};
        const int ic = off + 1;
        const double cc = x(ic);
        fit.steady_offset_k = {cc + ws[k].offset, half(var(ic, ic)), true};
        // P_x = c/R (c here is R·P_x: the offset was taken off the target).
        const double px = cc / r;
        const double vpx = var(ic, ic) / (r * r) + cc * cc * var(0, 0) / (r * r * r * r) - 2.0 * cc * var(ic, 0) / (r * r * r);
        const double cpr = var(ic, 0) / r - cc * var(0, 0) / (r * r);
        fit.corr_p_extra_r_th = (vpx > 0.0 && var(0, 0) > 0.0) ? cpr / std::sqrt(vpx * var(0, 0))
                                                                : std::numeric_limits<double>::quiet_NaN();
        fit.offset_source = offset_src[k];
        if (offset[k]) {
            fit.sensor_offset_c = {*offset[k], 0.0, true};
            fit.p_extra_w = {px, std::hypot(half(vpx), std::abs(px) * rho_h), true};
            fit.p_extra_identifiable = true;
        } else {
            const double nan = std::numeric_limits<double>::quiet_NaN();
            fit.sensor_offset_c = {nan, nan, false};
            fit.p_extra_w = {nan, nan, false};
            fit.p_extra_identifiable = false;
            fit.notes.push_back("p_extra_w: not identifiable: in one window a constant P_x and the offset between the "
                                "cell and the ambient sensor have the same shape; steady_offset_k = offset + R_th*P_x = " +
                                fmt_num(fit.steady_offset_k.value) + " K (give sensor_offset_c)");
        }
        int next = off + 2;
        const double nan = std::numeric_limits<double>::quiet_NaN();
        if (lay.entropic) {
            const int ib = next++;
            const double bb = x(ib), kk = bb / r;
            const double vk = var(ib, ib) / (r * r) + bb * bb * var(0, 0) / (r * r * r * r) - 2.0 * bb * var(ib, 0) / (r * r * r);
            fit.entropic_v = {kk, half(vk), true};
            const double ckr = var(ib, 0) / r - bb * var(0, 0) / (r * r);
            fit.corr_entropic_r_th = (vk > 0.0 && var(0, 0) > 0.0) ? ckr / std::sqrt(vk * var(0, 0)) : nan;
        } else {
            fit.entropic_v = {nan, nan, false};
            fit.corr_entropic_r_th = nan;
        }
        if (lay.drift) {
            const int id = next++;
            fit.ambient_drift_k_per_s = {x(id) * 1e-3, half(var(id, id)) * 1e-3, true};
        } else {
            fit.ambient_drift_k_per_s = {nan, nan, false};
        }
        j.windows.push_back(std::move(fit));
    }
    return j;
}

/// A window whose heat is not known (WindowInput::heat_unphysical): the
/// fit failed — R_th, C_th and P_x missing, τ (the shape) kept.
void fail_on_unknown_heat(const WindowInput& w, ThermalFit& fit) {
    if (!w.heat_unphysical) return;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    fit.heat_determined = false;
    fit.converged = false;
    fit.r_th_k_per_w = fit.c_th_j_per_k = fit.p_extra_w = {nan, kInf, false};
    fit.entropic_v = {nan, kInf, false};
    fit.heating_ohm.identifiable = false;
    fit.p_extra_identifiable = false;
    fit.corr_p_extra_r_th = fit.corr_entropic_r_th = nan;
    fit.notes.push_back("thermal fit failed: the heat of the window is not known (heating_ohm above), so R_th, C_th "
                        "and P_x are not determined; tau_s is the shape's");
}

/// Identifiability flags shared by the plain and the extended single-window fit.
void flag_identifiability(const WindowInput& w, ThermalFit& fit) {
    const detail::Prepared& p = w.p;
    const double cooling_s = p.t[p.n - 1] - p.t[w.last_heat];
    fit.heating_only = cooling_s < std::max(0.05 * p.span, 10.0 * p.dt_med);
    if (fit.heating_only && p.span < 3.0 * fit.tau_s.value) {
        fit.c_th_j_per_k.identifiable = fit.r_th_k_per_w.identifiable = fit.tau_s.identifiable = false;
        fit.p_extra_w.identifiable = false;
        fit.notes.push_back("c_th_j_per_k, r_th_k_per_w: heating only (no cooling after the heat, window " +
                            fmt_num(p.span) + " s < 3 tau): C_th and R_th are not separable");
    }
    if (fit.r_th_k_per_w.value <= 0.0) {
        fit.r_th_k_per_w.identifiable = fit.c_th_j_per_k.identifiable = false;
        fit.notes.push_back("r_th_k_per_w: non-physical (" + fmt_num(fit.r_th_k_per_w.value) + " K/W)");
    }
    auto wide = [&](Estimate& e, const std::string& name, double scale) {
        if (!(e.ci95 <= 0.5 * scale)) {
            if (e.identifiable)
                fit.notes.push_back(name + ": 95 % interval ±" + fmt_num(e.ci95) + " is wider than half of " +
                                    fmt_num(scale));
            e.identifiable = false;
        }
    };
    wide(fit.c_th_j_per_k, "c_th_j_per_k", std::abs(fit.c_th_j_per_k.value));
    wide(fit.r_th_k_per_w, "r_th_k_per_w", std::abs(fit.r_th_k_per_w.value));
    wide(fit.tau_s, "tau_s", fit.tau_s.value);
    // P_x against the larger of the heat and itself: a short's watts are
    // determined to a relative precision, a healthy cell's ~0 to the heat's.
    if (fit.p_extra_w.identifiable)
        wide(fit.p_extra_w, "p_extra_w", std::max(fit.mean_heat_w, std::abs(fit.p_extra_w.value)));
    wide(fit.heating_ohm, "heating_ohm", fit.heating_ohm.value);
}

/// Where k came from: given (entropic_v, recorded as the input it is, also
/// when the fit failed), fitted (reversible_heat) or none.
void report_entropic(const ThermalOptions& opt, ThermalFit& fit) {
    if (opt.entropic_v) {
        fit.entropic_v = {*opt.entropic_v, 0.0, true};
        fit.entropic_source = "given";
        fit.entropic_v_per_ah = opt.entropic_v_per_ah.value_or(0.0);
        fit.corr_entropic_r_th = std::numeric_limits<double>::quiet_NaN();
    } else {
        fit.entropic_source = opt.reversible_heat ? "fitted" : "none";
    }
}

}  // namespace

ThermalFit fit_thermal(const Series& s, const ThermalOptions& opt) {
    const detail::FlushDenormals ftz;
    WindowInput w;
    prepare_window(s, opt, w);
    const detail::Prepared& p = w.p;
    ThermalData& d = w.d;

    ThermalFit fit;
    if (extended_model(opt)) {
        ThermalJointFit j = fit_extended({&s}, {&w}, opt);
        fit = std::move(j.windows.front());
        fit.iterations = j.iterations;
        fit.converged = j.converged;
        fit.notes.insert(fit.notes.begin(), j.notes.begin(), j.notes.end());
    } else {
        fit = d.amb.empty() ? solve<false>(p, d, opt, w.heat_ohm) : solve<true>(p, d, opt, w.heat_ohm);
        fit.p_extra_identifiable = false;
        const double nan = std::numeric_limits<double>::quiet_NaN();
        fit.entropic_v = fit.steady_offset_k = fit.sensor_offset_c = fit.ambient_drift_k_per_s = {nan, nan, false};
        fit.corr_entropic_r_th = nan;
        if (!d.amb.empty())
            fit.notes.push_back(
                "p_extra_w: assumes no offset between the cell and the ambient sensor; a sensor offset o adds o/R_th "
                "(set sensor_offset_c or offset_from_rest to separate them)");
    }
    fit.heating_ohm = w.heat_ohm;
    fit.heating_source = w.source;
    if (d.amb.empty()) {
        fit.ambient_source = "fitted";
    } else {
        fit.ambient_c = {w.amb_mean, 0.0, true};
        fit.ambient_source = w.amb_source;
    }
    fit.mean_heat_w = w.energy / p.span;
    fit.notes.insert(fit.notes.begin(), w.notes.begin(), w.notes.end());
    flag_identifiability(w, fit);
    fail_on_unknown_heat(w, fit);
    report_entropic(opt, fit);
    return fit;
}

ThermalJointFit fit_thermal_joint(const std::vector<Series>& windows, const ThermalOptions& opt) {
    if (windows.empty()) throw InputError("joint thermal fit: no windows");
    const detail::FlushDenormals ftz;
    std::vector<std::unique_ptr<WindowInput>> ws;
    std::vector<WindowInput*> in;
    std::vector<const Series*> ser;
    for (std::size_t k = 0; k < windows.size(); ++k) {
        ws.push_back(std::make_unique<WindowInput>());
        try {
            prepare_window(windows[k], opt, *ws.back());
        } catch (const InputError& e) {
            throw InputError("window " + std::to_string(k) + ": " + e.what(), e.column(), e.sample());
        }
        in.push_back(ws.back().get());
        ser.push_back(&windows[k]);
    }
    ThermalJointFit j = fit_extended(ser, in, opt);
    for (std::size_t k = 0; k < in.size(); ++k) {
        ThermalFit& f = j.windows[k];
        const WindowInput& w = *in[k];
        f.heating_ohm = w.heat_ohm;
        f.heating_source = w.source;
        f.ambient_c = {w.amb_mean, 0.0, true};
        f.ambient_source = w.amb_source;
        f.mean_heat_w = w.energy / w.p.span;
        f.notes.insert(f.notes.begin(), w.notes.begin(), w.notes.end());
        flag_identifiability(w, f);
        fail_on_unknown_heat(w, f);
        report_entropic(opt, f);
        if (w.heat_unphysical) j.converged = false;
    }
    return j;
}

std::vector<double> thermal_temperature(const std::vector<double>& t_s, const std::vector<double>& heat_w,
                                        const std::vector<double>& ambient_c, double c_th_j_per_k,
                                        double r_th_k_per_w, double p_extra_w, double t0_c) {
    const std::size_t n = t_s.size();
    std::vector<double> temp(n);
    const double tau = r_th_k_per_w * c_th_j_per_k;
    double x = t0_c;
    for (std::size_t s = 0; s < n; ++s) {
        if (s > 0) {
            const double a = std::exp(-(t_s[s] - t_s[s - 1]) / tau);
            const double q = s < heat_w.size() ? heat_w[s] : 0.0;
            const double amb = s - 1 < ambient_c.size() ? ambient_c[s - 1] : (ambient_c.empty() ? 0.0 : ambient_c.back());
            x = a * x + (1.0 - a) * (amb + r_th_k_per_w * (q + p_extra_w));
        }
        temp[s] = x;
    }
    return temp;
}

}  // namespace eol::models
