#include "eol/station/test_time_screen.hpp"

#include "eol/station/fixture_health.hpp"

#include <fmt/format.h>

#include <Eigen/Dense>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <set>

#include "eol/models/mcd.hpp"
#include "eol/station/errors.hpp"
#include "eol/station/feature_catalog.hpp"
#include "eol/station/screen_store.hpp"

namespace eol::station {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::size_t kMaxReason = 480;
constexpr std::size_t kTopFeatures = 3;

std::string clip(std::string s) {
    if (s.size() > kMaxReason) {
        s.resize(kMaxReason - 3);
        s += "...";
    }
    return s;
}

bool is_derived(std::string_view name) {
    for (const auto& d : derived_features())
        if (name == d.name) return true;
    return false;
}

}  // namespace

std::string_view to_string(TestTimeVerdict::Kind k) {
    switch (k) {
        case TestTimeVerdict::Kind::not_outlier: return "not_outlier";
        case TestTimeVerdict::Kind::outlier: return "outlier";
        case TestTimeVerdict::Kind::no_history: return "no_history";
        case TestTimeVerdict::Kind::not_judged: return "not_judged";
    }
    return "?";
}

struct TestTimeScreen::Model {
    TestTimeModelInfo info;
    std::set<std::string> reference_lots;
    std::vector<models::PatLimits> pat;          // per feature
    Eigen::VectorXd location;
    Eigen::MatrixXd covariance;
    Eigen::LDLT<Eigen::MatrixXd> ldlt;           // of the full covariance
    std::vector<double> cutoff_by_k;             // [k] = χ²_k(quantile), k = 1..p
    std::shared_ptr<const models::ContributionWhitener> whitener;
};

struct TestTimeScreen::Shared {
    std::string cell_model;
    std::vector<std::string> configured;         // ScreeningConfig::features
    models::ScreeningSettings settings;          // from the config and the recipe's spec limits
    TestTimeScreenOptions options;
    mutable std::mutex model_mutex;              // guards `model` (the pointer)
    std::shared_ptr<const Model> model;
    std::mutex fit_mutex;                        // one fit at a time
    std::atomic<std::size_t> judged_since_fit{0};

    std::shared_ptr<const Model> fit(Store& store, std::string_view lot_under_test) const;
};

