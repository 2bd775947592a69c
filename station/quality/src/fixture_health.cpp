#include "eol/station/fixture_health.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace eol::station {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Row {
    std::int64_t run_id = 0;
    std::string serial;
    int position = 0;
    double start_unix_s = 0.0;
    double end_unix_s = 0.0;
    double resistance_ohm = kNaN;
    double rest_offset_k = kNaN;
    double steady_offset_k = kNaN;
    double r_th_k_per_w = kNaN;
    bool offset_given = false;  // the heat fit used a calibrated offset at test time
};

// The thermal fit's steady offset c = o + R_th·P_x: recorded as
// steady_offset_k (extended fits, and plain fits since fixture calibration);
// older plain fits assumed o = 0, so c = R_th·P_x.
double steady_offset(double recorded, double p_extra_w, double r_th_k_per_w) {
    if (std::isfinite(recorded)) return recorded;
    return std::isfinite(p_extra_w) && std::isfinite(r_th_k_per_w) ? p_extra_w * r_th_k_per_w : kNaN;
}

}  // namespace

models::FixtureHealthSettings fixture_settings(const FixtureHealthConfig& cfg) {
    models::FixtureHealthSettings s;
    s.window_readings = static_cast<std::size_t>(std::max(1, cfg.window_cells));
    s.reference_readings = static_cast<std::size_t>(std::max(1, cfg.reference_cells));
    s.min_reference = std::min<std::size_t>(8, s.reference_readings);
    s.contact_limit_ohm = cfg.contact_limit_ohm;
    s.tc_drift_limit_k = cfg.tc_drift_limit_k;
    s.calibration_readings = static_cast<std::size_t>(std::max(1, cfg.calibration_cells));
    return s;
}

models::FixtureReading fixture_reading(const TestRecord& record, const FixtureHealthConfig& cfg) {
    models::FixtureReading r;
    r.position = record.channel;
    if (record.verdict != Verdict::pass && record.verdict != Verdict::fail) return r;
    for (const auto& m : record.measurements)
        if (m.name == cfg.resistance && std::isfinite(m.value)) r.resistance_ohm = m.value;
    for (const auto& f : record.fits) {
        if (f.kind != "thermal" || !f.converged) continue;
        auto param = [&](const char* name) {
            auto it = f.parameters.find(name);
            return it == f.parameters.end() ? kNaN : it->second;
        };
        if (std::isfinite(param("rest_delta_k"))) r.rest_offset_k = param("rest_delta_k");
        r.steady_offset_k = steady_offset(param("steady_offset_k"), param("p_extra_w"), param("r_th_k_per_w"));
    }
    return r;
}

TestRecord corrected_for_fixture(const TestRecord& record, const FixtureHealthConfig& cfg, double contact_offset_ohm) {
    TestRecord out = record;
    if (contact_offset_ohm == 0.0) return out;
    for (auto& m : out.measurements)
        if (std::find(cfg.correct.begin(), cfg.correct.end(), m.name) != cfg.correct.end() && std::isfinite(m.value))
            m.value -= contact_offset_ohm;
    return out;
}

