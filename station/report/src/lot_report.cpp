// The lot report (report.hpp): summary, histograms with spec and PAT limits,
// R0 against heat rise per I²R, control charts of daily medians with Nelson
// hits, the outlier table and the audit trail of holds and releases.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

#include "eol/models/screening.hpp"
#include "eol/station/errors.hpp"
#include "eol/station/features.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/report.hpp"
#include "eol/station/screen_store.hpp"
#include "html.hpp"

namespace eol::station {

using namespace report_detail;

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string day_text(double day) {
    if (!std::isfinite(day)) return "";
    return models::day_to_iso(static_cast<std::int32_t>(std::lround(day))).substr(5);  // "03-14"
}

struct CellRow {
    CellInfo info;
    std::optional<Verdict> verdict;   // latest completed run
    CellState state = CellState::clear;
    bool held_by_group = false;       // a lot/window hold in force covers it
    std::string held_reason;
};


std::string histogram_svg(const std::string& feature, std::span<const double> values, const std::vector<bool>& held,
                          const models::SpecLimits* spec, const std::vector<std::pair<std::string, models::PatLimits>>& pats) {
    std::vector<double> finite;
    for (double v : values)
        if (std::isfinite(v)) finite.push_back(v);
    const std::size_t n = finite.size();
    if (n == 0) return empty_svg(feature, "no values");
    // The plotted range is the 0.5–99.5 % quantiles (and the limits near
    // them): one far outlier must not squeeze every other cell into a bar.
    // Values outside go into the edge bars; the title counts them.
    std::sort(finite.begin(), finite.end());
    const double last = static_cast<double>(n - 1);
    Range x;
    x.include(finite[static_cast<std::size_t>(std::floor(0.005 * last))]);
    x.include(finite[static_cast<std::size_t>(std::ceil(0.995 * last))]);
    const double d_lo = x.lo, d_hi = x.hi, span = std::max(d_hi - d_lo, std::fabs(d_hi) * 1e-3 + 1e-12);
    // Limits are shown when they are near the data; far ones are named in the legend.
    std::vector<std::string> far;
    auto near = [&](double v) { return std::isfinite(v) && v > d_lo - 1.5 * span && v < d_hi + 1.5 * span; };
    if (spec) {
        for (double v : {spec->low, spec->high}) {
            if (near(v)) x.include(v);
            else if (std::isfinite(v)) far.push_back(num(v));
        }
    }
    for (const auto& [lot, p] : pats)
        for (double v : {p.low, p.high})
            if (near(v)) x.include(v);
    x.pad(0.04);
    const int bins = static_cast<int>(std::clamp(std::sqrt(static_cast<double>(n)), 8.0, 40.0));
    const double w = (x.hi - x.lo) / bins;
    std::vector<double> all(static_cast<std::size_t>(bins), 0.0), red(static_cast<std::size_t>(bins), 0.0);
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (!std::isfinite(values[i])) continue;
        auto b = static_cast<std::size_t>(std::clamp(std::floor((values[i] - x.lo) / w), 0.0, bins - 1.0));
        all[b] += 1;
        if (i < held.size() && held[i]) red[b] += 1;
    }
    Range y;
    y.include(0);
    for (double c : all) y.include(c);
    y.hi = std::max(1.0, y.hi * 1.12);
    std::size_t outside = 0;
    for (double v : finite) outside += (v < x.lo || v > x.hi) ? 1u : 0u;
    Plot p(outside ? fmt::format("{} (n = {}; {} outside the range, in the edge bars)", feature, n, outside)
                   : fmt::format("{} (n = {})", feature, n),
           feature, "cells", x, y);
    for (int b = 0; b < bins; ++b) {
        const auto k = static_cast<std::size_t>(b);
        p.bar(x.lo + b * w, x.lo + (b + 1) * w, all[k], "bar");
        if (red[k] > 0) p.bar(x.lo + b * w, x.lo + (b + 1) * w, red[k], "bar held");
    }
    p.legend("bar", "cells");
    if (std::any_of(red.begin(), red.end(), [](double c) { return c > 0; })) p.legend("bar held", "held now");
    if (spec && (std::isfinite(spec->low) || std::isfinite(spec->high))) {
        p.vline(spec->low, "spec", fmt::format("spec low {}", num(spec->low)));
        p.vline(spec->high, "spec", fmt::format("spec high {}", num(spec->high)));
        p.legend("spec", far.empty() ? "spec limits" : fmt::format("spec ({} off scale)", fmt::join(far, ", ")));
    }
    bool any_pat = false;
    for (const auto& [lot, lim] : pats) {
        if (std::isfinite(lim.low) || std::isfinite(lim.high)) any_pat = true;
        p.vline(lim.low, "pat", fmt::format("PAT low {} (lot {}, {})", num(lim.low), lot, models::to_string(lim.source)));
        p.vline(lim.high, "pat", fmt::format("PAT high {} (lot {}, {})", num(lim.high), lot, models::to_string(lim.source)));
    }
    if (any_pat) p.legend("pat", pats.size() == 1 ? "PAT limits" : "PAT limits (per lot)");
    return p.svg();
}

}  // namespace

