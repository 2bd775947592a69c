// eolstation screen — screening (PAT, FAST-MCD, lot and production-window
// containment) of a feature table without a store, or of the results store
// with quarantine holds:
//
//   eolstation screen --features FILE.csv [--json] [--k 6] [--quantile 0.999] …
//   eolstation screen --db FILE [--config STATION.toml] [--lot L | --since DATE]
//                     [--apply [--user NAME]] [--json]   (--apply: a logged-in user, docs/users.md)
//
// --db: station::screen_store() over the stored cells (features from the
// station's [screening] section, or the built-in list below); a dry run
// prints what would be held and why; --apply writes the holds in one
// transaction; units that would now be held but already shipped are listed
// apart (recall them). Exit 1 when any cell is an outlier or any group fails.
//
// The CSV has a header row: `serial` plus one column per feature, and
// optionally a lot column and a date column (YYYY-MM-DD). Without a lot
// column, lot and production date come from the serials when every serial
// decodes under the serial scheme. Empty, NA and nan cells are missing values.
// Each flagged serial is printed with its robust distance and its reasons,
// then the lots and windows held whole. Exit 1 when anything is flagged or
// held (a domain "no"), 0 when the table is clean, 2 on bad input.
//
// The source of the table is one function (load_csv_table); a store-backed
// source (`screen --db`) plugs in next to it and shares options and output.
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_auth.hpp"
#include "commands.hpp"
#include "eol/station/output.hpp"
#include "eol/models/screening.hpp"
#include "eol/station/config.hpp"
#include "eol/station/csv.hpp"
#include "eol/station/screen_store.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::cli {
namespace {

using nlohmann::json;
using station::UsageError;
namespace m = eol::models;

struct ScreenOptions {
    std::string features_csv;  // --features
    std::string db;            // --db
    std::string config;        // --config (station TOML: [screening], and its recipe's spec limits)
    std::string lot;           // --lot
    std::string since;         // --since
    bool apply = false;
    std::string user;   // --user: log in with a password prompt (else EOL_TOKEN), for --apply
    std::string actor;  // --actor / --role: refused, they no longer grant anything
    std::string role;
    std::string drift;         // --drift estimate|credible|off (empty: the config's)
    bool fixture_correction = false;  // --fixture-correction (default settings when the config has none)
    bool k_given = false, quantile_given = false, min_count_given = false, alpha_given = false;
    std::string serial_column = "serial";
    std::string lot_column = "lot";
    std::string date_column = "date";
    bool lot_column_given = false, date_column_given = false;
    std::string scheme;                    // serial scheme for lot/date from the serials
    std::vector<std::string> columns;      // subset of features (default: all)
    std::vector<std::string> specs;        // NAME=LOW:HIGH
    std::vector<std::string> reference_lots;
    double k = 6.0;
    double quantile = 0.999;
    std::size_t min_count = 20;
    double alpha = 0.01;
    std::uint32_t seed = 0;
    std::string missing = "marginal";
    unsigned threads = 0;
    bool json = false;
};

// A feature table and the serials of its rows.
struct LoadedTable {
    m::FeatureTable table;
    std::string source;
    std::vector<std::string> notes;
};

bool is_missing(std::string_view s) {
    return s.empty() || s == "NA" || s == "na" || s == "NaN" || s == "nan" || s == "null";
}

double parse_number(const station::CsvTable& csv, std::size_t row, const std::string& column, const std::string& s) {
    if (is_missing(s)) return std::numeric_limits<double>::quiet_NaN();
    const char* b = s.data();
    const char* e = s.data() + s.size();
    if (b != e && *b == '+') ++b;
    double v = 0.0;
    const auto [ptr, ec] = std::from_chars(b, e, v);
    if (ec != std::errc() || ptr != e || !std::isfinite(v))
        throw UsageError(fmt::format("{}: column '{}': '{}' is not a number", csv.where(row), column, s));
    return v;
}

LoadedTable load_csv_table(const ScreenOptions& o) {
    const station::CsvTable csv = station::CsvTable::read_file(o.features_csv);
    LoadedTable out;
    out.source = o.features_csv;
    m::FeatureTable& t = out.table;
    const std::size_t n = csv.rows();
    if (n == 0) throw UsageError(fmt::format("{}: no data rows", o.features_csv));
    csv.index(o.serial_column);  // throws naming the columns present
    const bool has_lot = csv.has(o.lot_column);
    const bool has_date = csv.has(o.date_column);
    if (o.lot_column_given && !has_lot) csv.index(o.lot_column);
    if (o.date_column_given && !has_date) csv.index(o.date_column);

    std::vector<std::string> feature_cols;
    if (!o.columns.empty()) {
        for (const auto& c : o.columns) {
            csv.index(c);
            feature_cols.push_back(c);
        }
    } else {
        for (const auto& c : csv.columns())
            if (c != o.serial_column && !(has_lot && c == o.lot_column) && !(has_date && c == o.date_column))
                feature_cols.push_back(c);
    }
    if (feature_cols.empty())
        throw UsageError(fmt::format("{}: no feature columns (only '{}'{})", o.features_csv, o.serial_column,
                                     has_lot || has_date ? " and lot/date" : ""));
    t.features = feature_cols;
    t.rows = n;
    t.values.resize(n * feature_cols.size());
    for (std::size_t j = 0; j < feature_cols.size(); ++j) {
        const auto& col = csv.strings(feature_cols[j]);
        for (std::size_t i = 0; i < n; ++i) t.values[j * n + i] = parse_number(csv, i, feature_cols[j], col[i]);
    }
    t.serials = csv.strings(o.serial_column);
    for (std::size_t i = 0; i < n; ++i)
        if (t.serials[i].empty()) throw UsageError(fmt::format("{}: empty serial", csv.where(i)));

    m::LotCoder coder(t.lot_names);
    if (has_lot) {
        const auto& lots = csv.strings(o.lot_column);
        t.lot.resize(n);
        for (std::size_t i = 0; i < n; ++i) t.lot[i] = coder.code(lots[i].empty() ? "(none)" : lots[i]);
    }
    if (has_date) {
        const auto& dates = csv.strings(o.date_column);
        t.day.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            if (dates[i].empty()) {
                t.day[i] = m::kNoDay;
                continue;
            }
            const auto d = m::parse_iso_day(dates[i]);
            if (!d)
                throw UsageError(fmt::format("{}: column '{}': '{}' is not a date (YYYY-MM-DD)", csv.where(i),
                                             o.date_column, dates[i]));
            t.day[i] = *d;
        }
    }
    if (!has_lot || !has_date) {
        // Lot and production date from the serials, if all of them decode.
        const station::SerialScheme scheme =
            o.scheme.empty() ? station::SerialScheme::default_scheme() : station::SerialScheme::load(o.scheme);
        std::vector<std::uint32_t> lots(n);
        std::vector<std::int32_t> days(n, m::kNoDay);
        std::size_t bad = 0;
        std::string first_bad;
        bool any_date = false;
        std::string serial, lot, date;
        for (std::size_t i = 0; i < n && bad == 0; ++i) {
            if (!scheme.decode_key(t.serials[i], serial, lot, date)) {
                ++bad;
                first_bad = fmt::format("{}: {}", csv.where(i), scheme.decode(t.serials[i]).error->message);
                continue;
            }
            lots[i] = coder.code(lot);
            if (!date.empty()) {
                days[i] = *m::parse_iso_day(date);
                any_date = true;
            }
        }
        if (bad == 0) {
            if (!has_lot) t.lot = std::move(lots);
            if (!has_date && any_date) t.day = std::move(days);
            out.notes.push_back(fmt::format("{}{} from the serials", !has_lot ? "lots" : "",
                                            !has_date && any_date ? (!has_lot ? " and dates" : "dates") : ""));
        } else {
            if (!has_lot) t.lot_names.clear();
            out.notes.push_back(fmt::format("no {} column and the serials do not follow the scheme ({}): no {} tests",
                                            !has_lot ? "lot" : "date", first_bad,
                                            !has_lot ? "lot" : "production-window"));
        }
    }
    return out;
}

