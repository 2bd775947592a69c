// Ship-gate lookups against a store of 10 million cells: single lookups
// (p50/p99/max) and a bulk check of 1 million serials, side by side with the
// targets and with references doing the same reads:
//
//   LookupSession::lookup       one serial as typed: normalize + decode, new
//                               events since last call, cell + latest run,
//                               quarantine state → may ship   (p99 < 100 µs)
//   LookupSession::lookup_many  1 M serials, sorted, events cached  (< 3 s)
//   Store::status / status_many the store's own state queries (no verdict)
//   raw SELECT loop             a bare prepared "SELECT … FROM cells LEFT JOIN
//                               test_runs … WHERE serial = ?" per serial
//   sqlite3 CLI                 .import of the 1 M serials into a temp table
//                               and one join (the shell a DBA would reach for)
//
// The fixture (built once, then reused): one transaction of prepared inserts
// with synchronous=OFF and no journal — for this benchmark's fixture only;
// the store itself always runs WAL + synchronous=FULL. 10 M cells in 2000
// lots of 5000 over 2020…2025, one test run each (1 % failed), plus 20,000
// serial holds/releases, 40 lot holds and 2 window holds.
//
// Usage: bench_lookup [--db FILE] [--cells N] [--bulk N] [--singles N] [--repeat N] [--rebuild]
//   --repeat: runs of each bulk check (default 5; median and slowest printed,
//   the target judged on the slowest).
//   default FILE: $TMPDIR/eol_bench_lookup.db (about 2.5 GB for 10 M cells).
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "eol/models/calendar.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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
};

constexpr std::size_t kLots = 2000;

