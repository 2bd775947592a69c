// Drift windows: an epidemic change-point (scan) statistic over production
// days with a permutation test and boundary posteriors. See drift_window.hpp.
#include "eol/models/drift_window.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

#include "eol/models/lot_tests.hpp"  // kNoDay
#include "eol/models/mcd.hpp"        // chi2_cdf, chi2_quantile
#include "eol/models/pat.hpp"        // quantile_inplace
#include "eol/models/series.hpp"     // InputError
#include "common.hpp"

namespace eol::models {
namespace {

using detail::cat;

// Uniform integer in [0, n) by rejection (the same on every standard library).
std::size_t draw_below(std::mt19937_64& rng, std::size_t n) {
    const std::uint64_t range = n;
    const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % range;
    std::uint64_t r;
    do r = rng();
    while (r >= limit);
    return static_cast<std::size_t>(r % range);
}

// The scan over runs [a, b] of consecutive positions inside one block
// (block[a] == block[b]), at most m_max long. `w` is D × p (rows = positions).
struct Scan {
    Eigen::MatrixXd prefix;  // (D+1) × p
    Eigen::RowVectorXd total;
    std::size_t d = 0;

    explicit Scan(const Eigen::MatrixXd& w) : prefix(w.rows() + 1, w.cols()), total(w.cols()), d(static_cast<std::size_t>(w.rows())) {
        prefix.row(0).setZero();
        for (Eigen::Index i = 0; i < w.rows(); ++i) prefix.row(i + 1) = prefix.row(i) + w.row(i);
        total = prefix.row(w.rows());
    }
    // T(a, b) = D / (m (D − m)) · |Σ_S w − (m/D) Σ w|².
    double t(std::size_t a, std::size_t b) const {
        const double m = static_cast<double>(b - a + 1), dd = static_cast<double>(d);
        const Eigen::RowVectorXd u = prefix.row(static_cast<Eigen::Index>(b + 1)) - prefix.row(static_cast<Eigen::Index>(a)) - (m / dd) * total;
        return dd / (m * (dd - m)) * u.squaredNorm();
    }
};

struct Best {
    double t = -1.0;
    std::size_t a = 0, b = 0;
};

// The largest T over the admissible runs. `w` is row-major D × p; `prefix`
// is scratch. Plain loops: this runs B + 1 times (and in unoptimized,
// sanitized test builds too).
Best scan_max(const std::vector<double>& w, std::size_t d, std::size_t p, const std::vector<std::size_t>& block,
              std::size_t m_max, std::vector<double>& prefix) {
    Best best;
    if (d < 2) return best;
    prefix.assign((d + 1) * p, 0.0);
    for (std::size_t i = 0; i < d; ++i)
        for (std::size_t q = 0; q < p; ++q) prefix[(i + 1) * p + q] = prefix[i * p + q] + w[i * p + q];
    const double* total = prefix.data() + d * p;
    const double dd = static_cast<double>(d);
    for (std::size_t a = 0; a < d; ++a) {
        const double* pa = prefix.data() + a * p;
        const std::size_t b_end = std::min(d, a + m_max);
        for (std::size_t b = a; b < b_end; ++b) {
            if (block[b] != block[a]) break;
            const double m = static_cast<double>(b - a + 1);
            if (m >= dd) break;
            const double* pb = prefix.data() + (b + 1) * p;
            const double f = m / dd;
            double ss = 0.0;
            for (std::size_t q = 0; q < p; ++q) {
                const double u = pb[q] - pa[q] - f * total[q];
                ss += u * u;
            }
            const double t = dd / (m * (dd - m)) * ss;
            if (t > best.t) best = {t, a, b};
        }
    }
    return best;
}

// Posterior ∝ exp(T/2) over candidate positions; the estimate, its mass and
// the smallest set with ≥ credible mass.
BoundaryEstimate boundary(const std::vector<std::int32_t>& days, const std::vector<double>& t, std::size_t estimate,
                          double credible) {
    BoundaryEstimate e;
    e.days = days;
    const double t_max = *std::max_element(t.begin(), t.end());
    double sum = 0.0;
    e.posterior.resize(t.size());
    for (std::size_t k = 0; k < t.size(); ++k) sum += e.posterior[k] = std::exp(0.5 * (t[k] - t_max));
    for (auto& v : e.posterior) v /= sum;
    e.day = days[estimate];
    e.probability = e.posterior[estimate];
    std::vector<std::size_t> order(t.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return e.posterior[x] > e.posterior[y]; });
    double mass = 0.0;
    std::int32_t lo = days[estimate], hi = days[estimate];
    for (std::size_t k : order) {
        lo = std::min(lo, days[k]);
        hi = std::max(hi, days[k]);
        mass += e.posterior[k];
        if (mass >= credible) break;
    }
    e.credible_first = lo;
    e.credible_last = hi;
    return e;
}

}  // namespace

