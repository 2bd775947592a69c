#include "eol/models/thermal.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "fit_common.hpp"
#include "varpro.hpp"

namespace eol::models {
namespace {

using detail::Layout;
using detail::SmallMat;
using detail::SmallVec;

constexpr double kInf = std::numeric_limits<double>::infinity();

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
    const std::vector<detail::Row> rows = detail::select_rows(p);
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
    } else {
        fit.p_extra_w = {0.0, kInf, false};
        fit.ambient_c = {c2, tq * std::sqrt(std::max(0.0, var(2, 2))), true};
        fit.notes.push_back("p_extra_w: no ambient temperature given; the fitted ambient (" + fmt_num(c2) +
                            " C) includes R_th·P_x");
    }
    return fit;
}

}  // namespace

ThermalFit fit_thermal(const Series& s, const ThermalOptions& opt) {
    const detail::Prepared p = detail::prepare(s, 8, true);
    const detail::FlushDenormals ftz;
    ThermalData d;
    d.p = &p;
    d.temp = s.t_cell_c.data();
    d.heat.assign(p.n, 0.0);
    std::vector<std::string> notes;

    Estimate heat_ohm;
    std::string source;
    switch (opt.heating) {
        case HeatingSource::fixed: {
            if (!(opt.heating_ohm > 0.0) || !std::isfinite(opt.heating_ohm))
                throw InputError("heating_ohm must be a positive resistance (got " + fmt_num(opt.heating_ohm) + ")");
            for (std::size_t k = 1; k < p.n; ++k) d.heat[k] = p.i[k - 1] * p.i[k - 1] * opt.heating_ohm;
            heat_ohm = {opt.heating_ohm, 0.0, true};
            source = "fixed";
            break;
        }
        case HeatingSource::circuit: {
            // The circuit's own heat per interval, R0·I² + Σ Vk²/Rk: the RC
            // branches warm up with their time constants and keep dissipating
            // after the current stops. I²·R_heat with the same total energy
            // puts that heat too early, and over a window not much longer
            // than τ the fit turns the timing error into a large, negative P_x.
            heat_ohm = heating_from_circuit(s, p, opt, notes, d.heat);
            source = "circuit";
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
            heat_ohm = {effective_ohm(p, d.heat), 0.0, true};
            source = "overpotential";
            break;
        }
    }
    double energy = 0.0, qmax = 0.0;
    std::size_t last_heat = 0;
    for (std::size_t k = 1; k < p.n; ++k) {
        energy += d.heat[k] * p.dt[k];
        qmax = std::max(qmax, d.heat[k]);
    }
    if (!(energy > 0.0))
        throw InputError("no heat in the window: the current is zero (or the heating is not positive); nothing to fit",
                         "current");
    for (std::size_t k = 1; k < p.n; ++k)
        if (d.heat[k] > 0.05 * qmax) last_heat = k;

    std::string amb_source;
    double amb_mean = 0.0;
    if (opt.ambient_c) {
        if (!std::isfinite(*opt.ambient_c)) throw InputError("ambient temperature is not finite");
        d.amb.assign(p.n, *opt.ambient_c);
        amb_source = "fixed";
    } else if (!s.t_amb_c.empty()) {
        d.amb = s.t_amb_c;
        amb_source = "column";
    }
    for (double x : d.amb) amb_mean += x;
    if (!d.amb.empty()) amb_mean /= static_cast<double>(d.amb.size());

    ThermalFit fit = d.amb.empty() ? solve<false>(p, d, opt, heat_ohm) : solve<true>(p, d, opt, heat_ohm);
    fit.heating_ohm = heat_ohm;
    fit.heating_source = source;
    if (d.amb.empty()) {
        fit.ambient_source = "fitted";
    } else {
        fit.ambient_c = {amb_mean, 0.0, true};
        fit.ambient_source = amb_source;
    }
    fit.mean_heat_w = energy / p.span;
    fit.notes.insert(fit.notes.begin(), notes.begin(), notes.end());

    // Identifiability.
    const double cooling_s = p.t[p.n - 1] - p.t[last_heat];
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
    if (fit.p_extra_w.identifiable) wide(fit.p_extra_w, "p_extra_w", fit.mean_heat_w);
    wide(fit.heating_ohm, "heating_ohm", fit.heating_ohm.value);
    return fit;
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