FixtureHistory replay_fixture(Store& store, const FixtureHealthConfig& cfg, std::string_view station_id,
                              models::FixtureMonitor* monitor) {
    const models::FixtureHealthSettings settings = fixture_settings(cfg);
    std::map<std::string, std::vector<Row>> by_station;
    const std::string resistance = cfg.resistance;
    store.for_each_latest(CellFilter{}, [&](const CellFeatures& c) {
        if (!station_id.empty() && c.run.station_id != station_id) return;
        Row r;
        r.run_id = c.run.id;
        r.serial = c.cell.serial;
        r.position = c.run.channel;
        r.start_unix_s = c.run.start_unix_s;
        r.end_unix_s = c.run.end_unix_s;
        double p_extra_w = kNaN;
        for (const auto& [name, value] : c.features) {
            if (name == resistance) r.resistance_ohm = value;
            else if (name == "thermal.rest_delta_k") r.rest_offset_k = value;
            else if (name == "thermal.steady_offset_k") r.steady_offset_k = value;
            else if (name == "thermal.r_th_k_per_w") r.r_th_k_per_w = value;
            else if (name == "thermal.p_extra_w") p_extra_w = value;
            else if (name == "thermal.sensor_offset_c") r.offset_given = std::isfinite(value);
        }
        r.steady_offset_k = steady_offset(r.steady_offset_k, p_extra_w, r.r_th_k_per_w);
        by_station[c.run.station_id].push_back(std::move(r));
    });
    FixtureHistory h;
    for (auto& [station, rows] : by_station) {
        // Service events: the position is reset before its first run stored
        // after the service (run ids count up in the order runs are stored).
        std::map<int, std::vector<std::int64_t>> services;  // position → after_run_id, increasing
        std::map<int, std::int64_t> last_service_event;     // position → its latest service's event id
        for (const auto& e : store.station_events_of(station, kFixtureServiceEvent)) {
            const auto j = nlohmann::json::parse(e.detail_json, nullptr, false);
            if (!j.is_object() || !j.contains("position") || !j["position"].is_number_integer() ||
                !j.contains("after_run_id") || !j["after_run_id"].is_number_integer())
                continue;
            services[j["position"].get<int>()].push_back(j["after_run_id"].get<std::int64_t>());
            auto& last = last_service_event[j["position"].get<int>()];
            last = std::max(last, e.id);
        }
        // In the order the station learned them: the order it stored them
        // (a live station learns each record as it stores it; sim-production
        // stores in test order). Not by the records' clocks: a restarted
        // station on a scaled or virtual clock may stamp later runs earlier,
        // and channels finishing together may store in either order.
        std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.run_id < b.run_id; });
        for (auto& [pos, ids] : services) std::sort(ids.begin(), ids.end());
        std::map<int, std::size_t> next_service;
        // Runs at a position before it had a calibration (since commissioning
        // or its service) take its first one, so that the lot screen reads
        // all of a position's cells against one reference (run id, R_th).
        std::map<int, std::vector<std::pair<std::int64_t, double>>> uncalibrated;
        models::FixtureMonitor mon(settings);
        for (const Row& r : rows) {
            if (auto it = services.find(r.position); it != services.end()) {
                std::size_t& k = next_service[r.position];
                bool reset = false;
                while (k < it->second.size() && it->second[k] < r.run_id) {
                    ++k;
                    reset = true;
                }
                if (reset) {
                    mon.reset(r.position);
                    uncalibrated[r.position].clear();
                }
            }
            models::FixtureReading reading;
            reading.position = r.position;
            reading.resistance_ohm = r.resistance_ohm;
            reading.rest_offset_k = r.rest_offset_k;
            reading.steady_offset_k = r.steady_offset_k;
            // The calibration the position had when this cell was tested
            // (before its own reading), for records fitted without one.
            if (cfg.calibrate_thermocouples && !r.offset_given && std::isfinite(r.r_th_k_per_w) && r.r_th_k_per_w > 0) {
                const double cal = mon.thermo_calibration_k(r.position);
                if (std::isfinite(cal)) h.p_x_correction_w[r.run_id] = cal / r.r_th_k_per_w;
                else uncalibrated[r.position].emplace_back(r.run_id, r.r_th_k_per_w);
            }
            if (auto a = mon.add(reading)) h.flags.push_back({station, *a, r.run_id, r.serial, r.start_unix_s});
            if (auto u = uncalibrated.find(r.position); u != uncalibrated.end() && !u->second.empty()) {
                const double first = mon.thermo_calibration_k(r.position);
                if (std::isfinite(first)) {
                    for (const auto& [id, r_th] : u->second) h.p_x_correction_w[id] = first / r_th;
                    u->second.clear();
                }
            }
            h.contact_offset_ohm[r.run_id] = mon.contact_correction_ohm(r.position);
            ++h.runs;
        }
        for (const auto& [pos, ids] : services)
            if (next_service[pos] < ids.size()) mon.reset(pos);  // serviced after its last run
        // A stored flag stands until its position is serviced: the station's
        // decision, whatever a replay under other settings or of the latest
        // runs only (a retested cell) would decide now.
        for (const auto& e : store.station_events_of(station, kFixtureFlagEvent)) {
            const auto j = nlohmann::json::parse(e.detail_json, nullptr, false);
            if (!j.is_object() || !j.contains("position") || !j["position"].is_number_integer()) continue;
            const int pos = j["position"].get<int>();
            if (auto it = last_service_event.find(pos); it != last_service_event.end() && it->second > e.id) continue;
            models::FixtureAlarm a;
            a.position = pos;
            a.quantity = j.contains("quantity") && j["quantity"].is_string() ? j["quantity"].get<std::string>()
                                                                              : std::string("stored");
            a.value = j.contains("value") && j["value"].is_number() ? j["value"].get<double>() : kNaN;
            a.limit = j.contains("limit") && j["limit"].is_number() ? j["limit"].get<double>() : kNaN;
            a.reason = e.message;
            mon.keep_alarm(a);
        }
        h.positions[station] = mon.positions();
        if (monitor && station == station_id) *monitor = mon;
    }
    if (monitor && (station_id.empty() || !by_station.count(std::string(station_id)))) *monitor = models::FixtureMonitor(settings);
    return h;
}

