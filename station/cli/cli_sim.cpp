// eolstation sim --config FILE [--json]
//
// Runs the simulated instruments of a station standalone on the configured
// (loopback) addresses: one virtual fixture and lot, a SCPI load server per
// scpi_load, a Modbus load per modbus_load, a Modbus thermocouple module per
// modbus_thermo. Once every server listens it prints one line per server,
//   <scpi-load|modbus-load|modbus-thermo> <name> <host:port> <dialect or map file>
// (or, with --json, one JSON array), flushes, and runs until SIGTERM or
// SIGINT; then it stops the servers and exits 0. Configuration errors and
// ports that cannot be bound exit 2.
#include <fmt/format.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "eol/station/config.hpp"
#include "eol/station/sim_station.hpp"

namespace eol::cli {
namespace {

struct SimOptions {
    std::string config;
    bool json = false;
};

void run_sim(const SimOptions& o) {
    const station::StationConfig cfg = station::load_station_config(o.config);

    // Block the stop signals before any server thread exists, so every
    // thread inherits the mask and sigwait() below receives them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    station::SimStation sim(cfg);
    sim.start();

    const auto servers = sim.servers();
    if (o.json) {
        nlohmann::json j = nlohmann::json::array();
        for (const auto& s : servers)
            j.push_back({{"kind", s.kind}, {"name", s.name}, {"address", s.address},
                         {"definition", s.definition.string()}});
        std::cout << j.dump() << std::endl;
    } else {
        for (const auto& s : servers)
            fmt::print("{} {} {} {}\n", s.kind, s.name, s.address, s.definition.string());
    }
    std::fflush(stdout);
    fmt::print(stderr, "sim: {} servers; fixture of {} positions; lot '{}' of {} cells; time scale {}×; "
               "stop with SIGTERM or Ctrl-C\n",
               servers.size(), sim.fixture()->size(), cfg.sim.lot, sim.lot_serials().size(),
               cfg.sim.time_scale);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    sim.stop();
    fmt::print(stderr, "sim: stopped ({})\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
}

}  // namespace

void add_sim_commands(CLI::App& app) {
    auto o = std::make_shared<SimOptions>();
    auto* sim = app.add_subcommand(
        "sim", "Run the station's simulated instruments (SCPI/Modbus loads, thermocouple modules) "
               "on their configured addresses until SIGTERM");
    sim->add_option("--config", o->config, "Station configuration file")->required();
    sim->add_flag("--json", o->json, "Print the listening servers as one JSON array");
    sim->callback([o] { run_sim(*o); });
}

}  // namespace eol::cli