m::ScreeningSettings settings_from(const ScreenOptions& o, const m::FeatureTable& t) {
    m::ScreeningSettings s;
    s.pat.k = o.k;
    s.pat.min_dynamic_count = o.min_count;
    s.mcd_quantile = o.quantile;
    s.mcd.seed = o.seed;
    s.lots.alpha = o.alpha;
    s.threads = o.threads;
    s.reference_lots = o.reference_lots;
    if (o.missing == "marginal") {
        s.missing = m::MissingPolicy::marginal;
    } else if (o.missing == "impute") {
        s.missing = m::MissingPolicy::impute_median;
    } else {
        throw UsageError(fmt::format("--missing: '{}' is not marginal or impute", o.missing));
    }
    for (const auto& spec : o.specs) {
        // NAME=LOW:HIGH, either bound may be empty
        const auto eq = spec.find('=');
        const auto colon = spec.find(':', eq == std::string::npos ? 0 : eq);
        if (eq == std::string::npos || colon == std::string::npos)
            throw UsageError(fmt::format("--spec '{}': expected NAME=LOW:HIGH (a bound may be empty)", spec));
        const std::string name = spec.substr(0, eq);
        t.feature_index(name);  // names the features present when absent
        auto bound = [&](std::string_view text, double dflt) {
            if (text.empty()) return dflt;
            double v = 0.0;
            const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
            if (ec != std::errc() || p != text.data() + text.size())
                throw UsageError(fmt::format("--spec '{}': '{}' is not a number", spec, text));
            return v;
        };
        const std::string_view sv(spec);
        m::SpecLimits lim{bound(sv.substr(eq + 1, colon - eq - 1), -std::numeric_limits<double>::infinity()),
                          bound(sv.substr(colon + 1), std::numeric_limits<double>::infinity())};
        if (lim.low > lim.high) throw UsageError(fmt::format("--spec '{}': low above high", spec));
        s.spec[name] = lim;
    }
    return s;
}