std::size_t DriftWindow::largest_shift() const {
    std::size_t largest = 0;
    for (std::size_t q = 1; q < shift_z.size(); ++q)
        if (std::abs(shift_z[q]) > std::abs(shift_z[largest])) largest = q;
    return largest;
}

DriftWindowResult find_drift_windows(std::span<const double> values, std::size_t rows, std::size_t features,
                                     std::span<const std::int32_t> day, const DriftWindowSettings& s) {
    if (values.size() != rows * features)
        throw InputError(cat("drift windows: ", values.size(), " values for ", rows, " rows × ", features, " features"));
    if (day.size() != rows) throw InputError(cat("drift windows: ", day.size(), " days for ", rows, " rows"));
    if (!(s.alpha > 0.0 && s.alpha < 1.0)) throw InputError(cat("drift windows: alpha ", s.alpha, " outside (0, 1)"));
    if (!(s.min_shift_sigma >= 0.0 && std::isfinite(s.min_shift_sigma)))
        throw InputError(cat("drift windows: min_shift_sigma ", s.min_shift_sigma, " is not a number >= 0"));
    if (s.permutations < 19) throw InputError(cat("drift windows: ", s.permutations, " permutations (at least 19)"));
    if (!(s.winsor_z > 0.0)) throw InputError(cat("drift windows: winsor_z ", s.winsor_z, " must be positive"));
    if (!(s.max_window_fraction > 0.0 && s.max_window_fraction < 1.0))
        throw InputError(cat("drift windows: max_window_fraction ", s.max_window_fraction, " outside (0, 1)"));
    if (!(s.credible > 0.0 && s.credible < 1.0))
        throw InputError(cat("drift windows: credible ", s.credible, " outside (0, 1)"));
    if (!(s.min_day_fraction >= 0.0 && s.min_day_fraction <= 1.0))
        throw InputError(cat("drift windows: min_day_fraction ", s.min_day_fraction, " outside [0, 1]"));

    DriftWindowResult r;
    // Days, in order, and each row's day index.
    std::map<std::int32_t, std::size_t> day_index;
    for (auto d : day)
        if (d != kNoDay) day_index.emplace(d, 0);
    {
        std::size_t k = 0;
        for (auto& [d, idx] : day_index) {
            idx = k++;
            DriftDay dd;
            dd.day = d;
            r.days.push_back(std::move(dd));
        }
    }
    std::vector<std::size_t> row_day(rows, std::numeric_limits<std::size_t>::max());
    for (std::size_t i = 0; i < rows; ++i)
        if (day[i] != kNoDay) {
            row_day[i] = day_index[day[i]];
            ++r.days[row_day[i]].cells;
        }
    const std::size_t n_days = r.days.size();
    if (n_days < s.min_days) {
        r.notes.push_back(cat("drift windows: ", n_days, " production days (fewer than ", s.min_days, "): not evaluated"));
        return r;
    }
    std::vector<std::size_t> counts;
    for (const auto& d : r.days) counts.push_back(d.cells);
    std::nth_element(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(counts.size() / 2), counts.end());
    const double median_count = static_cast<double>(counts[counts.size() / 2]);
    const double min_cells = std::max(2.0, s.min_day_fraction * median_count);
    for (auto& d : r.days) d.used = static_cast<double>(d.cells) >= min_cells;

    // Robust z per feature; day means of the clipped z.
    std::vector<double> centre(features), scale(features);
    std::vector<std::size_t> candidates;
    for (std::size_t j = 0; j < features; ++j) {
        std::vector<double> v;
        v.reserve(rows);
        for (std::size_t i = 0; i < rows; ++i)
            if (std::isfinite(values[j * rows + i])) v.push_back(values[j * rows + i]);
        if (v.size() < 4) {
            r.notes.push_back(cat("drift windows: feature ", j, " has ", v.size(), " values: left out"));
            continue;
        }
        const double q1 = quantile_inplace(v, 0.25), q3 = quantile_inplace(v, 0.75);
        centre[j] = median_inplace(v);
        scale[j] = (q3 - q1) / 1.349;
        if (!(scale[j] > 0.0)) {
            r.notes.push_back(cat("drift windows: feature ", j, " has a zero interquartile range: left out"));
            continue;
        }
        candidates.push_back(j);
    }
    const std::size_t pc = candidates.size();
    Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(n_days), static_cast<Eigen::Index>(pc));
    Eigen::MatrixXd cnt = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(n_days), static_cast<Eigen::Index>(pc));
    for (std::size_t c = 0; c < pc; ++c) {
        const std::size_t j = candidates[c];
        for (std::size_t i = 0; i < rows; ++i) {
            const double x = values[j * rows + i];
            if (row_day[i] == std::numeric_limits<std::size_t>::max() || !std::isfinite(x)) continue;
            const double z = std::clamp((x - centre[j]) / scale[j], -s.winsor_z, s.winsor_z);
            sum(static_cast<Eigen::Index>(row_day[i]), static_cast<Eigen::Index>(c)) += z;
            cnt(static_cast<Eigen::Index>(row_day[i]), static_cast<Eigen::Index>(c)) += 1.0;
        }
    }
    // A feature is kept when it has values on at least 90 % of the used days;
    // used days without a value of a kept feature are then not used.
    std::size_t used0 = 0;
    for (const auto& d : r.days) used0 += d.used ? 1u : 0u;
    std::vector<std::size_t> kept;  // positions into candidates
    for (std::size_t c = 0; c < pc; ++c) {
        std::size_t have = 0;
        for (std::size_t k = 0; k < n_days; ++k)
            if (r.days[k].used && cnt(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(c)) > 0) ++have;
        if (static_cast<double>(have) >= 0.9 * static_cast<double>(used0))
            kept.push_back(c);
        else
            r.notes.push_back(cat("drift windows: feature ", candidates[c], " has values on ", have, " of ", used0,
                                  " days: left out"));
    }
    const std::size_t p = kept.size();
    for (std::size_t c : kept) r.features.push_back(candidates[c]);
    for (std::size_t k = 0; k < n_days; ++k) {
        auto& d = r.days[k];
        if (!d.used) continue;
        d.mean_z.resize(p);
        for (std::size_t q = 0; q < p; ++q) {
            const double n = cnt(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(kept[q]));
            if (n == 0) {
                d.used = false;
                break;
            }
            d.mean_z[q] = sum(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(kept[q])) / n;
        }
        if (!d.used) d.mean_z.clear();
    }
    std::vector<std::size_t> used;  // day indices
    for (std::size_t k = 0; k < n_days; ++k)
        if (r.days[k].used) used.push_back(k);
    r.days_used = used.size();
    if (p == 0 || used.size() < s.min_days) {
        r.notes.push_back(cat("drift windows: ", used.size(), " usable days × ", p, " features (at least ", s.min_days,
                              " days needed): not evaluated"));
        return r;
    }
    const std::size_t d_used = used.size();
    Eigen::MatrixXd y(static_cast<Eigen::Index>(d_used), static_cast<Eigen::Index>(p));
    for (std::size_t k = 0; k < d_used; ++k)
        for (std::size_t q = 0; q < p; ++q) y(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(q)) = r.days[used[k]].mean_z[q];

    // Day-level covariance from successive differences, trimmed at χ²_p(0.99).
    const Eigen::Index pi = static_cast<Eigen::Index>(p);
    Eigen::MatrixXd diff = y.bottomRows(y.rows() - 1) - y.topRows(y.rows() - 1);
    Eigen::MatrixXd cov_d = diff.transpose() * diff / static_cast<double>(diff.rows());
    const bool full = diff.rows() >= 3 * pi;
    if (!full) {
        cov_d = Eigen::MatrixXd(cov_d.diagonal().asDiagonal());
        r.notes.push_back(cat("drift windows: ", d_used, " days for ", p,
                              " features: features taken as uncorrelated (fewer than 3 day differences a feature)"));
    }
    const double q99 = chi2_quantile(0.99, static_cast<double>(p));
    const double consistency = chi2_cdf(q99, static_cast<double>(p + 2)) / 0.99;
    for (int iter = 0; iter < 3; ++iter) {
        const double ridge = 1e-12 * std::max(1e-300, cov_d.trace());
        Eigen::LLT<Eigen::MatrixXd> llt(cov_d + ridge * Eigen::MatrixXd::Identity(pi, pi));
        if (llt.info() != Eigen::Success) break;
        Eigen::MatrixXd acc = Eigen::MatrixXd::Zero(pi, pi);
        std::size_t kept_rows = 0;
        for (Eigen::Index k = 0; k < diff.rows(); ++k) {
            const Eigen::VectorXd x = diff.row(k).transpose();
            if (llt.matrixL().solve(x).squaredNorm() > q99) continue;
            acc += x * x.transpose();
            ++kept_rows;
        }
        if (kept_rows <= static_cast<std::size_t>(pi)) break;
        acc /= static_cast<double>(kept_rows) * consistency;
        cov_d = full ? acc : Eigen::MatrixXd(acc.diagonal().asDiagonal());
    }
    Eigen::MatrixXd cov_y = cov_d / 2.0;
    cov_y += 1e-12 * std::max(1e-300, cov_y.trace()) * Eigen::MatrixXd::Identity(pi, pi);
    Eigen::LLT<Eigen::MatrixXd> llt(cov_y);
    if (llt.info() != Eigen::Success || !(cov_y.diagonal().minCoeff() > 0.0)) {
        r.notes.push_back("drift windows: the day-to-day covariance is singular: not evaluated");
        return r;
    }
    // w = L⁻¹ y (rows).
    const Eigen::MatrixXd w_all = llt.matrixL().solve(y.transpose()).transpose();
    r.evaluated = true;

    std::mt19937_64 rng(s.seed);
    std::vector<std::uint8_t> removed(d_used, 0);  // positions (into used) inside windows found
    for (std::size_t iw = 0; iw < s.max_windows; ++iw) {
        std::vector<std::size_t> pos;  // remaining positions into used
        std::vector<std::size_t> block;
        std::size_t b_id = 0;
        for (std::size_t k = 0; k < d_used; ++k) {
            if (removed[k]) {
                if (!pos.empty() && block.back() == b_id) ++b_id;
                continue;
            }
            pos.push_back(k);
            block.push_back(b_id);
        }
        const std::size_t d = pos.size();
        if (d < s.min_days) break;
        const auto m_max = static_cast<std::size_t>(std::floor(s.max_window_fraction * static_cast<double>(d)));
        if (m_max < 1) break;
        Eigen::MatrixXd w(static_cast<Eigen::Index>(d), pi);
        std::vector<double> wr(d * p), wp(d * p), scratch;
        for (std::size_t k = 0; k < d; ++k) {
            w.row(static_cast<Eigen::Index>(k)) = w_all.row(static_cast<Eigen::Index>(pos[k]));
            for (std::size_t q = 0; q < p; ++q) wr[k * p + q] = w(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(q));
        }
        const Best best = scan_max(wr, d, p, block, m_max, scratch);
        if (best.t < 0) break;
        // Permutation null of the maximum.
        std::vector<double> null_max(s.permutations);
        std::vector<std::size_t> perm(d);
        std::iota(perm.begin(), perm.end(), std::size_t{0});
        std::size_t exceed = 0;
        for (std::size_t bb = 0; bb < s.permutations; ++bb) {
            for (std::size_t k = d - 1; k > 0; --k) std::swap(perm[k], perm[draw_below(rng, k + 1)]);
            for (std::size_t k = 0; k < d; ++k)
                std::copy_n(wr.begin() + static_cast<std::ptrdiff_t>(perm[k] * p), p, wp.begin() + static_cast<std::ptrdiff_t>(k * p));
            null_max[bb] = scan_max(wp, d, p, block, m_max, scratch).t;
            exceed += null_max[bb] >= best.t ? 1u : 0u;
        }
        const double p_value = static_cast<double>(1 + exceed) / static_cast<double>(s.permutations + 1);
        std::sort(null_max.begin(), null_max.end());
        const auto qk = static_cast<std::size_t>(
            std::min<double>(static_cast<double>(s.permutations - 1),
                             std::ceil((1.0 - s.alpha) * static_cast<double>(s.permutations + 1)) - 1.0));
        const double critical = null_max[qk];
        if (iw == 0) {
            r.first_p_value = p_value;
            r.first_statistic = best.t;
        }
        if (!(p_value <= s.alpha)) break;

        DriftWindow win;
        win.statistic = best.t;
        win.p_value = p_value;
        win.critical = critical;
        const Scan scan(w);
        // Start posterior: a' from the block's first position to b̂ (length ≤ m_max).
        {
            std::vector<std::int32_t> days;
            std::vector<double> t;
            std::size_t est = 0;
            for (std::size_t a = best.b + 1; a-- > 0;) {
                if (block[a] != block[best.b] || best.b - a + 1 > m_max) break;
                days.push_back(r.days[used[pos[a]]].day);
                t.push_back(scan.t(a, best.b));
                if (a == best.a) est = t.size() - 1;
            }
            std::reverse(days.begin(), days.end());
            std::reverse(t.begin(), t.end());
            est = t.size() - 1 - est;
            win.start = boundary(days, t, est, s.credible);
        }
        {
            std::vector<std::int32_t> days;
            std::vector<double> t;
            std::size_t est = 0;
            for (std::size_t b = best.a; b < d; ++b) {
                if (block[b] != block[best.a] || b - best.a + 1 > m_max) break;
                days.push_back(r.days[used[pos[b]]].day);
                t.push_back(scan.t(best.a, b));
                if (b == best.b) est = t.size() - 1;
            }
            win.end = boundary(days, t, est, s.credible);
        }
        // Neighbouring production days, counts, shifts.
        win.last_day_before = kNoDay;
        win.first_day_after = kNoDay;
        for (const auto& dd : r.days) {
            if (dd.day < win.start.day) win.last_day_before = dd.day;
            if (dd.day > win.end.day && win.first_day_after == kNoDay) win.first_day_after = dd.day;
            if (dd.day >= win.start.day && dd.day <= win.end.day) {
                win.cells += dd.cells;
                win.days += dd.used ? 1u : 0u;
            }
        }
        win.shift_z.assign(p, 0.0);
        win.shift.assign(p, 0.0);
        {
            Eigen::RowVectorXd in = Eigen::RowVectorXd::Zero(pi), out = Eigen::RowVectorXd::Zero(pi);
            double n_in = 0, n_out = 0;
            for (std::size_t k = 0; k < d; ++k) {
                if (k >= best.a && k <= best.b) {
                    in += y.row(static_cast<Eigen::Index>(pos[k]));
                    n_in += 1;
                } else {
                    out += y.row(static_cast<Eigen::Index>(pos[k]));
                    n_out += 1;
                }
            }
            for (std::size_t q = 0; q < p; ++q) {
                win.shift_z[q] = in(static_cast<Eigen::Index>(q)) / n_in - out(static_cast<Eigen::Index>(q)) / n_out;
                win.shift[q] = win.shift_z[q] * scale[r.features[q]];
            }
        }
        for (std::size_t k = best.a; k <= best.b; ++k) removed[pos[k]] = 1;
        if (p > 0 && std::abs(win.shift_z[win.largest_shift()]) < s.min_shift_sigma) {
            r.immaterial.push_back(std::move(win));
            continue;
        }
        r.windows.push_back(std::move(win));
    }
    std::sort(r.windows.begin(), r.windows.end(),
              [](const DriftWindow& x, const DriftWindow& y2) { return x.start.day < y2.start.day; });
    return r;
}

}  // namespace eol::models
