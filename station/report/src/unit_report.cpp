// The unit page (report.hpp): one serial's state, measurements against
// limits, fits with intervals, the pulse and heating traces with the fitted
// curves over them, and its history.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "eol/models/ecm.hpp"
#include "eol/models/thermal.hpp"
#include "eol/station/errors.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/report.hpp"
#include "html.hpp"

namespace eol::station {

using namespace report_detail;

namespace {

double param(const ModelFit& f, const std::string& name) {
    const auto it = f.parameters.find(name);
    return it == f.parameters.end() ? std::nan("") : it->second;
}

const ModelFit* find_fit(const TestRecord& r, std::string_view kind) {
    for (const auto& f : r.fits)
        if (f.kind == kind) return &f;
    return nullptr;
}

// The measurement against its limits: a green band [low, high], the value a
// black (pass) or red (fail) mark.
std::string gauge_svg(const Measurement& m) {
    const double lo = m.low.value_or(std::nan("")), hi = m.high.value_or(std::nan(""));
    if (!std::isfinite(m.value) || (!std::isfinite(lo) && !std::isfinite(hi))) return "";
    Range r;
    r.include(m.value);
    r.include(lo);
    r.include(hi);
    r.pad(0.15);
    const double w = 180, h = 16;
    auto X = [&](double v) { return 4 + (v - r.lo) / (r.hi - r.lo) * (w - 8); };
    const double a = X(std::isfinite(lo) ? lo : r.lo), b = X(std::isfinite(hi) ? hi : r.hi);
    return fmt::format(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\">"
        "<rect class=\"gauge\" x=\"{2:.1f}\" y=\"3\" width=\"{3:.1f}\" height=\"10\"/>"
        "<rect class=\"mark{4}\" x=\"{5:.1f}\" y=\"0\" width=\"3\" height=\"16\"/></svg>",
        w, h, a, std::max(1.0, b - a), m.passed() ? "" : " bad", X(m.value) - 1.5);
}

struct TraceSlice {
    std::size_t first = 0, count = 0;
    bool found = false;
};

TraceSlice step_slice(const TestRecord& r, std::string_view kind) {
    for (const auto& s : r.steps)
        if (s.kind == kind && s.sample_count > 0 && s.first_sample + s.sample_count <= r.trace.size())
            return {s.first_sample, s.sample_count, true};
    return {};
}

std::vector<double> col(const std::vector<double>& v, std::size_t first, std::size_t n) {
    if (v.size() < first + n) return {};
    return {v.begin() + static_cast<std::ptrdiff_t>(first), v.begin() + static_cast<std::ptrdiff_t>(first + n)};
}

}  // namespace

UnitReport build_unit_report(Store& store, std::string_view serial_in, const SerialScheme& scheme,
                             const std::string& generated_by, double generated_unix_s) {
    UnitReport rep;
    Quarantine quarantine(store, scheme);
    const std::string serial = quarantine.normalize(Scope::serial(std::string(serial_in))).target;
    const auto cell = store.cell(serial);
    if (!cell) throw UsageError(fmt::format("report: serial {} is not in the store", serial));
    LookupSession session(store, scheme);
    const LookupResult look = session.lookup(serial);
    const auto runs = store.runs_for(serial);
    std::optional<TestRecord> rec;
    if (cell->latest_run_id) rec = store.read_record(*cell->latest_run_id);

    const std::string title = "Unit " + serial;
    std::string h = page_head(title);
    h += "<h1>" + html_escape(title) + "</h1>\n";
    h += fmt::format("<div class=\"sub\">{} · lot {} · made {} · {} test run{}</div>\n", html_escape(cell->cell_model),
                     html_escape(cell->lot), html_escape(cell->production_date.empty() ? "–" : cell->production_date),
                     runs.size(), runs.size() == 1 ? "" : "s");
    const std::string state = std::string(to_string(look.state));
    h += fmt::format("<div class=\"verdict {}\">{} — state {}{}</div>\n", look.may_ship ? "good" : "bad",
                     look.may_ship ? "MAY SHIP" : "MAY NOT SHIP", html_escape(state),
                     look.verdict ? html_escape(fmt::format(", last test {}", to_string(*look.verdict))) : std::string());

    // ---- measurements against limits
    ReportTable meas{"measurements", {"name", "value", "unit", "low", "high", "outcome"}, {}};
    std::vector<std::string> meas_class;
    ReportTable fits{"fits", {"fit", "parameter", "value", "ci95_low", "ci95_high", "fit_rmse", "converged"}, {}};
    if (rec) {
        h += fmt::format("<h2>Measurements of the latest test</h2>\n<p class=\"note\">Run #{} on {} channel {}, recipe "
                         "{} ({}), {} — verdict <b>{}</b>{}</p>\n",
                         *cell->latest_run_id, html_escape(rec->station_id), rec->channel, html_escape(rec->recipe_name),
                         html_escape(rec->recipe_version), html_escape(utc(rec->start_unix_s)),
                         html_escape(to_string(rec->verdict)),
                         rec->abort_reason.empty() ? std::string() : " (" + html_escape(rec->abort_reason) + ")");
        h += "<table><thead><tr><th>measurement</th><th>value</th><th>unit</th><th>low</th><th>high</th><th>outcome</th>"
             "<th>against the limits</th></tr></thead><tbody>\n";
        for (const auto& m : rec->measurements) {
            const std::string lo = m.low ? num(*m.low, 6) : "", hi = m.high ? num(*m.high, 6) : "";
            meas.rows.push_back({m.name, num(m.value, 6), m.unit, lo, hi, std::string(to_string(m.outcome))});
            const std::string cls = m.outcome == Outcome::fail ? "bad" : m.outcome == Outcome::pass ? "" : "warn";
            meas_class.push_back(cls);
            h += fmt::format("<tr{}><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
                             "<td>{}</td><td>{}</td></tr>\n",
                             cls.empty() ? "" : " class=\"" + cls + "\"", html_escape(m.name), html_escape(num(m.value, 6)),
                             html_escape(m.unit), html_escape(lo), html_escape(hi), html_escape(to_string(m.outcome)),
                             gauge_svg(m));
        }
        h += "</tbody></table>\n";
        for (const auto& f : rec->fits)
            for (const auto& [name, v] : f.parameters) {
                const auto ci = f.ci95.find(name);
                fits.rows.push_back({f.kind, name, num(v, 6), ci != f.ci95.end() ? num(ci->second.low, 6) : "",
                                     ci != f.ci95.end() ? num(ci->second.high, 6) : "", num(f.rmse, 4),
                                     f.converged ? "yes" : "no"});
            }
        h += "<h2>Fits with 95 % intervals</h2>\n" + html_table(fits);
    } else {
        h += "<h2>Measurements</h2>\n<p>No completed test run is stored for this unit.</p>\n";
    }

    // ---- traces with the fitted curves
    ReportTable pulse{"pulse_trace", {"t_s", "i_a", "v_v", "v_model_v"}, {}};
    ReportTable heat{"heat_trace", {"t_s", "i_a", "v_v", "t_cell_c", "t_amb_c", "t_model_c"}, {}};
    h += "<h2>Traces</h2>\n<div class=\"plots\">\n";
    if (rec && rec->trace.size() > 0) {
        const auto& tr = rec->trace;
        TraceSlice ps = step_slice(*rec, "pulse");
        if (!ps.found && rec->steps.empty()) ps = {0, tr.size(), true};  // a record without steps: the trace is the pulse
        if (ps.found) {
            auto t = col(tr.t_s, ps.first, ps.count);
            const auto i = col(tr.i_a, ps.first, ps.count), v = col(tr.v_v, ps.first, ps.count);
            const double t0 = t.empty() ? 0.0 : t.front();
            for (double& x : t) x -= t0;
            std::vector<double> vm;
            if (const ModelFit* f = find_fit(*rec, "ecm2"); f && f->converged) {
                models::EcmParams p;
                p.ocv_v = param(*f, "ocv_v");
                p.r0_ohm = param(*f, "r0_ohm");
                for (int k = 1; k <= 3; ++k) {
                    const double r = param(*f, fmt::format("r{}_ohm", k)), tau = param(*f, fmt::format("tau{}_s", k));
                    if (std::isfinite(r) && std::isfinite(tau)) p.rc.push_back({r, tau});
                }
                if (std::isfinite(p.ocv_v) && std::isfinite(p.r0_ohm)) {
                    try {
                        vm = models::ecm_voltage(t, i, p);
                    } catch (const std::exception&) {
                        vm.clear();
                    }
                }
            }
            Range x, y;
            for (std::size_t k = 0; k < t.size(); ++k) {
                x.include(t[k]);
                y.include(v[k]);
                if (k < vm.size()) y.include(vm[k]);
                pulse.rows.push_back({fmt::format("{:.6f}", t[k]), fmt::format("{:.6f}", i[k]), fmt::format("{:.6f}", v[k]),
                                      k < vm.size() ? fmt::format("{:.6f}", vm[k]) : ""});
            }
            y.pad(0.05);
            Plot p("Pulse: terminal voltage", "time from the pulse (s)", "voltage (V)", x, y, 640, 320);
            p.polyline(t, v, "data");
            p.legend("data", "measured");
            if (!vm.empty()) {
                p.polyline(t, vm, "model");
                p.legend("model", "fitted circuit (ecm2)");
            }
            h += p.svg();
        } else {
            h += empty_svg("Pulse", "no pulse samples stored for this run");
        }
        ++rep.svg_plots;
        const TraceSlice hs = step_slice(*rec, "heat");
        if (hs.found && tr.t_cell_c.size() == tr.size()) {
            auto t = col(tr.t_s, hs.first, hs.count);
            const auto i = col(tr.i_a, hs.first, hs.count), v = col(tr.v_v, hs.first, hs.count);
            const auto tc = col(tr.t_cell_c, hs.first, hs.count);
            auto ta = col(tr.t_amb_c, hs.first, hs.count);
            if (ta.size() != t.size()) ta.clear();
            bool amb_ok = !ta.empty();
            for (double a : ta) amb_ok = amb_ok && std::isfinite(a);
            const double t0 = t.empty() ? 0.0 : t.front();
            for (double& x : t) x -= t0;
            std::vector<double> tm;
            if (const ModelFit* f = find_fit(*rec, "thermal"); f && f->converged && !t.empty()) {
                const double c = param(*f, "c_th_j_per_k"), r = param(*f, "r_th_k_per_w"),
                             ohm = param(*f, "heating_ohm"), px = param(*f, "p_extra_w");
                if (std::isfinite(c) && std::isfinite(r) && std::isfinite(ohm)) {
                    std::vector<double> heat_w(t.size(), 0.0);
                    for (std::size_t k = 1; k < t.size(); ++k) heat_w[k] = i[k - 1] * i[k - 1] * ohm;
                    const std::vector<double> amb = amb_ok ? ta : std::vector<double>(t.size(), tc.front());
                    try {
                        tm = models::thermal_temperature(t, heat_w, amb, c, r, std::isfinite(px) ? px : 0.0, tc.front());
                    } catch (const std::exception&) {
                        tm.clear();
                    }
                }
            }
            Range x, y;
            for (std::size_t k = 0; k < t.size(); ++k) {
                x.include(t[k]);
                y.include(tc[k]);
                if (k < tm.size()) y.include(tm[k]);
                if (amb_ok) y.include(ta[k]);
                heat.rows.push_back({fmt::format("{:.6f}", t[k]), fmt::format("{:.6f}", i[k]), fmt::format("{:.6f}", v[k]),
                                     fmt::format("{:.6f}", tc[k]), amb_ok ? fmt::format("{:.6f}", ta[k]) : "",
                                     k < tm.size() ? fmt::format("{:.6f}", tm[k]) : ""});
            }
            y.pad(0.08);
            Plot p("Heating: cell temperature", "time from the heat step (s)", "temperature (°C)", x, y, 640, 320);
            p.polyline(t, tc, "data");
            p.legend("data", "cell (measured)");
            if (amb_ok) {
                p.polyline(t, ta, "line");
                p.legend("line", "ambient");
            }
            if (!tm.empty()) {
                p.polyline(t, tm, "model");
                p.legend("model", "thermal model (fitted)");
            }
            h += p.svg();
        } else {
            h += empty_svg("Heating", "no heating samples stored for this run");
        }
        ++rep.svg_plots;
    } else {
        h += empty_svg("Traces", rec ? "no trace stored for this run (sim-production stores them with --traces)"
                                     : "no completed run");
        ++rep.svg_plots;
    }
    h += "</div>\n<p class=\"note\">The heating model curve uses the fitted C_th, R_th, P_x and the effective heating "
         "resistance (∫P dt / ∫I² dt) with I²R heat; the fit itself lets the heat lag the current through the "
         "circuit's RC pairs, so the curves may differ slightly while the current changes. Traces as CSV: "
         "<code>--csv DIR</code>.</p>\n";

    // ---- history
    ReportTable hist{"history", {"time_utc", "what", "detail"}, {}};
    struct Item {
        double t;
        std::string what, detail, cls;
    };
    std::vector<Item> items;
    for (const auto& r : runs)
        items.push_back({r.start_unix_s, "test", fmt::format("run #{} {} channel {} recipe {} ({}): {}{}", r.id, r.station_id,
                                                            r.channel, r.recipe_name, r.recipe_version, to_string(r.verdict),
                                                            r.abort_reason.empty() ? std::string() : " (" + r.abort_reason + ")"),
                         r.verdict == Verdict::pass ? "" : "bad"});
    for (const auto& e : quarantine.history_of_serial(serial))
        items.push_back({e.time_unix_s, std::string(to_string(e.action)),
                         fmt::format("{} {} by {} ({}): {}", to_string(e.scope), e.target, e.actor, e.role, e.reason),
                         e.action == QuarantineAction::release ? "good" : "bad"});
    for (const auto& l : store.cell_link_history(serial))
        items.push_back({l.time_unix_s, std::string(to_string(l.action)),
                         fmt::format("device {} at {}{}", l.device_serial, l.station_id,
                                     l.reason.empty() ? std::string() : ": " + l.reason),
                         ""});
    const auto shipped = shipped_serials(store);
    if (const auto it = shipped.find(serial); it != shipped.end())
        items.push_back({it->second, "shipment", "shipped (as a cell)", "good"});
    if (const auto dev = store.device_of_cell(serial)) {
        if (const auto it = shipped.find(*dev); it != shipped.end())
            items.push_back({it->second, "shipment", fmt::format("shipped inside device {}", *dev), "good"});
    }
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.t < b.t; });
    std::vector<std::string> hist_class;
    for (const auto& it : items) {
        hist.rows.push_back({utc(it.t), it.what, it.detail});
        hist_class.push_back(it.cls);
    }
    h += "<h2>History</h2>\n" + (hist.rows.empty() ? std::string("<p>Nothing recorded.</p>\n") : html_table(hist, hist_class));
    h += page_foot(generated_by, generated_unix_s == 0.0
                                     ? std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()
                                     : generated_unix_s);
    rep.html = std::move(h);
    rep.tables = {meas, fits, hist, pulse, heat};
    return rep;
}

}  // namespace eol::station