json result_json(const LoadedTable& lt, const m::ScreeningResult& r) {
    const m::FeatureTable& t = lt.table;
    json j;
    j["source"] = lt.source;
    j["cells"] = t.rows;
    j["features"] = r.features;
    j["counts"] = {{"flagged", r.count(m::kFlagPat | m::kFlagMcd)},
                   {"pat", r.count(m::kFlagPat)},
                   {"mcd", r.count(m::kFlagMcd)},
                   {"held_by_group", r.count(m::kFlagHeldGroup)}};
    json cells = json::array();
    for (const auto& c : r.flagged) {
        json e{{"serial", t.serials[c.row]},
               {"row", c.row},
               {"pat", (c.flags & m::kFlagPat) != 0},
               {"mcd", (c.flags & m::kFlagMcd) != 0},
               {"held_by_group", (c.flags & m::kFlagHeldGroup) != 0},
               {"reasons", m::reasons(c, r)}};
        if (!std::isnan(c.distance_sq)) {
            e["distance_sq"] = c.distance_sq;
            e["distance"] = std::sqrt(c.distance_sq);
            e["cutoff_sq"] = c.cutoff_sq;
        }
        if (!t.lot.empty()) e["lot"] = t.lot_names[t.lot[c.row]];
        if (!t.day.empty() && t.day[c.row] != m::kNoDay) e["date"] = m::day_to_iso(t.day[c.row]);
        json pat = json::array();
        for (const auto& v : c.pat)
            pat.push_back({{"feature", r.features[v.feature]},
                           {"value", v.value},
                           {"limit", v.limit},
                           {"side", v.high ? "high" : "low"},
                           {"limits", m::to_string(v.source)}});
        e["pat_violations"] = pat;
        json top = json::array();
        for (const auto& f : c.top) top.push_back({{"feature", r.features[f.feature]}, {"share", f.share}, {"z", f.z}});
        e["mcd_top_features"] = top;
        cells.push_back(std::move(e));
    }
    j["cells_flagged_or_held"] = std::move(cells);
    json groups = json::array();
    for (const auto& g : r.lots.groups)
        groups.push_back({{"kind", m::to_string(g.kind)}, {"key", g.key},       {"cells", g.cells},
                          {"outliers", g.outliers},       {"rate", g.rate},     {"p_value", g.p_value},
                          {"tested", g.tested},           {"held", g.held}});
    j["groups"] = {{"baseline_rate", r.lots.baseline_rate},
                   {"tests", r.lots.tests},
                   {"alpha_per_test", r.lots.alpha_per_test},
                   {"list", std::move(groups)}};
    json pat = json::array();
    for (std::size_t f = 0; f < r.features.size(); ++f) {
        const auto& p = r.pat[f];
        pat.push_back({{"feature", r.features[f]},
                       {"static_low", p.static_limits.low},
                       {"static_high", p.static_limits.high},
                       {"median", p.static_limits.stats.median},
                       {"robust_sigma", p.static_limits.stats.robust_sigma},
                       {"static_adequate", p.static_adequate},
                       {"reference_lots", p.reference_lots}});
    }
    j["pat"] = std::move(pat);
    if (r.mcd.ran) {
        std::vector<double> loc(r.mcd.location.data(), r.mcd.location.data() + r.mcd.location.size());
        j["mcd"] = {{"rows_fitted", r.mcd.rows_fitted}, {"h", r.mcd.h},       {"cutoff_sq", r.mcd.cutoff_sq},
                    {"location", loc},                  {"correction", r.mcd.correction}};
    }
    json charts = json::array();
    for (std::size_t f = 0; f < r.charts.size(); ++f) {
        const auto& ch = r.charts[f];
        json rules = json::array();
        for (int k = 0; k < m::kNelsonRules; ++k) {
            const auto& s = ch.rules[static_cast<std::size_t>(k)];
            if (!s.fired) continue;
            rules.push_back({{"rule", k + 1},
                             {"first_day", m::day_to_iso(s.first_day)},
                             {"began", m::day_to_iso(s.start_day)},
                             {"points", s.points}});
        }
        charts.push_back({{"feature", r.features[f]}, {"center", ch.center}, {"sigma", ch.sigma},
                          {"days", ch.points.size()}, {"rules_fired", std::move(rules)}});
    }
    j["control_charts"] = std::move(charts);
    std::vector<std::string> notes = lt.notes;
    notes.insert(notes.end(), r.notes.begin(), r.notes.end());
    j["notes"] = notes;
    return j;
}