std::shared_ptr<const TestTimeScreen::Model> TestTimeScreen::Shared::fit(Store& store,
                                                                         std::string_view lot_under_test) const {
    const auto t0 = std::chrono::steady_clock::now();
    auto m = std::make_shared<Model>();
    TestTimeModelInfo& info = m->info;
    info.cell_model = cell_model;
    info.excluded_lot = std::string(lot_under_test);

    CellFilter filter;
    filter.cell_model = cell_model;
    FeatureTable all = build_feature_table(store, filter, configured, options.features);
    if (options.fixture && options.fixture->enabled && all.rows() > 0)
        info.notes.push_back(apply_fixture_correction(all, replay_fixture(store, *options.fixture), *options.fixture));

    // The reference rows: other lots, passed their limits, not held or scrapped now.
    std::vector<std::size_t> rows;
    {
        std::vector<std::string> candidates;
        std::vector<std::size_t> cand_rows;
        for (std::size_t i = 0; i < all.rows(); ++i) {
            if (all.lots[i] == lot_under_test) continue;
            if (all.verdicts[i] != Verdict::pass) {
                ++info.cells_failed;
                continue;
            }
            candidates.push_back(all.serials[i]);
            cand_rows.push_back(i);
        }
        const std::vector<CellStatus> st = store.status_many(candidates);
        for (std::size_t k = 0; k < cand_rows.size(); ++k) {
            if (st[k].state == CellState::held || st[k].state == CellState::scrapped) {
                ++info.cells_held;
                continue;
            }
            rows.push_back(cand_rows[k]);
        }
    }
    for (std::size_t i : rows) m->reference_lots.insert(all.lots[i]);
    info.cells = rows.size();
    info.lots = m->reference_lots.size();
    info.history = info.cells >= options.min_history_cells && info.lots >= std::max<std::size_t>(1, options.min_history_lots);
    if (!info.history) {
        info.features = configured;
        info.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return m;
    }

    // Columns: a derived feature without any value (the K-value with no
    // earlier OCV anywhere) is left out, as screen_store() does; any other
    // feature without a value is a configuration error.
    std::vector<std::size_t> cols;
    for (std::size_t j = 0; j < all.cols(); ++j) {
        std::size_t have = 0;
        for (std::size_t i : rows) have += std::isfinite(all.at(i, j)) ? 1u : 0u;
        if (have > 0) {
            cols.push_back(j);
        } else if (is_derived(all.names[j])) {
            info.notes.push_back(fmt::format("feature '{}' (derived) has no value in any of the {} reference cells: "
                                             "judged without it",
                                             all.names[j], rows.size()));
        } else {
            throw UsageError(fmt::format("test-time screen: feature '{}' has no value in any of the {} reference "
                                         "cells of model {}",
                                         all.names[j], rows.size(), cell_model));
        }
    }
    if (cols.empty()) throw UsageError("test-time screen: none of the configured features has a value");

    FeatureTable ref;
    const std::size_t n = rows.size(), p = cols.size();
    for (std::size_t j : cols) ref.names.push_back(all.names[j]);
    ref.values.resize(n * p);
    ref.missing.assign(p, 0);
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = rows[k];
        ref.serials.push_back(all.serials[i]);
        ref.lots.push_back(all.lots[i]);
        ref.production_dates.push_back(all.production_dates[i]);
        ref.run_ids.push_back(all.run_ids[i]);
        ref.verdicts.push_back(all.verdicts[i]);
        for (std::size_t c = 0; c < p; ++c) {
            const double v = all.at(i, cols[c]);
            ref.values[c * n + k] = v;
            if (!std::isfinite(v)) ++ref.missing[c];
        }
    }
    info.features = ref.names;

    // The lot screen's statistics, once: static PAT over the pooled reference
    // and FAST-MCD; no lot tests, no charts (they judge lots, not one cell).
    models::ScreeningSettings s = settings;
    s.features = ref.names;
    s.pat.dynamic = false;
    s.reference_lots.clear();
    s.lot_tests = false;
    s.charts = false;
    s.threads = options.threads;
    s.mcd.threads = options.threads;
    const models::ScreeningResult res = models::screen(to_screening_table(ref), s);
    for (std::size_t j = 0; j < p; ++j) {
        const models::PatFeatureResult& pr = res.pat[j];
        m->pat.push_back(pr.static_limits);
        info.pat_low.push_back(pr.static_limits.low);
        info.pat_high.push_back(pr.static_limits.high);
        if (!pr.static_adequate)
            info.notes.push_back(fmt::format("static PAT of {}: {} reference lot(s) of ≥ {} parts, AEC-Q001 asks for {}",
                                             ref.names[j], pr.reference_lots, s.pat.min_reference_parts,
                                             s.pat.min_reference_lots));
    }
    for (const auto& note : res.notes) info.notes.push_back(note);
    if (res.mcd.ran) {
        info.mcd = true;
        m->location = res.mcd.location;
        m->covariance = res.mcd.covariance;
        m->ldlt.compute(m->covariance);
        m->whitener = std::make_shared<models::ContributionWhitener>(m->covariance);
        m->cutoff_by_k.assign(p + 1, kNaN);
        for (std::size_t k = 1; k <= p; ++k)
            m->cutoff_by_k[k] = models::chi2_quantile(s.mcd_quantile, static_cast<double>(k));
        info.cutoff_sq = m->cutoff_by_k[p];
    }
    info.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return m;
}

TestTimeScreen::TestTimeScreen(std::unique_ptr<Shared> s) : s_(std::move(s)) {}
TestTimeScreen::TestTimeScreen(TestTimeScreen&&) noexcept = default;
TestTimeScreen& TestTimeScreen::operator=(TestTimeScreen&&) noexcept = default;
TestTimeScreen::~TestTimeScreen() = default;

TestTimeScreen TestTimeScreen::build(Store& store, std::string cell_model, const ScreeningConfig& config,
                                     const Recipe* recipe, std::string_view lot_under_test,
                                     const TestTimeScreenOptions& options) {
    if (config.features.empty()) throw UsageError("test-time screen: no features configured ([screening] features)");
    if (cell_model.empty()) throw UsageError("test-time screen: no cell model given");
    auto s = std::make_unique<Shared>();
    s->cell_model = std::move(cell_model);
    s->configured = config.features;
    s->settings = screening_settings(config, recipe);
    s->options = options;
    s->model = s->fit(store, lot_under_test);
    return TestTimeScreen(std::move(s));
}