LotReport build_lot_report(Store& store, const LotReportOptions& o) {
    LotReport rep;
    Quarantine quarantine(store);
    CellFilter cf;
    std::string scope_text;
    if (o.lot) {
        cf.lot = quarantine.normalize(Scope::lot(*o.lot)).target;
        scope_text = "lot " + *cf.lot;
    } else {
        if (o.date_from.empty() || o.date_to.empty()) throw UsageError("report: give a lot or a production window");
        cf.date_from = o.date_from;
        cf.date_to = o.date_to;
        scope_text = fmt::format("production window {}..{}", o.date_from, o.date_to);
    }

    // ---- the cells, their latest verdicts and their state now
    std::vector<CellRow> cells;
    store.for_each_cell(cf, [&](const CellInfo& c) { CellRow row;
        row.info = c;
        cells.push_back(std::move(row)); });
    if (cells.empty()) throw UsageError(fmt::format("report: no stored cell in {}", scope_text));
    std::unordered_map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < cells.size(); ++i) index.emplace(cells[i].info.serial, i);
    store.for_each_latest(cf, [&](const CellFeatures& f) {
        if (auto it = index.find(f.cell.serial); it != index.end()) cells[it->second].verdict = f.run.verdict;
    });
    {
        std::vector<std::string> serials;
        for (const auto& c : cells) serials.push_back(c.info.serial);
        const auto st = store.status_many(serials);
        for (std::size_t i = 0; i < cells.size(); ++i) {
            cells[i].state = st[i].state;
            if (st[i].state == CellState::held) {
                for (const auto& e : st[i].because)
                    if (e.scope != QuarantineScope::serial) cells[i].held_by_group = true;
                if (!st[i].because.empty()) cells[i].held_reason = st[i].because.back().reason;
            }
        }
    }
    std::set<std::string> lots;
    std::string first_day, last_day;
    for (const auto& c : cells) {
        lots.insert(c.info.lot);
        if (!c.info.production_date.empty()) {
            if (first_day.empty() || c.info.production_date < first_day) first_day = c.info.production_date;
            if (last_day.empty() || c.info.production_date > last_day) last_day = c.info.production_date;
        }
        if (c.verdict) {
            ++rep.tested;
            if (*c.verdict == Verdict::pass) ++rep.passed;
            else ++rep.failed;
        }
        if (c.state == CellState::held) ++rep.held;
    }

    // ---- screening, as `eolstation screen` does it, over these cells
    std::vector<std::string> notes;
    FeatureTable table = build_feature_table(store, cf, o.screening.features);
    {
        std::vector<std::string> keep;
        for (std::size_t j = 0; j < table.cols(); ++j) {
            if (table.rows() > 0 && table.missing[j] == table.rows())
                notes.push_back(fmt::format("feature '{}' has no value in any cell here: not screened", table.names[j]));
            else
                keep.push_back(table.names[j]);
        }
        if (keep.size() < table.cols() && !keep.empty()) table = build_feature_table(store, cf, keep);
        if (keep.empty()) table = FeatureTable{};
    }
    models::ScreeningSettings settings = screening_settings(o.screening, o.recipe);
    settings.features = table.names;
    std::optional<models::ScreeningResult> res;
    if (table.rows() >= 2 && table.cols() > 0) {
        try {
            res = models::screen(to_screening_table(table), settings);
        } catch (const std::exception& e) {
            notes.push_back(fmt::format("screening not possible here: {}", e.what()));
        }
    } else {
        notes.push_back("fewer than two tested cells: not screened");
    }
    if (res)
        for (const auto& n : res->notes) notes.push_back(n);
    std::unordered_map<std::string, const models::FlaggedCell*> flagged_of;
    if (res) {
        rep.outliers = res->flagged.size();
        for (const auto& f : res->flagged) flagged_of.emplace(table.serials[f.row], &f);
    }
    std::vector<bool> held_row(table.rows(), false);
    for (std::size_t i = 0; i < table.rows(); ++i)
        if (auto it = index.find(table.serials[i]); it != index.end())
            held_row[i] = cells[it->second].state == CellState::held;
    std::set<std::string> screen_fails;  // lots the binomial test would hold
    if (res)
        for (const auto& g : res->lots.groups)
            if (g.kind == models::GroupKind::lot && g.held) screen_fails.insert(g.key);

    // ---- per lot
    ReportTable lot_table{"lots", {"lot", "cells", "tested", "passed", "failed", "held now", "outliers", "verdict"}, {}};
    std::vector<std::string> lot_class;
    std::size_t lots_held = 0, lots_failing = 0;
    for (const auto& lot : lots) {
        std::size_t n = 0, tested = 0, passed = 0, failed = 0, held = 0, outl = 0;
        bool group_held = false;
        for (const auto& c : cells) {
            if (c.info.lot != lot) continue;
            ++n;
            if (c.verdict) {
                ++tested;
                (*c.verdict == Verdict::pass ? passed : failed)++;
            }
            if (c.state == CellState::held) ++held;
            group_held = group_held || c.held_by_group;
            if (flagged_of.count(c.info.serial)) ++outl;
        }
        std::string verdict, cls;
        if (group_held) {
            verdict = "HELD (lot or window hold in force)";
            cls = "bad";
            ++lots_held;
        } else if (screen_fails.count(lot)) {
            verdict = "SCREEN FAILS: outlier rate above baseline; not held yet";
            cls = "warn";
            ++lots_failing;
        } else if (held + failed > 0) {
            verdict = fmt::format("SHIP ({} unit{} stay back)", held + failed, held + failed == 1 ? "" : "s");
            cls = "good";
        } else {
            verdict = "SHIP";
            cls = "good";
        }
        lot_table.rows.push_back({lot, std::to_string(n), std::to_string(tested), std::to_string(passed),
                                  std::to_string(failed), std::to_string(held), std::to_string(outl), verdict});
        lot_class.push_back(cls);
    }
    // The page lists the lots that need a look first (held, failing the
    // screen, units held back), then the rest; the CSV keeps lot order.
    ReportTable lot_view = lot_table;
    std::vector<std::string> lot_view_class;
    {
        std::vector<std::size_t> order(lot_table.rows.size());
        for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
        auto severity = [&](std::size_t k) {
            const std::string& v = lot_table.rows[k].back();
            return v.rfind("HELD", 0) == 0 ? 0 : v.rfind("SCREEN", 0) == 0 ? 1 : v != "SHIP" ? 2 : 3;
        };
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return severity(a) < severity(b); });
        lot_view.rows.clear();
        for (std::size_t k : order) {
            lot_view.rows.push_back(lot_table.rows[k]);
            lot_view_class.push_back(lot_class[k]);
        }
    }

    // ---- outliers
    ReportTable outliers{"outliers",
                         {"serial", "lot", "production_date", "flags", "distance_sq", "cutoff_sq", "features", "reasons",
                          "state_now"},
                         {}};
    std::vector<std::string> outlier_class;
    if (res) {
        for (const auto& f : res->flagged) {
            const std::string& serial = table.serials[f.row];
            std::vector<std::string> feats;
            for (const auto& v : f.pat)
                feats.push_back(fmt::format("{} {} {} {}", res->features[v.feature], num(v.value), v.high ? ">" : "<",
                                            num(v.limit)));
            for (const auto& t : f.top)
                feats.push_back(fmt::format("{} z {} ({:.0f} % of d²)", res->features[t.feature], num(t.z, 3),
                                            100.0 * t.share));
            std::string flags;
            if (f.flags & models::kFlagPat) flags += "PAT ";
            if (f.flags & models::kFlagMcd) flags += "MCD ";
            if (f.flags & models::kFlagHeldGroup) flags += "group ";
            if (!flags.empty()) flags.pop_back();
            const auto& cr = cells[index.at(serial)];
            outliers.rows.push_back({serial, table.lots[f.row], table.production_dates[f.row], flags,
                                     std::isfinite(f.distance_sq) ? num(f.distance_sq) : "",
                                     std::isfinite(f.cutoff_sq) ? num(f.cutoff_sq) : "",
                                     fmt::format("{}", fmt::join(feats, "; ")),
                                     fmt::format("{}", fmt::join(models::reasons(f, *res), "; ")),
                                     std::string(to_string(cr.state))});
            outlier_class.push_back(cr.state == CellState::held ? "bad" : "warn");
        }
    }

    // ---- the audit trail: holds and releases that apply to these cells
    ReportTable holds{"holds", {"event", "time_utc", "action", "scope", "target", "reason", "actor", "role"}, {}};
    std::vector<std::string> hold_class;
    for (const auto& e : store.quarantine_events()) {
        bool applies = false;
        switch (e.scope) {
            case QuarantineScope::serial: applies = index.count(e.target) > 0; break;
            case QuarantineScope::lot: applies = lots.count(e.target) > 0; break;
            case QuarantineScope::window:
                applies = !first_day.empty() && !(e.window_to < first_day) && !(e.window_from > last_day);
                break;
        }
        if (!applies) continue;
        holds.rows.push_back({std::to_string(e.id), utc(e.time_unix_s), std::string(to_string(e.action)),
                              std::string(to_string(e.scope)), e.target, e.reason, e.actor, e.role});
        hold_class.push_back(e.action == QuarantineAction::release ? "good" : "bad");
    }

    // ---- cells (CSV only)
    ReportTable cell_table{"cells", {"serial", "lot", "production_date", "verdict", "state_now", "outlier", "held_reason"}, {}};
    for (const auto& c : cells)
        cell_table.rows.push_back({c.info.serial, c.info.lot, c.info.production_date,
                                   c.verdict ? std::string(to_string(*c.verdict)) : "untested", std::string(to_string(c.state)),
                                   flagged_of.count(c.info.serial) ? "yes" : "no", c.held_reason});

    ReportTable summary{"summary", {"item", "value"}, {}};
    const std::string overall = lots_held > 0      ? fmt::format("HOLD: {} of {} lot{} held", lots_held, lots.size(),
                                                                lots.size() == 1 ? "" : "s")
                                : lots_failing > 0 ? fmt::format("REVIEW: screening fails {} lot{} not held yet", lots_failing,
                                                                 lots_failing == 1 ? "" : "s")
                                                   : "SHIP: no lot is held or fails screening";
    const std::string overall_class = lots_held > 0 ? "bad" : lots_failing > 0 ? "warn" : "good";
    summary.rows = {{"scope", scope_text},
                    {"cells", std::to_string(cells.size())},
                    {"tested", std::to_string(rep.tested)},
                    {"passed", std::to_string(rep.passed)},
                    {"failed", std::to_string(rep.failed)},
                    {"held_now", std::to_string(rep.held)},
                    {"outliers", std::to_string(rep.outliers)},
                    {"verdict", overall}};

    // ---- the page
    const std::string title = o.lot ? fmt::format("Lot report — lot {}", *cf.lot)
                                    : fmt::format("Lot report — production window {}..{}", o.date_from, o.date_to);
    std::string h = page_head(title);
    h += "<h1>" + html_escape(title) + "</h1>\n";
    h += fmt::format("<div class=\"sub\">{} lot{} · production days {} … {} · screened features: {}</div>\n", lots.size(),
                     lots.size() == 1 ? "" : "s", html_escape(first_day.empty() ? "–" : first_day),
                     html_escape(last_day.empty() ? "–" : last_day),
                     html_escape(table.names.empty() ? std::string("none") : fmt::format("{}", fmt::join(table.names, ", "))));
    h += fmt::format("<div class=\"verdict {}\">{}</div>\n", overall_class, html_escape(overall));
    h += "<div class=\"cards\">";
    auto card = [&](const char* label, std::size_t v, const char* cls) {
        h += fmt::format("<div class=\"card {}\"><b>{}</b>{}</div>", cls, v, label);
    };
    card("tested", rep.tested, "");
    card("passed", rep.passed, "good");
    card("failed", rep.failed, rep.failed ? "bad" : "");
    card("held now", rep.held, rep.held ? "bad" : "");
    card("outliers", rep.outliers, rep.outliers ? "bad" : "");
    h += "</div>\n<h2>Lots</h2>\n" + html_table(lot_view, lot_view_class, 25);

    h += "<h2>Screened features</h2>\n<p class=\"note\">Histograms of each cell's latest completed test. Red lines: "
         "specification limits (the recipe's); orange dashed: the PAT limits (median ± " +
         html_escape(num(settings.pat.k)) + " robust σ, never wider than the spec) each lot was judged by; red bars: "
         "cells held now.</p>\n<div class=\"plots\">\n";
    const models::FeatureTable mt_lots = to_screening_table(table);  // its lot codes are screening's
    for (std::size_t j = 0; j < table.cols(); ++j) {
        const auto sit = settings.spec.find(table.names[j]);
        std::vector<std::pair<std::string, models::PatLimits>> pats;
        if (res && j < res->pat.size()) {
            std::set<std::pair<double, double>> seen;
            for (std::size_t code = 0; code < res->pat[j].lot_limits.size() && code < mt_lots.lot_names.size(); ++code) {
                const auto& l = res->pat[j].lot_limits[code];
                if (seen.insert({l.low, l.high}).second) pats.emplace_back(mt_lots.lot_names[code], l);
                if (pats.size() >= 12) break;  // a long window: the first dozen distinct limits
            }
        }
        h += histogram_svg(table.names[j], table.column(j), held_row,
                           sit != settings.spec.end() ? &sit->second : nullptr, pats);
        ++rep.svg_plots;
    }
    if (table.cols() == 0) {
        h += empty_svg("screened features", "no feature has values here");
        ++rep.svg_plots;
    }
    h += "</div>\n";

    // R0 against heat rise per I²R.
    h += "<h2>R0 against temperature rise per I²R</h2>\n<p class=\"note\">A cell with an internal short heats beyond "
         "the Joule heat of its resistance: it sits above the cloud. Red: held now; ringed: outliers.</p>\n";
    {
        const std::vector<std::string> names{"r0_ohm", "heat_rise_k_per_w"};
        const FeatureTable sc = build_feature_table(store, cf, names);
        Range x, y;
        for (std::size_t i = 0; i < sc.rows(); ++i) {
            if (std::isfinite(sc.at(i, 0)) && std::isfinite(sc.at(i, 1))) {
                x.include(sc.at(i, 0) * 1e3);
                y.include(sc.at(i, 1));
            }
        }
        if (!x.seen) {
            h += empty_svg("R0 against heat rise per I²R", "no cell has both r0_ohm and a heating fit");
        } else {
            x.pad(0.05);
            y.pad(0.08);
            Plot p("R0 against heat rise per I²R", "R0 (mΩ)", "temperature rise per I²R (K/W)", x, y, 760, 380);
            std::vector<std::size_t> order;  // held and outliers drawn last (on top)
            for (std::size_t i = 0; i < sc.rows(); ++i) order.push_back(i);
            auto rank = [&](std::size_t i) {
                const auto it = index.find(sc.serials[i]);
                const bool held = it != index.end() && cells[it->second].state == CellState::held;
                return (held ? 2 : 0) + (flagged_of.count(sc.serials[i]) ? 1 : 0);
            };
            std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return rank(a) < rank(b); });
            bool any_held = false, any_out = false;
            for (std::size_t i : order) {
                const double xr = sc.at(i, 0) * 1e3, yr = sc.at(i, 1);
                const auto it = index.find(sc.serials[i]);
                const bool held = it != index.end() && cells[it->second].state == CellState::held;
                const bool out = flagged_of.count(sc.serials[i]) > 0;
                any_held = any_held || held;
                any_out = any_out || out;
                const std::string tip = fmt::format("{} lot {}: R0 {} mΩ, {} K/W{}", sc.serials[i], sc.lots[i], num(xr),
                                                    num(yr), held ? " — held" : "");
                p.point(xr, yr, held ? 3.5 : 2.5, held ? "pt held" : "pt", tip);
                if (out) p.ring(xr, yr, 6, "ring", tip);
            }
            p.legend("pt", "cell");
            if (any_held) p.legend("pt held", "held now");
            if (any_out) p.legend("ring", "outlier (PAT/MCD)");
            h += p.svg();
        }
        ++rep.svg_plots;
    }

    // Control charts of daily medians.
    h += "<h2>Control charts of daily medians</h2>\n<p class=\"note\">One point per production day (the median of "
         "that day's cells); green: centre; red dashed: ±3σ of the chart; red points: a Nelson rule fired there.</p>\n"
         "<div class=\"plots\">\n";
    bool any_chart = false;
    if (res) {
        for (std::size_t j = 0; j < res->charts.size() && j < res->features.size(); ++j) {
            const auto& ch = res->charts[j];
            if (ch.points.empty()) continue;
            any_chart = true;
            Range x, y;
            for (const auto& pt : ch.points) {
                x.include(pt.day);
                y.include(pt.value);
            }
            if (ch.evaluated) {
                y.include(ch.center + 3 * ch.sigma);
                y.include(ch.center - 3 * ch.sigma);
            }
            if (x.hi - x.lo < 6) {  // a few days: a week's width, not ±5 % of the day number
                const double mid = (x.lo + x.hi) / 2;
                x.lo = mid - 3.5;
                x.hi = mid + 3.5;
            }
            x.pad(0.03);
            y.pad(0.08);
            std::vector<std::string> fired;
            for (std::size_t r = 0; r < ch.rules.size(); ++r)
                if (ch.rules[r].fired)
                    fired.push_back(fmt::format("rule {} from {}", r + 1,
                                                ch.rules[r].start_day == models::kNoDay ? "?" : models::day_to_iso(ch.rules[r].start_day)));
            Plot p(fmt::format("{} — daily median{}", res->features[j],
                               fired.empty() ? std::string() : " (Nelson hits)"),
                   "production day", res->features[j], x, y);
            p.x_tick_text(day_text);
            if (ch.evaluated) {
                p.hline(ch.center, "center", fmt::format("centre {}", num(ch.center)));
                p.hline(ch.center + 3 * ch.sigma, "sigma", fmt::format("+3σ {}", num(ch.center + 3 * ch.sigma)));
                p.hline(ch.center - 3 * ch.sigma, "sigma", fmt::format("−3σ {}", num(ch.center - 3 * ch.sigma)));
            }
            std::vector<double> xs, ys;
            for (const auto& pt : ch.points) {
                xs.push_back(pt.day);
                ys.push_back(pt.value);
            }
            p.polyline(xs, ys, "line");
            bool hits = false;
            for (std::size_t k = 0; k < ch.points.size(); ++k) {
                const bool hit = k < ch.fired.size() && ch.fired[k] != 0;
                hits = hits || hit;
                std::vector<int> rules;
                for (int r = 0; r < models::kNelsonRules; ++r)
                    if (hit && (ch.fired[k] >> r) & 1) rules.push_back(r + 1);
                p.point(xs[k], ys[k], hit ? 4 : 2.5, hit ? "pt hit" : "pt",
                        fmt::format("{}: median {} of {} cells{}", models::day_to_iso(ch.points[k].day), num(ys[k]),
                                    ch.points[k].count,
                                    rules.empty() ? std::string() : fmt::format(" — Nelson rules {}", fmt::join(rules, ", "))));
            }
            p.legend("center", "centre");
            p.legend("sigma", "±3σ");
            if (hits) p.legend("pt hit", "Nelson rule fired");
            h += p.svg();
            ++rep.svg_plots;
            if (!fired.empty())
                notes.push_back(fmt::format("{}: Nelson {}", res->features[j], fmt::join(fired, "; ")));
        }
    }
    if (!any_chart) {
        h += empty_svg("control charts", "no production days to chart");
        ++rep.svg_plots;
    }
    h += "</div>\n";

    h += fmt::format("<h2>Outliers ({})</h2>\n", outliers.rows.size());
    h += outliers.rows.empty() ? std::string("<p>No outlier among the screened cells.</p>\n")
                               : html_table(outliers, outlier_class, 500);
    h += fmt::format("<h2>Holds and releases ({})</h2>\n", holds.rows.size());
    h += holds.rows.empty() ? std::string("<p>No quarantine event applies to these cells.</p>\n")
                            : html_table(holds, hold_class, 1000);
    if (!notes.empty()) {
        h += "<h2>Notes</h2>\n<ul>";
        for (std::size_t k = 0; k < notes.size() && k < 60; ++k) h += "<li class=\"note\">" + html_escape(notes[k]) + "</li>";
        if (notes.size() > 60) h += fmt::format("<li class=\"note\">… {} more</li>", notes.size() - 60);
        h += "</ul>\n";
    }
    h += page_foot(o.generated_by, o.generated_unix_s == 0.0 ? now_s() : o.generated_unix_s);
    rep.html = std::move(h);
    rep.tables = {summary, lot_table, outliers, holds, cell_table};
    return rep;
}

}  // namespace eol::station
