#include "fit_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

namespace eol::models::detail {
namespace {

/// Median of f(k) for k in [1, n), from at most ~4096 evenly strided k.
template <class F>
double strided_median(std::size_t n, F f) {
    if (n < 2) return 0.0;
    const std::size_t stride = std::max<std::size_t>(1, (n - 1) / 4096);
    std::vector<double> v;
    v.reserve((n - 1) / stride + 1);
    for (std::size_t k = 1; k < n; k += stride) v.push_back(f(k));
    auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    return *mid;
}

}  // namespace

std::vector<double> snap_intervals(const double* t, std::size_t n) {
    std::vector<double> dt(n, 0.0);
    for (std::size_t k = 1; k < n; ++k) {
        double h = t[k] - t[k - 1];
        if (k > 1 && std::abs(h - dt[k - 1]) <= 1e-9 * dt[k - 1]) h = dt[k - 1];
        dt[k] = h;
    }
    return dt;
}

Prepared prepare(const Series& s, std::size_t min_samples, bool need_cell_temp) {
    const std::size_t n = s.size();
    // One fused pass checks and summarises; on any fault Series::validate
    // runs and throws its precise message.
    const bool sizes_ok = n >= std::max<std::size_t>(min_samples, 2) && s.i_a.size() == n && s.v_v.size() == n &&
                          (!need_cell_temp || s.t_cell_c.size() == n) && (s.t_amb_c.empty() || s.t_amb_c.size() == n);
    if (!sizes_ok) s.validate(std::max<std::size_t>(min_samples, 2), need_cell_temp);
    Prepared p;
    p.n = n;
    p.t = s.t_s.data();
    p.i = s.i_a.data();
    p.v = s.v_v.data();
    p.ih = p.i;
    p.dt.assign(n, 0.0);
    bool ok = std::isfinite(p.t[0]) && std::isfinite(p.i[0]) && std::isfinite(p.v[0]);
    double sum = p.v[0], lo = p.i[0], hi = p.i[0];
    for (std::size_t k = 1; k < n; ++k) {
        const double t = p.t[k], i = p.i[k], v = p.v[k];
        ok = ok && std::isfinite(t) && std::isfinite(i) && std::isfinite(v) && t > p.t[k - 1];
        double h = t - p.t[k - 1];
        if (std::abs(h - p.dt[k - 1]) <= 1e-9 * p.dt[k - 1]) h = p.dt[k - 1];  // see snap_intervals
        p.dt[k] = h;
        sum += v;
        lo = std::min(lo, i);
        hi = std::max(hi, i);
    }
    if (need_cell_temp)
        for (double x : s.t_cell_c) ok = ok && std::isfinite(x);
    for (double x : s.t_amb_c) ok = ok && std::isfinite(x);
    if (!ok) s.validate(min_samples, need_cell_temp);  // throws with the sample at fault
    p.dt_med = strided_median(n, [&](std::size_t k) { return p.dt[k]; });
    p.i_noise = strided_median(n, [&](std::size_t k) { return std::abs(p.i[k] - p.i[k - 1]); }) /
                0.954;  // median |ΔI| of white noise is 0.954 σ
    p.span = p.t[n - 1] - p.t[0];
    p.v_ref = sum / static_cast<double>(n);
    p.i_span = hi - lo;
    return p;
}

void require_current_change(const Prepared& p) {
    double imax = 0.0;
    for (std::size_t k = 0; k < p.n; ++k) imax = std::max(imax, std::abs(p.i[k]));
    const bool exact = p.i_span <= 1e-9 * std::max(1.0, imax);
    const bool in_noise = p.i_span <= 10.0 * p.i_noise && p.i_span <= 0.05;
    if (exact || in_noise) {
        char buf[160];
        std::snprintf(buf, sizeof buf,
                      "current is constant (it spans %.3g A over %zu samples, noise %.3g A): "
                      "nothing to fit, the window needs a current step",
                      p.i_span, p.n, p.i_noise);
        throw InputError(buf, "current");
    }
}

std::vector<Row> select_rows(const Prepared& p) {
    std::vector<Row> rows;
    if (p.n <= 3000) {
        rows.reserve(p.n);
        for (std::size_t k = 0; k < p.n; ++k) rows.push_back({k, 1.0});
        return rows;
    }
    const double thr = std::max(5.0 * p.i_noise, 0.01 * p.i_span);
    std::size_t since = 0, stride = 1, countdown = 0;
    for (std::size_t k = 0; k < p.n; ++k) {
        if (k > 0 && std::abs(p.i[k] - p.i[k - 1]) > thr) since = 0, stride = 1, countdown = 0;
        if (stride * 16 <= since) stride *= 2;  // ~8 rows per octave after 16 dense rows
        if (countdown == 0) {
            rows.push_back({k, std::sqrt(static_cast<double>(stride))});
            countdown = stride;
        }
        --countdown;
        ++since;
    }
    return rows;
}

void compress(const Prepared& full, const std::vector<Row>& rows, Compressed& c) {
    const std::size_t m = rows.size();
    c.t.resize(m);
    c.i.resize(m);
    c.v.resize(m);
    c.ih.assign(m, 0.0);
    c.rows.resize(m);
    for (std::size_t j = 0; j < m; ++j) {
        const std::size_t k = rows[j].index;
        c.t[j] = full.t[k];
        c.i[j] = full.i[k];
        c.v[j] = full.v[k];
        c.rows[j] = {j, rows[j].sqrt_weight};
        if (j + 1 < m) {
            double q = 0.0, span = 0.0;
            for (std::size_t n = k + 1; n <= rows[j + 1].index; ++n) {
                q += full.ih[n - 1] * full.dt[n];
                span += full.dt[n];
            }
            c.ih[j] = q / span;
        }
    }
    Prepared& p = c.p;
    p = Prepared{};
    p.n = m;
    p.t = c.t.data();
    p.i = c.i.data();
    p.v = c.v.data();
    p.ih = c.ih.data();
    p.dt = snap_intervals(p.t, m);
    p.v_ref = full.v_ref;
    p.dt_med = full.dt_med;
    p.span = full.span;
    p.i_span = full.i_span;
    p.i_noise = full.i_noise;
}

}  // namespace eol::models::detail