void print_text(const LoadedTable& lt, const m::ScreeningResult& r) {
    const m::FeatureTable& t = lt.table;
    const std::size_t outliers = r.count(m::kFlagPat | m::kFlagMcd);
    fmt::print("screened {} cells × {} features ({}): {} flagged (PAT {}, MCD {}), {} held with their lot/window\n",
               t.rows, r.features.size(), fmt::join(r.features, ", "), outliers, r.count(m::kFlagPat),
               r.count(m::kFlagMcd), r.count(m::kFlagHeldGroup));
    if (r.mcd.ran)
        fmt::print("MCD: fitted on {} rows (h = {}), cutoff d² {:.4g}\n", r.mcd.rows_fitted, r.mcd.h, r.mcd.cutoff_sq);
    std::size_t width = 6;
    for (const auto& c : r.flagged) width = std::max(width, t.serials[c.row].size());
    bool header = false;
    for (const auto& c : r.flagged) {
        if ((c.flags & (m::kFlagPat | m::kFlagMcd)) == 0) continue;  // held only: summarized below
        if (!header) {
            fmt::print("\n{:<{}}  {:>8}  {}\n", "SERIAL", width, "DISTANCE", "REASONS");
            header = true;
        }
        const auto why = m::reasons(c, r);
        const std::string dist = std::isnan(c.distance_sq) ? "-" : fmt::format("{:.2f}", std::sqrt(c.distance_sq));
        for (std::size_t k = 0; k < why.size(); ++k)
            fmt::print("{:<{}}  {:>8}  {}\n", k == 0 ? t.serials[c.row] : "", width, k == 0 ? dist : "", why[k]);
    }
    bool any_held = false;
    for (const auto& g : r.lots.groups) {
        if (!g.held) continue;
        if (!any_held) fmt::print("\nheld whole (binomial test, Bonferroni alpha {:.3g} per group):\n", r.lots.alpha_per_test);
        any_held = true;
        fmt::print("  {} {}: {} of {} cells outliers ({:.2f}% vs baseline {:.2f}%), p = {:.3g}\n", m::to_string(g.kind),
                   g.key, g.outliers, g.cells, 100.0 * g.rate, 100.0 * r.lots.baseline_rate, g.p_value);
    }
    for (std::size_t f = 0; f < r.charts.size(); ++f) {
        const auto& ch = r.charts[f];
        for (int k = 0; k < m::kNelsonRules; ++k) {
            const auto& s = ch.rules[static_cast<std::size_t>(k)];
            if (s.fired)
                fmt::print("control chart {}: Nelson rule {} first fired {} (pattern began {})\n", r.features[f], k + 1,
                           m::day_to_iso(s.first_day), m::day_to_iso(s.start_day));
        }
    }
    std::vector<std::string> notes = lt.notes;
    notes.insert(notes.end(), r.notes.begin(), r.notes.end());
    for (const auto& n : notes) fmt::print("note: {}\n", n);
}

