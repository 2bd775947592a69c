// screen(): PAT per feature, FAST-MCD distances, lot/window binomial tests and
// daily-median control charts over one FeatureTable. See screening.hpp.
#include "eol/models/screening.hpp"

#include <Eigen/Cholesky>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "eol/models/series.hpp"
#include "common.hpp"

namespace eol::models {
namespace {

using detail::cat;
using detail::parallel_for;
using detail::resolve_threads;

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// v with `sig` significant digits.
std::string num(double v, int sig = 4) {
    std::ostringstream os;
    os.precision(sig);
    os << v;
    return os.str();
}
std::string percent(double rate) { return num(rate * 100.0, 3) + "%"; }

}  // namespace

std::size_t FeatureTable::feature_index(std::string_view name) const {
    for (std::size_t j = 0; j < features.size(); ++j)
        if (features[j] == name) return j;
    std::string all;
    for (const auto& f : features) all += (all.empty() ? "" : ", ") + f;
    throw InputError(cat("no feature '", name, "' in the table (features: ", all.empty() ? "none" : all, ")"));
}

void FeatureTable::validate() const {
    if (values.size() != rows * features.size())
        throw InputError(cat("feature table: ", values.size(), " values for ", rows, " rows × ", features.size(),
                             " features"));
    if (!serials.empty() && serials.size() != rows)
        throw InputError(cat("feature table: ", serials.size(), " serials for ", rows, " rows"));
    if (!lot.empty() && lot.size() != rows)
        throw InputError(cat("feature table: ", lot.size(), " lot codes for ", rows, " rows"));
    if (!day.empty() && day.size() != rows)
        throw InputError(cat("feature table: ", day.size(), " days for ", rows, " rows"));
    for (std::size_t i = 0; i < lot.size(); ++i)
        if (lot[i] >= lot_names.size())
            throw InputError(cat("feature table: row ", i, " has lot code ", lot[i], " but only ", lot_names.size(),
                                 " lot names"));
    for (std::size_t a = 0; a < features.size(); ++a)
        for (std::size_t b = a + 1; b < features.size(); ++b)
            if (features[a] == features[b]) throw InputError(cat("feature table: feature '", features[a], "' twice"));
}

LotCoder::LotCoder(std::vector<std::string>& names) : names_(&names) {
    for (std::size_t c = 0; c < names.size(); ++c) index_.emplace(names[c], static_cast<std::uint32_t>(c));
}

std::uint32_t LotCoder::code(std::string_view name) {
    auto it = index_.find(std::string(name));
    if (it != index_.end()) return it->second;
    const auto c = static_cast<std::uint32_t>(names_->size());
    names_->emplace_back(name);
    index_.emplace(std::string(name), c);
    return c;
}

std::size_t ScreeningResult::count(std::uint8_t flag) const {
    std::size_t c = 0;
    for (auto s : status) c += (s & flag) != 0 ? 1u : 0u;
    return c;
}

ScreeningResult screen(const FeatureTable& table, const ScreeningSettings& settings) {
    const auto t_start = Clock::now();
    table.validate();
    const std::size_t n = table.rows;
    const unsigned threads = resolve_threads(settings.threads);
    ScreeningResult res;

    // Features and their spec limits.
    std::vector<std::size_t> cols;
    if (settings.features.empty()) {
        for (std::size_t j = 0; j < table.features.size(); ++j) cols.push_back(j);
    } else {
        for (const auto& f : settings.features) {
            const std::size_t j = table.feature_index(f);
            if (std::find(cols.begin(), cols.end(), j) != cols.end())
                throw InputError(cat("feature '", f, "' listed twice in the screening settings"));
            cols.push_back(j);
        }
    }
    const std::size_t p = cols.size();
    if (p == 0) throw InputError("screening: no features to screen");
    if (p > 64) throw InputError(cat("screening: ", p, " features; at most 64 can be screened together"));
    for (std::size_t j : cols) res.features.push_back(table.features[j]);
    std::vector<SpecLimits> spec(p);
    for (const auto& [name, lim] : settings.spec) {
        const std::size_t tj = table.feature_index(name);
        const auto it = std::find(cols.begin(), cols.end(), tj);
        if (it == cols.end()) continue;  // a spec for a feature not screened this time
        if (lim.low > lim.high)
            throw InputError(cat("spec limits of '", name, "': low ", lim.low, " above high ", lim.high));
        spec[static_cast<std::size_t>(it - cols.begin())] = lim;
    }
    if (!(settings.mcd_quantile > 0.0 && settings.mcd_quantile < 1.0))
        throw InputError(cat("screening: MCD quantile ", settings.mcd_quantile, " outside (0, 1)"));

    // Lots and the static reference.
    const std::span<const std::uint32_t> lot(table.lot);
    const std::size_t n_lots = lot.empty() ? 1 : std::max<std::size_t>(1, table.lot_names.size());
    std::vector<std::uint8_t> reference;
    if (!settings.reference_lots.empty()) {
        if (lot.empty()) throw InputError("screening: reference lots given but the table has no lots");
        reference.assign(n_lots, 0);
        for (const auto& name : settings.reference_lots) {
            const auto it = std::find(table.lot_names.begin(), table.lot_names.end(), name);
            if (it == table.lot_names.end())
                throw InputError(cat("screening: reference lot '", name, "' is not in the table"));
            reference[static_cast<std::size_t>(it - table.lot_names.begin())] = 1;
        }
    }

    res.status.assign(n, 0);
    res.distance_sq.assign(n, kNaN);

    // ---- PAT, feature by feature ------------------------------------------
    auto t0 = Clock::now();
    res.pat.resize(p);
    std::vector<std::vector<std::pair<std::size_t, PatViolation>>> violations(p);
    parallel_for(p, threads, [&](std::size_t j, unsigned) {
        const auto col = table.column(cols[j]);
        res.pat[j] = pat_feature(col, lot, n_lots, reference, spec[j], settings.pat, table.lot_names);
        const auto& limits = res.pat[j].lot_limits;
        auto& out = violations[j];
        for (std::size_t i = 0; i < n; ++i) {
            const double v = col[i];
            const PatLimits& L = limits[lot.empty() ? 0 : lot[i]];
            if (v > L.high) {
                out.push_back({i, PatViolation{j, v, L.high, true, L.source}});
            } else if (v < L.low) {
                out.push_back({i, PatViolation{j, v, L.low, false, L.source}});
            }
        }
    });
    for (std::size_t j = 0; j < p; ++j) {
        for (const auto& [i, v] : violations[j]) res.status[i] |= kFlagPat;
        for (const auto& note : res.pat[j].notes) res.notes.push_back(cat("PAT ", res.features[j], ": ", note));
    }
    res.timings.pat_s = seconds_since(t0);

    // ---- MCD ----------------------------------------------------------------
    t0 = Clock::now();
    std::vector<std::uint64_t> missing_mask;      // per row (p ≤ 64), 0 = complete
    Eigen::VectorXd mcd_loc;
    Eigen::MatrixXd mcd_cov;
    std::vector<std::size_t> fitted_rows;         // row of each fitted matrix row (empty: identity)
    if (settings.use_mcd) {
        std::size_t complete = 0;
        bool any_missing = false;
        missing_mask.assign(n, 0);
        for (std::size_t j = 0; j < p; ++j) {
            const auto col = table.column(cols[j]);
            for (std::size_t i = 0; i < n; ++i)
                if (std::isnan(col[i])) {
                    missing_mask[i] |= std::uint64_t{1} << j;
                    any_missing = true;
                }
        }
        for (auto m : missing_mask) complete += m == 0 ? 1u : 0u;
        const bool impute = settings.missing == MissingPolicy::impute_median;
        const std::size_t fit_rows = impute ? n : complete;
        const std::size_t need = std::max(p + 2, settings.mcd_min_rows_per_feature * p);
        if (fit_rows < need) {
            res.notes.push_back(cat("MCD skipped: ", fit_rows, " ", impute ? "" : "complete ", "row(s) for ", p,
                                    " features (need at least ", need, ")"));
        } else {
            const bool identity_cols = table.features.size() == p && [&] {
                for (std::size_t j = 0; j < p; ++j)
                    if (cols[j] != j) return false;
                return true;
            }();
            Eigen::MatrixXd copy;
            const double* data = nullptr;
            if (!any_missing && identity_cols) {
                data = table.values.data();  // fit on the table itself, no copy
            } else {
                copy.resize(static_cast<Eigen::Index>(fit_rows), static_cast<Eigen::Index>(p));
                std::vector<double> fill(p, 0.0);
                if (impute) {
                    std::vector<double> scratch;
                    for (std::size_t j = 0; j < p; ++j) fill[j] = robust_summary(table.column(cols[j]), scratch).median;
                }
                if (!impute) {
                    fitted_rows.reserve(fit_rows);
                    for (std::size_t i = 0; i < n; ++i)
                        if (missing_mask[i] == 0) fitted_rows.push_back(i);
                }
                for (std::size_t j = 0; j < p; ++j) {
                    const auto col = table.column(cols[j]);
                    std::size_t r = 0;
                    for (std::size_t i = 0; i < n; ++i) {
                        if (!impute && missing_mask[i] != 0) continue;
                        const double v = col[i];
                        copy(static_cast<Eigen::Index>(r++), static_cast<Eigen::Index>(j)) = std::isnan(v) ? fill[j] : v;
                    }
                }
                data = copy.data();
                if (impute && any_missing)
                    res.notes.push_back("MCD: missing values replaced by the feature median (impute_median)");
            }
            const Eigen::Map<const Eigen::MatrixXd> X(data, static_cast<Eigen::Index>(fit_rows),
                                                      static_cast<Eigen::Index>(p));
            McdSettings ms = settings.mcd;
            ms.threads = settings.mcd.threads != 0 ? settings.mcd.threads : threads;
            McdResult fit = fit_mcd(X, ms);
            McdSummary& s = res.mcd;
            s.ran = true;
            s.rows_fitted = fit_rows;
            s.h = fit.h;
            s.correction = fit.correction;
            s.raw_location = fit.raw_location;
            s.raw_covariance = fit.raw_covariance;
            s.location = fit.location;
            s.covariance = fit.covariance;
            s.subsets_used = fit.subsets_used;
            s.full_c_steps = fit.full_c_steps;
            s.cutoff_sq = chi2_quantile(settings.mcd_quantile, static_cast<double>(p));
            mcd_loc = fit.location;
            mcd_cov = fit.covariance;
            for (std::size_t r = 0; r < fit_rows; ++r) {
                const std::size_t i = fitted_rows.empty() ? r : fitted_rows[r];
                res.distance_sq[i] = fit.distance_sq[r];
                if (fit.distance_sq[r] > s.cutoff_sq) res.status[i] |= kFlagMcd;
            }
            s.rows_scored = fit_rows;
            // Rows with missing features: distance on the observed ones.
            if (!impute && any_missing) {
                std::size_t partial = 0, unscored = 0;
                std::map<std::uint64_t, std::vector<std::size_t>> patterns;
                for (std::size_t i = 0; i < n; ++i)
                    if (missing_mask[i] != 0) patterns[missing_mask[i]].push_back(i);
                for (const auto& [mask, rows] : patterns) {
                    std::vector<Eigen::Index> obs;
                    for (std::size_t j = 0; j < p; ++j)
                        if ((mask & (std::uint64_t{1} << j)) == 0) obs.push_back(static_cast<Eigen::Index>(j));
                    if (obs.empty()) {
                        unscored += rows.size();
                        continue;
                    }
                    const auto k = static_cast<Eigen::Index>(obs.size());
                    Eigen::VectorXd sl(k);
                    Eigen::MatrixXd sc(k, k);
                    for (Eigen::Index a = 0; a < k; ++a) {
                        sl(a) = mcd_loc(obs[static_cast<std::size_t>(a)]);
                        for (Eigen::Index b = 0; b < k; ++b)
                            sc(a, b) = mcd_cov(obs[static_cast<std::size_t>(a)], obs[static_cast<std::size_t>(b)]);
                    }
                    const Eigen::LDLT<Eigen::MatrixXd> ldlt(sc);
                    const double cut = chi2_quantile(settings.mcd_quantile, static_cast<double>(k));
                    Eigen::VectorXd z(k);
                    for (std::size_t i : rows) {
                        for (Eigen::Index a = 0; a < k; ++a)
                            z(a) = table.column(cols[static_cast<std::size_t>(obs[static_cast<std::size_t>(a)])])[i] - sl(a);
                        const double d2 = z.dot(ldlt.solve(z));
                        res.distance_sq[i] = d2;
                        if (d2 > cut) res.status[i] |= kFlagMcd;
                        ++partial;
                    }
                }
                s.rows_scored += partial;
                res.notes.push_back(cat("MCD: fitted on ", complete, " complete rows; ", partial,
                                        " row(s) with missing features scored on the features they have",
                                        unscored > 0 ? cat("; ", unscored, " row(s) not scored") : std::string()));
            }
        }
    }
    res.timings.mcd_s = seconds_since(t0);

    // ---- Lot and window containment -------------------------------------------
    t0 = Clock::now();
    if (settings.lot_tests && (!table.lot.empty() || !table.day.empty())) {
        std::vector<std::uint8_t> outlier(n);
        for (std::size_t i = 0; i < n; ++i) outlier[i] = (res.status[i] & (kFlagPat | kFlagMcd)) != 0 ? 1 : 0;
        res.lots = test_groups(outlier, table.lot, table.lot_names, table.day, settings.lots);
        const auto held = held_cells(res.lots, table.lot, table.day);
        for (std::size_t i = 0; i < held.size(); ++i)
            if (held[i]) res.status[i] |= kFlagHeldGroup;
    }
    res.timings.lots_s = seconds_since(t0);

    // ---- Control charts of per-day medians --------------------------------------
    t0 = Clock::now();
    if (settings.charts && !table.day.empty()) {
        res.charts.resize(p);
        parallel_for(p, threads, [&](std::size_t j, unsigned) {
            res.charts[j] = daily_median_chart(table.column(cols[j]), table.day, settings.chart);
        });
    }
    res.timings.charts_s = seconds_since(t0);

    // ---- Per flagged cell: reasons -------------------------------------------
    std::vector<std::size_t> vpos(p, 0);
    std::vector<std::size_t> held_groups;
    for (std::size_t g = 0; g < res.lots.groups.size(); ++g)
        if (res.lots.groups[g].held) held_groups.push_back(g);
    std::unique_ptr<ContributionWhitener> whitener;
    if (res.mcd.ran) whitener = std::make_unique<ContributionWhitener>(mcd_cov);
    for (std::size_t i = 0; i < n; ++i) {
        if (res.status[i] == 0) continue;
        FlaggedCell c;
        c.row = i;
        c.flags = res.status[i];
        c.distance_sq = res.distance_sq[i];
        if (res.mcd.ran) {
            const std::uint64_t mm = missing_mask.empty() ? 0 : missing_mask[i];
            std::size_t k = 0;
            for (std::size_t j = 0; j < p; ++j) k += (mm & (std::uint64_t{1} << j)) == 0 ? 1u : 0u;
            if (settings.missing == MissingPolicy::impute_median) k = p;
            if (k > 0 && !std::isnan(c.distance_sq))
                c.cutoff_sq = k == p ? res.mcd.cutoff_sq : chi2_quantile(settings.mcd_quantile, static_cast<double>(k));
            if ((c.flags & kFlagMcd) != 0 && mm == 0) {
                Eigen::VectorXd x(static_cast<Eigen::Index>(p));
                for (std::size_t j = 0; j < p; ++j) {
                    const double v = table.column(cols[j])[i];
                    x(static_cast<Eigen::Index>(j)) = std::isnan(v) ? mcd_loc(static_cast<Eigen::Index>(j)) : v;
                }
                auto contrib = whitener->contributions(x, mcd_loc);
                if (contrib.size() > settings.top_features) contrib.resize(settings.top_features);
                c.top = std::move(contrib);
            }
        }
        for (std::size_t j = 0; j < p; ++j) {
            auto& v = violations[j];
            while (vpos[j] < v.size() && v[vpos[j]].first < i) ++vpos[j];
            if (vpos[j] < v.size() && v[vpos[j]].first == i) c.pat.push_back(v[vpos[j]].second);
        }
        if ((c.flags & kFlagHeldGroup) != 0) {
            for (std::size_t g : held_groups) {
                const GroupTest& gt = res.lots.groups[g];
                bool member = false;
                if (gt.kind == GroupKind::lot) {
                    member = !table.lot.empty() && table.lot[i] == gt.code;
                } else if (!table.day.empty() && table.day[i] != kNoDay) {
                    member = (gt.kind == GroupKind::month ? month_key(table.day[i]) : iso_week_key(table.day[i])) == gt.key;
                }
                if (member) c.held_by.push_back(g);
            }
        }
        res.flagged.push_back(std::move(c));
    }
    res.timings.total_s = seconds_since(t_start);
    return res;
}

std::vector<std::string> reasons(const FlaggedCell& cell, const ScreeningResult& result) {
    std::vector<std::string> out;
    for (const auto& v : cell.pat) {
        out.push_back(cat("PAT: ", result.features[v.feature], " ", num(v.value, 6), v.high ? " above " : " below ",
                          num(v.limit, 6), " (", to_string(v.source), " limit)"));
    }
    if ((cell.flags & kFlagMcd) != 0) {
        std::string s = cat("MCD: d² ", num(cell.distance_sq), " > ", num(cell.cutoff_sq));
        if (!cell.top.empty()) {
            s += " (";
            for (std::size_t k = 0; k < cell.top.size(); ++k) {
                const auto& c = cell.top[k];
                s += cat(k > 0 ? ", " : "", result.features[c.feature], " ", num(c.share * 100.0, 3), "% (z ",
                         num(c.z, 2), ")");
            }
            s += ")";
        }
        out.push_back(std::move(s));
    }
    for (std::size_t g : cell.held_by) {
        const GroupTest& gt = result.lots.groups[g];
        out.push_back(cat("held: ", to_string(gt.kind), " ", gt.key, " outlier rate ", percent(gt.rate), " (",
                          gt.outliers, "/", gt.cells, ") vs baseline ", percent(result.lots.baseline_rate),
                          ", p = ", num(gt.p_value, 3)));
    }
    return out;
}

}  // namespace eol::models
