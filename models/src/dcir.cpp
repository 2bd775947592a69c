#include "eol/models/dcir.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "fit_common.hpp"

namespace eol::models {
namespace {

std::string num(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", x);
    return buf;
}

/// Linear interpolation of column y at time t (t inside the record).
double interp(const detail::Prepared& p, const double* y, double t) {
    const double* first = p.t;
    const double* last = p.t + p.n;
    const auto hi = static_cast<std::size_t>(std::lower_bound(first, last, t) - first);
    if (hi == 0) return y[0];
    if (hi >= p.n) return y[p.n - 1];
    const double w = (t - p.t[hi - 1]) / (p.t[hi] - p.t[hi - 1]);
    return y[hi - 1] + w * (y[hi] - y[hi - 1]);
}

/// Index of the largest |ΔI| (optionally only steps up from a positive level).
std::size_t largest_step(const detail::Prepared& p, bool up_from_discharge) {
    std::size_t best = 0;
    double best_d = 0.0;
    const double floor = std::max(5.0 * p.i_noise, 0.01 * p.i_span);
    for (std::size_t k = 1; k < p.n; ++k) {
        const double d = p.i[k] - p.i[k - 1];
        if (up_from_discharge && !(d > 0.0 && p.i[k - 1] > floor)) continue;
        if (std::abs(d) > best_d) {
            best_d = std::abs(d);
            best = k;
        }
    }
    return best;
}

/// Throws unless the current holds its level from sample k up to time t_end.
void check_level_holds(const detail::Prepared& p, std::size_t k, double step, double t_end, double after) {
    for (std::size_t j = k; j < p.n && p.t[j] <= t_end; ++j)
        if (std::abs(p.i[j] - p.i[k]) > 0.5 * std::abs(step))
            throw InputError("the current changes again at " + num(p.t[j]) + " s, before " + num(after) +
                                 " s after the step at " + num(p.t[k]) + " s",
                             "current", j);
}

}  // namespace

DcirResult dcir_at(const Series& s, const std::vector<double>& after_s) {
    const detail::Prepared p = detail::prepare(s, 3, false);
    detail::require_current_change(p);
    const std::size_t k = largest_step(p, false);
    DcirResult r;
    r.step_index = k;
    r.step_time_s = p.t[k];
    const double i0 = p.i[k - 1], v0 = p.v[k - 1], step = p.i[k] - i0;
    const double interval = p.t[k] - p.t[k - 1];
    for (double after : after_s) {
        if (!(after >= 0.0) || !std::isfinite(after))
            throw InputError("time after the step must be ≥ 0 (got " + num(after) + " s)");
        const double t = p.t[k] + after;
        if (t > p.t[p.n - 1])
            throw InputError("the record ends " + num(p.t[p.n - 1] - p.t[k]) + " s after the step at " + num(p.t[k]) +
                             " s, before " + num(after) + " s");
        if (after > 0.0 && after < interval)
            throw InputError("cannot resolve " + num(after) + " s after the step: the sampling interval at the step is " +
                             num(interval) + " s");
        check_level_holds(p, k, step, t, after);
        DcirPoint pt;
        pt.after_s = after;
        pt.v_before_v = v0;
        pt.i_before_a = i0;
        pt.v_after_v = interp(p, p.v, t);
        pt.i_after_a = interp(p, p.i, t);
        pt.r_ohm = (v0 - pt.v_after_v) / (pt.i_after_a - i0);
        r.points.push_back(pt);
    }
    return r;
}

Iec61960Result dcir_iec61960(const Series& s, double second_s) {
    const detail::Prepared p = detail::prepare(s, 3, false);
    detail::require_current_change(p);
    const std::size_t k = largest_step(p, true);
    if (k == 0)
        throw InputError("IEC 61960: no step up from a discharge level (need 0.2 C, then 1 C)", "current");
    const double step = p.i[k] - p.i[k - 1];
    // The low level: back from k−1 while the current stays within a tenth of the step.
    std::size_t a = k - 1;
    while (a > 0 && std::abs(p.i[a - 1] - p.i[k - 1]) < 0.1 * step) --a;
    double i1 = 0.0;
    for (std::size_t j = a; j < k; ++j) i1 += p.i[j];
    i1 /= static_cast<double>(k - a);
    const double t2 = p.t[k] + second_s;
    if (t2 > p.t[p.n - 1])
        throw InputError("IEC 61960: the record ends before " + num(second_s) + " s into the high level");
    if (second_s < p.t[k] - p.t[k - 1])
        throw InputError("IEC 61960: cannot resolve " + num(second_s) + " s: the sampling interval at the step is " +
                         num(p.t[k] - p.t[k - 1]) + " s");
    check_level_holds(p, k, step, t2, second_s);
    double i2 = 0.0;
    std::size_t n2 = 0;
    for (std::size_t j = k; j < p.n && p.t[j] <= t2; ++j, ++n2) i2 += p.i[j];
    i2 /= static_cast<double>(n2);
    Iec61960Result r;
    r.u1_v = p.v[k - 1];
    r.i1_a = i1;
    r.u2_v = interp(p, p.v, t2);
    r.i2_a = i2;
    r.step_time_s = p.t[k];
    r.r_ohm = (r.u1_v - r.u2_v) / (r.i2_a - r.i1_a);
    return r;
}

}  // namespace eol::models