// ---------------------------------------------------------------- --db

// Without --config: the shipped station's [screening] thresholds and these
// features (the self-discharge K-value, as its log, is what finds the small
// internal shorts; see docs/screening.md).
}  // namespace

// Shared with `eolstation report` (commands.hpp).
const std::vector<std::string>& default_db_features() {
    static const std::vector<std::string> f{"ocv_v",  "dcir_ohm",    "r0_ohm", "r1_ohm",
                                            "tau1_s", "temp_rise_k", "p_x_w",  "k_log10_mv_per_day"};
    return f;
}

namespace {

std::string group_line(const station::ScreenedGroup& g) {
    return fmt::format("{} {}: {}{}", to_string(g.scope), g.target, g.reason, g.already_held ? " [already held]" : "");
}

json db_json(const ScreenOptions& o, const station::ScreenReport& r) {
    json cells = json::array();
    for (const auto& c : r.cells) {
        json e{{"serial", c.serial},         {"lot", c.lot},
               {"production_date", c.production_date},
               {"pat", (c.flags & m::kFlagPat) != 0},
               {"mcd", (c.flags & m::kFlagMcd) != 0},
               {"reasons", c.reasons},       {"already_held", c.already_held},
               {"scrapped", c.scrapped}};
        if (std::isfinite(c.distance_sq)) {
            e["distance_sq"] = c.distance_sq;
            e["distance"] = std::sqrt(c.distance_sq);
        }
        cells.push_back(std::move(e));
    }
    json groups = json::array();
    for (const auto& g : r.groups) {
        json e{{"scope", to_string(g.scope)}, {"target", g.target},   {"group", g.group},
               {"cells", g.cells},            {"outliers", g.outliers}, {"rate", g.rate},
               {"p_value", g.p_value},        {"reason", g.reason},   {"already_held", g.already_held}};
        if (g.scope == station::QuarantineScope::window) {
            e["window_from"] = g.window_from;
            e["window_to"] = g.window_to;
        }
        groups.push_back(std::move(e));
    }
    json shipped = json::array();
    for (const auto& u : r.shipped)
        shipped.push_back({{"serial", u.serial},
                           {"lot", u.lot},
                           {"production_date", u.production_date},
                           {"shipped_unix_s", u.shipped_unix_s},
                           {"why", u.why}});
    json drift = json::array();
    for (const auto& d : r.drift_windows) {
        json shifts = json::array();
        for (const auto& s : d.shifts) shifts.push_back({{"feature", s.feature}, {"shift", s.shift}, {"shift_sigma", s.shift_z}});
        drift.push_back({{"start", {{"day", d.start},
                                    {"probability", d.start_probability},
                                    {"credible_95", {d.start_credible_from, d.start_credible_to}}}},
                         {"end", {{"day", d.end},
                                  {"probability", d.end_probability},
                                  {"credible_95", {d.end_credible_from, d.end_credible_to}}}},
                         {"last_day_before", d.last_day_before},
                         {"first_day_after", d.first_day_after},
                         {"held_from", d.held_from},
                         {"held_to", d.held_to},
                         {"days", d.days},
                         {"cells", d.cells},
                         {"statistic", d.statistic},
                         {"critical", d.critical},
                         {"p_value", d.p_value},
                         {"shifts", std::move(shifts)}});
    }
    json missing = json::object();
    for (std::size_t j = 0; j < r.features.size() && j < r.missing.size(); ++j) missing[r.features[j]] = r.missing[j];
    return json{{"db", o.db},
                {"applied", r.applied},
                {"cells_screened", r.cells_screened},
                {"features", r.features},
                {"missing", missing},
                {"baseline_rate", r.baseline_rate},
                {"outliers", r.outliers},
                {"cells", std::move(cells)},
                {"groups", std::move(groups)},
                {"drift", {{"evaluated", r.drift_evaluated}, {"p_value", r.drift_p_value}, {"windows", std::move(drift)}}},
                {"cells_held_by_groups", r.cells_held_by_groups},
                {"shipped", std::move(shipped)},
                {"event_ids", r.event_ids},
                {"notes", r.notes},
                {"seconds", r.seconds}};
}

void print_db_text(const ScreenOptions& o, const station::ScreenReport& r, const station::Actor& who) {
    fmt::print("screened {} cells × {} features ({}) from {}: {} outlier cells, {} lots/windows failed "
               "({} cells in them), baseline outlier rate {:.2f} %\n",
               r.cells_screened, r.features.size(), fmt::join(r.features, ", "), o.db, r.outliers, r.groups.size(),
               r.cells_held_by_groups, 100.0 * r.baseline_rate);
    const char* verb = r.applied ? "held" : "would hold";
    std::size_t new_groups = 0, new_cells = 0;
    for (const auto& g : r.groups) new_groups += g.already_held ? 0 : 1;
    for (const auto& c : r.cells) new_cells += (c.already_held || c.scrapped) ? 0 : 1;
    for (const auto& d : r.drift_windows) {
        fmt::print("\ndrift window (change-point scan over production days, permutation p = {:.3g}):\n", d.p_value);
        fmt::print("  started {}  (P {:.2f}; 95 % credible {} .. {}; last production day before: {})\n", d.start,
                   d.start_probability, d.start_credible_from, d.start_credible_to,
                   d.last_day_before.empty() ? "none" : d.last_day_before);
        fmt::print("  ended   {}  (P {:.2f}; 95 % credible {} .. {}; first production day after: {})\n", d.end,
                   d.end_probability, d.end_credible_from, d.end_credible_to,
                   d.first_day_after.empty() ? "none" : d.first_day_after);
        fmt::print("  {} days, {} cells; {} {} .. {}\n", d.days, d.cells, r.applied ? "held" : "would hold", d.held_from,
                   d.held_to);
        std::string sh;
        for (std::size_t k = 0; k < d.shifts.size() && k < 4; ++k)
            sh += fmt::format("{}{} {:+.4g} ({:+.2f} sigma)", k ? ", " : "", d.shifts[k].feature, d.shifts[k].shift,
                              d.shifts[k].shift_z);
        fmt::print("  shift: {}\n", sh);
    }
    if (r.drift_evaluated && r.drift_windows.empty())
        fmt::print("\nno drift window (change-point scan over production days: strongest run p = {:.3g})\n",
                   r.drift_p_value);
    if (!r.groups.empty()) {
        fmt::print("\n{} whole ({} new):\n", verb, new_groups);
        for (const auto& g : r.groups) fmt::print("  {}\n", group_line(g));
    }
    if (!r.cells.empty()) {
        fmt::print("\n{} by serial ({} new):\n", verb, new_cells);
        std::string out;
        for (const auto& c : r.cells) {
            const std::string dist =
                std::isfinite(c.distance_sq) ? fmt::format("d {:.2f}", std::sqrt(c.distance_sq)) : "d -";
            out += fmt::format("  {}  lot {} {}  {}{}{}: {}\n", c.serial, c.lot, c.production_date, dist,
                               c.already_held ? " [already held]" : "", c.scrapped ? " [scrapped]" : "",
                               fmt::join(c.reasons, "; "));
        }
        station::write_stdout(out);
    }
    if (!r.shipped.empty()) {
        fmt::print("\nwould now be held but ALREADY SHIPPED ({}): recall them\n", r.shipped.size());
        for (const auto& u : r.shipped)
            fmt::print("  {}  lot {} {}  ({})\n", u.serial, u.lot, u.production_date, u.why);
    }
    for (const auto& n : r.notes) fmt::print("note: {}\n", n);
    if (r.applied)
        fmt::print("applied: {} hold event{} written in one transaction by {} ({})\n", r.event_ids.size(),
                   r.event_ids.size() == 1 ? "" : "s", who.name, who.role);
    else if (new_groups + new_cells > 0)
        fmt::print("dry run: nothing written (--apply, as a logged-in user, writes the holds)\n");
}

void run_screen_db(const ScreenOptions& o) {
    if (!o.lot.empty() && !o.since.empty()) throw UsageError("screen: give --lot or --since, not both");
    if (!o.role.empty())
        throw UsageError("screen: --role no longer grants anything: the role is the logged-in user's (--user NAME or "
                         "EOL_TOKEN; docs/users.md)");
    if (!o.actor.empty())
        throw UsageError("screen: --actor: who holds is the logged-in user now (--user NAME or EOL_TOKEN; docs/users.md)");
    station::ScreeningConfig config;
    station::FixtureHealthConfig fixture;
    std::optional<station::Recipe> recipe;  // its measurements' limits are the spec limits
    if (!o.config.empty()) {
        station::StationConfig sc = station::load_station_config(o.config);
        config = sc.screening;
        fixture = sc.fixture_health;
        recipe = std::move(sc.recipe);
    } else {
        config.features = default_db_features();
    }
    if (!o.columns.empty()) config.features = o.columns;
    if (o.k_given) config.pat_k = o.k;
    if (o.quantile_given) config.mcd_quantile = o.quantile;
    if (o.alpha_given) config.lot_alpha = o.alpha;
    if (!o.drift.empty())
        config.drift_window = o.drift == "off" ? station::DriftHold::off
                              : o.drift == "credible" ? station::DriftHold::credible
                                                      : station::DriftHold::estimate;
    if (o.min_count_given) config.pat_min_count = static_cast<int>(o.min_count);
    station::ScreenFilter filter;
    if (!o.lot.empty()) filter.lot = o.lot;
    if (!o.since.empty()) {
        const auto d = station::Date::parse_iso(o.since);
        if (!d) throw UsageError(fmt::format("--since: '{}' is not a valid date (YYYY-MM-DD)", o.since));
        filter.since = *d;
    }
    station::OpenOptions oo;
    oo.read_only = !o.apply;
    station::Store store = station::Store::open(o.db, oo);
    // Holds name who wrote them: the logged-in user and role (any role may hold).
    station::Actor who{"", ""};
    if (o.apply) {
        const station::AuthUser u = authenticate(store, o.user, "screen --apply");
        who = station::Actor{u.name, std::string(station::to_string(u.role))};
    }
    station::ScreenReport r;
    try {
        if (o.fixture_correction) fixture.enabled = true;
        r = station::screen_store(store, config, filter, o.apply, who, recipe ? &*recipe : nullptr,
                                  fixture.enabled ? &fixture : nullptr);
    } catch (const m::InputError& e) {
        throw UsageError(fmt::format("{}: {}", o.db, e.what()));
    }
    if (o.json) {
        fmt::print("{}\n", db_json(o, r).dump(2));
    } else {
        print_db_text(o, r, who);
    }
    if (r.outliers > 0 || !r.groups.empty()) set_exit(station::ExitCode::domain_no);
}

void run_screen(const ScreenOptions& o) {
    if (!o.features_csv.empty() && !o.db.empty()) throw UsageError("screen: give --features FILE.csv or --db FILE, not both");
    if (!(o.k > 0.0)) throw UsageError(fmt::format("--k {}: must be positive", o.k));
    if (!(o.quantile > 0.0 && o.quantile < 1.0)) throw UsageError(fmt::format("--quantile {}: outside (0, 1)", o.quantile));
    if (!(o.alpha > 0.0 && o.alpha < 1.0)) throw UsageError(fmt::format("--alpha {}: outside (0, 1)", o.alpha));
    if (!o.db.empty()) {
        run_screen_db(o);
        return;
    }
    if (!o.lot.empty() || !o.since.empty() || o.apply || !o.config.empty() || !o.drift.empty() || o.fixture_correction)
        throw UsageError("screen: --lot, --since, --apply, --config, --drift and --fixture-correction go with --db");
    if (o.features_csv.empty()) throw UsageError("screen: give --features FILE.csv or --db FILE");
    const LoadedTable lt = load_csv_table(o);
    const m::ScreeningSettings s = settings_from(o, lt.table);
    m::ScreeningResult r;
    try {
        r = m::screen(lt.table, s);
    } catch (const m::InputError& e) {
        throw UsageError(fmt::format("{}: {}", lt.source, e.what()));
    }
    if (o.json) {
        fmt::print("{}\n", result_json(lt, r).dump(2));
    } else {
        print_text(lt, r);
    }
    bool any = false;
    for (auto st : r.status) any = any || st != 0;
    if (any) set_exit(station::ExitCode::domain_no);
}

}  // namespace

