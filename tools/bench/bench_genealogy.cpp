// Device-level lookups and recall against a store of N devices of 3 cells
// each (default 10 million devices, 30 million cells and links), side by side
// with the same questions asked at cell level of the same store:
//
//   Genealogy::lookup_device    one device serial: the device, its cells now,
//                               each cell through the ship gate, the
//                               device's own events         (p99 < 200 µs)
//   LookupSession::lookup       one cell serial (the cell-level figure)
//   Genealogy::check_devices    1 M device serials in bulk   (< 5 s): may each
//                               ship, and its status (compact outcomes)
//   Genealogy::lookup_devices   the same as full DeviceLookups
//   LookupSession::lookup_many  1 M cell serials (the cell-level figure)
//   Genealogy::lookup_units     the same 1 M cell serials as `lookup --file`
//                               answers them (each probed as a device first)
//   recall_devices              the devices containing a cell made in a
//                               two-month window, per model  (< 10 s)
//   for_each_cell + lookup_many the cell-level recall list of the same window
//
// The fixture (built once, then reused; bench only): prepared inserts in one
// transaction with synchronous=OFF and no journal — the store itself always
// runs WAL + synchronous=FULL. Cells as bench_lookup makes them (2000 lots
// over 2020…2025, 1 % failed), device k holds cells 3k…3k+2 (model A1112,
// or A1263 / A3102 for every 5th / 7th), plus 20,000 serial holds (half
// released), 40 lot holds and the window hold 2023-03..2023-04.
//
// Printed: wall and CPU seconds (all threads) of each bulk question, the
// wall p50/p99/max and the per-lookup thread CPU p99 of the single lookups,
// and the load average before and after — on a shared machine the wall time
// also counts the time other processes had the cores.
//
// Usage: bench_genealogy [--db FILE] [--devices N] [--bulk N] [--singles N] [--rebuild] [--only singles|devices|check|cells|units|recall]
//                       [--reader-cache-mib N] [--repeat-bulk] [--page-size BYTES]   (of a fixture built: default the store's 16384)
//   default FILE: $TMPDIR/eol_bench_genealogy.db (about 9 GB for 10 M devices).
#include <sqlite3.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "eol/station/genealogy.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds of this process (all threads, user + system): on a shared
// machine the wall time also counts the time other processes had the cores.
double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
    return s(u.ru_utime) + s(u.ru_stime);
}

std::string load_average() {
    double l[3] = {0, 0, 0};
    if (getloadavg(l, 3) != 3) return "?";
    return fmt::format("{:.2f} {:.2f} {:.2f}", l[0], l[1], l[2]);
}

struct Db {
    sqlite3* db = nullptr;
    explicit Db(const fs::path& p) {
        if (sqlite3_open(p.c_str(), &db) != SQLITE_OK) throw std::runtime_error("open " + p.string());
    }
    ~Db() { sqlite3_close(db); }
    void exec(const std::string& sql) {
        char* err = nullptr;
        if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
            std::string m = err ? err : "?";
            sqlite3_free(err);
            throw std::runtime_error(sql.substr(0, 60) + ": " + m);
        }
    }
    sqlite3_stmt* prepare(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
            throw std::runtime_error(sql.substr(0, 60) + ": " + sqlite3_errmsg(db));
        return s;
    }
    std::int64_t integer(const std::string& sql) {
        sqlite3_stmt* s = prepare(sql);
        std::int64_t v = -1;
        if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        return v;
    }
    void step(sqlite3_stmt* s) {
        if (sqlite3_step(s) != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db));
        sqlite3_reset(s);
    }
};

constexpr std::size_t kLots = 2000;
constexpr std::size_t kCellsPerDevice = 3;

int days_in(int y, int m) {
    static constexpr int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0) ? 29 : d[m - 1];
}

