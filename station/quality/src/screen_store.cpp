#include "eol/station/screen_store.hpp"

#include "eol/station/fixture_health.hpp"

#include "eol/models/calendar.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "eol/models/drift_window.hpp"
#include "eol/models/lot_tests.hpp"

namespace eol::station {
namespace {

constexpr std::size_t kMaxNotes = 40;
constexpr std::size_t kMaxReason = 480;

// Monday..Sunday of an ISO week "YYYY-Www".
std::optional<std::pair<std::string, std::string>> iso_week_dates(std::string_view key) {
    if (key.size() != 8 || key[4] != '-' || key[5] != 'W') return std::nullopt;
    const auto jan4 = models::parse_iso_day(fmt::format("{}-01-04", key.substr(0, 4)));
    if (!jan4) return std::nullopt;
    const int week = std::atoi(std::string(key.substr(6, 2)).c_str());
    if (week < 1 || week > 53) return std::nullopt;
    const std::int32_t wd = ((*jan4 % 7) + 7 + 3) % 7;  // Monday = 0 (1970-01-01 was a Thursday)
    const std::int32_t monday = *jan4 - wd + 7 * (week - 1);
    return std::pair{models::day_to_iso(monday), models::day_to_iso(monday + 6)};
}

std::optional<std::pair<std::string, std::string>> month_dates(std::string_view key) {
    if (key.size() != 7 || key[4] != '-') return std::nullopt;
    const int y = std::atoi(std::string(key.substr(0, 4)).c_str());
    const int m = std::atoi(std::string(key.substr(5, 2)).c_str());
    if (m < 1 || m > 12) return std::nullopt;
    return std::pair{Date{y, m, 1}.iso(), Date{y, m, models::days_in_month(y, m)}.iso()};
}

std::string clip(std::string s) {
    if (s.size() > kMaxReason) {
        s.resize(kMaxReason - 3);
        s += "...";
    }
    return s;
}

std::string fmt_p(double p) { return p < 1e-4 ? fmt::format("{:.1e}", p) : fmt::format("{:.4f}", p); }

}  // namespace

models::ScreeningSettings screening_settings(const ScreeningConfig& c, const Recipe* recipe) {
    models::ScreeningSettings s;
    s.features = c.features;
    s.pat.k = c.pat_k;
    s.pat.min_dynamic_count = static_cast<std::size_t>(std::max(1, c.pat_min_count));
    s.pat.dynamic = c.pat_mode == PatMode::dynamic;
    s.pat.min_reference_lots = static_cast<std::size_t>(std::max(1, c.static_pat_min_lots));
    s.pat.min_reference_parts = static_cast<std::size_t>(std::max(1, c.static_pat_min_parts));
    s.mcd_quantile = c.mcd_quantile;
    s.mcd.support_fraction = c.mcd_support_fraction;
    s.lots.alpha = c.lot_alpha;
    s.lots.baseline_rate = c.lot_baseline_rate > 0 ? c.lot_baseline_rate : std::numeric_limits<double>::quiet_NaN();
    s.lots.min_cells = static_cast<std::size_t>(std::max(1, c.lot_min_count));
    if (recipe) {
        // Spec limits of the features that are recipe measurements.
        const double inf = std::numeric_limits<double>::infinity();
        for (const std::string& f : c.features)
            if (const MeasurementSpec* m = recipe->find_measurement(f); m && (m->low || m->high))
                s.spec[f] = models::SpecLimits{m->low.value_or(-inf), m->high.value_or(inf)};
    }
    return s;
}

models::FeatureTable to_screening_table(const FeatureTable& t) {
    models::FeatureTable m;
    m.features = t.names;
    m.rows = t.rows();
    m.values = t.values;
    m.serials = t.serials;
    models::LotCoder coder(m.lot_names);
    m.lot.reserve(t.rows());
    m.day.reserve(t.rows());
    for (std::size_t i = 0; i < t.rows(); ++i) {
        m.lot.push_back(coder.code(t.lots[i]));
        const auto d = models::parse_iso_day(t.production_dates[i]);
        m.day.push_back(d ? *d : models::kNoDay);
    }
    return m;
}

ScreenReport screen_store(Store& store, const ScreeningConfig& config, const ScreenFilter& filter, bool apply,
                          const Actor& actor, const Recipe* recipe, const FixtureHealthConfig* fixture) {
    const auto t_start = std::chrono::steady_clock::now();
    if (config.features.empty()) throw UsageError("screen: no features configured ([screening] features)");
    if (apply && (actor.name.empty() || actor.role.empty()))
        throw UsageError("screen --apply: an actor and a role are needed to write holds");
    Quarantine quarantine(store);
    CellFilter cf;
    if (filter.lot) cf.lot = quarantine.normalize(Scope::lot(*filter.lot)).target;
    if (filter.since) {
        if (!filter.since->valid()) throw UsageError("screen: --since is not a valid date");
        cf.date_from = filter.since->iso();
    }

    ScreenReport rep;
    FeatureTable table = build_feature_table(store, cf, config.features);
    // A derived feature that needs history (the K-value needs two OCV
    // readings days apart) may have no value yet anywhere, e.g. at a station
    // without formation records: screened without it, with a note. Any
    // other feature without a value is a configuration error (below).
    {
        std::vector<std::string> keep;
        for (std::size_t j = 0; j < table.cols(); ++j) {
            bool derived = false;
            for (const auto& d : derived_features()) derived = derived || table.names[j] == d.name;
            if (derived && table.rows() > 0 && table.missing[j] == table.rows())
                rep.notes.push_back(fmt::format("feature '{}' (derived) has no value in any of the {} cells (for "
                                                "the K-value: no earlier OCV reading of the serial): screened "
                                                "without it",
                                                table.names[j], table.rows()));
            else
                keep.push_back(table.names[j]);
        }
        if (keep.empty()) throw UsageError("screen: none of the configured features has a value in any cell");
        if (keep.size() < table.cols()) table = build_feature_table(store, cf, keep);
    }
    if (fixture && fixture->enabled && table.rows() > 0)
        rep.notes.push_back(apply_fixture_correction(table, replay_fixture(store, *fixture), *fixture));
    rep.cells_screened = table.rows();
    rep.features = table.names;
    rep.missing = table.missing;
    if (table.rows() == 0) {
        rep.notes.push_back("no stored cell with a completed run matches the filter");
        rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
        return rep;
    }
    for (std::size_t j = 0; j < table.cols(); ++j)
        if (table.missing[j] == table.rows()) {
            std::vector<std::string> derived;
            for (const auto& d : derived_features()) derived.emplace_back(d.name);
            throw UsageError(fmt::format(
                "screen: feature '{}' has no value in any of the {} cells screened (names are recipe "
                "measurements, fit values '<kind>.<param>', or derived: {})",
                table.names[j], table.rows(), fmt::join(derived, ", ")));
        }

    const models::FeatureTable mt = to_screening_table(table);
    models::ScreeningSettings settings = screening_settings(config, recipe);
    settings.features = table.names;  // without the derived features dropped above
    const models::ScreeningResult res = models::screen(mt, settings);
    rep.baseline_rate = res.lots.baseline_rate;
    for (std::size_t k = 0; k < res.notes.size() && k < kMaxNotes; ++k) rep.notes.push_back(res.notes[k]);
    if (res.notes.size() > kMaxNotes) rep.notes.push_back(fmt::format("… {} more notes", res.notes.size() - kMaxNotes));

    // When did a drift begin? Nelson rules in force that fired on the daily-median charts.
    for (std::size_t j = 0; j < res.charts.size(); ++j) {
        const models::ControlChart& ch = res.charts[j];
        if (!ch.evaluated) continue;
        for (int r : config.nelson_rules) {
            const auto& sig = ch.rules[static_cast<std::size_t>(r - 1)];
            if (!sig.fired) continue;
            rep.notes.push_back(fmt::format("chart {}: Nelson rule {} fires on {} day(s), first at {} (began {})",
                                            res.features[j], r, sig.points, models::day_to_iso(sig.first_day),
                                            models::day_to_iso(sig.start_day)));
        }
    }

    // Drift windows: a change-point scan over production days (every lot's
    // evidence pooled); each window found is held by its dates.
    std::vector<std::pair<std::int32_t, std::int32_t>> drift_held;  // day ranges held
    if (config.drift_window != DriftHold::off && !mt.day.empty()) {
        models::DriftWindowSettings ds;
        ds.alpha = config.drift_alpha;
        ds.permutations = static_cast<std::size_t>(std::max(19, config.drift_permutations));
        ds.max_windows = static_cast<std::size_t>(std::max(1, config.drift_max_windows));
        ds.min_shift_sigma = config.drift_min_shift_sigma;
        const models::DriftWindowResult dw = models::find_drift_windows(mt.values, mt.rows, mt.features.size(), mt.day, ds);
        rep.drift_evaluated = dw.evaluated;
        rep.drift_p_value = dw.first_p_value;
        for (const auto& n : dw.notes) rep.notes.push_back(n);
        for (const auto& w : dw.immaterial) {
            const std::size_t largest = w.largest_shift();
            rep.notes.push_back(fmt::format(
                "drift windows: {}..{} ({} cells) shifted significantly (permutation p = {:.4f}) but by at most {:+.2f} "
                "robust cell sigmas ({}), below drift_min_shift_sigma {:g}: not held",
                models::day_to_iso(w.start.day), models::day_to_iso(w.end.day), w.cells, w.p_value,
                w.shift_z.empty() ? 0.0 : w.shift_z[largest],
                w.shift_z.empty() ? std::string("-") : table.names[dw.features[largest]], config.drift_min_shift_sigma));
        }
        for (const auto& w : dw.windows) {
            DriftWindowReport d;
            d.start = models::day_to_iso(w.start.day);
            d.end = models::day_to_iso(w.end.day);
            d.start_probability = w.start.probability;
            d.end_probability = w.end.probability;
            d.start_credible_from = models::day_to_iso(w.start.credible_first);
            d.start_credible_to = models::day_to_iso(w.start.credible_last);
            d.end_credible_from = models::day_to_iso(w.end.credible_first);
            d.end_credible_to = models::day_to_iso(w.end.credible_last);
            d.last_day_before = models::day_to_iso(w.last_day_before);
            d.first_day_after = models::day_to_iso(w.first_day_after);
            d.days = w.days;
            d.cells = w.cells;
            d.statistic = w.statistic;
            d.critical = w.critical;
            d.p_value = w.p_value;
            for (std::size_t q = 0; q < dw.features.size(); ++q)
                d.shifts.push_back({table.names[dw.features[q]], w.shift[q], w.shift_z[q]});
            std::stable_sort(d.shifts.begin(), d.shifts.end(), [](const auto& a, const auto& b) {
                return std::abs(a.shift_z) > std::abs(b.shift_z);
            });
            const bool credible = config.drift_window == DriftHold::credible;
            const std::int32_t from = credible ? std::min(w.start.day, w.start.credible_first) : w.start.day;
            const std::int32_t to = credible ? std::max(w.end.day, w.end.credible_last) : w.end.day;
            d.held_from = models::day_to_iso(from);
            d.held_to = models::day_to_iso(to);
            drift_held.emplace_back(from, to);

            ScreenedGroup sg;
            sg.scope = QuarantineScope::window;
            sg.window_from = d.held_from;
            sg.window_to = d.held_to;
            sg.target = d.held_from + ".." + d.held_to;
            sg.group = fmt::format("drift window {}", sg.target);
            sg.cells = 0;
            for (std::size_t i = 0; i < table.rows(); ++i) sg.cells += mt.day[i] != models::kNoDay && mt.day[i] >= from && mt.day[i] <= to ? 1u : 0u;
            sg.p_value = w.p_value;
            std::string shifts;
            for (std::size_t q = 0; q < d.shifts.size() && q < 3; ++q)
                shifts += fmt::format("{}{} {:+.3g} ({:+.2f} sigma)", q ? ", " : "", d.shifts[q].feature,
                                      d.shifts[q].shift, d.shifts[q].shift_z);
            sg.reason = fmt::format(
                "screen: drift window: process shifted from {} (P {:.2f}, 95 % {}..{}) to {} (P {:.2f}, 95 % {}..{}), "
                "{} days; {}; scan T {:.1f} > {:.1f}, permutation p = {}",
                d.start, d.start_probability, d.start_credible_from, d.start_credible_to, d.end, d.end_probability,
                d.end_credible_from, d.end_credible_to, d.days, shifts, d.statistic, d.critical, fmt_p(d.p_value));
            sg.already_held = false;  // set below, once `latest` is read
            rep.groups.push_back(std::move(sg));
            rep.drift_windows.push_back(std::move(d));
        }
    }
    auto in_drift_window = [&](std::int32_t day) {
        for (const auto& [a, b] : drift_held)
            if (day != models::kNoDay && day >= a && day <= b) return true;
        return false;
    };
    // Lots, months and weeks keep their binomial tests on all cells, drift
    // windows or not: a boundary day the scan misplaces is still held when its
    // month or week fails (tests/station/test_screen_store.cpp "accuracy: …"
    // lost two defect lots when windows were tested outside the drift window).
    const models::LotTestResult& lots_res = res.lots;

    // Latest event per target, for "already held".
    std::map<std::pair<QuarantineScope, std::string>, QuarantineAction> latest;
    for (const auto& e : store.quarantine_events()) latest[{e.scope, e.target}] = e.action;
    auto held_now = [&](QuarantineScope s, const std::string& target) {
        const auto it = latest.find({s, target});
        return it != latest.end() && it->second == QuarantineAction::hold;
    };

    for (auto& g : rep.groups) g.already_held = held_now(g.scope, g.target);  // drift windows

    // Failed groups → lot and window holds.
    for (std::size_t g = 0; g < lots_res.groups.size(); ++g) {
        const models::GroupTest& gt = lots_res.groups[g];
        if (!gt.held) continue;  // groups under lot_min_count cells are not tested
        ScreenedGroup sg;
        sg.group = fmt::format("{} {}", models::to_string(gt.kind), gt.key);
        sg.cells = gt.cells;
        sg.outliers = gt.outliers;
        sg.rate = gt.rate;
        sg.p_value = gt.p_value;
        if (gt.kind == models::GroupKind::lot) {
            sg.scope = QuarantineScope::lot;
            sg.target = gt.key;
        } else {
            const auto dates = gt.kind == models::GroupKind::month ? month_dates(gt.key) : iso_week_dates(gt.key);
            if (!dates) {
                rep.notes.push_back(fmt::format("{}: cannot turn '{}' into dates: not held", sg.group, gt.key));
                continue;
            }
            sg.scope = QuarantineScope::window;
            sg.window_from = dates->first;
            sg.window_to = dates->second;
            sg.target = dates->first + ".." + dates->second;
        }
        sg.reason = fmt::format("screen: {} outlier rate {:.2f} % ({}/{}) vs baseline {:.2f} % (binomial p = {} < {})",
                                sg.group, 100.0 * gt.rate, gt.outliers, gt.cells, 100.0 * lots_res.baseline_rate,
                                fmt_p(gt.p_value), fmt_p(lots_res.alpha_per_test));
        sg.already_held = held_now(sg.scope, sg.target);
        rep.groups.push_back(std::move(sg));
    }

    // Drift days → lot holds. A production day whose daily median of a
    // screened feature lies more than z_crit chart sigmas from the chart's
    // centre, z_crit Bonferroni-adjusted over every charted (feature, day)
    // point at family-wise error lot_alpha: every lot made that day is held.
    // (A lot-wide shift — a drifting process — need not make single cells
    // outliers, but it moves the day's median by many of its sigmas.) Days
    // with fewer than half the median number of cells a day are not judged.
    {
        std::size_t m = 0;
        std::vector<std::size_t> counts;
        for (const auto& ch : res.charts)
            if (ch.evaluated && ch.sigma > 0) {
                m += ch.points.size();
                for (const auto& pt : ch.points) counts.push_back(pt.count);
            }
        if (m > 0) {
            std::nth_element(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(counts.size() / 2),
                             counts.end());
            const std::size_t min_count = std::max<std::size_t>(2, counts[counts.size() / 2] / 2);
            const double z_crit = models::normal_quantile(1.0 - config.lot_alpha / (2.0 * static_cast<double>(m)));
            std::map<std::int32_t, std::pair<double, std::string>> drift;  // day → (|z|, why)
            for (std::size_t j = 0; j < res.charts.size(); ++j) {
                const auto& ch = res.charts[j];
                if (!ch.evaluated || !(ch.sigma > 0)) continue;
                for (const auto& pt : ch.points) {
                    if (pt.count < min_count || in_drift_window(pt.day)) continue;
                    const double z = (pt.value - ch.center) / ch.sigma;
                    if (!(std::abs(z) > z_crit)) continue;
                    auto& d = drift[pt.day];
                    if (std::abs(z) <= d.first) continue;
                    d = {std::abs(z),
                         fmt::format("daily median of {} on {} is {:.1f} sigma {} the chart centre {:.6g} (|z| > {:.2f}, "
                                     "Bonferroni over {} charted day-points)",
                                     res.features[j], models::day_to_iso(pt.day), std::abs(z), z > 0 ? "above" : "below",
                                     ch.center, z_crit, m)};
                }
            }
            std::map<std::string, std::pair<double, std::string>> drift_lots;  // lot → strongest reason
            for (std::size_t i = 0; i < table.rows(); ++i) {
                const auto it = drift.find(mt.day[i]);
                if (it == drift.end()) continue;
                auto& l = drift_lots[table.lots[i]];
                if (it->second.first > l.first) l = it->second;
            }
            for (const auto& [lot, why] : drift_lots) {
                const bool listed = std::any_of(rep.groups.begin(), rep.groups.end(), [&](const ScreenedGroup& g) {
                    return g.scope == QuarantineScope::lot && g.target == lot;
                });
                if (listed) continue;
                ScreenedGroup sg;
                sg.scope = QuarantineScope::lot;
                sg.target = lot;
                sg.group = fmt::format("drift lot {}", lot);
                sg.p_value = 1.0 - models::chi2_cdf(why.first * why.first, 1.0);  // two-sided normal tail
                sg.reason = fmt::format("screen: drift: {}", why.second);
                sg.already_held = held_now(sg.scope, sg.target);
                rep.groups.push_back(std::move(sg));
            }
        }
    }

    // Cells inside held groups.
    std::vector<std::uint8_t> in_group(table.rows(), 0);
    for (std::size_t i = 0; i < table.rows(); ++i) {
        for (const auto& g : rep.groups) {
            const bool covers = g.scope == QuarantineScope::lot
                                    ? g.target == table.lots[i]
                                    : (!table.production_dates[i].empty() && g.window_from <= table.production_dates[i] &&
                                       table.production_dates[i] <= g.window_to);
            if (covers) {
                in_group[i] = 1;
                break;
            }
        }
        rep.cells_held_by_groups += in_group[i];
    }
    for (auto& g : rep.groups) {
        if (g.cells > 0) continue;
        for (std::size_t i = 0; i < table.rows(); ++i)
            if (g.scope == QuarantineScope::lot && g.target == table.lots[i]) ++g.cells;
    }

    // Outlier cells → serial holds.
    std::vector<std::string> outlier_serials;
    std::vector<std::size_t> outlier_rows;
    for (const auto& f : res.flagged) {
        if ((f.flags & (models::kFlagPat | models::kFlagMcd)) == 0) continue;
        ++rep.outliers;
        ScreenedCell c;
        c.serial = table.serials[f.row];
        c.lot = table.lots[f.row];
        c.production_date = table.production_dates[f.row];
        c.flags = f.flags;
        c.distance_sq = f.distance_sq;
        for (auto& r : models::reasons(f, res))
            if (r.rfind("held:", 0) != 0) c.reasons.push_back(std::move(r));
        c.already_held = held_now(QuarantineScope::serial, c.serial);
        outlier_serials.push_back(c.serial);
        outlier_rows.push_back(f.row);
        rep.cells.push_back(std::move(c));
    }
    // Scrapped units are not held again.
    {
        LookupSession session(store);
        const auto st = session.lookup_many(outlier_serials);
        for (std::size_t k = 0; k < st.size(); ++k) rep.cells[k].scrapped = st[k].state == CellState::scrapped;
    }

    // Would be held, but already shipped.
    const auto shipped = shipped_serials(store);
    if (!shipped.empty()) {
        std::vector<std::uint8_t> outlier_row(table.rows(), 0);
        for (std::size_t r : outlier_rows) outlier_row[r] = 1;
        for (std::size_t i = 0; i < table.rows(); ++i) {
            if (!outlier_row[i] && !in_group[i]) continue;
            const auto it = shipped.find(table.serials[i]);
            if (it == shipped.end()) continue;
            std::string why = outlier_row[i] ? "outlier" : "";
            if (in_group[i]) {
                for (const auto& g : rep.groups) {
                    const bool covers = g.scope == QuarantineScope::lot
                                            ? g.target == table.lots[i]
                                            : (g.window_from <= table.production_dates[i] &&
                                               table.production_dates[i] <= g.window_to);
                    if (covers) {
                        why += why.empty() ? g.group : ", " + g.group;
                        break;
                    }
                }
            }
            rep.shipped.push_back({table.serials[i], table.lots[i], table.production_dates[i], it->second, why});
        }
    }

    if (apply) {
        // The holds are decided again under the write lock, against the
        // events as they are now: a target another screen or operator held
        // since the report was made is not held twice, a unit scrapped
        // meanwhile not held at all. Decision and write: one transaction.
        store.write_transaction([&] {
            latest.clear();
            for (const auto& e : store.quarantine_events()) latest[{e.scope, e.target}] = e.action;
            for (auto& g : rep.groups) g.already_held = held_now(g.scope, g.target);
            std::vector<std::string> to_hold;
            for (auto& c : rep.cells) {
                c.already_held = held_now(QuarantineScope::serial, c.serial);
                if (!c.already_held && !c.scrapped) to_hold.push_back(c.serial);
            }
            std::vector<QuarantineEvent> evs;
            for (const auto& g : rep.groups) {
                if (g.already_held) continue;
                QuarantineEvent e;
                e.action = QuarantineAction::hold;
                e.scope = g.scope;
                e.target = g.target;
                e.window_from = g.window_from;
                e.window_to = g.window_to;
                e.reason = clip(g.reason);
                e.actor = actor.name;
                e.role = actor.role;
                evs.push_back(std::move(e));
            }
            LookupSession session(store);
            const auto now = session.lookup_many(to_hold);
            std::size_t k = 0;
            for (auto& c : rep.cells) {
                if (c.already_held || c.scrapped) continue;
                c.scrapped = now[k++].state == CellState::scrapped;
                if (c.scrapped) continue;
                QuarantineEvent e;
                e.action = QuarantineAction::hold;
                e.scope = QuarantineScope::serial;
                e.target = c.serial;
                e.reason = clip(fmt::format("screen: {}", fmt::join(c.reasons, "; ")));
                e.actor = actor.name;
                e.role = actor.role;
                evs.push_back(std::move(e));
            }
            if (!evs.empty()) rep.event_ids = store.append_quarantine_batch(evs);
            return true;
        });
        rep.applied = true;
    }
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    return rep;
}

}  // namespace eol::station