void add_screen_commands(CLI::App& app) {
    auto o = std::make_shared<ScreenOptions>();
    CLI::App* c = app.add_subcommand(
        "screen",
        "Screen cells: PAT per feature (median ± k·IQR/1.35 within spec), robust Mahalanobis distance "
        "(FAST-MCD, chi-square cutoff) and lot/production-window containment (binomial test), of a CSV table (--features) or of the results "
        "store (--db: dry run by default, --apply writes the holds; shipped units that would now be held "
        "are listed for recall). Exit 1 when any cell is flagged or held.");
    c->add_option("--features", o->features_csv,
                  "CSV table to screen: header `serial` plus one column per feature; optional lot and date "
                  "(YYYY-MM-DD) columns; empty/NA/nan = missing")
        ->check(CLI::ExistingFile);
    c->add_option("--db", o->db, "Screen the cells of this results store (SQLite) and hold by serial/lot/window")
        ->check(CLI::ExistingFile);
    c->add_option("--config", o->config,
                  "With --db: station TOML whose [screening] and recipe spec limits to use (default: built-in features "
                  "incl. the K-value and the shipped thresholds)")
        ->check(CLI::ExistingFile);
    c->add_option("--lot", o->lot, "With --db: screen only this lot");
    c->add_option("--since", o->since, "With --db: screen only cells produced on or after this date (YYYY-MM-DD)");
    c->add_flag("--apply", o->apply, "With --db: write the holds (one transaction); default is a dry run");
    c->add_option("--user", o->user,
                  "With --apply: log in as this user (password asked on the terminal, no echo); else the session "
                  "token in EOL_TOKEN (eolstation user login). Any role may hold; every event records the user");
    c->add_option("--actor", o->actor, "No longer accepted: who holds is the logged-in user")->group("");
    c->add_option("--role", o->role, "No longer accepted: the role is the logged-in user's")->group("");
    c->add_flag("--json", o->json, "Print the result as JSON");
    c->add_flag("--fixture-correction", o->fixture_correction,
                "With --db: correct resistance features by each fixture position's learned contact offset "
                "(the config's [fixture_health], else its defaults; docs/screening.md \"Fixture health\")");
    c->add_option("--drift", o->drift,
                  "With --db: drift windows (change-point scan over production days): hold the estimated window "
                  "(estimate), also each boundary's 95 % credible days (credible), or do not look (off); default: "
                  "the config's [screening] drift_window, else estimate")
        ->check(CLI::IsMember({"estimate", "credible", "off"}));
    auto* k_opt = c->add_option("--k", o->k, "PAT limits at median ± k robust sigma")->capture_default_str();
    auto* q_opt = c->add_option("--quantile", o->quantile, "Chi-square quantile of the MCD cutoff")->capture_default_str();
    auto* mc_opt = c->add_option("--min-count", o->min_count, "Fewer values in a lot: static PAT limits instead of dynamic")
        ->capture_default_str();
    auto* a_opt = c->add_option("--alpha", o->alpha, "Family-wise significance of the lot/window tests (Bonferroni)")
        ->capture_default_str();
    c->add_option("--spec", o->specs, "Spec limits NAME=LOW:HIGH (a bound may be empty; repeatable)");
    c->add_option("--columns", o->columns, "Screen only these feature columns (default: all)")->delimiter(',');
    c->add_option("--reference-lot", o->reference_lots, "Lots for the static PAT limits (default: all; repeatable)");
    c->add_option("--serial-column", o->serial_column, "Column of the serials")->capture_default_str();
    auto* lot = c->add_option("--lot-column", o->lot_column, "Column of the lot ids (default 'lot' when present)");
    auto* date = c->add_option("--date-column", o->date_column, "Column of the production dates (default 'date' when present)");
    c->add_option("--scheme", o->scheme, "Serial scheme TOML, to take lot and date from the serials (default: built-in)");
    c->add_option("--missing", o->missing, "Missing values in MCD: marginal (score on the features present) or impute")
        ->capture_default_str();
    c->add_option("--seed", o->seed, "Random seed of FAST-MCD's subsets")->capture_default_str();
    c->add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
    c->callback([o, lot, date, k_opt, q_opt, mc_opt, a_opt] {
        o->lot_column_given = lot->count() > 0;
        o->date_column_given = date->count() > 0;
        o->k_given = k_opt->count() > 0;
        o->quantile_given = q_opt->count() > 0;
        o->min_count_given = mc_opt->count() > 0;
        o->alpha_given = a_opt->count() > 0;
        run_screen(*o);
    });
}

}  // namespace eol::cli