struct Maker {
    const SerialScheme& scheme = SerialScheme::default_scheme();
    std::size_t per_lot;
    std::vector<Date> days;
    explicit Maker(std::size_t cells) : per_lot((cells + kLots - 1) / kLots) {
        Date d{2020, 1, 1};
        for (std::size_t i = 0; i < kLots; ++i) {
            days.push_back(d);
            if (++d.day > days_in(d.year, d.month)) {
                d.day = 1;
                if (++d.month > 12) {
                    d.month = 1;
                    ++d.year;
                }
            }
        }
    }
    SerialSpec spec(std::size_t lot) const {
        SerialSpec s;
        s.plant = "01";
        s.line = "A";
        s.lot = fmt::format("{:04d}", lot + 1);
        s.date = days[lot];
        s.sequence = 1;
        return s;
    }
    std::string cell(std::size_t k) const {
        SerialSpec s = spec(k / per_lot);
        s.sequence = k % per_lot + 1;
        return scheme.make(s);
    }
    static std::string device(std::size_t k) {
        SerialSpec s;
        s.plant = "P1";
        s.line = "A";
        s.sequence = k + 1;
        return device_serial_scheme().make(s);
    }
    static const char* model(std::size_t k) { return k % 5 == 0 ? "A1263" : k % 7 == 0 ? "A3102" : "A1112"; }
};