// The serial of cell k (0 ≤ k < n): lot k / per_lot, sequence k % per_lot + 1,
// one lot a day from 2020-01-01. Serials come out in ascending order.
struct Maker {
    const SerialScheme& scheme = SerialScheme::default_scheme();
    std::size_t per_lot;
    std::vector<Date> days;  // production day of each lot
    explicit Maker(std::size_t cells) : per_lot((cells + kLots - 1) / kLots) {
        Date d{2020, 1, 1};
        for (std::size_t i = 0; i < kLots; ++i) {
            days.push_back(d);
            if (++d.day > eol::models::days_in_month(d.year, d.month)) {
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
    std::string serial(std::size_t k) const {
        SerialSpec s = spec(k / per_lot);
        s.sequence = k % per_lot + 1;
        return scheme.make(s);
    }
};

void build(const fs::path& path, std::size_t cells) {
    fmt::print("building the fixture: {} cells in {} …\n", cells, path.string());
    const auto t0 = Clock::now();
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path.string() + suffix);
    {
        OpenOptions o;
        o.create = true;
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
    const Maker mk(cells);
    std::mt19937_64 rng(1);
    std::size_t k = 0;
    for (std::size_t lot = 0; lot < kLots && k < cells; ++lot) {
        const SerialSpec spec = mk.spec(lot);
        const std::string date = spec.date.iso();
        const std::vector<std::string> serials =
            mk.scheme.make_range(spec, std::min(mk.per_lot, cells - k));
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
            if (sqlite3_step(run) != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db.db));
            sqlite3_reset(run);
            sqlite3_bind_text(cell, 1, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
            sqlite3_bind_text(cell, 2, lot_id.data(), static_cast<int>(lot_id.size()), SQLITE_STATIC);
            sqlite3_bind_text(cell, 3, date.data(), static_cast<int>(date.size()), SQLITE_STATIC);
            sqlite3_bind_int64(cell, 4, id);
            sqlite3_bind_text(cell, 5, verdict, -1, SQLITE_STATIC);  // schema 5: with its run
            if (sqlite3_step(cell) != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db.db));
            sqlite3_reset(cell);
        }
        if (lot % 200 == 199) fmt::print("  {} cells, {:.0f} s\n", k, seconds_since(t0));
    }
    sqlite3_finalize(run);
    sqlite3_finalize(cell);
    // Quarantine history: serial holds (half of them released), lot holds, window holds.
    sqlite3_stmt* ev = db.prepare(
        "INSERT INTO quarantine_events (time_unix_s, action, scope, target, window_from, window_to, reason, actor, "
        "role) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'benchmark history', 'bench', ?7)");
    auto event = [&](const char* action, const char* scope, const std::string& target, const char* from,
                     const char* to, const char* role) {
        static double t = 1.7e9;
        sqlite3_bind_double(ev, 1, t += 1);
        sqlite3_bind_text(ev, 2, action, -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 3, scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 4, target.data(), static_cast<int>(target.size()), SQLITE_TRANSIENT);
        if (from) sqlite3_bind_text(ev, 5, from, -1, SQLITE_STATIC);
        else sqlite3_bind_null(ev, 5);
        if (to) sqlite3_bind_text(ev, 6, to, -1, SQLITE_STATIC);
        else sqlite3_bind_null(ev, 6);
        sqlite3_bind_text(ev, 7, role, -1, SQLITE_STATIC);
        if (sqlite3_step(ev) != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db.db));
        sqlite3_reset(ev);
    };
    for (int i = 0; i < 20000; ++i) {
        const std::string s = mk.serial(rng() % cells);
        event("hold", "serial", s, nullptr, nullptr, "screening");
        if (i % 2) event("release", "serial", s, nullptr, nullptr, "quality");
    }
    for (int i = 0; i < 40; ++i) event("hold", "lot", fmt::format("{:04d}", rng() % kLots + 1), nullptr, nullptr, "quality");
    event("hold", "window", "2023-03-01..2023-04-30", "2023-03-01", "2023-04-30", "quality");
    event("hold", "window", "2021-06-01..2021-06-07", "2021-06-01", "2021-06-07", "quality");
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
    fs::path path = fs::temp_directory_path() / "eol_bench_lookup.db";
    std::size_t cells = 10'000'000, bulk = 1'000'000, singles = 200'000, repeat = 5;
    bool rebuild = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--db") path = next();
        else if (a == "--cells") cells = std::stoul(next());
        else if (a == "--bulk") bulk = std::stoul(next());
        else if (a == "--singles") singles = std::stoul(next());
        else if (a == "--repeat") repeat = std::max<std::size_t>(1, std::stoul(next()));
        else if (a == "--rebuild") rebuild = true;
        else {
            fmt::print(stderr, "usage: bench_lookup [--db FILE] [--cells N] [--bulk N] [--singles N] [--repeat N] [--rebuild]\n");
            return 2;
        }
    }
    bool have = false;
    if (!rebuild && fs::exists(path)) {
        Db db(path);
        have = db.integer("SELECT count(*) FROM cells") == static_cast<std::int64_t>(cells);
        if (have) fmt::print("reusing the fixture {} ({} cells)\n", path.string(), cells);
    }
    if (!have) build(path, cells);

    const Maker mk(cells);
    std::mt19937_64 rng(42);
    // Inputs: 95 % stored serials, 5 % valid serials never tested; singles as typed (lower case, dashes).
    auto pick = [&]() -> std::string {
        if (rng() % 20 == 0) {
            SerialSpec s = mk.spec(rng() % kLots);
            s.sequence = mk.per_lot + 1 + rng() % 1000;
            return mk.scheme.make(s);
        }
        return mk.serial(rng() % cells);
    };
    std::vector<std::string> single_in(singles);
    for (auto& s : single_in) {
        s = pick();
        if (rng() % 2) {
            for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            s.insert(8, "-");
        }
    }
    std::vector<std::string> bulk_in(bulk);
    for (auto& s : bulk_in) s = pick();

    Store store = Store::open(path, OpenOptions{.create = false, .read_only = true});
    const auto n_events = store.count("quarantine_events");

    // ---- single lookups
    std::vector<double> us;
    us.reserve(singles);
    std::size_t ship = 0;
    {
        LookupSession session(store);
        for (std::size_t i = 0; i < std::min<std::size_t>(2000, singles); ++i) session.lookup(single_in[i]);  // warm-up
        for (const auto& s : single_in) {
            const auto t0 = Clock::now();
            const LookupResult r = session.lookup(s);
            us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
            ship += r.may_ship ? 1 : 0;
        }
    }
    const Pct single = percentiles(us);
    us.clear();
    for (const auto& s : single_in) {
        const auto t0 = Clock::now();
        const CellStatus st = store.status(s.size() == 16 ? s : SerialScheme::default_scheme().normalize(s).serial);
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        (void)st;
    }
    const Pct store_single = percentiles(us);

    // raw prepared statement, the floor for one indexed read
    us.clear();
    Db raw(path);
    sqlite3_stmt* q = raw.prepare(
        "SELECT c.lot, c.production_date, r.verdict FROM cells c LEFT JOIN test_runs r ON r.id = c.latest_run_id "
        "WHERE c.serial = ?1");
    std::string norm;
    for (const auto& s : single_in) {
        const auto t0 = Clock::now();
        mk.scheme.normalize_into(s, norm);
        sqlite3_bind_text(q, 1, norm.data(), static_cast<int>(norm.size()), SQLITE_STATIC);
        while (sqlite3_step(q) == SQLITE_ROW) {
        }
        sqlite3_reset(q);
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    const Pct raw_single = percentiles(us);

    // ---- bulk: each way `repeat` times (this machine's speed varies from run
    // to run); median and slowest are printed.
    auto timed = [&](auto&& work) {
        std::vector<double> s;
        for (std::size_t k = 0; k < repeat; ++k) {
            const auto t0 = Clock::now();
            work();
            s.push_back(seconds_since(t0));
        }
        std::sort(s.begin(), s.end());
        return std::pair{s[s.size() / 2], s.back()};
    };
    std::size_t bulk_ship = 0;
    const auto bulk_s = timed([&] {
        LookupSession session(store);
        const auto rs = session.lookup_many(bulk_in);
        bulk_ship = 0;
        for (const auto& r : rs) bulk_ship += r.may_ship ? 1 : 0;
    });
    const auto status_many_s = timed([&] { const auto st = store.status_many(bulk_in); });
    const auto raw_loop_s = timed([&] {
        std::vector<std::string> sorted = bulk_in;
        std::sort(sorted.begin(), sorted.end());
        std::size_t found = 0;
        for (const auto& s : sorted) {
            sqlite3_bind_text(q, 1, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
            while (sqlite3_step(q) == SQLITE_ROW) ++found;
            sqlite3_reset(q);
        }
        (void)found;
    });
    sqlite3_finalize(q);

    // sqlite3 CLI: import the serials into a temp table, one join.
    const fs::path list = fs::path(path).replace_extension(".bulk.txt");
    {
        std::ofstream f(list);
        for (const auto& s : bulk_in) f << s << '\n';
    }
    const fs::path script = fs::path(path).replace_extension(".bulk.sql");
    {
        std::ofstream f(script);
        f << "CREATE TEMP TABLE q(serial TEXT);\n.import " << list.string() << " q\n"
          << "SELECT count(*), sum(r.verdict = 'pass') FROM q LEFT JOIN cells c ON c.serial = q.serial "
             "LEFT JOIN test_runs r ON r.id = c.latest_run_id;\n";
    }
    double cli_s = -1;
    if (std::system("command -v sqlite3 >/dev/null 2>&1") == 0) {
        const auto t0 = Clock::now();
        const std::string cmd = fmt::format("sqlite3 -readonly {} < {} > /dev/null", path.string(), script.string());
        if (std::system(cmd.c_str()) == 0) cli_s = seconds_since(t0);
    }
    fs::remove(list);
    fs::remove(script);

    auto ok = [](bool b) { return b ? "OK" : "MISSED"; };
    fmt::print("\nship-gate lookups: {} cells, {} quarantine events in the store\n", cells, n_events);
    fmt::print("{:<52} {:>9} {:>9} {:>9}   {}\n", "single lookup (µs), " + std::to_string(singles) + " serials",
               "p50", "p99", "max", "target");
    fmt::print("{:<52} {:>9.1f} {:>9.1f} {:>9.0f}   p99 < 100 µs  {}\n", "LookupSession::lookup (as typed → may ship)",
               single.p50, single.p99, single.max, ok(single.p99 < 100));
    fmt::print("{:<52} {:>9.1f} {:>9.1f} {:>9.0f}   (reference)\n", "Store::status (state only)", store_single.p50,
               store_single.p99, store_single.max);
    fmt::print("{:<52} {:>9.1f} {:>9.1f} {:>9.0f}   (reference floor)\n", "raw prepared SELECT … WHERE serial=?",
               raw_single.p50, raw_single.p99, raw_single.max);
    fmt::print("\n{:<52} {:>9} {:>9}   {}\n", fmt::format("bulk check of {} serials ({} runs)", bulk, repeat),
               "median s", "slowest", "target");
    fmt::print("{:<52} {:>9.2f} {:>9.2f}   < 3 s  {}\n", "LookupSession::lookup_many (→ may ship)", bulk_s.first,
               bulk_s.second, ok(bulk_s.second < 3));
    fmt::print("{:<52} {:>9.2f} {:>9.2f}   (reference)\n", "Store::status_many (state only)", status_many_s.first,
               status_many_s.second);
    fmt::print("{:<52} {:>9.2f} {:>9.2f}   (reference)\n", "raw prepared SELECT loop, sorted", raw_loop_s.first,
               raw_loop_s.second);
    if (cli_s >= 0)
        fmt::print("{:<52} {:>9.2f} {:>9}   (reference, one run)\n", "sqlite3 CLI: .import + temp-table join", cli_s, "");
    else fmt::print("{:<52} {:>9}   (sqlite3 CLI not found)\n", "sqlite3 CLI: .import + temp-table join", "-");
    fmt::print("\nmay ship: {} of {} single, {} of {} bulk\n", ship, singles, bulk_ship, bulk);
    return 0;
}
