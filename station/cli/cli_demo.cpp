// eolstation demo — the main job on its embedded default: the shipped config
// written to a work folder, simulated instruments on loopback (real SCPI and
// Modbus servers over the cell physics), an earlier production as history,
// then a virtual production of several lots (good February lots, defective
// March–April 2023 lots) fed through the fixture, each round of cells started
// by a virtual line PLC over Modbus TCP and tested at once by the station
// controller (the path `eolstation serve` takes: real drivers, the safety
// monitor, screening at test time), written to the SQLite store, screened,
// reported, and compared with what the simulator knows. The same seed gives
// the same production, readings, verdicts and holds.
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <modbus.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
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
#include "eol/station/log.hpp"
#include "eol/station/plc.hpp"
#include "eol/station/production_sim.hpp"
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
    int cells = 80;             // tested by the station, spread over `lots`
    int lots = 4;               // half before the defect window, half inside it
    int history_cells = 480;    // earlier production, tested before the demo (in process)
    double time_scale = 1000.0;  // a pace; the demo's results do not depend on it
    std::uint64_t seed = 2023;
    bool keep_serving = false;  // the panel stays up after the summary until Ctrl-C
};

// The production the demo's station tests: lots made on Tuesdays, the last
// good ones before the defect window (March–April 2023) and the first ones
// inside it.
std::vector<station::Date> live_lot_days(int lots) {
    static constexpr station::Date good[] = {{2023, 2, 7}, {2023, 2, 14}, {2023, 2, 21}, {2023, 2, 28}};
    static constexpr station::Date defect[] = {{2023, 3, 14}, {2023, 3, 28}, {2023, 4, 11}, {2023, 4, 25}};
    const int n_good = lots / 2;
    std::vector<station::Date> days(std::end(good) - n_good, std::end(good));
    days.insert(days.end(), std::begin(defect), std::begin(defect) + (lots - n_good));
    return days;
}
constexpr station::Date kDefectFrom{2023, 3, 1}, kDefectTo{2023, 4, 30};
constexpr station::Date kHistoryFrom{2023, 1, 9}, kHistoryTo{2023, 2, 3};

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
        // A loaded host may answer late: wait longer than libmodbus's 0.5 s,
        // and (below) drop a late answer before asking again.
        modbus_set_response_timeout(ctx_, 5, 0);
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
    /// One request, asked again (up to three times) after a timeout or a
    /// stale answer, as a PLC's Modbus client does; writes of a register
    /// value are idempotent.
    template <class F>
    void request(F f, const std::string& what) {
        std::lock_guard lk(m_);
        for (int attempt = 1;; ++attempt) {
            if (f()) return;
            const int err = errno;
            if (attempt == 3)
                throw std::runtime_error(fmt::format("virtual PLC: {}: {}", what, modbus_strerror(err)));
            modbus_flush(ctx_);
        }
    }
    void write(std::uint16_t address, std::uint16_t value) {
        request([&] { return modbus_write_register(ctx_, address, value) == 1; },
                fmt::format("write of register {}", address));
    }
    void write_many(std::uint16_t address, const std::uint16_t* values, int n) {
        request([&] { return modbus_write_registers(ctx_, address, n, values) == n; },
                fmt::format("write of registers {}..{}", address, address + n - 1));
    }
    std::uint16_t read(int address) {
        std::uint16_t v = 0;
        request([&] { return modbus_read_registers(ctx_, address, 1, &v) == 1; },
                fmt::format("read of register {}", address));
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
    // The demo prints its own progress and summary, and the PLC server its
    // cycles (the virtual PLC's work): the controller's step-by-step events
    // (eight lines a cell) only when EOL_LOG_LEVEL asks for them.
    if (!std::getenv("EOL_LOG_LEVEL")) station::station_log("controller").set_level(spdlog::level::warn);
    const fs::path out = o.out;
    fs::create_directories(out);
    const fs::path cfg_file = o.config.empty() ? materialize_config(out / "config") : fs::path(o.config);
    station::StationConfig cfg = station::load_station_config(cfg_file);
    const fs::path db = out / "results.db";
    // The demo's store is its own: a previous demo's is replaced, not added to.
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(fs::path(db.string() + suffix));
    fmt::print("eolstation demo\n  config   {}{}\n  store    {}\n  time     virtual (repeatable), paced at most {}x (simulated seconds per wall second)\n",
               cfg_file.string(), o.config.empty() ? " (embedded default, written out)" : "", db.string(),
               o.time_scale);

    const auto scheme = station::SerialScheme::load(cfg.serial_scheme);
    const station::Recipe formation = embedded_recipe("recipes/formation.toml");
    auto store = station::Store::open(db, {.create = true});

    // The earlier production: lots made in January 2023, formed and tested on
    // this station before the demo (first: the instruments' connections would
    // sit idle meanwhile, and a Modbus server drops idle clients) (the in-process simulation of
    // sim-production: the same physics and steps, without sockets). It is the
    // history screening at test time judges each new cell against, and the
    // reference lots of the static PAT limits.
    station::ProductionSpec history;
    history.cells = static_cast<std::size_t>(o.history_cells);
    history.from = kHistoryFrom;
    history.to = kHistoryTo;
    history.seed = o.seed;
    history.recipe = &cfg.recipe;
    history.formation = &formation;
    history.limits = cfg.limits;
    history.cell_model = cfg.recipe.cell_model;
    history.eol_station = cfg.station_id;
    std::size_t history_lots = 0;
    std::vector<station::CellTruth> history_truth;
    if (o.history_cells > 0) {
        auto h = station::simulate_production(store, history, scheme);
        history_lots = h.lots;
        history_truth = std::move(h.truth);
        fmt::print("  history  {} cells in {} lots made {}..{}, formed and tested on this station before the demo "
                   "({:.1f} s in process): the reference for screening at test time and for static PAT limits\n",
                   history.cells, h.lots, kHistoryFrom.iso(), kHistoryTo.iso(), h.seconds);
    }

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
    cfg.sim.cells = 1;  // the demo draws its own production and loads each cell into the fixture
    for (auto& inst : cfg.instruments) {
        inst.endpoint.port = 0;
        inst.address = inst.endpoint.to_string();
        // On virtual time a reply's wall-clock delay costs no fixture time, so
        // only a host loaded by other work (an ASan build beside a test suite)
        // can make a loopback simulator miss the station file's 0.5 s: that
        // would fault a channel and change the seed's verdicts.
        inst.timeout_s = std::max(inst.timeout_s, 5.0);
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

    // The production the station tests now: good lots from February, then
    // lots from inside the defect window (March–April 2023), whose process
    // made internal shorts and shifted R0 (the simulator knows which cells;
    // the station does not).
    station::ProductionSpec live = history;
    live.cells = static_cast<std::size_t>(o.cells);
    live.lot_days = live_lot_days(o.lots);
    live.from = live.lot_days.front();
    live.to = live.lot_days.back();
    live.defect_window = std::pair{kDefectFrom, kDefectTo};
    live.defect_short_fraction = 0.10;  // high enough to show in a demo-sized lot
    live.seed = o.seed + 1;
    live.first_lot = history.first_lot + history_lots;
    const std::vector<station::DrawnCell> cells = station::draw_production(live, scheme);
    struct LotTruth {
        std::string date;
        bool defect = false;
        std::size_t cells = 0, shorted = 0;
    };
    std::map<std::string, LotTruth> lots;
    std::size_t shorted = 0;
    for (const auto& c : cells) {
        LotTruth& l = lots[c.truth.lot];
        l.date = c.truth.production_date;
        l.defect = c.truth.defect_lot;
        ++l.cells;
        l.shorted += c.truth.shorted;
        shorted += c.truth.shorted;
    }
    for (const auto& [lot, l] : lots)
        fmt::print("  lot      {} made {}: {} cells{}\n", lot, l.date, l.cells,
                   l.defect ? fmt::format(" — inside the defect window {}..{}: R0 shifted, {} with an internal short",
                                          kDefectFrom.iso(), kDefectTo.iso(), l.shorted)
                   : l.shorted ? fmt::format(", {} with an internal short", l.shorted)
                               : std::string());
    fmt::print("  history  each cell's formation OCV (station {}) 3–10 days before its EOL test; storage drains it by "
               "leakage and any short\n\n",
               live.formation_station);

    std::vector<station::TestRecord> records, formed;
    std::uint16_t cycle = 0;
    std::size_t held_at_test_n = 0;
    fmt::print("{:<18} {:>3} {:>7} {:>8} {:>8} {:>7} {:>6} {:>8} {:>7}  {}\n", "serial", "pos", "ocv_v", "dcir_mΩ",
               "r0_mΩ", "tau1_s", "rise_K", "p_x_mW", "verdict", "notes");
    for (std::size_t next = 0; next < cells.size();) {
        std::vector<std::pair<int, std::string>> round;
        for (const auto* ch : used) {
            if (next >= cells.size()) break;
            const station::DrawnCell& c = cells[next];
            // Formed `rest_days` before this round's station time: the same
            // seed gives the same history.
            station::FormedCell f = station::form_and_store(live, c, vtime->unix_now_s());
            formed.push_back(std::move(f.formation));
            sim.fixture()->load_cell(static_cast<std::size_t>(ch->position - 1), c.truth.serial, f.at_eol);
            round.emplace_back(ch->position, c.truth.serial);
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
        std::map<int, std::uint16_t> result_codes;  // what the PLC was told (B+23)
        for (const auto& [pos, serial] : round) {
            plc.wait_status(pos, station::plc::status::result_valid, true, round_wall_s);
            result_codes[pos] = plc.result(pos);
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
            // Screening at test time held it (an outlier against the history): the PLC's hold bin.
            const bool held_at_test =
                result_codes[pos] == static_cast<std::uint16_t>(station::plc::ResultCode::hold);
            if (held_at_test) notes = "HOLD at test: outlier against the earlier lots" + (notes.empty() ? "" : "; " + notes);
            fmt::print("{:<18} {:>3} {:>7.4f} {:>8.2f} {:>8.2f} {:>7.2f} {:>6.2f} {:>8.1f} {:>7}  {}\n", rec.serial,
                       rec.channel, get(rec, "ocv_v"), get(rec, "dcir_ohm") * 1e3, get(rec, "r0_ohm") * 1e3,
                       get(rec, "tau1_s"), get(rec, "temp_rise_k"), get(rec, "p_x_w") * 1e3,
                       held_at_test ? std::string("hold") : std::string(station::to_string(rec.verdict)), notes);
            held_at_test_n += held_at_test;
            records.push_back(std::move(rec));
        }
        {  // progress, a line per round under its rows
            const auto done = static_cast<int>(next), all = static_cast<int>(cells.size());
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
    std::map<station::Verdict, int> verdicts;
    for (const auto& r : records) ++verdicts[r.verdict];
    fmt::print("\n{} cells tested: {} pass, {} fail, {} abort, {} error by the recipe's limits; {} held at test by "
               "screening against the earlier lots; records in {}\n",
               records.size(), verdicts[station::Verdict::pass], verdicts[station::Verdict::fail],
               verdicts[station::Verdict::abort], verdicts[station::Verdict::error], held_at_test_n, db.string());

    // Screening of the whole store (history and the new lots), holds written
    // as quarantine events: as a quality engineer would run it after the shift.
    const station::Actor screener{"eolstation demo", "screening"};
    const auto rep = station::screen_store(store, cfg.screening, {}, true, screener, &cfg.recipe);
    fmt::print("\nscreening  {} cells, features {}\n", rep.cells_screened, fmt::join(rep.features, ", "));
    for (const auto& c : rep.cells) {
        fmt::print("  hold     {}", c.serial);
        for (const auto& why : c.reasons) fmt::print("  [{}]", why);
        fmt::print("\n");
    }
    for (const auto& g : rep.groups) fmt::print("  hold     {} ({})\n", g.group, g.reason);
    std::size_t pat_notes = 0;  // one or two per feature on small lots; summarized
    for (const auto& n : rep.notes) {
        if (n.rfind("PAT ", 0) == 0) ++pat_notes;
        else fmt::print("  note     {}\n", n);
    }
    if (pat_notes > 0)
        fmt::print("  note     {} PAT notes (`eolstation screen --db {}` lists them)\n", pat_notes, db.string());
    if (rep.cells.empty() && rep.groups.empty()) fmt::print("  nothing to hold\n");

    // The ship gate, and how it compares with what the simulator knows.
    station::LookupSession gate(store, scheme);
    fmt::print("\n{:<6} {:<10} {:<7} {:>5} {:>7} {:>7}  {}\n", "lot", "made", "process", "cells", "shorted", "stopped",
               "the ship gate");
    std::size_t short_caught = 0, good_held = 0, good_cells = 0, defect_lots = 0, defect_whole = 0;
    std::map<std::string, std::size_t> stopped;
    for (const auto& c : cells) {
        const bool ok = gate.lookup(c.truth.serial).may_ship;
        stopped[c.truth.lot] += !ok;
        if (c.truth.shorted && !ok) ++short_caught;
        if (!c.truth.shorted && !c.truth.defect_lot) {
            ++good_cells;
            good_held += !ok;
        }
    }
    for (const auto& [lot, l] : lots) {
        const std::size_t n = stopped[lot];
        defect_lots += l.defect;
        defect_whole += l.defect && n == l.cells;
        fmt::print("{:<6} {:<10} {:<7} {:>5} {:>7} {:>7}  {}\n", lot, l.date, l.defect ? "defect" : "good", l.cells,
                   l.shorted, n,
                   n == l.cells  ? "lot stopped whole"
                   : n == 0      ? "ships"
                   : l.defect    ? "PART OF A DEFECT LOT WOULD SHIP"
                                 : "ships, but for the cells stopped");
    }
    std::size_t history_held = 0;
    for (const auto& t : history_truth) history_held += !t.shorted && !gate.lookup(t.serial).may_ship;
    std::size_t stopped_all = 0;
    for (const auto& [lot, n] : stopped) stopped_all += n;
    fmt::print("\nship gate  {} of {} tested cells may ship, {} held; shorted cells stopped: {} of {}; defect-window "
               "lots stopped whole: {} of {}; good cells of good lots stopped: {} of {}; good history cells now held: "
               "{} of {}\n",
               cells.size() - stopped_all, cells.size(), stopped_all, short_caught, shorted, defect_whole, defect_lots,
               good_held, good_cells, history_held, history_truth.size());
    for (const auto& c : cells)
        if (c.truth.shorted)
            fmt::print("  truth    {} (lot {}) has an internal short of {:.0f} Ω: {}\n", c.truth.serial, c.truth.lot,
                       c.truth.r_isc_ohm, gate.lookup(c.truth.serial).may_ship ? "MISSED (may ship)" : "stopped");

    // The report of the production window the station tested (one
    // self-contained HTML file) and its holds as CSV.
    station::LotReportOptions lo;
    lo.date_from = live.from.iso();
    lo.date_to = live.to.iso();
    lo.screening = cfg.screening;
    lo.recipe = &cfg.recipe;
    lo.generated_by = "eolstation demo";
    const station::LotReport lot_report = station::build_lot_report(store, lo);
    station::write_file_atomically(out / "report.html", lot_report.html);
    for (const auto& t : lot_report.tables)
        if (t.name == "holds") station::write_file_atomically(out / "holds.csv", station::to_csv(t));
    fmt::print("\nreport     {} (production {}..{}: {} tested, {} passed, {} failed, {} held; {} SVG plots)\n",
               (out / "report.html").string(), lo.date_from, lo.date_to, lot_report.tested, lot_report.passed,
               lot_report.failed, lot_report.held, lot_report.svg_plots);
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
    cmd->add_option("--cells", opts->cells, "Cells the station tests, spread over the lots")
        ->check(CLI::Range(1, 10000))->capture_default_str();
    cmd->add_option("--lots", opts->lots, "Lots the station tests: half made before the defect window (February "
                                          "2023), half inside it (March–April 2023)")
        ->check(CLI::Range(1, 8))->capture_default_str();
    cmd->add_option("--history-cells", opts->history_cells,
                    "Cells of earlier production (January 2023) tested before the demo, in process: the screening's "
                    "reference (0: none)")
        ->check(CLI::Range(0, 100000))->capture_default_str();
    cmd->add_option("--time-scale", opts->time_scale, "At most this many simulated seconds per wall second (the demo runs in virtual time: its results do not depend on it)")
        ->check(finite_range(1.0, 2000.0))->capture_default_str();
    cmd->add_option("--seed", opts->seed, "Seed of the virtual lot")->capture_default_str();
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