std::shared_ptr<const TestTimeScreen::Model> TestTimeScreen::snapshot() const {
    std::lock_guard lk(s_->model_mutex);
    return s_->model;
}

void TestTimeScreen::refit(Store& store, std::string_view lot_under_test) {
    std::lock_guard fit_lock(s_->fit_mutex);
    auto m = s_->fit(store, lot_under_test);
    std::lock_guard lk(s_->model_mutex);
    s_->model = std::move(m);
    s_->judged_since_fit.store(0);
}

TestTimeModelInfo TestTimeScreen::info() const { return snapshot()->info; }
std::size_t TestTimeScreen::records_since_fit() const { return s_->judged_since_fit.load(); }

std::vector<double> TestTimeScreen::features_of(const TestRecord& record, Store* store) const {
    return record_features(record, snapshot()->info.features, store, s_->options.features);
}

namespace {

std::string fmt_limit(double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : (v > 0 ? "+inf" : "-inf"); }

}  // namespace

TestTimeVerdict TestTimeScreen::judge(const TestRecord& record, std::span<const double> features) const {
    return judge_with(*snapshot(), s_->options, record, features);
}

TestTimeVerdict TestTimeScreen::judge(const TestRecord& record, Store& store) {
    if (record.cell_model != s_->cell_model)
        throw UsageError(fmt::format("test-time screen of model {} asked to judge {} of model '{}'", s_->cell_model,
                                     record.serial, record.cell_model));
    std::shared_ptr<const Model> m = snapshot();
    if (record.verdict != Verdict::pass) return judge_with(*m, s_->options, record, {});
    const std::size_t every = s_->options.refresh_every_records;
    auto due = [&](const Model& mm) {
        return mm.info.excluded_lot != record.lot || (every > 0 && s_->judged_since_fit.load() >= every);
    };
    if (due(*m)) {
        std::lock_guard fit_lock(s_->fit_mutex);
        m = snapshot();
        if (due(*m)) {  // not refitted meanwhile by another caller
            auto fresh = s_->fit(store, record.lot);
            std::lock_guard lk(s_->model_mutex);
            s_->model = fresh;
            s_->judged_since_fit.store(0);
            m = std::move(fresh);
        }
    }
    ++s_->judged_since_fit;
    const std::vector<double> x = record_features(record, m->info.features, &store, s_->options.features);
    return judge_with(*m, s_->options, record, x);
}

