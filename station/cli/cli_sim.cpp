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
//
// Fault injection at run time: one command per line on stdin, one reply line
// on stdout ("ok …" or "error: … (stdin line N)"); end of input is ignored;
// a line longer than 4096 bytes is an error (the rest of it is skipped).
//   fault NAME latency S                 added before every reply (wall s, 0..60; 0 = off)
//   fault NAME drop|garbage|truncate     the next reply (one-shot)
//   fault NAME silence on|off            swallow requests (clients time out)
//   fault NAME scpi-error TEXT           queued on the next SCPI command (scpi-load only)
//   fault NAME modbus-exception CODE     the next Modbus request, code 1..11
//                                        (modbus-load, modbus-thermo only)
//   fault NAME burnout CH[,CH…]|none     thermocouple channels reading open
//                                        (modbus-thermo only; CH within the
//                                        instrument's configured channels, 0-based)
//   fault NAME clear                     every fault of NAME off
//   faults                               every server's fault settings
//   cell POSITION KEY VALUE              the cell in fixture POSITION replaced by
//                                        one with KEY changed (fresh state): r0_ohm,
//                                        r_isc_ohm (an internal short: heat),
//                                        r_th_k_per_w, c_th_j_per_k, soc0, capacity_ah;
//                                        or current_cap_a: the position's load channel
//                                        sinks at most VALUE A (inf = no cap);
//                                        contact_ohm: the position's contacts add
//                                        VALUE Ω to every voltage reading's path
//                                        (worn pins, ≥ 0); tc_offset_c: its
//                                        thermocouple reads VALUE K off (a drift)
// A fault the instrument's protocol does not have, or a channel it does not
// have, is an error naming what it does have; nothing changes then.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>

#include <cmath>
#include <cstdio>
#include <set>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "eol/station/config.hpp"
#include "eol/station/sim_station.hpp"