std::string apply_fixture_correction(FeatureTable& table, const FixtureHistory& history,
                                     const FixtureHealthConfig& cfg) {
    std::vector<std::size_t> cols;
    for (std::size_t j = 0; j < table.cols(); ++j)
        if (std::find(cfg.correct.begin(), cfg.correct.end(), table.names[j]) != cfg.correct.end()) cols.push_back(j);
    std::size_t corrected = 0;
    double largest = 0.0;
    const std::size_t n = table.rows();
    for (std::size_t i = 0; i < n; ++i) {
        auto it = history.contact_offset_ohm.find(table.run_ids[i]);
        if (it == history.contact_offset_ohm.end() || it->second == 0.0) continue;
        for (std::size_t j : cols) {
            double& v = table.values[j * n + i];
            if (std::isfinite(v)) v -= it->second;
        }
        ++corrected;
        largest = std::max(largest, std::fabs(it->second));
    }
    std::string names;
    for (std::size_t j : cols) names += (names.empty() ? "" : ", ") + table.names[j];
    std::string note =
        cols.empty()
            ? std::string("fixture correction: none of the screened features is a corrected resistance "
                          "([fixture_health] correct)")
            : fmt::format("fixture correction: {} of {} cells' {} corrected by their position's contact offset "
                          "(largest {:.3f} mOhm; {} flags in the history)",
                          corrected, n, names, largest * 1e3, history.flags.size());
    // P_x of cells fitted without a sensor offset: P_x − o/R_th with o the
    // position's thermocouple calibration when the cell was tested.
    if (cfg.calibrate_thermocouples) {
        std::vector<std::pair<std::size_t, double>> px;  // column, scale from W
        for (std::size_t j = 0; j < table.cols(); ++j) {
            if (table.names[j] == "p_x_w" || table.names[j] == "thermal.p_extra_w") px.emplace_back(j, 1.0);
            else if (table.names[j] == "p_x_mw") px.emplace_back(j, 1e3);
        }
        std::size_t done = 0;
        double largest_w = 0.0;
        for (std::size_t i = 0; i < n && !px.empty(); ++i) {
            auto it = history.p_x_correction_w.find(table.run_ids[i]);
            if (it == history.p_x_correction_w.end()) continue;
            for (const auto& [j, scale] : px) {
                double& v = table.values[j * n + i];
                if (std::isfinite(v)) v -= it->second * scale;
            }
            ++done;
            largest_w = std::max(largest_w, std::fabs(it->second));
        }
        if (!px.empty())
            note += fmt::format("; P_x of {} cells fitted without a sensor offset corrected by their position's "
                                "thermocouple calibration (largest {:.1f} mW)",
                                done, largest_w * 1e3);
    }
    return note;
}

}  // namespace eol::station
