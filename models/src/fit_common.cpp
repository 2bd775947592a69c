#include "fit_common.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
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

/// One look at t, I, V: any non-finite value or non-increasing time, and the
/// sums and extremes prepare() needs. Four partial accumulators per sum.
struct Scan {
    bool bad = false;
    double sum_v = 0.0, sum_v2 = 0.0, sum_i = 0.0, sum_i2 = 0.0, sum_iv = 0.0, lo = 0.0, hi = 0.0;
};

EOL_ALWAYS_INLINE void scan_body(const double* t, const double* i, const double* v, std::size_t n, Scan& sc) {
    constexpr std::uint64_t kExp = 0x7ff0000000000000ull;  // non-finite: all exponent bits set
    auto nonfinite = [](double x) {
        return static_cast<std::uint64_t>((std::bit_cast<std::uint64_t>(x) & kExp) == kExp);
    };
    std::uint64_t bad = nonfinite(t[0]) | nonfinite(i[0]) | nonfinite(v[0]);
    for (std::size_t k = 1; k < n; ++k)
        bad |= nonfinite(t[k]) | nonfinite(i[k]) | nonfinite(v[k]) | static_cast<std::uint64_t>(!(t[k] > t[k - 1]));
    // The sums in explicit 4-lane vectors (GCC vector extension; AVX2 in the
    // AVX2 build), lane j summing the samples k ≡ j (mod 4).
    typedef double v4d __attribute__((vector_size(32)));
    v4d s1 = {0, 0, 0, 0}, s2 = s1, si = s1, si2 = s1, siv = s1;
    v4d lo = {i[0], i[0], i[0], i[0]}, hi = lo;
    std::size_t k = 0;
    for (; k + 4 <= n; k += 4) {
        v4d vv, ii;
        __builtin_memcpy(&vv, v + k, sizeof vv);
        __builtin_memcpy(&ii, i + k, sizeof ii);
        s1 += vv;
        s2 += vv * vv;
        si += ii;
        si2 += ii * ii;
        siv += ii * vv;
        lo = ii < lo ? ii : lo;
        hi = ii > hi ? ii : hi;
    }
    for (; k < n; ++k) {
        s1[0] += v[k];
        s2[0] += v[k] * v[k];
        si[0] += i[k];
        si2[0] += i[k] * i[k];
        siv[0] += i[k] * v[k];
        lo[0] = std::min(lo[0], i[k]);
        hi[0] = std::max(hi[0], i[k]);
    }
    auto total = [](const v4d& x) { return (x[0] + x[1]) + (x[2] + x[3]); };
    sc.bad = bad != 0;
    sc.sum_v = total(s1);
    sc.sum_v2 = total(s2);
    sc.sum_i = total(si);
    sc.sum_i2 = total(si2);
    sc.sum_iv = total(siv);
    sc.lo = std::min(std::min(lo[0], lo[1]), std::min(lo[2], lo[3]));
    sc.hi = std::max(std::max(hi[0], hi[1]), std::max(hi[2], hi[3]));
}
EOL_TARGET_AVX2 void scan_avx2(const double* t, const double* i, const double* v, std::size_t n, Scan& sc) {
    scan_body(t, i, v, n, sc);
}
void scan_base(const double* t, const double* i, const double* v, std::size_t n, Scan& sc) {
    scan_body(t, i, v, n, sc);
}

}  // namespace

std::vector<double> snap_intervals(const double* t, std::size_t n) {
    std::vector<double> dt(n, 0.0);
    double ref = 0.0, tol = -1.0;  // the current run's interval
    constexpr std::size_t kBlock = 8;
    std::size_t k = 1;
    while (k < n) {
        // Within a run, whole blocks whose intervals all match the run's
        // (a vectorised test) are filled at once; the rest goes one by one.
        if (k + kBlock <= n) {
            int near = 0;
            for (std::size_t j = 0; j < kBlock; ++j)
                near += std::abs((t[k + j] - t[k + j - 1]) - ref) <= tol ? 1 : 0;
            if (near == static_cast<int>(kBlock)) {
                for (std::size_t j = 0; j < kBlock; ++j) dt[k + j] = ref;
                k += kBlock;
                continue;
            }
        }
        const double d = t[k] - t[k - 1];
        if (std::abs(d - ref) > tol) {
            ref = d;
            tol = 1e-9 * ref;
        }
        dt[k] = ref;
        ++k;
    }
    return dt;
}