void build(const fs::path& path, std::size_t devices, int page_size) {
    const std::size_t cells = devices * kCellsPerDevice;
    fmt::print("building the fixture: {} devices, {} cells in {} …\n", devices, cells, path.string());
    const auto t0 = Clock::now();
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path.string() + suffix);
    {
        OpenOptions o;
        o.create = true;
        o.page_size_bytes = page_size;
        Store::open(path, o);  // schema
    }
    Db db(path);
    db.exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000; BEGIN");
    sqlite3_stmt* run = db.prepare(
        "INSERT INTO test_runs (id, serial, station_id, channel, recipe_name, recipe_version, start_unix_s, "
        "end_unix_s, verdict) VALUES (?1, ?2, 'EOL-01', 1, 'eol-18650', '1', ?3, ?4, ?5)");
    sqlite3_stmt* cell = db.prepare(
        "INSERT INTO cells (serial, cell_model, lot, production_date, latest_run_id, latest_verdict) "
        "VALUES (?1, 'INR18650-30Q', ?2, ?3, ?4, ?5)");
    sqlite3_stmt* dev = db.prepare(
        "INSERT INTO devices (serial, model, assembled_unix_s, station_id) VALUES (?1, ?2, ?3, 'ASSY-01')");
    sqlite3_stmt* link = db.prepare(
        "INSERT INTO device_links (time_unix_s, action, device_serial, cell_serial, station_id) "
        "VALUES (?1, 'link', ?2, ?3, 'ASSY-01')");
    const Maker mk(cells);
    std::mt19937_64 rng(1);
    std::size_t k = 0;
    std::vector<std::string> pending;  // cells of the device being built
    for (std::size_t lot = 0; lot < kLots && k < cells; ++lot) {
        const SerialSpec spec = mk.spec(lot);
        const std::string date = spec.date.iso();
        const std::vector<std::string> serials = mk.scheme.make_range(spec, std::min(mk.per_lot, cells - k));
        const std::string lot_id = fmt::format("{:04d}", lot + 1);
        for (const auto& s : serials) {
            const auto id = static_cast<sqlite3_int64>(++k);
            const double start = 1.577e9 + static_cast<double>(lot) * 86400.0 + static_cast<double>(k % 5000) * 10;
            sqlite3_bind_int64(run, 1, id);
            sqlite3_bind_text(run, 2, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
            sqlite3_bind_double(run, 3, start);
            sqlite3_bind_double(run, 4, start + 1500);
            const char* verdict = rng() % 100 == 0 ? "fail" : "pass";
            sqlite3_bind_text(run, 5, verdict, -1, SQLITE_STATIC);
            db.step(run);
            sqlite3_bind_text(cell, 1, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
            sqlite3_bind_text(cell, 2, lot_id.data(), static_cast<int>(lot_id.size()), SQLITE_STATIC);
            sqlite3_bind_text(cell, 3, date.data(), static_cast<int>(date.size()), SQLITE_STATIC);
            sqlite3_bind_int64(cell, 4, id);
            sqlite3_bind_text(cell, 5, verdict, -1, SQLITE_STATIC);
            db.step(cell);
            pending.push_back(s);
            if (pending.size() == kCellsPerDevice) {
                const std::size_t d = k / kCellsPerDevice - 1;
                const std::string ds = Maker::device(d);
                const double t = start + 3 * 86400.0;
                sqlite3_bind_text(dev, 1, ds.data(), static_cast<int>(ds.size()), SQLITE_STATIC);
                sqlite3_bind_text(dev, 2, Maker::model(d), -1, SQLITE_STATIC);
                sqlite3_bind_double(dev, 3, t);
                db.step(dev);
                for (const auto& c : pending) {
                    sqlite3_bind_double(link, 1, t);
                    sqlite3_bind_text(link, 2, ds.data(), static_cast<int>(ds.size()), SQLITE_STATIC);
                    sqlite3_bind_text(link, 3, c.data(), static_cast<int>(c.size()), SQLITE_STATIC);
                    db.step(link);
                }
                pending.clear();
            }
        }
        if (lot % 200 == 199) {
            fmt::print("  {} cells, {:.0f} s\n", k, seconds_since(t0));
            std::fflush(stdout);
        }
    }
    for (auto* s : {run, cell, dev, link}) sqlite3_finalize(s);
    sqlite3_stmt* ev = db.prepare(
        "INSERT INTO quarantine_events (time_unix_s, action, scope, target, window_from, window_to, reason, actor, "
        "role) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'benchmark history', 'bench', ?7)");
    double t = 1.7e9;
    auto event = [&](const char* action, const char* scope, const std::string& target, const char* from,
                     const char* to, const char* role) {
        sqlite3_bind_double(ev, 1, t += 1);
        sqlite3_bind_text(ev, 2, action, -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 3, scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 4, target.data(), static_cast<int>(target.size()), SQLITE_TRANSIENT);
        if (from) sqlite3_bind_text(ev, 5, from, -1, SQLITE_STATIC);
        else sqlite3_bind_null(ev, 5);
        if (to) sqlite3_bind_text(ev, 6, to, -1, SQLITE_STATIC);
        else sqlite3_bind_null(ev, 6);
        sqlite3_bind_text(ev, 7, role, -1, SQLITE_STATIC);
        db.step(ev);
    };
    for (int i = 0; i < 20000; ++i) {
        const std::string s = mk.cell(rng() % cells);
        event("hold", "serial", s, nullptr, nullptr, "screening");
        if (i % 2) event("release", "serial", s, nullptr, nullptr, "quality");
    }
    for (int i = 0; i < 40; ++i) event("hold", "lot", fmt::format("{:04d}", rng() % kLots + 1), nullptr, nullptr, "quality");
    event("hold", "window", "2023-03-01..2023-04-30", "2023-03-01", "2023-04-30", "quality");
    sqlite3_finalize(ev);
    db.exec("COMMIT");
    db.exec("PRAGMA journal_mode=WAL");
    fmt::print("fixture built in {:.1f} s\n", seconds_since(t0));
}

struct Pct {
    double p50, p99, max;
};
Pct percentiles(std::vector<double> us) {
    std::sort(us.begin(), us.end());
    auto at = [&](double q) { return us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))]; };
    return {at(0.5), at(0.99), us.back()};
}

}  // namespace

