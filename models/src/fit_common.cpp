#include "fit_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

namespace eol::models::detail {
namespace {

/// Median of f(k) for k in [1, n), from at most ~1024 evenly strided k.
template <class F>
double strided_median(std::size_t n, F f) {
    if (n < 2) return 0.0;
    const std::size_t stride = std::max<std::size_t>(1, (n - 1) / 1024);
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
    double ref = 0.0;  // the current run's interval
    for (std::size_t k = 1; k < n; ++k) {
        const double h = t[k] - t[k - 1];
        // A branch, not a select: within a run the prediction holds and no
        // iteration waits on the previous one.
        if (__builtin_expect(std::abs(h - ref) > 1e-9 * ref, 0)) ref = h;
        dt[k] = ref;
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
    // Simple loops the compiler vectorises; the summaries keep 4 partial
    // accumulators so that no loop waits on its previous iteration.
    bool ok = true;
    for (std::size_t k = 0; k < n; ++k) ok &= std::isfinite(p.t[k]) & std::isfinite(p.i[k]) & std::isfinite(p.v[k]);
    for (std::size_t k = 1; k < n; ++k) ok &= p.t[k] > p.t[k - 1];
    if (need_cell_temp)
        for (double x : s.t_cell_c) ok &= std::isfinite(x);
    for (double x : s.t_amb_c) ok &= std::isfinite(x);
    if (!ok) s.validate(min_samples, need_cell_temp);  // throws with the sample at fault
    p.dt = snap_intervals(p.t, n);
    double sum[4] = {0, 0, 0, 0}, lo[4], hi[4];
    for (int j = 0; j < 4; ++j) lo[j] = hi[j] = p.i[0];
    std::size_t k = 0;
    for (; k + 4 <= n; k += 4)
        for (std::size_t j = 0; j < 4; ++j) {
            sum[j] += p.v[k + j];
            lo[j] = std::min(lo[j], p.i[k + j]);
            hi[j] = std::max(hi[j], p.i[k + j]);
        }
    for (; k < n; ++k) {
        sum[0] += p.v[k];
        lo[0] = std::min(lo[0], p.i[k]);
        hi[0] = std::max(hi[0], p.i[k]);
    }
    p.v_ref = (sum[0] + sum[1] + sum[2] + sum[3]) / static_cast<double>(n);
    p.i_span = std::max(std::max(hi[0], hi[1]), std::max(hi[2], hi[3])) -
               std::min(std::min(lo[0], lo[1]), std::min(lo[2], lo[3]));
    p.i_max_abs = std::max(std::abs(std::max(std::max(hi[0], hi[1]), std::max(hi[2], hi[3]))),
                           std::abs(std::min(std::min(lo[0], lo[1]), std::min(lo[2], lo[3]))));
    p.dt_med = strided_median(n, [&](std::size_t j) { return p.dt[j]; });
    p.i_noise = strided_median(n, [&](std::size_t j) { return std::abs(p.i[j] - p.i[j - 1]); }) /
                0.954;  // median |ΔI| of white noise is 0.954 σ
    p.span = p.t[n - 1] - p.t[0];
    return p;
}

void require_current_change(const Prepared& p) {
    const bool exact = p.i_span <= 1e-9 * std::max(1.0, p.i_max_abs);
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
