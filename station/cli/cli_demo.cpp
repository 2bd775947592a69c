// eolstation demo — the main job on its embedded default: the shipped config
// written to a work folder, simulated instruments on loopback (real SCPI and
// Modbus servers over the cell physics), a virtual lot fed through the
// fixture, each cell run through the recipe by the real drivers, fitted,
// written to the SQLite store, screened, and a lot summary printed.
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <cmath>
#include <random>
#include <thread>
#include <algorithm>

#include "commands.hpp"
#include "embedded_config.hpp"
#include "eol/sim/cell.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/station/config.hpp"
#include "eol/station/instrument_factory.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/runner.hpp"
#include "eol/station/screen_store.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/sim_station.hpp"
#include "eol/station/store.hpp"

namespace fs = std::filesystem;

namespace eol::cli {
namespace {

struct DemoOptions {
    std::string out = "eolstation-demo";
    std::string config;  // empty: the embedded default
    int cells = 40;
    double time_scale = 400.0;
    std::uint64_t seed = 2023;
    double storage_days = 7.0;  // formation → EOL
};

// The cell's life before the EOL station, which the screen's K-value needs:
// the formation station's OCV reading on the production day, then storage
// for `days`, drained by a normal leakage (log-normal, median 0.05 mA) and,
// for a shorted cell, by OCV/R_isc (1-hour steps). Returns the formation
// record; `p.soc0` becomes the state of charge at the EOL fixture.
station::TestRecord form_and_store(sim::CellParams& p, const std::string& serial, const station::DecodedSerial& d,
                                   const std::string& cell_model, double t_eol_unix_s, double days,
                                   std::mt19937_64& rng) {
    std::normal_distribution<double> noise(0.0, 0.15e-3);  // formation DMM, 0.15 mV rms
    std::lognormal_distribution<double> leak(std::log(0.05e-3), 0.25);
    station::TestRecord r;
    r.serial = serial;
    r.cell_model = cell_model;
    r.lot = d.lot;
    r.production_date = d.production_date ? d.production_date->iso() : "";
    r.station_id = "FORM-01";
    r.channel = 1;
    r.recipe_name = "formation";
    r.recipe_version = "1";
    r.start_unix_s = t_eol_unix_s - days * 86400.0;
    r.end_unix_s = r.start_unix_s + 60.0;
    const double ocv = sim::ocv_nmc_v(p.soc0) + p.ocv_offset_v + noise(rng);
    r.measurements.push_back({"ocv_v", ocv, "V", 3.0, 4.25, ocv >= 3.0 && ocv <= 4.25});
    r.verdict = r.measurements.back().pass ? station::Verdict::pass : station::Verdict::fail;
    const double leak_a = leak(rng);
    const int hours = static_cast<int>(std::ceil(days * 24.0));
    const double h = days * 24.0 / hours;
    for (int k = 0; k < hours; ++k) {
        double i_a = leak_a;
        if (std::isfinite(p.r_isc_ohm)) i_a += (sim::ocv_nmc_v(p.soc0) + p.ocv_offset_v) / p.r_isc_ohm;
        p.soc0 = std::clamp(p.soc0 - i_a * h / p.capacity_ah, 0.0, 1.0);
    }
    return r;
}

fs::path materialize_config(const fs::path& dir) {
    for (const auto& f : embedded_config()) {
        const fs::path p = dir / fs::path(std::string(f.path));
        fs::create_directories(p.parent_path());
        std::ofstream o(p, std::ios::binary | std::ios::trunc);
        o.write(f.text.data(), static_cast<std::streamsize>(f.text.size()));
        if (!o) throw std::runtime_error("cannot write " + p.string());
    }
    return dir / "station.example.toml";
}

struct Station {
    std::map<std::string, std::unique_ptr<instruments::ElectronicLoad>> loads;
    std::map<std::string, std::unique_ptr<instruments::TemperatureReader>> thermos;
    std::map<std::string, std::mutex> locks;
};

void run_demo(const DemoOptions& o) {
    const fs::path out = o.out;
    fs::create_directories(out);
    const fs::path cfg_file = o.config.empty() ? materialize_config(out / "config") : fs::path(o.config);
    station::StationConfig cfg = station::load_station_config(cfg_file);
    const fs::path db = out / "eolstation.db";
    fmt::print("eolstation demo\n  config   {}{}\n  store    {}\n  time     {}x (simulated seconds per wall second)\n",
               cfg_file.string(), o.config.empty() ? " (embedded default, written out)" : "", db.string(),
               o.time_scale);

    // Positions the demo drives: those whose load does hardware-timed pulses.
    std::vector<const station::ChannelConfig*> used;
    for (const auto& ch : cfg.channels) {
        const auto* inst = cfg.find_instrument(ch.load);
        if (inst && inst->driver == station::InstrumentConfig::Driver::scpi_load) used.push_back(&ch);
        else
            fmt::print("  position {} ({}: Modbus load, software-timed pulses) is left out at {}x\n", ch.position,
                       ch.load, o.time_scale);
    }
    if (used.empty()) throw station::UsageError("demo: no fixture position with a SCPI load in " + cfg_file.string());

    // The simulated instruments on ephemeral loopback ports (so a running
    // `eolstation sim` on the configured ports does not collide).
    cfg.sim.time_scale = o.time_scale;
    cfg.sim.seed = o.seed;
    cfg.sim.cells = o.cells;
    cfg.sim.short_fraction = std::max(cfg.sim.short_fraction, 0.05);  // something for the screen to find
    for (auto& inst : cfg.instruments) {
        inst.endpoint.port = 0;
        inst.address = inst.endpoint.to_string();
    }
    station::SimStation sim(cfg);
    sim.start();
    for (const auto& srv : sim.servers()) {
        fmt::print("  sim      {} {} on {}\n", srv.kind, srv.name, srv.address);
        for (auto& inst : cfg.instruments)
            if (inst.name == srv.name) {
                inst.address = "tcp://" + srv.address;
                inst.endpoint = instruments::parse_address(inst.address);
            }
    }

    // The real drivers, over loopback.
    Station st;
    for (const auto& inst : cfg.instruments) {
        if (inst.is_load()) {
            if (inst.driver != station::InstrumentConfig::Driver::scpi_load) continue;
            auto load = station::make_load(inst);
            load->connect();
            const auto id = load->identify();
            fmt::print("  driver   {}: {} {}\n", inst.name, id.manufacturer, id.model);
            st.loads[inst.name] = std::move(load);
        } else {
            auto tc = station::make_thermo(inst);
            tc->connect();
            fmt::print("  driver   {}: {} thermocouple channels\n", inst.name, tc->channels());
            st.thermos[inst.name] = std::move(tc);
        }
        st.locks[inst.name];
    }

    const auto scheme = station::SerialScheme::load(cfg.serial_scheme);
    const auto& serials = sim.lot_serials();
    std::size_t shorted = 0;
    for (std::size_t k = 0; k < serials.size(); ++k) shorted += std::isfinite(sim.lot_params(k).r_isc_ohm);
    fmt::print("  lot      {} made {}: {} cells, {} of them with an internal short (the simulator knows which; "
               "the station does not)\n\n",
               cfg.sim.lot, cfg.sim.production_date, serials.size(), shorted);

    auto store = station::Store::open(db, {.create = true});
    std::vector<station::TestRecord> records, formed;
    std::mt19937_64 rng(o.seed ^ 0x5eedf0f0u);
    fmt::print("  history  each cell's formation OCV (station FORM-01) {} days before its EOL test; storage "
               "drains it by leakage and any short\n\n",
               o.storage_days);
    fmt::print("{:<18} {:>3} {:>7} {:>8} {:>8} {:>7} {:>6} {:>8} {:>7}  {}\n", "serial", "pos", "ocv_v", "dcir_mΩ",
               "r0_mΩ", "tau1_s", "rise_K", "p_x_mW", "verdict", "notes");
    for (std::size_t next = 0; next < serials.size();) {
        std::vector<std::pair<const station::ChannelConfig*, std::size_t>> round;
        for (const auto* ch : used) {
            if (next >= serials.size()) break;
            sim::CellParams p = sim.lot_params(next);
            formed.push_back(form_and_store(p, serials[next], scheme.decode(serials[next]).value,
                                            cfg.recipe.cell_model, std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(), o.storage_days, rng));
            sim.fixture()->load_cell(static_cast<std::size_t>(ch->position - 1), serials[next], p);
            round.emplace_back(ch, next++);
        }
        std::vector<station::TestRecord> done(round.size());
        std::vector<std::thread> threads;
        for (std::size_t r = 0; r < round.size(); ++r) {
            threads.emplace_back([&, r] {
                const auto* ch = round[r].first;
                station::ChannelIo io;
                io.load = st.loads.at(ch->load).get();
                io.load_channel = ch->load_channel;
                io.load_mutex = &st.locks.at(ch->load);
                io.thermo = st.thermos.at(ch->thermo).get();
                io.thermo_channel = ch->thermo_channel;
                io.thermo_mutex = &st.locks.at(ch->thermo);
                if (cfg.ambient && cfg.ambient->thermo == ch->thermo) io.ambient_channel = cfg.ambient->channel;
                const auto d = scheme.decode(serials[round[r].second]);
                station::CellIdentity id{d.value.serial, cfg.recipe.cell_model, d.value.lot,
                                         d.value.production_date ? d.value.production_date->iso() : ""};
                done[r] = station::run_recipe(cfg.recipe, cfg.limits, io, id,
                                             {cfg.station_id, ch->position, o.time_scale});
            });
        }
        for (auto& t : threads) t.join();
        store.write_batch(formed);
        formed.clear();
        store.write_batch(done);
        for (auto& rec : done) {
            auto get = [&](const char* n) {
                for (const auto& m : rec.measurements)
                    if (m.name == n) return m.value;
                return std::nan("");
            };
            std::string notes;
            for (const auto& m : rec.measurements)
                if (!m.pass) notes += (notes.empty() ? "" : ", ") + m.name + " out of limits";
            if (!rec.abort_reason.empty()) notes = rec.abort_reason;
            fmt::print("{:<18} {:>3} {:>7.4f} {:>8.2f} {:>8.2f} {:>7.2f} {:>6.2f} {:>8.1f} {:>7}  {}\n", rec.serial,
                       rec.channel, get("ocv_v"), get("dcir_ohm") * 1e3, get("r0_ohm") * 1e3, get("tau1_s"),
                       get("temp_rise_k"), get("p_x_w") * 1e3, std::string(station::to_string(rec.verdict)), notes);
            records.push_back(std::move(rec));
        }
    }
    int pass = 0;
    for (const auto& r : records) pass += r.verdict == station::Verdict::pass;
    fmt::print("\n{} of {} cells passed the recipe limits; {} records written to {}\n", pass, records.size(),
               records.size(), db.string());

    // Screening of the stored lot, holds written as quarantine events.
    const station::Actor screener{"eolstation demo", "screening"};
    const auto rep = station::screen_store(store, cfg.screening, {}, true, screener, &cfg.limits);
    fmt::print("\nscreening  {} cells, features {}\n", rep.cells_screened, fmt::join(rep.features, ", "));
    for (const auto& c : rep.cells) {
        fmt::print("  hold     {}", c.serial);
        for (const auto& why : c.reasons) fmt::print("  [{}]", why);
        fmt::print("\n");
    }
    for (const auto& g : rep.groups) fmt::print("  hold     {} ({})\n", g.group, g.reason);
    std::size_t pat_notes = 0;  // one or two per feature on a small lot; summarized
    for (const auto& n : rep.notes) {
        if (n.rfind("PAT ", 0) == 0) ++pat_notes;
        else fmt::print("  note     {}\n", n);
    }
    if (pat_notes > 0)
        fmt::print("  note     {} PAT notes (a single lot: no reference lots for static limits; "
                   "`eolstation screen --db {}` lists them)\n",
                   pat_notes, db.string());
    if (rep.cells.empty() && rep.groups.empty()) fmt::print("  nothing to hold\n");

    // The ship gate, and how it compares with what the simulator knows.
    station::LookupSession gate(store, scheme);
    std::size_t may_ship = 0, short_caught = 0, good_held = 0;
    for (std::size_t k = 0; k < serials.size(); ++k) {
        const auto r = gate.lookup(serials[k]);
        const bool is_short = std::isfinite(sim.lot_params(k).r_isc_ohm);
        may_ship += r.may_ship;
        if (is_short && !r.may_ship) ++short_caught;
        if (!is_short && !r.may_ship) ++good_held;
    }
    fmt::print("\nship gate  {} of {} cells may ship; shorted cells stopped: {} of {}; good cells stopped: {}\n",
               may_ship, serials.size(), short_caught, shorted, good_held);
    for (std::size_t k = 0; k < serials.size(); ++k)
        if (std::isfinite(sim.lot_params(k).r_isc_ohm))
            fmt::print("  truth    {} has an internal short of {:.0f} Ω: {}\n", serials[k], sim.lot_params(k).r_isc_ohm,
                       gate.lookup(serials[k]).may_ship ? "MISSED (may ship)" : "stopped");
    fmt::print("next       eolstation lookup --db {} SERIAL...   |   eolstation quarantine list --db {}\n",
               db.string(), db.string());
}

}  // namespace

void add_demo_commands(CLI::App& app) {
    auto opts = std::make_shared<DemoOptions>();
    auto* cmd = app.add_subcommand(
        "demo", "Run the station on simulated instruments over loopback: a virtual lot through the recipe, "
                "fits, the results store, screening and a lot summary");
    cmd->add_option("--out", opts->out, "Work folder for the written config and the store")->capture_default_str();
    cmd->add_option("--config", opts->config, "A station file instead of the embedded default")
        ->check(CLI::ExistingFile);
    cmd->add_option("--cells", opts->cells, "Cells in the virtual lot")->check(CLI::Range(1, 10000))
        ->capture_default_str();
    cmd->add_option("--time-scale", opts->time_scale, "Simulated seconds per wall second")
        ->check(CLI::Range(1.0, 2000.0))->capture_default_str();
    cmd->add_option("--seed", opts->seed, "Seed of the virtual lot")->capture_default_str();
    cmd->add_option("--storage-days", opts->storage_days, "Days between formation and the EOL test (K-value)")
        ->check(CLI::Range(0.5, 60.0))->capture_default_str();
    cmd->callback([opts] { run_demo(*opts); });
}

}  // namespace eol::cli