namespace eol::cli {
namespace {

std::string describe(const sim::FaultSettings& f) {
    std::string out;
    auto add = [&](const std::string& x) { out += (out.empty() ? "" : " ") + x; };
    if (f.latency_s > 0) add(fmt::format("latency {} s", f.latency_s));
    if (f.drop_connection) add("drop");
    if (f.garbage_reply) add("garbage");
    if (f.truncated_reply) add("truncate");
    if (f.no_reply) add("silence");
    if (!f.scpi_error.empty()) add("scpi-error " + f.scpi_error);
    if (f.modbus_exception != 0) add(fmt::format("modbus-exception {}", f.modbus_exception));
    if (!f.burnout_channels.empty()) add(fmt::format("burnout {}", fmt::join(f.burnout_channels, ",")));
    return out.empty() ? "none" : out;
}

/// Applies one control line; returns the reply. Throws std::invalid_argument
/// with the reason for a bad line.
std::string control(station::SimStation& sim, const station::StationConfig& cfg,
                    const std::vector<station::SimServerInfo>& servers, const std::string& line) {
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    if (verb.empty() || verb[0] == '#') return {};
    if (verb == "faults") {
        std::string out;
        for (const auto& srv : servers)
            out += fmt::format("{}{} {}", out.empty() ? "ok " : "; ", srv.name, describe(sim.faults(srv.name).get()));
        return out;
    }
    if (verb == "cell") {
        std::string pos_text, key, value_text, extra;
        in >> pos_text >> key >> value_text >> extra;
        if (value_text.empty() || !extra.empty())
            throw std::invalid_argument("cell: POSITION KEY VALUE, e.g. cell 1 r_isc_ohm 0.5");
        std::size_t used = 0;
        int pos = 0;
        try {
            pos = std::stoi(pos_text, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != pos_text.size() || !cfg.find_position(pos))
            throw std::invalid_argument(fmt::format("cell: '{}' is not a configured fixture position", pos_text));
        double value = 0;
        try {
            value = std::stod(value_text, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != value_text.size() || std::isnan(value))
            throw std::invalid_argument(fmt::format("cell: {}: '{}' is not a number", key, value_text));
        const auto slot = static_cast<std::size_t>(pos - 1);
        auto fx = sim.fixture();
        if (key == "contact_ohm") {
            if (!(value >= 0) || !std::isfinite(value))
                throw std::invalid_argument(fmt::format("cell: contact_ohm: '{}' is not a finite number >= 0", value_text));
            fx->set_contact_resistance(slot, value);
            return fmt::format("ok cell {} contact_ohm {}", pos, value);
        }
        if (key == "tc_offset_c") {
            if (!std::isfinite(value) || std::fabs(value) > 50)
                throw std::invalid_argument(fmt::format("cell: tc_offset_c: '{}' is not within -50..50", value_text));
            fx->set_thermocouple_offset(slot, value);
            return fmt::format("ok cell {} tc_offset_c {}", pos, value);
        }
        if (value <= 0)
            throw std::invalid_argument(fmt::format("cell: {}: '{}' is not a positive number", key, value_text));
        if (key == "current_cap_a") {
            fx->set_current_cap(slot, value);
            return fmt::format("ok cell {} current_cap_a {}", pos, value);
        }
        auto params = fx->cell_params(slot);
        if (!params) throw std::invalid_argument(fmt::format("cell: position {} holds no cell", pos));
        double* field = key == "r0_ohm"         ? &params->r0_ohm
                        : key == "r_isc_ohm"    ? &params->r_isc_ohm
                        : key == "r_th_k_per_w" ? &params->r_th_k_per_w
                        : key == "c_th_j_per_k" ? &params->c_th_j_per_k
                        : key == "soc0"         ? &params->soc0
                        : key == "capacity_ah"  ? &params->capacity_ah
                                                : nullptr;
        if (!field)
            throw std::invalid_argument(fmt::format("cell: unknown key '{}' (r0_ohm, r_isc_ohm, r_th_k_per_w, "
                                                    "c_th_j_per_k, soc0, capacity_ah, current_cap_a, contact_ohm, tc_offset_c)",
                                                    key));
        if (key == "soc0" && value > 1) throw std::invalid_argument("cell: soc0 is a fraction 0..1");
        *field = value;
        fx->load_cell(slot, sim.serial_at(pos), *params);
        return fmt::format("ok cell {} {} {}", pos, key, value);
    }
    if (verb != "fault") throw std::invalid_argument("unknown command '" + verb + "' (fault, faults, cell)");
    std::string name, what;
    in >> name >> what;
    const station::SimServerInfo* server = nullptr;
    for (const auto& srv : servers)
        if (srv.name == name) server = &srv;
    if (!server) {
        std::vector<std::string> names;
        for (const auto& srv : servers) names.push_back(srv.name);
        throw std::invalid_argument(fmt::format("no simulated instrument '{}' (have: {})", name, fmt::join(names, ", ")));
    }
    std::string rest;
    std::getline(in >> std::ws, rest);
    auto number = [&](const char* field) {
        std::size_t used = 0;
        double v = 0;
        try {
            v = std::stod(rest, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != rest.size() || !std::isfinite(v))
            throw std::invalid_argument(fmt::format("{}: '{}' is not a number", field, rest));
        return v;
    };
    // Faults of one protocol only.
    auto only_for = [&](std::initializer_list<std::string_view> kinds) {
        for (auto k : kinds)
            if (server->kind == k) return;
        throw std::invalid_argument(fmt::format("{}: {} is a {} simulator; {} applies to {} only", what, name,
                                                server->kind, what, fmt::join(kinds, ", ")));
    };
    auto& faults = sim.faults(name);
    if (what == "latency") {
        const double s = number("latency");
        if (s < 0 || s > 60) throw std::invalid_argument("latency: 0..60 s");
        faults.update([&](sim::FaultSettings& f) { f.latency_s = s; });
    } else if (what == "drop" || what == "garbage" || what == "truncate") {
        faults.update([&](sim::FaultSettings& f) {
            (what == "drop" ? f.drop_connection : what == "garbage" ? f.garbage_reply : f.truncated_reply) = true;
        });
    } else if (what == "silence") {
        if (rest != "on" && rest != "off") throw std::invalid_argument("silence: on or off");
        faults.update([&](sim::FaultSettings& f) { f.no_reply = rest == "on"; });
    } else if (what == "scpi-error") {
        only_for({"scpi-load"});
        if (rest.empty()) throw std::invalid_argument("scpi-error: the error text, e.g. -222,\"Data out of range\"");
        faults.update([&](sim::FaultSettings& f) { f.scpi_error = rest; });
    } else if (what == "modbus-exception") {
        only_for({"modbus-load", "modbus-thermo"});
        const double c = number("modbus-exception");
        if (c < 1 || c > 11 || c != std::floor(c)) throw std::invalid_argument("modbus-exception: a code 1..11");
        faults.update([&](sim::FaultSettings& f) { f.modbus_exception = static_cast<int>(c); });
    } else if (what == "burnout") {
        only_for({"modbus-thermo"});
        const station::InstrumentConfig* ic = cfg.find_instrument(name);
        const int channels = ic ? ic->channels : 0;
        std::set<int> chans;
        if (rest != "none") {
            std::istringstream list(rest);
            std::string item;
            while (std::getline(list, item, ',')) {
                std::size_t used = 0;
                int ch = -1;
                try {
                    ch = std::stoi(item, &used);
                } catch (const std::exception&) {
                    used = 0;
                }
                if (used == 0 || used != item.size())
                    throw std::invalid_argument(fmt::format("burnout: '{}' is not a channel number", item));
                if (ch < 0 || ch >= channels)
                    throw std::invalid_argument(fmt::format("burnout: channel {} is out of range: {} has channels 0..{}",
                                                            ch, name, channels - 1));
                chans.insert(ch);
            }
            if (chans.empty()) throw std::invalid_argument("burnout: channel list or none");
        }
        faults.update([&](sim::FaultSettings& f) { f.burnout_channels = chans; });
    } else if (what == "clear") {
        faults.set({});
    } else {
        throw std::invalid_argument(fmt::format(
            "unknown fault '{}' (latency, drop, garbage, truncate, silence, scpi-error, modbus-exception, burnout, clear)",
            what));
    }
    return fmt::format("ok {} {}", name, describe(faults.get()));
}

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

    // The control reader outlives nothing: it takes `mutex` and checks
    // `stopped` before touching the simulator, and is detached at exit.
    struct Shared {
        std::mutex mutex;
        bool stopped = false;
    };
    auto shared = std::make_shared<Shared>();
    std::thread([&sim, &cfg, servers, shared] {
        std::string line;
        bool too_long = false;
        for (int n = 1; read_bounded_line(std::cin, line, too_long); ++n) {
            std::lock_guard lk(shared->mutex);
            if (shared->stopped) return;
            std::string reply;
            try {
                if (too_long)
                    throw std::invalid_argument(
                        fmt::format("line longer than {} bytes, ignored", kMaxInputLineBytes));
                reply = control(sim, cfg, servers, line);
            } catch (const std::exception& e) {
                reply = fmt::format("error: {} (stdin line {})", e.what(), n);
            }
            if (!reply.empty()) {
                fmt::print("{}\n", reply);
                std::fflush(stdout);
            }
        }
    }).detach();

    int sig = 0;
    sigwait(&stop_signals, &sig);
    {
        std::lock_guard lk(shared->mutex);
        shared->stopped = true;
        sim.stop();
    }
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