int main(int argc, char** argv) {
    fs::path path = fs::temp_directory_path() / "eol_bench_genealogy.db";
    std::size_t devices = 10'000'000, bulk = 1'000'000, singles = 100'000;
    bool rebuild = false;
    int page_size = OpenOptions{}.page_size_bytes;  // a fixture built here
    long reader_cache_mib = 64;  // OpenOptions::bulk_reader_cache_bytes
    bool repeat_bulk = false;    // the device bulk check a second time (other serials): the readers warm
    std::string only;  // profiling: one question only (singles, devices, check, cells, units, recall)
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--db") path = next();
        else if (a == "--devices") devices = std::stoul(next());
        else if (a == "--bulk") bulk = std::stoul(next());
        else if (a == "--singles") singles = std::stoul(next());
        else if (a == "--rebuild") rebuild = true;
        else if (a == "--page-size") page_size = std::stoi(next());
        else if (a == "--only") only = next();
        else if (a == "--reader-cache-mib") reader_cache_mib = std::stol(next());
        else if (a == "--repeat-bulk") repeat_bulk = true;
        else {
            fmt::print(stderr, "usage: bench_genealogy [--db FILE] [--devices N] [--bulk N] [--singles N] [--rebuild] "
                       "[--only singles|devices|check|cells|units|recall] [--reader-cache-mib N] [--repeat-bulk] [--page-size BYTES]\n");
            return 2;
        }
    }
    const std::size_t cells = devices * kCellsPerDevice;
    bool have = false;
    if (!rebuild && fs::exists(path)) {
        Db db(path);
        have = db.integer("SELECT count(*) FROM devices") == static_cast<std::int64_t>(devices);
        if (have) fmt::print("reusing the fixture {} ({} devices)\n", path.string(), devices);
    }
    if (!have) build(path, devices, page_size);
    // A fixture of an older schema (built by an older bench): migrated once,
    // by the store's own migrations, timed.
    if (const auto v = Db(path).integer("PRAGMA user_version"); v < Store::latest_schema_version()) {
        fmt::print("migrating the fixture from schema {} to {} …\n", v, Store::latest_schema_version());
        std::fflush(stdout);
        const auto t0 = Clock::now();
        const double c0 = cpu_seconds();
        Store::open(path);
        fmt::print("migrated in {:.1f} s ({:.1f} s CPU), load average {}\n", seconds_since(t0), cpu_seconds() - c0,
                   load_average());
    }

    const Maker mk(cells);
    std::mt19937_64 rng(42);
    auto pick_device = [&] { return Maker::device(rng() % devices); };
    auto pick_cell = [&] { return mk.cell(rng() % cells); };
    std::vector<std::string> dev_single(singles), cell_single(singles), dev_bulk_in(bulk), cell_bulk_in(bulk);
    for (auto& s : dev_single) s = pick_device();
    for (auto& s : cell_single) s = pick_cell();
    for (auto& s : dev_bulk_in) s = pick_device();
    for (auto& s : cell_bulk_in) s = pick_cell();

    Store store = Store::open(path, OpenOptions{.create = false,
                                                .read_only = true,
                                                .bulk_reader_cache_bytes = std::int64_t{reader_cache_mib} << 20});
    Genealogy g(store);
    LookupSession& cells_session = g.cell_session();

    // "check": only the bulk check (first and, with --repeat-bulk, again), for profiling.
    auto want = [&](std::string_view what) {
        return only.empty() || only == what || (only == "check" && what == "devices-check");
    };
    const std::string load_before = load_average();
    // Wall time of each lookup, and the CPU time of this thread during it:
    // on a loaded machine a lookup descheduled for a few ms shows in the
    // wall time only (the target is judged on the wall time).
    struct Singles {
        Pct wall_us, cpu_us;
    };
    auto thread_cpu_us = [] {
        timespec t{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) * 1e-3;
    };
    std::size_t dev_ship = 0;
    bool counting = false;  // not during the warm-up
    auto time_singles = [&](const std::vector<std::string>& in, auto&& one) {
        if (!want("singles")) return Singles{{0, 0, 0}, {0, 0, 0}};
        for (std::size_t i = 0; i < std::min<std::size_t>(2000, in.size()); ++i) one(in[i]);  // warm-up
        counting = true;
        std::vector<double> wall, cpu;
        wall.reserve(in.size());
        cpu.reserve(in.size());
        for (const auto& s : in) {
            const double c0 = thread_cpu_us();
            const auto t0 = Clock::now();
            one(s);
            wall.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
            cpu.push_back(thread_cpu_us() - c0);
        }
        return Singles{percentiles(std::move(wall)), percentiles(std::move(cpu))};
    };
    const Singles dev_p = time_singles(dev_single, [&](const std::string& s) { dev_ship += g.lookup_device(s).may_ship && counting; });
    const Singles cell_p = time_singles(cell_single, [&](const std::string& s) { (void)cells_session.lookup(s); });

    // Wall and CPU seconds of `work`.
    struct Timed {
        double wall_s, cpu_s;
    };
    auto timed = [&](std::string_view what, auto&& work) {
        if (!want(what)) return Timed{0, 0};
        const auto t0 = Clock::now();
        const double c0 = cpu_seconds();
        work();
        return Timed{seconds_since(t0), cpu_seconds() - c0};
    };
    // The bulk check: compact outcomes (check_devices), first in the process.
    std::vector<DeviceCheck> dev_checked;
    const Timed dev_bulk = timed(only == "check" ? "devices-check" : "devices", [&] { dev_checked = g.check_devices(dev_bulk_in); });
    // Of which the store's reading alone (the devices, their links, cells and
    // verdicts; nothing judged, nothing kept).
    std::size_t dev_read_n = 0;
    std::vector<std::string> dev_bulk_norm(dev_bulk_in);  // as lookup_devices normalizes them (already normal)
    const Timed dev_read = timed("devices", [&] {
        std::atomic<std::size_t> n{0};
        store.for_each_device_cells(dev_bulk_norm, [&](std::size_t, std::size_t, const DeviceCells& d) {
            n.fetch_add(d.cells.size(), std::memory_order_relaxed);
        });
        dev_read_n = n.load();
    });
    // The same serials as full lookups (a DeviceLookup each, as the
    // previous bench timed the bulk check): the same answers.
    std::vector<DeviceLookup> dev_many;
    const Timed dev_full = timed("devices", [&] { dev_many = g.lookup_devices(dev_bulk_in); });
    std::size_t dev_bulk_ship = 0, dev_full_ship = 0, dev_disagree = 0;
    for (const auto& d : dev_checked) dev_bulk_ship += d.may_ship ? 1u : 0u;
    for (std::size_t i = 0; i < dev_many.size(); ++i) {
        dev_full_ship += dev_many[i].may_ship ? 1u : 0u;
        dev_disagree += dev_many[i].may_ship != dev_checked[i].may_ship ||
                        dev_many[i].status() != dev_checked[i].status_text();
    }
    dev_many = {};
    // The same question again with other serials: the bulk readers (and
    // their page caches and mapped pages) are already open.
    Timed dev_bulk2{0, 0};
    if (repeat_bulk) {
        std::vector<std::string> again(bulk);
        for (auto& s : again) s = pick_device();
        dev_bulk2 = timed(only == "check" ? "devices-check" : "devices", [&] { dev_checked = g.check_devices(again); });
    }
    dev_checked = {};
    std::vector<LookupResult> cell_many;
    const Timed cell_bulk = timed("cells", [&] { cell_many = cells_session.lookup_many(cell_bulk_in); });
    // What `eolstation lookup --file` does since devices exist: every serial
    // is first probed as a device, the rest go to the cell lookups.
    std::size_t units_n = 0;
    const Timed units_bulk = timed("units", [&] { units_n = g.lookup_units(cell_bulk_in).size(); });

    CellFilter window;
    window.date_from = "2023-03-01";
    window.date_to = "2023-04-30";
    DeviceRecall rec;
    const Timed recall_dev = timed("recall", [&] { rec = recall_devices(store, window); });
    std::size_t window_looked = 0;
    const Timed recall_cell = timed("recall", [&] {
        std::vector<std::string> window_cells;
        store.for_each_cell(window, [&](const CellInfo& c) { window_cells.push_back(c.serial); });
        window_looked = cells_session.lookup_many(window_cells).size();
    });
    const std::string load_after = load_average();

    auto ok = [&](bool b) { return !only.empty() ? "-" : b ? "met" : "MISSED"; };  // "-": not all timed
    fmt::print("\ngenealogy: {} devices x {} cells ({} links), {} quarantine events; {} hardware threads\n", devices,
               kCellsPerDevice, store.count("device_links"), store.count("quarantine_events"),
               std::thread::hardware_concurrency());
    fmt::print("load average (1, 5, 15 min): {} before the timings, {} after\n", load_before, load_after);
    fmt::print("\n{:<44} {:>9} {:>9} {:>9} {:>9}   {}\n", fmt::format("single lookup (µs), {} serials", singles),
               "p50", "p99", "max", "cpu p99", "target (10 M devices)");
    fmt::print("{:<44} {:>9.1f} {:>9.1f} {:>9.0f} {:>9.1f}   p99 < 200 µs: {}\n", "device: Genealogy::lookup_device",
               dev_p.wall_us.p50, dev_p.wall_us.p99, dev_p.wall_us.max, dev_p.cpu_us.p99, ok(dev_p.wall_us.p99 < 200));
    fmt::print("{:<44} {:>9.1f} {:>9.1f} {:>9.0f} {:>9.1f}   (cell level)\n", "cell: LookupSession::lookup",
               cell_p.wall_us.p50, cell_p.wall_us.p99, cell_p.wall_us.max, cell_p.cpu_us.p99);
    fmt::print("\n{:<44} {:>9} {:>9}   {}\n", fmt::format("bulk check of {} serials", bulk), "wall s", "cpu s",
               "target (10 M devices)");
    fmt::print("{:<44} {:>9.2f} {:>9.2f}   < 5 s: {}\n", "device: Genealogy::check_devices", dev_bulk.wall_s,
               dev_bulk.cpu_s, ok(dev_bulk.wall_s < 5));
    fmt::print("{:<44} {:>9.2f} {:>9.2f}   (of which reading: {} cells inside)\n", "  store: Store::for_each_device_cells",
               dev_read.wall_s, dev_read.cpu_s, dev_read_n);
    fmt::print("{:<44} {:>9.2f} {:>9.2f}   (the same serials, a DeviceLookup each; {} answers differ)\n",
               "device: Genealogy::lookup_devices", dev_full.wall_s, dev_full.cpu_s, dev_disagree);
    if (repeat_bulk)
        fmt::print("{:<44} {:>9.2f} {:>9.2f}   < 5 s: {}   (other serials, the readers open)\n",
                   "device: check_devices again", dev_bulk2.wall_s, dev_bulk2.cpu_s, ok(dev_bulk2.wall_s < 5));
    fmt::print("{:<44} {:>9.2f} {:>9.2f}   (cell level)\n", "cell: LookupSession::lookup_many", cell_bulk.wall_s,
               cell_bulk.cpu_s);
    fmt::print("{:<44} {:>9.2f} {:>9.2f}   (cells as the CLI asks: device probe first; {} answered)\n",
               "cell: Genealogy::lookup_units", units_bulk.wall_s, units_bulk.cpu_s, units_n);
    fmt::print("\n{:<44} {:>9} {:>9}   {}\n", "recall list, window 2023-03..2023-04", "wall s", "cpu s",
               "target (10 M devices)");
    fmt::print("{:<44} {:>9.2f} {:>9.2f}   < 10 s: {}   ({} devices, {} affected cells inside)\n",
               "device: recall_devices", recall_dev.wall_s, recall_dev.cpu_s, ok(recall_dev.wall_s < 10),
               rec.devices.size(), rec.affected_cells_in_devices);
    fmt::print("{:<44} {:>9.2f} {:>9.2f}   (cell level: {} cells)\n", "cell: for_each_cell + lookup_many",
               recall_cell.wall_s, recall_cell.cpu_s, window_looked);
    for (const auto& [m, c] : rec.models) fmt::print("  model {}: {} devices\n", m, c.devices);
    fmt::print("\nmay ship: {} of {} single devices, {} of {} bulk devices ({} as full lookups), {} of {} bulk cells\n",
               dev_ship, singles, dev_bulk_ship, bulk, dev_full_ship, [&] {
                   std::size_t n = 0;
                   for (const auto& r : cell_many) n += r.may_ship ? 1u : 0u;
                   return n;
               }(),
               bulk);
    return 0;
}