// The judgement proper, against one model snapshot.
TestTimeVerdict TestTimeScreen::judge_with(const Model& m, const TestTimeScreenOptions& opt, const TestRecord& record,
                                           std::span<const double> x) {
    TestTimeVerdict v;
    const TestTimeModelInfo& info = m.info;
    v.cell_model = info.cell_model;
    v.features = info.features;
    v.history_cells = info.cells;
    v.history_lots = info.lots;
    v.excluded_lot = info.excluded_lot;
    v.notes = info.notes;
    if (record.verdict != Verdict::pass) {
        v.kind = TestTimeVerdict::Kind::not_judged;
        v.reason = fmt::format("not screened at test: verdict {} (its limits decided)", to_string(record.verdict));
        return v;
    }
    if (!info.history) {
        v.kind = TestTimeVerdict::Kind::no_history;
        v.values.assign(x.begin(), x.end());
        if (info.cells < opt.min_history_cells)
            v.reason = fmt::format("no history for model {} (n earlier cells {} < {}): spec limits only",
                                   info.cell_model, info.cells, opt.min_history_cells);
        else
            v.reason = fmt::format("no history for model {} (earlier lots {} < {}): spec limits only",
                                   info.cell_model, info.lots, opt.min_history_lots);
        return v;
    }
    const std::size_t p = info.features.size();
    if (x.size() != p)
        throw UsageError(fmt::format("test-time screen: {} feature values given for {} features", x.size(), p));
    v.values.assign(x.begin(), x.end());

    std::vector<std::string> why;
    for (std::size_t j = 0; j < p; ++j) {
        if (!std::isfinite(x[j]) || m.pat[j].contains(x[j])) continue;
        v.pat.push_back({info.features[j], x[j], m.pat[j].low, m.pat[j].high});
        const bool high = x[j] > m.pat[j].high;
        why.push_back(fmt::format("PAT: {} {:.6g} {} {} (static limits [{}, {}])", info.features[j], x[j],
                                  high ? "above" : "below", fmt_limit(high ? m.pat[j].high : m.pat[j].low),
                                  fmt_limit(m.pat[j].low), fmt_limit(m.pat[j].high)));
    }
    if (info.mcd) {
        std::vector<Eigen::Index> obs;
        for (std::size_t j = 0; j < p; ++j)
            if (std::isfinite(x[j])) obs.push_back(static_cast<Eigen::Index>(j));
        const auto k = static_cast<Eigen::Index>(obs.size());
        if (k > 0) {
            double d2 = kNaN;
            if (static_cast<std::size_t>(k) == p) {
                Eigen::VectorXd z(k);
                for (Eigen::Index a = 0; a < k; ++a) z(a) = x[static_cast<std::size_t>(a)] - m.location(a);
                d2 = z.dot(m.ldlt.solve(z));
            } else {  // the marginal location and scatter of the features present
                Eigen::VectorXd z(k);
                Eigen::MatrixXd sc(k, k);
                for (Eigen::Index a = 0; a < k; ++a) {
                    const Eigen::Index ja = obs[static_cast<std::size_t>(a)];
                    z(a) = x[static_cast<std::size_t>(ja)] - m.location(ja);
                    for (Eigen::Index b = 0; b < k; ++b) sc(a, b) = m.covariance(ja, obs[static_cast<std::size_t>(b)]);
                }
                d2 = z.dot(Eigen::LDLT<Eigen::MatrixXd>(sc).solve(z));
            }
            v.distance_sq = d2;
            v.distance_features = static_cast<std::size_t>(k);
            v.cutoff_sq = m.cutoff_by_k[static_cast<std::size_t>(k)];
            v.distance_outlier = d2 > v.cutoff_sq;
            if (v.distance_outlier) {
                std::string s = fmt::format("MCD: d² {:.4g} > {:.4g}", d2, v.cutoff_sq);
                if (static_cast<std::size_t>(k) == p) {
                    Eigen::VectorXd xv(k);
                    for (Eigen::Index a = 0; a < k; ++a) xv(a) = x[static_cast<std::size_t>(a)];
                    auto contrib = m.whitener->contributions(xv, m.location);
                    if (contrib.size() > kTopFeatures) contrib.resize(kTopFeatures);
                    std::vector<std::string> parts;
                    for (const auto& c : contrib) {
                        v.top.push_back({info.features[c.feature], c.share, c.z});
                        parts.push_back(fmt::format("{} {:.3g}% (z {:.2f})", info.features[c.feature], c.share * 100.0, c.z));
                    }
                    s += fmt::format(" ({})", fmt::join(parts, ", "));
                } else {
                    s += fmt::format(" (on the {} of {} features present)", k, p);
                }
                why.push_back(std::move(s));
            }
        }
    }
    const std::string basis = fmt::format("vs {} cells of {} earlier lots of {}", info.cells, info.lots, info.cell_model);
    if (why.empty()) {
        v.kind = TestTimeVerdict::Kind::not_outlier;
        v.reason = fmt::format("screen at test: not an outlier {}", basis);
    } else {
        v.kind = TestTimeVerdict::Kind::outlier;
        v.reason = clip(fmt::format("screen at test ({}): {}", basis, fmt::join(why, "; ")));
    }
    return v;
}

ScreenedWrite write_record_screened(Store& store, const TestRecord& record, const TestTimeVerdict& verdict,
                                    const Actor& actor, const SerialScheme& scheme) {
    ScreenedWrite w;
    store.write_transaction([&] {
        w = ScreenedWrite{};
        w.run_id = store.write(record);
        if (verdict.outlier()) {
            try {
                Quarantine q(store, scheme);
                w.hold_event_id = q.hold(Scope::serial(record.serial), verdict.reason, actor);
            } catch (const QuarantineRefused&) {
                w.already_held = true;  // held (or scrapped) already: not held twice
            }
        } else if (verdict.kind == TestTimeVerdict::Kind::no_history) {
            StationEvent e;
            e.station_id = record.station_id.empty() ? std::string("unknown") : record.station_id;
            e.kind = "screen_at_test";
            e.message = fmt::format("{} (run {}): {}", record.serial, w.run_id, verdict.reason);
            w.note_event_id = store.append_station_event(e);
        }
        return true;
    });
    return w;
}

}  // namespace eol::station
