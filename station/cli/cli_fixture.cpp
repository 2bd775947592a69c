// eolstation fixture — fixture health from the results store: each test
// position's learned contact offset and thermocouple offset, and the
// positions a drift took out of service (station/quality fixture_health.hpp,
// docs/screening.md "Fixture health").
//
//   eolstation fixture --db FILE [--config STATION.toml] [--station ID] [--json]
//
// Exit 0 when every position is in service, 1 when one is out of service
// (flagged and not serviced since), 2 on usage or store errors.
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <string>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "eol/station/config.hpp"
#include "eol/station/fixture_health.hpp"
#include "eol/station/store.hpp"

namespace eol::cli {
namespace {

struct FixtureOptions {
    std::string db;
    std::string config;
    std::string station;
    bool json = false;
};

nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

void run_fixture(const FixtureOptions& o) {
    station::FixtureHealthConfig cfg;
    if (!o.config.empty()) {
        const station::StationConfig sc = station::load_station_config(o.config);
        cfg = sc.fixture_health;
    }
    station::OpenOptions oo;
    oo.read_only = true;
    station::Store store = station::Store::open(o.db, oo);
    const station::FixtureHistory h = station::replay_fixture(store, cfg, o.station);
    bool out_of_service = false;
    for (const auto& [station, positions] : h.positions)
        for (const auto& p : positions) out_of_service = out_of_service || p.alarm.has_value();
    if (o.json) {
        nlohmann::json j{{"db", o.db}, {"runs", h.runs}};
        j["settings"] = {{"resistance", cfg.resistance},
                         {"window_cells", cfg.window_cells},
                         {"reference_cells", cfg.reference_cells},
                         {"contact_limit_ohm", cfg.contact_limit_ohm},
                         {"tc_drift_limit_k", cfg.tc_drift_limit_k},
                         {"calibrate_thermocouples", cfg.calibrate_thermocouples},
                         {"calibration_cells", cfg.calibration_cells}};
        nlohmann::json stations = nlohmann::json::array();
        for (const auto& [station, positions] : h.positions) {
            nlohmann::json ps = nlohmann::json::array();
            for (const auto& p : positions)
                ps.push_back({{"position", p.position},
                              {"cells", p.readings},
                              {"contact_offset_ohm", num(p.contact_offset_ohm)},
                              {"tc_offset_k", num(p.tc_offset_k)},
                              {"tc_baseline_k", num(p.tc_baseline_k)},
                              {"tc_calibration_k", num(p.tc_calibration_k)},
                              {"in_service", !p.alarm},
                              {"reason", p.alarm ? p.alarm->reason : ""}});
            stations.push_back({{"station_id", station}, {"positions", ps}});
        }
        j["stations"] = stations;
        nlohmann::json flags = nlohmann::json::array();
        for (const auto& f : h.flags)
            flags.push_back({{"station_id", f.station_id},
                             {"position", f.alarm.position},
                             {"quantity", f.alarm.quantity},
                             {"value", f.alarm.value},
                             {"limit", f.alarm.limit},
                             {"cells_at_position", f.alarm.readings},
                             {"run_id", f.run_id},
                             {"serial", f.serial},
                             {"time_unix_s", f.time_unix_s},
                             {"reason", f.alarm.reason}});
        j["flags"] = flags;
        fmt::print("{}\n", j.dump(2));
    } else {
        fmt::print("{}: {} runs; contact limit {:.2f} mOhm ({}), thermocouple drift limit {:.2f} K, median of {} cells\n",
                   o.db, h.runs, cfg.contact_limit_ohm * 1e3, cfg.resistance, cfg.tc_drift_limit_k, cfg.window_cells);
        for (const auto& [station, positions] : h.positions) {
            fmt::print("station {}\n", station);
            fmt::print("  {:>8}  {:>6}  {:>14}  {:>12}  {:>12}  {:>14}  {}\n", "position", "cells", "contact mOhm",
                       "tc offset K", "tc baseline", "tc calibration", "state");
            auto f = [](double x, double scale) {
                return std::isfinite(x) ? fmt::format("{:+.3f}", x * scale) : std::string("-");
            };
            for (const auto& p : positions)
                fmt::print("  {:>8}  {:>6}  {:>14}  {:>12}  {:>12}  {:>14}  {}\n", p.position, p.readings,
                           f(p.contact_offset_ohm, 1e3), f(p.tc_offset_k, 1), f(p.tc_baseline_k, 1),
                           f(p.tc_calibration_k, 1),
                           p.alarm ? "OUT OF SERVICE: " + p.alarm->reason : std::string("in service"));
        }
        for (const auto& fl : h.flags)
            fmt::print("flag: station {} {} (run {}, serial {})\n", fl.station_id, fl.alarm.reason, fl.run_id,
                       fl.serial);
    }
    if (out_of_service) set_exit(station::ExitCode::domain_no);
}

}  // namespace

void add_fixture_commands(CLI::App& app) {
    auto o = std::make_shared<FixtureOptions>();
    CLI::App* c = app.add_subcommand(
        "fixture",
        "Fixture health from the results store: each position's learned contact offset (its resistance readings "
        "against the other positions') and thermocouple offset at rest, and the positions a drift took out of "
        "service. Exit 1 when a position is out of service.");
    c->add_option("--db", o->db, "Results store (SQLite), read only")->required();
    c->add_option("--config", o->config, "Station TOML: its [fixture_health] settings (default: the defaults)");
    c->add_option("--station", o->station, "Only this station id (default: every station in the store)");
    c->add_flag("--json", o->json, "Print as JSON");
    c->callback([o] { run_fixture(*o); });
}

}  // namespace eol::cli