Prepared prepare(const Series& s, std::size_t min_samples, bool need_cell_temp) {
    const std::size_t n = s.size();
    // Fast checks first; on any fault Series::validate runs and throws its
    // precise message (column and sample).
    const bool sizes_ok = n >= std::max<std::size_t>(min_samples, 2) && s.i_a.size() == n && s.v_v.size() == n &&
                          (!need_cell_temp || s.t_cell_c.size() == n) && (s.t_amb_c.empty() || s.t_amb_c.size() == n);
    if (!sizes_ok) s.validate(std::max<std::size_t>(min_samples, 2), need_cell_temp);
    Prepared p;
    p.n = n;
    p.t = s.t_s.data();
    p.i = s.i_a.data();
    p.v = s.v_v.data();
    p.ih = p.i;
    Scan sc;
    if (cpu_has_avx2())
        scan_avx2(p.t, p.i, p.v, n, sc);
    else
        scan_base(p.t, p.i, p.v, n, sc);
    bool bad = sc.bad;
    if (need_cell_temp)
        for (double x : s.t_cell_c) bad |= !std::isfinite(x);
    for (double x : s.t_amb_c) bad |= !std::isfinite(x);
    if (bad) s.validate(min_samples, need_cell_temp);  // throws with the sample at fault
    p.dt = snap_intervals(p.t, n);
    p.v_ref = sc.sum_v / static_cast<double>(n);
    p.v_ss = std::max(0.0, sc.sum_v2 - sc.sum_v * p.v_ref);
    p.sum_i = sc.sum_i;
    p.sum_i2 = sc.sum_i2;
    p.sum_iy = sc.sum_iv - p.v_ref * sc.sum_i;
    p.i_span = sc.hi - sc.lo;
    p.i_max_abs = std::max(std::abs(sc.hi), std::abs(sc.lo));
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

std::vector<Row> select_rows(const Prepared& p, std::size_t every_sample_up_to) {
    std::vector<Row> rows;
    if (p.n <= every_sample_up_to) {
        rows.reserve(p.n);
        for (std::size_t k = 0; k < p.n; ++k) rows.push_back({k, 1.0});
        return rows;
    }
    const double thr = std::max(5.0 * p.i_noise, 0.01 * p.i_span);
    // Where the current changes (rare: a branch the predictor gets right).
    std::vector<std::size_t> starts{0};
    constexpr std::size_t kBlock = 8;
    for (std::size_t k = 1; k < p.n;) {
        if (k + kBlock <= p.n) {  // skip blocks without a change (a vectorised test)
            int moved = 0;
            for (std::size_t j = 0; j < kBlock; ++j) moved |= std::abs(p.i[k + j] - p.i[k + j - 1]) > thr ? 1 : 0;
            if (moved == 0) {
                k += kBlock;
                continue;
            }
        }
        if (std::abs(p.i[k] - p.i[k - 1]) > thr) starts.push_back(k);
        ++k;
    }
    starts.push_back(p.n);
    // In each stretch: 16 rows, then ~8 rows per octave of the time since
    // the change, each standing for `stride` rows.
    for (std::size_t c = 0; c + 1 < starts.size(); ++c) {
        std::size_t k = starts[c], stride = 1;
        while (k < starts[c + 1]) {
            if (stride * 16 <= k - starts[c]) stride *= 2;
            const std::size_t stands_for = std::min(stride, starts[c + 1] - k);
            rows.push_back({k, std::sqrt(static_cast<double>(stands_for))});
            k += stride;
        }
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
