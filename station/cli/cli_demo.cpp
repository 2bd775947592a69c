// eolstation demo — the main job on its embedded default: the shipped config
// written to a work folder, simulated instruments on loopback (real SCPI and
// Modbus servers over the cell physics), a virtual lot fed through the
// fixture, each round of cells tested at once by the station controller (the
// path `eolstation serve` takes: real drivers, the safety monitor), fitted,
// written to the SQLite store, screened, and a lot summary printed. The same
// seed gives the same lot, history, verdicts and holds.
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <modbus.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "commands.hpp"
#include "embedded_config.hpp"
#include "eol/sim/cell.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/station/config.hpp"
#include "eol/station/controller.hpp"
#include "eol/station/instrument_factory.hpp"
#include "eol/station/output.hpp"
#include "eol/station/panel.hpp"
#include "eol/station/plc.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/report.hpp"
#include "eol/station/screen_store.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/sim_roles.hpp"
#include "eol/station/sim_station.hpp"
#include "eol/station/steps.hpp"
#include "eol/station/store.hpp"
#include "eol/station/virtual_time.hpp"

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
    bool keep_serving = false;  // the panel stays up after the summary until Ctrl-C
};

// The cell's life before the EOL station, which the screen's K-value needs:
// the formation recipe in an in-process fixture `days` before the EOL test,
// then storage drained by a normal leakage (log-normal, median 0.05 mA) and,
// for a shorted cell, by OCV/R_isc. Returns the formation record; `p.soc0`
// becomes the state of charge at the EOL fixture.
station::TestRecord form_and_store(const station::Recipe& formation, sim::CellParams& p,
                                   const station::CellIdentity& id, double t_eol_unix_s, double days,
                                   std::mt19937_64& rng) {
    std::lognormal_distribution<double> leak(std::log(0.05e-3), 0.25);
    station::InProcessRun how;
    how.station_id = "FORM-01";
    how.noise_seed = rng();
    how.unix_start_s = t_eol_unix_s - days * 86400.0;
    station::TestRecord r = station::run_in_process(formation, station::Limits{60.0, 2.5, 10.0}, p, id, how);
    p.soc0 = station::storage_soc(p, p.soc0, leak(rng), days * 24.0);
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

double get(const station::TestRecord& rec, std::string_view name) {
    for (const auto& m : rec.measurements)
        if (m.name == name) return m.value;
    return std::nan("");
}

/// The line PLC, virtual: drives every cell through the station's Modbus TCP
/// interface (docs/plc.md) as a line PLC does — serial, recipe and cycle id,
/// START, wait for the result, RESULT_ACK — and keeps its heartbeat going
/// (every 100 ms of wall time) on its own thread. libmodbus, one connection,
/// a mutex around it. Errors: std::runtime_error naming the register.
class VirtualPlc {
public:
    VirtualPlc(std::uint16_t port, int unit, int recipe_id, station::PlcConfig::ByteOrder order)
        : recipe_id_(recipe_id), order_(order) {
        ctx_ = modbus_new_tcp("127.0.0.1", port);
        if (!ctx_) throw std::runtime_error("virtual PLC: modbus_new_tcp failed");
        modbus_set_slave(ctx_, unit);
        if (modbus_connect(ctx_) != 0) {
            modbus_free(ctx_);
            throw std::runtime_error(fmt::format("virtual PLC: cannot connect to 127.0.0.1:{}: {}", port,
                                                 modbus_strerror(errno)));
        }
        heartbeat_ = std::thread([this] {
            std::uint16_t beat = 0;
            while (!stop_) {
                try {
                    write(station::plc::kPlcHeartbeat, ++beat);
                } catch (const std::exception&) {
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        });
    }
    ~VirtualPlc() {
        stop_ = true;
        heartbeat_.join();
        modbus_close(ctx_);
        modbus_free(ctx_);
    }
    VirtualPlc(const VirtualPlc&) = delete;
    VirtualPlc& operator=(const VirtualPlc&) = delete;

    /// Serial, recipe id and cycle id, then START (a rising edge).
    void start(int position, const std::string& serial, std::uint16_t cycle) {
        const std::uint16_t b = station::plc::block(position);
        std::uint16_t words[3 + station::plc::reg::serial_words] = {};
        words[0] = 0;
        words[1] = static_cast<std::uint16_t>(recipe_id_);
        words[2] = cycle;
        station::plc::serial_to_registers(serial, words + 3, order_);
        write_many(b, words, 3 + station::plc::reg::serial_words);
        write(static_cast<std::uint16_t>(b + station::plc::reg::command), station::plc::command::start);
    }
    void command(int position, std::uint16_t bits) {
        write(static_cast<std::uint16_t>(station::plc::block(position) + station::plc::reg::command), bits);
    }
    std::uint16_t status(int position) { return read(station::plc::block(position) + station::plc::reg::status); }
    std::uint16_t result(int position) { return read(station::plc::block(position) + station::plc::reg::result); }
    /// Polls `position`'s status until `(status & mask) != 0` equals `set`.
    void wait_status(int position, std::uint16_t mask, bool set, double timeout_s) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (((status(position) & mask) != 0) != set) {
            if (std::chrono::steady_clock::now() > until)
                throw std::runtime_error(fmt::format("virtual PLC: position {}: status register {} did not {} bits "
                                                     "0x{:02x} within {} s",
                                                     position, station::plc::block(position) + station::plc::reg::status,
                                                     set ? "set" : "clear", mask, timeout_s));
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

private:
    void write(std::uint16_t address, std::uint16_t value) {
        std::lock_guard lk(m_);
        if (modbus_write_register(ctx_, address, value) != 1)
            throw std::runtime_error(fmt::format("virtual PLC: write of register {}: {}", address, modbus_strerror(errno)));
    }
    void write_many(std::uint16_t address, const std::uint16_t* values, int n) {
        std::lock_guard lk(m_);
        if (modbus_write_registers(ctx_, address, n, values) != n)
            throw std::runtime_error(
                fmt::format("virtual PLC: write of registers {}..{}: {}", address, address + n - 1, modbus_strerror(errno)));
    }
    std::uint16_t read(int address) {
        std::lock_guard lk(m_);
        std::uint16_t v = 0;
        if (modbus_read_registers(ctx_, address, 1, &v) != 1)
            throw std::runtime_error(fmt::format("virtual PLC: read of register {}: {}", address, modbus_strerror(errno)));
        return v;
    }

    modbus_t* ctx_ = nullptr;
    int recipe_id_;
    station::PlcConfig::ByteOrder order_;
    std::mutex m_;
    std::atomic<bool> stop_{false};
    std::thread heartbeat_;
};

void run_demo(const DemoOptions& o) {
    const fs::path out = o.out;
    fs::create_directories(out);
    const fs::path cfg_file = o.config.empty() ? materialize_config(out / "config") : fs::path(o.config);
    station::StationConfig cfg = station::load_station_config(cfg_file);
    const fs::path db = out / "results.db";
    fmt::print("eolstation demo\n  config   {}{}\n  store    {}\n  time     virtual (repeatable), paced at most {}x (simulated seconds per wall second)\n",
               cfg_file.string(), o.config.empty() ? " (embedded default, written out)" : "", db.string(),
               o.time_scale);

    // Positions the demo drives: those whose load times the pulse itself (its
    // capabilities, from its dialect or map file). A software-timed pulse is
    // timed by its driver on the wall clock, which the demo's virtual time
    // does not move.
    std::vector<const station::ChannelConfig*> used;
    for (const auto& ch : cfg.channels) {
        const auto* inst = cfg.find_instrument(ch.load);
        if (inst && station::make_load(*inst)->capabilities().hardware_pulse) used.push_back(&ch);
        else
            fmt::print("  position {} ({}: software-timed pulses per its capabilities, timed on the wall clock) is "
                       "left out of the virtual-time demo\n",
                       ch.position, ch.load);
    }
    if (used.empty())
        throw station::UsageError("demo: no fixture position whose load times pulses itself in " + cfg_file.string());

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
    // Virtual time (virtual_time.hpp): the fixture's clock moves only when
    // every cell and safety monitor waits, so the same seed gives the same
    // readings, fits and verdicts on a quiet or a loaded host; --time-scale
    // paces it for a person watching.
    const double epoch_unix_s =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    auto sim_clock = sim::SimClock::manual();
    auto vtime = std::make_shared<station::VirtualTime>(
        epoch_unix_s, o.time_scale, [sim_clock](double now_s, double old_s) { sim_clock->skip(now_s - old_s); });
    station::SimStation sim(cfg, sim_clock);
    sim.start();
    for (const auto& srv : sim.servers()) {
        fmt::print("  sim      {} {} on {}\n", srv.kind, srv.name, srv.address);
        for (auto& inst : cfg.instruments)
            if (inst.name == srv.name) {
                inst.address = "tcp://" + srv.address;
                inst.endpoint = instruments::parse_address(inst.address);
            }
    }

    // The station controller over the real drivers, on loopback: the same
    // code path as `eolstation serve` (one event loop, a strand per
    // instrument, the safety monitor), writing to the demo's store.
    cfg.store = db;
    station::ControllerOptions copt;
    copt.time_scale = o.time_scale;
    copt.store = db;
    copt.virtual_time = vtime;
    copt.virtual_monitor_period_s = 1.0;  // whatever the pace: the same readings
    // The operator panel on a free loopback port (the station file's [panel]
    // language), over the same controller: it shows every round live.
    cfg.panel.present = true;
    cfg.panel.enabled = true;
    cfg.panel.bind = "127.0.0.1";
    cfg.panel.port = 0;
    // The station's PLC interface on a free loopback port, and a virtual PLC
    // that drives every cell through it.
    cfg.plc.present = true;
    cfg.plc.enabled = true;
    cfg.plc.bind = "127.0.0.1";
    cfg.plc.port = 0;
    // The virtual PLC beats every 100 ms of wall time from its own thread; a
    // host loaded by other work must not make it look stale (which aborts
    // every test, as it should on a line).
    cfg.plc.heartbeat_timeout_s = std::max(cfg.plc.heartbeat_timeout_s, 10.0);
    station::Controller controller(cfg, copt);
    controller.connect_all();
    auto plc_server = station::plc::start_plc_if_configured(controller.executor(), controller);
    if (!plc_server) throw std::logic_error("demo: the PLC interface did not start");
    auto panel = station::web::start_panel_if_configured(
        controller.executor(), controller, [s = plc_server.get()] { return s->heartbeat_stale(); });
    if (panel) fmt::print("  panel    http://127.0.0.1:{}/\n", panel->port());
    VirtualPlc plc(plc_server->port(), cfg.plc.unit, cfg.plc.recipe_id, cfg.plc.serial_byte_order);
    fmt::print("  plc      a virtual line PLC drives every cell over Modbus TCP 127.0.0.1:{} (docs/plc.md)\n",
               plc_server->port());
    for (const auto& inst : controller.instruments())
        fmt::print("  driver   {} ({}) {}\n", inst.name, inst.role, station::to_string(inst.state));

    const auto scheme = station::SerialScheme::load(cfg.serial_scheme);
    const auto& serials = sim.lot_serials();
    std::size_t shorted = 0;
    for (std::size_t k = 0; k < serials.size(); ++k) shorted += std::isfinite(sim.lot_params(k).r_isc_ohm);
    fmt::print("  lot      {} made {}: {} cells, {} of them with an internal short (the simulator knows which; "
               "the station does not)\n\n",
               cfg.sim.lot, cfg.sim.production_date, serials.size(), shorted);

    auto store = station::Store::open(db, {.create = true});
    const station::Recipe formation = embedded_recipe("recipes/formation.toml");
    std::vector<station::TestRecord> records, formed;
    std::mt19937_64 rng(o.seed ^ 0x5eedf0f0u);
    std::uint16_t cycle = 0;
    fmt::print("  history  each cell's formation OCV (station FORM-01) {} days before its EOL test; storage "
               "drains it by leakage and any short\n\n",
               o.storage_days);
    fmt::print("{:<18} {:>3} {:>7} {:>8} {:>8} {:>7} {:>6} {:>8} {:>7}  {}\n", "serial", "pos", "ocv_v", "dcir_mΩ",
               "r0_mΩ", "tau1_s", "rise_K", "p_x_mW", "verdict", "notes");
    for (std::size_t next = 0; next < serials.size();) {
        std::vector<std::pair<int, std::string>> round;
        for (const auto* ch : used) {
            if (next >= serials.size()) break;
            const auto d = scheme.decode(serials[next]);
            const station::CellIdentity id{d.value.serial, cfg.recipe.cell_model, d.value.lot,
                                           d.value.production_date ? d.value.production_date->iso() : ""};
            sim::CellParams p = sim.lot_params(next);
            // The formation time is the demo's start, not the wall clock of
            // this round: the same seed gives the same history.
            formed.push_back(form_and_store(formation, p, id, epoch_unix_s, o.storage_days, rng));
            sim.fixture()->load_cell(static_cast<std::size_t>(ch->position - 1), serials[next], p);
            round.emplace_back(ch->position, serials[next]);
            ++next;
        }
        store.write_batch(formed);
        formed.clear();
        // Every position of the round started by the PLC at one station instant
        // (virtual time paused until each position is BUSY), then its results
        // collected and acknowledged as the PLC does.
        {
            vtime->pause();
            struct Resume {
                station::VirtualTime& vt;
                ~Resume() { vt.resume(); }
            } resume{*vtime};
            // One START at a time, the next once the cell has joined virtual
            // time (the PLC server starts cells on worker threads): the cells'
            // turns then come in position order in every run.
            std::size_t joined = vtime->participants();
            for (const auto& [pos, serial] : round) {
                plc.start(pos, serial, ++cycle);
                const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
                while (vtime->participants() == joined &&
                       !(plc.status(pos) & station::plc::status::result_valid)) {  // a held serial never joins
                    if (std::chrono::steady_clock::now() > until)
                        throw std::runtime_error(fmt::format("demo: position {} did not start {} within 30 s", pos, serial));
                    std::this_thread::sleep_for(std::chrono::milliseconds(2));
                }
                joined = vtime->participants();
            }
            for (const auto& [pos, serial] : round) {
                plc.wait_status(pos, station::plc::status::busy | station::plc::status::result_valid, true, 30);
                plc.command(pos, 0);
            }
        }
        const double round_wall_s = cfg.recipe.duration_s() / o.time_scale * 4 + 120;
        std::map<int, station::CellResult> results;
        for (const auto& [pos, serial] : round) {
            plc.wait_status(pos, station::plc::status::result_valid, true, round_wall_s);
            station::CellResult& res = results[pos];
            res.position = pos;
            res.serial = serial;
            for (const auto& run : store.runs_for(serial))
                if (run.station_id == cfg.station_id) res.record = store.read_record(run.id);
            if (!res.record)
                fmt::print("{:<18} {:>3} PLC result code {} (no record)\n", serial, pos, plc.result(pos));
            plc.command(pos, station::plc::command::result_ack);
            plc.wait_status(pos, station::plc::status::result_valid, false, 30);
            plc.command(pos, 0);
        }
        for (auto& [pos, res] : results) {
            if (!res.record) continue;
            station::TestRecord rec = std::move(*res.record);
            std::string notes = rec.abort_reason;
            fmt::print("{:<18} {:>3} {:>7.4f} {:>8.2f} {:>8.2f} {:>7.2f} {:>6.2f} {:>8.1f} {:>7}  {}\n", rec.serial,
                       rec.channel, get(rec, "ocv_v"), get(rec, "dcir_ohm") * 1e3, get(rec, "r0_ohm") * 1e3,
                       get(rec, "tau1_s"), get(rec, "temp_rise_k"), get(rec, "p_x_w") * 1e3,
                       std::string(station::to_string(rec.verdict)), notes);
            records.push_back(std::move(rec));
        }
        {  // progress, a line per round under its rows
            const auto done = static_cast<int>(next), all = static_cast<int>(serials.size());
            const int w = 30, fill = all > 0 ? done * w / all : w;
            fmt::print("  progress [{}{}] {}/{} cells, station time {:.0f} s\n",
                       std::string(static_cast<std::size_t>(fill), '#'), std::string(static_cast<std::size_t>(w - fill), '.'),
                       done, all, vtime->now_s());
            std::fflush(stdout);
        }
    }
    for (const auto& inst : controller.instruments())
        if (inst.commands > 0)
            fmt::print("  health   {}: {} commands, {} errors, command time p50 {:.2f} ms, p99 {:.2f} ms\n", inst.name,
                       inst.commands, inst.errors, inst.command_p50_s * 1e3, inst.command_p99_s * 1e3);
    int pass = 0;
    for (const auto& r : records) pass += r.verdict == station::Verdict::pass;
    fmt::print("\n{} of {} cells passed the recipe limits; {} records written to {}\n", pass, records.size(),
               records.size(), db.string());

    // Screening of the stored lot, holds written as quarantine events.
    const station::Actor screener{"eolstation demo", "screening"};
    const auto rep = station::screen_store(store, cfg.screening, {}, true, screener, &cfg.recipe);
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

    // The lot report (one self-contained HTML file) and the holds as CSV.
    station::LotReportOptions lo;
    lo.lot = cfg.sim.lot;
    lo.screening = cfg.screening;
    lo.recipe = &cfg.recipe;
    lo.generated_by = "eolstation demo";
    const station::LotReport lot_report = station::build_lot_report(store, lo);
    station::write_file_atomically(out / "report.html", lot_report.html);
    for (const auto& t : lot_report.tables)
        if (t.name == "holds") station::write_file_atomically(out / "holds.csv", station::to_csv(t));
    fmt::print("\nreport     {} ({} tested, {} passed, {} failed, {} held; {} SVG plots)\n",
               (out / "report.html").string(), lot_report.tested, lot_report.passed, lot_report.failed, lot_report.held,
               lot_report.svg_plots);
    fmt::print("holds      {}\n", (out / "holds.csv").string());
    fmt::print("next       eolstation lookup --db {} SERIAL...   |   eolstation quarantine list --db {}\n",
               db.string(), db.string());
    if (panel && o.keep_serving) {
        fmt::print("panel      http://127.0.0.1:{}/ stays up: Ctrl-C ends the demo\n", panel->port());
        std::fflush(stdout);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        int sig = 0;
        sigwait(&set, &sig);
    }
    if (panel) panel->stop();
    plc_server->stop();
    for (const auto& p : controller.shutdown("demo finished")) fmt::print("  warning  {}\n", p);
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
    cmd->add_option("--time-scale", opts->time_scale, "At most this many simulated seconds per wall second (the demo runs in virtual time: its results do not depend on it)")
        ->check(finite_range(1.0, 2000.0))->capture_default_str();
    cmd->add_option("--seed", opts->seed, "Seed of the virtual lot")->capture_default_str();
    cmd->add_option("--storage-days", opts->storage_days, "Days between formation and the EOL test (K-value)")
        ->check(finite_range(0.5, 60.0))->capture_default_str();
    cmd->add_flag("--keep-serving", opts->keep_serving,
                  "Leave the operator panel up after the summary (until Ctrl-C), so a person can look around");
    cmd->callback([opts] {
        if (opts->keep_serving) {  // SIGINT/SIGTERM for sigwait() in every thread started from here on
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, SIGINT);
            sigaddset(&set, SIGTERM);
            pthread_sigmask(SIG_BLOCK, &set, nullptr);
        }
        run_demo(*opts);
    });
}

}  // namespace eol::cli
