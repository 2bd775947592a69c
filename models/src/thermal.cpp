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
};

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

    void operator()(const SmallVec& theta, SmallMat& m) const {
        const detail::Prepared& p = *d.p;
        const double inv_tau = std::exp(-theta(0));
        double e = 1.0, fp = 0.0, dfp = 0.0, fa = 0.0, dfa = 0.0;
        double a = 0.0, b = 0.0, g = 0.0, h_prev = -1.0;
        Acc acc;
        for (std::size_t s = 0; s < p.n; ++s) {
            if (s > 0) {
                const double h = p.dt[s];
                if (h != h_prev) {
                    const double em1 = std::expm1(-h * inv_tau);
                    a = 1.0 + em1;
                    b = -em1;
                    g = a * h * inv_tau;
                    h_prev = h;
                }
                const double q = d.heat[s];
                dfp = a * dfp + g * (fp - q);
                fp = a * fp + b * q;
                if (AMB) {
                    const double ta = d.amb[s - 1];
                    dfa = a * dfa + g * (fa - ta);
                    fa = a * fa + b * ta;
                }
                e *= a;
            }
            const double de = e * (p.t[s] - p.t[0]) * inv_tau;
            double* z = acc.slot();
            z[0] = e;
            z[1] = fp;
            z[2] = 1.0 - e;
            z[3] = de;
            z[4] = dfp;
            z[5] = -de;
            if (AMB) z[6] = dfa;
            z[Q - 1] = d.temp[s] - fa;
            acc.commit();
        }
        acc.flush();
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
                              std::vector<std::string>& notes) {
    EcmOptions eo;
    eo.rc_pairs = opt.heating_rc_pairs;
    EcmFit ecm;
    try {
        ecm = fit_ecm(s, eo);
    } catch (const InputError& e) {
        throw InputError(std::string("heating from the circuit fit: ") + e.what(), e.column(), e.sample());
    }
    const EcmParams prm = ecm.params();
    Estimate h{circuit_heating_ohm(s, p, prm), 0.0, true};
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

    // Start: best of a geometric grid of τ from a few samples to 20 windows.
    const double tau_lo = std::max(2.0 * p.dt_med, p.span / 500.0), tau_hi = 20.0 * p.span;
    constexpr int kGrid = 16;
    SmallMat m;
    SmallVec theta(1), best_theta(1);
    double best = kInf;
    for (int j = 0; j < kGrid; ++j) {
        theta(0) = std::log(tau_lo) + std::log(tau_hi / tau_lo) * j / (kGrid - 1);
        pass(theta, m);
        const detail::Eval ev = detail::evaluate(lay, m);
        if (ev.ok && ev.ss < best) {
            best = ev.ss;
            best_theta = theta;
        }
    }
    if (!std::isfinite(best))
        throw InputError("thermal fit: the temperature record does not determine the model (singular at every time constant)");

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
    const detail::SearchResult res = detail::search(lay, pass, best_theta, lim);
    const detail::Eval& ev = res.eval;
    if (!ev.ok) throw InputError("thermal fit failed: the basis is singular at the optimum");

    ThermalFit fit;
    fit.samples = p.n;
    fit.iterations = res.iterations;
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
            heat_ohm = heating_from_circuit(s, p, opt, notes);
            for (std::size_t k = 1; k < p.n; ++k) d.heat[k] = p.i[k - 1] * p.i[k - 1] * heat_ohm.value;
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
