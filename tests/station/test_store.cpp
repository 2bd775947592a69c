// Results store: migrations and version refusal, record round trip, trace
// codec, append-only events, quarantine state, features, hostile strings,
// crash safety (SIGKILL mid-batch), and `eolstation db info`.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include "support/cli_test.hpp"
#include "support/raw_sqlite.hpp"
#include "support/station_test.hpp"
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace fs = std::filesystem;
using namespace eol::station;

namespace {

// A fresh directory per test case, removed at the end.
using eol::test::kUndoSchema6;
using eol::test::Run;
using eol::test::run_cli;
using eol::test::create_store;
using eol::test::TempDir;
using eol::test::Raw;


const std::vector<std::string> kAllTables{"auth_events",    "cells",          "device_gate",    "device_links",   "devices",
                                          "fit_parameters", "measurements",   "model_fits",
                                          "quarantine_events", "run_steps",   "sessions",
                                          "station_events", "test_runs",      "traces",         "users"};

std::string serial_of(std::string lot, std::uint64_t seq, Date d = {2023, 3, 14}) {
    SerialSpec s;
    s.plant = "01";
    s.line = "A";
    s.lot = std::move(lot);
    s.date = d;
    s.sequence = seq;
    return SerialScheme::default_scheme().make(s);
}

TestRecord full_record() {
    TestRecord r;
    r.serial = serial_of("0042", 1);
    r.cell_model = "INR18650-30Q";
    r.lot = "0042";
    r.production_date = "2023-03-14";
    r.station_id = "EOL-01";
    r.channel = 3;
    r.recipe_name = "18650-eol";
    r.recipe_version = "1.2.0";
    r.start_unix_s = 1678800000.25;
    r.end_unix_s = 1678800095.5;
    r.verdict = Verdict::pass;
    r.measurements = {
        Measurement::judged("ocv_v", 3.6012345, "V", 3.5, 3.7),
        Measurement::judged("dcir_ohm", 0.0342, "ohm", std::nullopt, 0.05),
        Measurement::judged("k_value", std::numeric_limits<double>::quiet_NaN(), "V/day", std::nullopt, std::nullopt),
        Measurement::judged("t_rise_c", 1.25, "C", 1.5, std::nullopt),
    };
    r.verdict = Verdict::fail;
    r.abort_reason = "out of limits: t_rise_c; not measured: k_value";
    r.steps = {StepRecord{"ocv", "ocv", r.start_unix_s, r.start_unix_s + 1.0, StepOutcome::pass, "", 0, 1, 0, 0},
               StepRecord{"heat", "heat", r.start_unix_s + 1.0, r.end_unix_s, StepOutcome::fail,
                          "t_rise_c out of limits", 1, 3, 0, 600}};
    for (int i = 0; i < 600; ++i) {
        const double t = 0.1 * i;
        r.trace.t_s.push_back(t);
        const double i_a = (i >= 100 && i < 400) ? 3.0 : 0.0;
        r.trace.i_a.push_back(i_a);
        r.trace.v_v.push_back(3.6 - 0.033 * i_a - 0.0001 * (i >= 100 ? std::min(i, 400) - 100 : 0) + 1e-9 * i);
        r.trace.t_cell_c.push_back(25.0 + 0.002 * std::min(i, 400));
        r.trace.t_amb_c.push_back(24.5 + 0.01 * std::sin(0.1 * i));
    }
    ModelFit ecm{"ecm2", {{"r0_ohm", 0.033}, {"r1_ohm", 0.012}, {"tau1_s", 10.5}, {"r2_ohm", 0.01}, {"tau2_s", 91.0}},
                 {{"r0_ohm", {0.0325, 0.0335}}, {"tau1_s", {9.8, 11.2}}}, 0.0004, true};
    ModelFit thermal{"thermal", {{"c_th_j_per_k", 171.0}, {"r_th_k_per_w", 10.8}}, {}, 0.02, false};
    r.fits = {ecm, thermal};
    return r;
}

void check_same_measurements(const std::vector<Measurement>& a, const std::vector<Measurement>& b) {
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].name == b[i].name);
        if (std::isnan(b[i].value)) CHECK(std::isnan(a[i].value));
        else CHECK(a[i].value == b[i].value);
        CHECK(a[i].unit == b[i].unit);
        CHECK(a[i].low == b[i].low);
        CHECK(a[i].high == b[i].high);
        CHECK(a[i].outcome == b[i].outcome);
    }
}

void check_same_column(const std::vector<double>& got, const std::vector<double>& want, double tol) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        if (std::isnan(want[i])) {
            CHECK(std::isnan(got[i]));
        } else if (std::fabs(got[i] - want[i]) > tol) {
            FAIL_CHECK("sample " << i << ": " << got[i] << " != " << want[i]);
            return;
        }
    }
}

// A record whose whole content derives from k, for the crash test.
TestRecord crash_record(std::int64_t k) {
    TestRecord r;
    r.serial = serial_of("C001", static_cast<std::uint64_t>(k), {2023, 5, 1});
    r.cell_model = "crash";
    r.lot = "C001";
    r.production_date = "2023-05-01";
    r.station_id = "crash-station";
    r.channel = static_cast<int>(k % 8);
    r.recipe_name = "crash";
    r.recipe_version = std::to_string(k);
    r.start_unix_s = 1.0e9 + static_cast<double>(k);
    r.end_unix_s = r.start_unix_s + 0.5;
    r.verdict = k % 11 == 0 ? Verdict::fail : Verdict::pass;
    const int nm = 3 + static_cast<int>(k % 5);
    for (int j = 0; j < nm; ++j)
        r.measurements.push_back(Measurement::judged("m" + std::to_string(j), static_cast<double>(k * 1000 + j), "V", -1.0, 1e12));
    const int n = 20 + static_cast<int>(k % 40);
    for (int j = 0; j < n; ++j) {
        r.trace.t_s.push_back(0.5 * j);
        r.trace.i_a.push_back(static_cast<double>(k % 7) + 0.001 * j);
        r.trace.v_v.push_back(3.0 + static_cast<double>((k * 7 + j) % 1000) * 1e-6);
    }
    r.fits.push_back({"ecm2", {{"r0_ohm", static_cast<double>(k) * 1e-6}, {"n", static_cast<double>(n)}},
                      {{"r0_ohm", {0.0, 1.0}}}, static_cast<double>(k), true});
    return r;
}

void check_crash_record(Store& st, std::int64_t run_id, std::int64_t k) {
    const auto got = st.read_record(run_id);
    REQUIRE(got);
    const TestRecord want = crash_record(k);
    CHECK(got->serial == want.serial);
    CHECK(got->recipe_version == want.recipe_version);
    CHECK(got->channel == want.channel);
    CHECK(got->verdict == want.verdict);
    check_same_measurements(got->measurements, want.measurements);
    check_same_column(got->trace.t_s, want.trace.t_s, 1e-9);
    check_same_column(got->trace.i_a, want.trace.i_a, 1e-9);
    check_same_column(got->trace.v_v, want.trace.v_v, 1e-9);
    CHECK(got->trace.t_cell_c.empty());
    REQUIRE(got->fits.size() == 1);
    CHECK(got->fits[0].parameters == want.fits[0].parameters);
    CHECK(got->fits[0].ci95 == want.fits[0].ci95);
    CHECK(got->fits[0].rmse == want.fits[0].rmse);
}

QuarantineEvent ev(QuarantineAction a, QuarantineScope s, std::string target, std::string reason = "why") {
    QuarantineEvent e;
    e.action = a;
    e.scope = s;
    e.target = std::move(target);
    e.reason = std::move(reason);
    e.actor = "tester";
    e.role = a == QuarantineAction::release ? "quality" : "operator";
    e.time_unix_s = 1.7e9;
    return e;
}

QuarantineEvent window_ev(QuarantineAction a, std::string from, std::string to) {
    QuarantineEvent e = ev(a, QuarantineScope::window, "");
    e.window_from = std::move(from);
    e.window_to = std::move(to);
    return e;
}

}  // namespace

TEST_CASE("store: migrates an empty file to the latest schema with WAL, foreign keys and app id") {
    TempDir t;
    const fs::path p = t / "r.db";
    CHECK_THROWS_WITH_AS(Store::open(p), doctest::Contains("no such database"), StoreError);
    CHECK_FALSE(fs::exists(p));
    {
        Store st = create_store(p);
        CHECK(st.schema_version() == Store::latest_schema_version());
        CHECK(Store::latest_schema_version() >= 1);
    }
    Raw raw(p);
    CHECK(raw.integer("PRAGMA user_version") == Store::latest_schema_version());
    CHECK(raw.integer("PRAGMA application_id") == 0x454F4C53);
    CHECK(raw.text("PRAGMA journal_mode") == "wal");
    CHECK(raw.column("SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name") == kAllTables);
    const auto indexes = raw.column("SELECT name FROM sqlite_schema WHERE type='index' AND sql IS NOT NULL");
    for (const char* ix : {"cells_lot", "cells_production_date", "test_runs_serial", "quarantine_target",
                           "quarantine_window"})
        CHECK(std::find(indexes.begin(), indexes.end(), ix) != indexes.end());

    // Reopening an up-to-date store changes nothing; a pre-existing empty file
    // becomes a store only when the caller creates stores.
    const auto schema_before = raw.column("SELECT sql FROM sqlite_schema ORDER BY name");
    { Store st = Store::open(p); }
    CHECK(raw.column("SELECT sql FROM sqlite_schema ORDER BY name") == schema_before);
    const fs::path empty = t / "empty.db";
    { std::FILE* f = std::fopen(empty.c_str(), "wb"); std::fclose(f); }
    CHECK_THROWS_WITH_AS(Store::open(empty), doctest::Contains("not an eolstation store (an empty file)"), StoreError);
    CHECK_THROWS_WITH_AS(Store::open(empty, OpenOptions{.read_only = true}),
                         doctest::Contains("not an eolstation store (an empty file)"), StoreError);
    CHECK(fs::file_size(empty) == 0);  // untouched
    CHECK(create_store(empty).schema_version() == Store::latest_schema_version());
}

TEST_CASE("hostile: a FIFO, a folder or a device given as the store is refused at once, never opened") {
    TempDir t;
    const fs::path fifo = t / "pipe.db";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH_AS(Store::open(fifo), doctest::Contains("not a regular file (a FIFO)"), StoreError);
    CHECK_THROWS_WITH_AS(Store::open(fifo, OpenOptions{.read_only = true}), doctest::Contains("a FIFO"), StoreError);
    CHECK_THROWS_WITH_AS(Store::open(t.dir, OpenOptions{.create = true}), doctest::Contains("a directory"),
                         StoreError);
    CHECK_THROWS_WITH_AS(Store::open("/dev/null"), doctest::Contains("a special file"), StoreError);
}

TEST_CASE("store: foreign keys are enforced on the connection") {
    TempDir t;
    Store st = create_store(t / "r.db");
    TestRecord r = full_record();
    st.write(r);
    // A measurement for a run that does not exist is rejected by SQLite itself.
    Raw raw(t / "r.db");
    CHECK(raw.exec("PRAGMA foreign_keys=ON; INSERT INTO measurements VALUES (999, 0, 'x', 1, 'V', NULL, NULL, 1)")
              .find("FOREIGN KEY") != std::string::npos);
}

TEST_CASE("store: a database newer than this binary is refused, never downgraded") {
    TempDir t;
    const fs::path p = t / "r.db";
    { Store st = create_store(p); st.write(full_record()); }
    const int newer = Store::latest_schema_version() + 3;
    { Raw raw(p); REQUIRE(raw.exec("PRAGMA user_version = " + std::to_string(newer)) == ""); }
    const std::string both = std::to_string(newer);
    const std::string known = std::to_string(Store::latest_schema_version());
    try {
        (void)Store::open(p);
        FAIL("opened a newer database");
    } catch (const SchemaTooNewError& e) {
        CHECK(e.db_version() == newer);
        CHECK(e.known_version() == Store::latest_schema_version());
        const std::string msg = e.what();
        CHECK(msg.find("schema version " + both) != std::string::npos);
        CHECK(msg.find("(" + known + ")") != std::string::npos);
    }
    OpenOptions ro;
    ro.read_only = true;
    CHECK_THROWS_AS(Store::open(p, ro), SchemaTooNewError);
    CHECK_THROWS_AS(Store::inspect(p), SchemaTooNewError);
    Raw raw(p);
    CHECK(raw.integer("PRAGMA user_version") == newer);  // untouched
    CHECK(raw.integer("SELECT count(*) FROM test_runs") == 1);

    const Run r = run_cli("db info --db " + p.string());
    CHECK(r.code == 2);
    CHECK(r.out.find("schema version " + both) != std::string::npos);
    CHECK(r.out.find("(" + known + ")") != std::string::npos);
}

TEST_CASE("store: refuses a SQLite file that is not a results store") {
    TempDir t;
    const fs::path p = t / "other.db";
    { Raw raw(p); REQUIRE(raw.exec("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)") == ""); }
    CHECK_THROWS_WITH_AS(Store::open(p), doctest::Contains("not an eolstation store"), StoreError);
    Raw raw(p);
    CHECK(raw.column("SELECT name FROM sqlite_schema WHERE type='table'") == std::vector<std::string>{"customers"});
}

TEST_CASE("store: a test record round-trips") {
    TempDir t;
    Store st = create_store(t / "r.db");
    const TestRecord want = full_record();
    const std::int64_t id = st.write(want);
    CHECK(id > 0);
    const auto got = st.read_record(id);
    REQUIRE(got);
    CHECK(got->serial == want.serial);
    CHECK(got->cell_model == want.cell_model);
    CHECK(got->lot == want.lot);
    CHECK(got->production_date == want.production_date);
    CHECK(got->station_id == want.station_id);
    CHECK(got->channel == want.channel);
    CHECK(got->recipe_name == want.recipe_name);
    CHECK(got->recipe_version == want.recipe_version);
    CHECK(got->start_unix_s == want.start_unix_s);
    CHECK(got->end_unix_s == want.end_unix_s);
    CHECK(got->verdict == Verdict::fail);
    CHECK(got->abort_reason == want.abort_reason);
    check_same_measurements(got->measurements, want.measurements);
    // Outcomes: pass, pass, unset (not measured: NULL), fail.
    CHECK(got->measurements[0].outcome == Outcome::pass);
    CHECK(got->measurements[2].outcome == Outcome::unset);
    CHECK(got->measurements[3].outcome == Outcome::fail);
    // The step records.
    REQUIRE(got->steps.size() == 2);
    for (std::size_t k = 0; k < 2; ++k) {
        CHECK(got->steps[k].name == want.steps[k].name);
        CHECK(got->steps[k].kind == want.steps[k].kind);
        CHECK(got->steps[k].start_unix_s == want.steps[k].start_unix_s);
        CHECK(got->steps[k].end_unix_s == want.steps[k].end_unix_s);
        CHECK(got->steps[k].outcome == want.steps[k].outcome);
        CHECK(got->steps[k].message == want.steps[k].message);
        CHECK(got->steps[k].first_measurement == want.steps[k].first_measurement);
        CHECK(got->steps[k].measurement_count == want.steps[k].measurement_count);
        CHECK(got->steps[k].first_sample == want.steps[k].first_sample);
        CHECK(got->steps[k].sample_count == want.steps[k].sample_count);
    }
    // Trace: 1e-6 fixed point — values with ≤ 6 decimals are exact, others within 5e-7.
    check_same_column(got->trace.t_s, want.trace.t_s, 1e-12);
    check_same_column(got->trace.i_a, want.trace.i_a, 0.0);
    check_same_column(got->trace.v_v, want.trace.v_v, 5e-7);
    check_same_column(got->trace.t_cell_c, want.trace.t_cell_c, 1e-12);
    check_same_column(got->trace.t_amb_c, want.trace.t_amb_c, 5e-7);
    REQUIRE(got->fits.size() == 2);
    CHECK(got->fits[0].kind == "ecm2");
    CHECK(got->fits[0].parameters == want.fits[0].parameters);
    CHECK(got->fits[0].ci95 == want.fits[0].ci95);
    CHECK(got->fits[0].rmse == want.fits[0].rmse);
    CHECK(got->fits[0].converged);
    CHECK(got->fits[1].kind == "thermal");
    CHECK(got->fits[1].parameters == want.fits[1].parameters);
    CHECK(got->fits[1].ci95.empty());
    CHECK_FALSE(got->fits[1].converged);

    const auto cell = st.cell(want.serial);
    REQUIRE(cell);
    CHECK(cell->latest_run_id == id);
    CHECK_FALSE(st.cell("01A33E0042000AAA"));

    // A later retest becomes the latest run; an aborted one never does.
    TestRecord again = want;
    again.start_unix_s += 3600;
    again.end_unix_s += 3600;
    again.verdict = Verdict::fail;
    const std::int64_t id2 = st.write(again);
    TestRecord aborted = want;
    aborted.start_unix_s += 7200;
    aborted.verdict = Verdict::abort;
    aborted.abort_reason = "contact resistance";
    aborted.trace = {};
    aborted.fits.clear();
    const std::int64_t id3 = st.write(aborted);
    TestRecord earlier = want;  // written late, but started first
    earlier.start_unix_s -= 3600;
    const std::int64_t id4 = st.write(earlier);
    CHECK(st.cell(want.serial)->latest_run_id == id2);
    const auto runs = st.runs_for(want.serial);
    REQUIRE(runs.size() == 4);
    CHECK(runs[0].id == id4);
    CHECK(runs[1].id == id);
    CHECK(runs[2].id == id2);
    CHECK(runs[3].id == id3);
    CHECK(runs[3].verdict == Verdict::abort);
    CHECK(runs[3].abort_reason == "contact resistance");
    CHECK(st.trace(id3).size() == 0);
    CHECK(st.count("traces") == 3);
    CHECK(st.count("cells") == 1);
}

TEST_CASE("store: the cell is completed, never contradicted") {
    TempDir t;
    Store st = create_store(t / "r.db");
    TestRecord r = full_record();
    r.cell_model.clear();
    r.lot.clear();
    st.write(r);
    CHECK(st.cell(r.serial)->cell_model.empty());
    r.cell_model = "INR18650-30Q";
    r.lot = "0042";
    st.write(r);
    CHECK(st.cell(r.serial)->cell_model == "INR18650-30Q");
    CHECK(st.cell(r.serial)->lot == "0042");
    r.lot = "0043";
    CHECK_THROWS_WITH_AS(st.write(r), doctest::Contains("lot '0043' contradicts the stored cell's '0042'"),
                         StoreError);
    CHECK(st.count("test_runs") == 2);
}

TEST_CASE("store: invalid records name the field and write nothing") {
    TempDir t;
    Store st = create_store(t / "r.db");
    auto bad = [&](auto mutate, const char* expect) {
        TestRecord r = full_record();
        mutate(r);
        CHECK_THROWS_WITH_AS(st.write(r), doctest::Contains(expect), StoreError);
    };
    bad([](TestRecord& r) { r.serial.clear(); }, "serial is empty");
    bad([](TestRecord& r) { r.production_date = "2023-02-30"; }, "production_date '2023-02-30'");
    bad([](TestRecord& r) { r.trace.v_v.pop_back(); }, "trace column v_v has 599 samples, t_s has 600");
    bad([](TestRecord& r) { r.measurements[1].name.clear(); }, "measurements[1] has no name");
    bad([](TestRecord& r) { r.fits[0].ci95["c1_f"] = {0, 1}; }, "ci95 for 'c1_f'");
    bad([](TestRecord& r) { r.start_unix_s = std::numeric_limits<double>::infinity(); }, "finite");
    for (const auto& table : kAllTables) CHECK(st.count(table) == 0);
    CHECK_THROWS_WITH_AS(st.count("sqlite_schema"), doctest::Contains("not a table of the store"), StoreError);
}

TEST_CASE("store: write_batch is one transaction") {
    TempDir t;
    Store st = create_store(t / "r.db");
    std::vector<TestRecord> batch;
    for (int k = 0; k < 10; ++k) batch.push_back(crash_record(k));
    batch[7].trace.i_a.pop_back();  // invalid: nothing of the batch may remain
    CHECK_THROWS_AS(st.write_batch(batch), StoreError);
    for (const auto& table : kAllTables) CHECK(st.count(table) == 0);
    batch[7] = crash_record(7);
    const auto ids = st.write_batch(batch);
    REQUIRE(ids.size() == 10);
    for (int k = 0; k < 10; ++k) check_crash_record(st, ids[static_cast<std::size_t>(k)], k);
    CHECK(st.count("cells") == 10);
}

TEST_CASE("store: traces are compact and non-finite values survive") {
    TempDir t;
    const fs::path p = t / "r.db";
    Store st = create_store(p);
    TestRecord r = full_record();
    const std::int64_t id = st.write(r);
    Raw raw(p);
    const auto bytes = raw.integer("SELECT length(t_s) + length(i_a) + length(v_v) + length(t_cell_c) + "
                                   "length(t_amb_c) FROM traces WHERE run_id = " + std::to_string(id));
    const auto raw_bytes = static_cast<std::int64_t>(5 * 8 * r.trace.size());
    MESSAGE("trace of ", r.trace.size(), " samples x 5 columns: ", bytes, " bytes (float64: ", raw_bytes, ")");
    CHECK(bytes < raw_bytes / 3);
    CHECK(raw.integer("SELECT length(t_s) FROM traces") <= 2 + 600 + 8);  // constant step: 1 byte a sample

    TestRecord odd = full_record();
    odd.serial = serial_of("0042", 2);
    odd.trace.t_cell_c[5] = std::numeric_limits<double>::quiet_NaN();
    odd.trace.t_amb_c[7] = std::numeric_limits<double>::infinity();
    odd.trace.v_v[3] = 1e300;
    odd.trace.i_a[9] = 0.1 + 1e-12;  // not on the 1e-6 grid: rounded
    const std::int64_t id2 = st.write(odd);
    const auto back = st.trace(id2);
    check_same_column(back.t_cell_c, odd.trace.t_cell_c, 0.0);
    check_same_column(back.t_amb_c, odd.trace.t_amb_c, 0.0);
    check_same_column(back.v_v, odd.trace.v_v, 0.0);  // raw float64 column: bit-exact
    CHECK(back.i_a[9] == 0.1);

    TestRecord short_trace = full_record();
    short_trace.serial = serial_of("0042", 3);
    short_trace.trace.t_cell_c.clear();
    short_trace.trace.t_amb_c.clear();
    const auto back2 = st.trace(st.write(short_trace));
    CHECK(back2.size() == 600);
    CHECK(back2.t_cell_c.empty());
    CHECK(back2.t_amb_c.empty());
}

TEST_CASE("store: results and events are append-only, whoever runs the SQL") {
    TempDir t;
    const fs::path p = t / "r.db";
    {
        Store st = create_store(p);
        st.write(full_record());
        st.append_quarantine(ev(QuarantineAction::hold, QuarantineScope::lot, "0042"));
        StationEvent se;
        se.station_id = "EOL-01";
        se.kind = "estop";
        se.message = "emergency stop pressed";
        st.append_station_event(se);
    }
    Raw raw(p);
    CHECK(raw.exec("UPDATE quarantine_events SET action = 'release'").find("append-only") != std::string::npos);
    CHECK(raw.exec("DELETE FROM quarantine_events").find("append-only") != std::string::npos);
    CHECK(raw.exec("INSERT OR REPLACE INTO quarantine_events (id, time_unix_s, action, scope, target, reason, actor) "
                   "VALUES (1, 0, 'release', 'lot', '0042', 'x', 'y')")
              .find("append-only") != std::string::npos);
    CHECK(raw.exec("UPDATE station_events SET message = 'nothing happened'").find("append-only") != std::string::npos);
    CHECK(raw.exec("DELETE FROM station_events").find("append-only") != std::string::npos);
    CHECK(raw.exec("UPDATE test_runs SET verdict = 'pass'").find("append-only") != std::string::npos);
    CHECK(raw.exec("DELETE FROM measurements").find("append-only") != std::string::npos);
    CHECK(raw.exec("UPDATE fit_parameters SET value = 0").find("append-only") != std::string::npos);
    CHECK(raw.integer("SELECT count(*) FROM quarantine_events WHERE action = 'hold'") == 1);
    CHECK(raw.integer("SELECT count(*) FROM station_events") == 1);
    CHECK(raw.integer("SELECT count(*) FROM measurements") == 4);
    // appending still works
    CHECK(raw.exec("INSERT INTO quarantine_events (time_unix_s, action, scope, target, reason, actor) "
                   "VALUES (1, 'release', 'lot', '0042', 'retested', 'q')") == "");
    // the schema's own checks
    CHECK(raw.exec("INSERT INTO quarantine_events (time_unix_s, action, scope, target, reason, actor) "
                   "VALUES (1, 'hold', 'lot', '0042', '', 'q')").find("CHECK") != std::string::npos);
    CHECK(raw.exec("INSERT INTO quarantine_events (time_unix_s, action, scope, target, reason, actor) "
                   "VALUES (1, 'hold', 'window', 'x', 'r', 'q')").find("CHECK") != std::string::npos);
}

TEST_CASE("store: quarantine state by serial, lot and production window") {
    TempDir t;
    Store st = create_store(t / "r.db");
    // Cells: A1, A2 in lot 0042 (2023-03-14); B1 in lot 0050 (2023-04-02); C1 in lot 0060 (2023-06-01).
    auto put = [&](const std::string& lot, std::uint64_t seq, Date d) {
        TestRecord r = crash_record(static_cast<std::int64_t>(seq));
        r.serial = serial_of(lot, seq, d);
        r.lot = lot;
        r.production_date = d.iso();
        st.write(r);
        return r.serial;
    };
    const std::string a1 = put("0042", 1, {2023, 3, 14}), a2 = put("0042", 2, {2023, 3, 14});
    const std::string b1 = put("0050", 3, {2023, 4, 2}), c1 = put("0060", 4, {2023, 6, 1});
    const std::string never = serial_of("0042", 99);

    auto state = [&](const std::string& s) { return st.status(s).state; };
    CHECK(state(a1) == CellState::clear);
    CHECK(st.status(a1).known);
    CHECK_FALSE(st.status(never).known);
    CHECK(st.status(never).state == CellState::clear);

    // A lot hold holds every cell of the lot, and nothing else.
    const auto lot_hold = st.append_quarantine(ev(QuarantineAction::hold, QuarantineScope::lot, "0042", "R0 shift"));
    CHECK(state(a1) == CellState::held);
    CHECK(state(a2) == CellState::held);
    CHECK(state(b1) == CellState::clear);
    const CellStatus s = st.status(a1);
    REQUIRE(s.because.size() == 1);
    CHECK(s.because[0].id == lot_hold);
    CHECK(s.because[0].reason == "R0 shift");
    CHECK(s.lot == "0042");
    // A never-tested serial is judged by its decoded lot when the caller gives it.
    CHECK(st.status(never, "0042", "2023-03-14").state == CellState::held);

    // A window hold covers production dates inside it.
    st.append_quarantine(window_ev(QuarantineAction::hold, "2023-04-01", "2023-04-30"));
    CHECK(state(b1) == CellState::held);
    CHECK(st.status(b1).because[0].target == "2023-04-01..2023-04-30");
    CHECK(state(c1) == CellState::clear);

    // An individual release after retest overrides the earlier lot hold for that serial only.
    st.append_quarantine(ev(QuarantineAction::release, QuarantineScope::serial, a1, "retested ok"));
    CHECK(state(a1) == CellState::released);
    CHECK(state(a2) == CellState::held);

    // ...but a new lot hold after that release holds it again.
    st.append_quarantine(ev(QuarantineAction::hold, QuarantineScope::lot, "0042", "second look"));
    CHECK(state(a1) == CellState::held);

    // A serial hold is not cleared by releasing the lot.
    st.append_quarantine(ev(QuarantineAction::hold, QuarantineScope::serial, a2, "outlier: P_x"));
    st.append_quarantine(ev(QuarantineAction::release, QuarantineScope::lot, "0042", "lot cleared"));
    CHECK(state(a1) == CellState::released);
    CHECK(state(a2) == CellState::held);
    REQUIRE(st.status(a2).because.size() == 1);
    CHECK(st.status(a2).because[0].reason == "outlier: P_x");

    // Releasing the window releases its cells; scrap is terminal.
    st.append_quarantine(window_ev(QuarantineAction::release, "2023-04-01", "2023-04-30"));
    CHECK(state(b1) == CellState::released);
    st.append_quarantine(ev(QuarantineAction::scrap, QuarantineScope::serial, b1, "internal short"));
    st.append_quarantine(ev(QuarantineAction::release, QuarantineScope::serial, b1, "oops"));
    CHECK(state(b1) == CellState::scrapped);
    CHECK(st.status(b1).because[0].reason == "internal short");

    // status_many agrees with status, in the caller's order, unknown serials included.
    const std::vector<std::string> ask{c1, never, b1, a2, a1, a1, "NOT-A-SERIAL"};
    const auto many = st.status_many(ask);
    REQUIRE(many.size() == ask.size());
    for (std::size_t i = 0; i < ask.size(); ++i) {
        const CellStatus one = st.status(ask[i]);
        CHECK(many[i].serial == ask[i]);
        CHECK(many[i].state == one.state);
        CHECK(many[i].known == one.known);
        CHECK(many[i].because.size() == one.because.size());
    }

    CHECK(st.quarantine_events().size() == 9);
    CHECK(st.quarantine_events(8).size() == 1);
    CHECK(st.quarantine_events_for(a2, "0042", "2023-03-14").size() == 4);

    // Validation.
    CHECK_THROWS_WITH_AS(st.append_quarantine(ev(QuarantineAction::hold, QuarantineScope::lot, "0042", "")),
                         doctest::Contains("reason is required"), StoreError);
    auto no_actor = ev(QuarantineAction::hold, QuarantineScope::lot, "0042");
    no_actor.actor.clear();
    CHECK_THROWS_WITH_AS(st.append_quarantine(no_actor), doctest::Contains("actor is required"), StoreError);
    CHECK_THROWS_WITH_AS(st.append_quarantine(window_ev(QuarantineAction::hold, "2023-05-01", "2023-04-01")),
                         doctest::Contains("ends before it starts"), StoreError);
    CHECK_THROWS_WITH_AS(st.append_quarantine(window_ev(QuarantineAction::hold, "2023-04", "2023-05")),
                         doctest::Contains("YYYY-MM-DD"), StoreError);
    CHECK(st.count("quarantine_events") == 9);
}

TEST_CASE("store: status_many also reads serial events one by one when they outnumber the query") {
    TempDir t;
    Store st = create_store(t / "r.db");
    std::vector<QuarantineEvent> holds;
    for (int k = 0; k < 20; ++k) holds.push_back(ev(QuarantineAction::hold, QuarantineScope::serial, serial_of("0001", static_cast<std::uint64_t>(k))));
    st.append_quarantine_batch(holds);
    const std::vector<std::string> ask{serial_of("0001", 3), serial_of("0001", 50)};
    const auto many = st.status_many(ask);
    CHECK(many[0].state == CellState::held);
    CHECK(many[1].state == CellState::clear);
}

TEST_CASE("store: cells and the features of their latest run, by lot and date") {
    TempDir t;
    Store st = create_store(t / "r.db");
    for (int k = 0; k < 12; ++k) {
        TestRecord r = crash_record(k);
        r.verdict = Verdict::pass;
        const Date d{2023, 1 + k % 3, 10};
        r.lot = k % 2 ? "ODD0" : "EVEN";
        r.serial = serial_of(r.lot, static_cast<std::uint64_t>(k), d);
        r.production_date = d.iso();
        r.measurements[0].value = std::numeric_limits<double>::quiet_NaN();  // left out of features
        r.fits.push_back({"thermal", {{"r_th_k_per_w", 11.0}}, {}, 0.5, false});  // not converged: left out
        st.write(r);
        if (k == 5) {  // a retest: its values must win
            r.start_unix_s += 100;
            r.measurements[1].value = -5.0;
            st.write(r);
        }
    }
    int n = 0;
    st.for_each_latest({}, [&](const CellFeatures& cf) {
        ++n;
        const std::int64_t k = std::stoll(cf.run.recipe_version);
        CHECK(cf.cell.latest_run_id == cf.run.id);
        CHECK_FALSE(cf.get("m0"));
        CHECK(cf.get("m1") == (k == 5 ? -5.0 : static_cast<double>(k * 1000 + 1)));
        CHECK(cf.get("ecm2.r0_ohm") == static_cast<double>(k) * 1e-6);
        CHECK(cf.get("ecm2.rmse") == static_cast<double>(k));
        CHECK_FALSE(cf.get("thermal.rmse"));
        CHECK_FALSE(cf.get("thermal.r_th_k_per_w"));
    });
    CHECK(n == 12);

    std::set<std::string> lots;
    n = 0;
    CellFilter by_lot;
    by_lot.lot = "ODD0";
    st.for_each_latest(by_lot, [&](const CellFeatures& cf) {
        ++n;
        lots.insert(cf.cell.lot);
    });
    CHECK(n == 6);
    CHECK(lots == std::set<std::string>{"ODD0"});

    CellFilter feb;
    feb.date_from = "2023-02-01";
    feb.date_to = "2023-02-28";
    std::vector<std::string> dates;
    st.for_each_cell(feb, [&](const CellInfo& c) { dates.push_back(c.production_date); });
    CHECK(dates == std::vector<std::string>(4, "2023-02-10"));
    CellFilter since;
    since.date_from = "2023-02-01";
    n = 0;
    st.for_each_cell(since, [&](const CellInfo&) { ++n; });
    CHECK(n == 8);
    std::string prev;
    n = 0;
    st.for_each_cell({}, [&](const CellInfo& c) {
        CHECK(prev < c.serial);
        prev = c.serial;
        ++n;
        // re-entering the store from the callback is allowed
        st.for_each_cell({}, [](const CellInfo&) {});
    });
    CHECK(n == 12);
}

TEST_CASE("store: hostile strings are data, never SQL") {
    TempDir t;
    const fs::path p = t / "r.db";
    Store st = create_store(p);
    TestRecord r = full_record();
    r.serial = "X'); DROP TABLE cells;--";
    r.cell_model = "O'Brien \"quoted\" `tick` ]bracket[";
    r.lot = std::string("L\0T'", 4);
    r.station_id = std::string("st\0ation", 8);
    r.recipe_name = "'; DELETE FROM test_runs; --";
    r.recipe_version = "1' OR '1'='1";
    r.abort_reason = "Robert'); DROP TABLE test_runs;--";
    r.measurements[0].name = std::string("a'b\"c\0d", 7);
    r.measurements[0].unit = "Ω·m ' \\ %_";
    r.fits[0].kind = "ecm2'; DROP TABLE model_fits; --";
    r.fits[0].parameters[std::string("r'0\0x", 5)] = 1.5;
    const std::int64_t id = st.write(r);

    const auto got = st.read_record(id);
    REQUIRE(got);
    CHECK(got->serial == r.serial);
    CHECK(got->cell_model == r.cell_model);
    CHECK(got->lot == r.lot);
    CHECK(got->lot.size() == 4);
    CHECK(got->station_id == r.station_id);
    CHECK(got->recipe_name == r.recipe_name);
    CHECK(got->recipe_version == r.recipe_version);
    CHECK(got->abort_reason == r.abort_reason);
    CHECK(got->measurements[0].name == r.measurements[0].name);
    CHECK(got->measurements[0].unit == r.measurements[0].unit);
    CHECK(got->fits[0].kind == r.fits[0].kind);
    CHECK(got->fits[0].parameters == r.fits[0].parameters);
    CHECK(st.runs_for(r.serial).size() == 1);
    CHECK(st.runs_for("X").empty());
    CHECK(st.runs_for("' OR '1'='1").empty());
    CHECK_FALSE(st.cell("%"));

    auto hostile = ev(QuarantineAction::hold, QuarantineScope::serial, r.serial, std::string("why'\0--", 7));
    st.append_quarantine(hostile);
    const CellStatus s = st.status(r.serial);
    CHECK(s.state == CellState::held);
    CHECK(s.lot == r.lot);
    REQUIRE(s.because.size() == 1);
    CHECK(s.because[0].reason == hostile.reason);
    CHECK(st.status("X").state == CellState::clear);
    CellFilter f;
    f.lot = r.lot;
    int n = 0;
    st.for_each_cell(f, [&](const CellInfo& c) {
        CHECK(c.serial == r.serial);
        ++n;
    });
    CHECK(n == 1);

    Raw raw(p);
    CHECK(raw.column("SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name") == kAllTables);
    CHECK(raw.integer("SELECT count(*) FROM cells") == 1);
    CHECK(raw.integer("SELECT count(*) FROM test_runs") == 1);
    CHECK(raw.integer("SELECT count(*) FROM model_fits") == 2);
    CHECK(raw.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("store: station events") {
    TempDir t;
    Store st = create_store(t / "r.db");
    for (int k = 0; k < 5; ++k) {
        StationEvent e;
        e.station_id = "EOL-01";
        e.kind = k == 2 ? "estop" : "start";
        e.message = "event " + std::to_string(k);
        e.detail_json = k == 4 ? "" : R"({"k":)" + std::to_string(k) + "}";
        e.time_unix_s = k == 3 ? 0.0 : 1.7e9 + k;
        st.append_station_event(e);
    }
    const auto events = st.station_events(3);
    REQUIRE(events.size() == 3);
    CHECK(events[0].message == "event 4");
    CHECK(events[0].detail_json == "{}");
    CHECK(events[1].time_unix_s > 1.7e9 + 100);  // 0 = now
    CHECK(events[2].kind == "estop");
    CHECK(events[2].detail_json == R"({"k":2})");
    CHECK(st.station_events().size() == 5);
}

TEST_CASE("store: a new store gets 16 KiB pages, an existing store keeps its own, a bad size is refused before any file") {
    TempDir t;
    const fs::path p16 = t / "new.db", p4 = t / "old.db", bad = t / "bad.db";
    {
        Store st = create_store(p16);
        st.write(crash_record(1));
        CHECK(st.info().page_size == 16384);
    }
    {
        Store st = Store::open(p4, OpenOptions{.create = true, .page_size_bytes = 4096});
        st.write(crash_record(2));
        CHECK(st.info().page_size == 4096);
    }
    // Reopened with the default (16 KiB) options: the 4 KiB store keeps its
    // pages and its record (a page size applies only before the first table).
    {
        Store st = Store::open(p4);
        CHECK(st.info().page_size == 4096);
        CHECK(st.info().journal_mode == "wal");
        CHECK(st.cell(crash_record(2).serial).has_value());
    }
    CHECK(Store::inspect(p16).page_size == 16384);
    const Run r = run_cli("db info --json --db " + p16.string());
    REQUIRE(r.code == 0);
    CHECK(nlohmann::json::parse(r.out)["page_size"] == 16384);
    for (const int ps : {0, 256, 3000, 131072}) {
        CAPTURE(ps);
        try {
            (void)Store::open(bad, OpenOptions{.create = true, .page_size_bytes = ps});
            FAIL("a page size of " << ps << " was accepted");
        } catch (const StoreError& e) {
            CHECK(std::string(e.what()).find(fmt::format("page size {} bytes", ps)) != std::string::npos);
        }
        CHECK_FALSE(fs::exists(bad));
    }
}

TEST_CASE("store: db copy writes a compacted copy with the page size asked, the same rows, the source unchanged") {
    TempDir t;
    const fs::path old_db = t / "old.db", copy16 = t / "copy16.db", copy8 = t / "copy8.db";
    std::vector<std::int64_t> ids;
    {
        Store st = Store::open(old_db, OpenOptions{.create = true, .page_size_bytes = 4096});
        for (int k = 0; k < 40; ++k) ids.push_back(st.write(crash_record(k)));
        st.append_quarantine(ev(QuarantineAction::hold, QuarantineScope::lot, "C001"));
    }
    const DbInfo src = Store::inspect(old_db);
    Run r = run_cli("db copy --db " + old_db.string() + " --out " + copy16.string());
    REQUIRE(r.code == 0);
    CHECK(r.out.find("x 4096 bytes") != std::string::npos);
    CHECK(r.out.find("x 16384 bytes") != std::string::npos);
    CHECK(r.out.find("journal mode wal") != std::string::npos);
    // Whole in the file itself: a -wal (an empty one, of the read-only look
    // at the copy above) holds nothing.
    CHECK((!fs::exists(copy16.string() + "-wal") || fs::file_size(copy16.string() + "-wal") == 0));
    const DbInfo got = Store::inspect(copy16);
    CHECK(got.page_size == 16384);
    CHECK(got.journal_mode == "wal");
    CHECK(got.schema_version == src.schema_version);
    CHECK(got.table_counts == src.table_counts);
    CHECK(fs::status(copy16).permissions() == fs::status(old_db).permissions());
    {
        Store st = Store::open(copy16);  // a store: opened for writing, records read back as written
        for (std::size_t k = 0; k < ids.size(); k += 13) check_crash_record(st, ids[k], static_cast<std::int64_t>(k));
        CHECK(st.write(crash_record(100)) > ids.back());
    }
    CHECK(Store::inspect(old_db).page_size == 4096);
    CHECK(Store::inspect(old_db).table_counts == src.table_counts);
    // No temporary left beside the copy.
    for (const auto& e : fs::directory_iterator(t.dir)) CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);

    r = run_cli("db copy --json --page-size 8192 --db " + old_db.string() + " --out " + copy8.string());
    REQUIRE(r.code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["from"]["page_size"] == 4096);
    CHECK(j["to"]["page_size"] == 8192);
    CHECK(j["to"]["journal_mode"] == "wal");
    CHECK(j["schema_version"] == src.schema_version);
    CHECK(Store::inspect(copy8).page_size == 8192);
}

TEST_CASE("hostile: db copy never writes over a file, refuses bad sizes and non-stores, and leaves nothing on failure") {
    TempDir t;
    const fs::path db = t / "s.db";
    {
        Store st = create_store(db);
        st.write(crash_record(1));
    }
    auto no_temporaries = [&] {
        for (const auto& e : fs::recursive_directory_iterator(t.dir))
            CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
    };
    // An existing target (and the store itself) is left as it was.
    const fs::path existing = t / "existing.db";
    std::ofstream(existing) << "keep me";
    Run r = run_cli("db copy --db " + db.string() + " --out " + existing.string());
    CHECK(r.code == 2);
    CHECK(r.out.find("existing.db: exists") != std::string::npos);
    CHECK(fs::file_size(existing) == 7);
    r = run_cli("db copy --db " + db.string() + " --out " + db.string());
    CHECK(r.code == 2);
    CHECK(r.out.find("exists") != std::string::npos);
    CHECK(Store::inspect(db).table_counts.size() == kAllTables.size());
    // A bad page size names itself; nothing is written.
    const fs::path out = t / "out.db";
    r = run_cli("db copy --page-size 1000 --db " + db.string() + " --out " + out.string());
    CHECK(r.code == 2);
    CHECK(r.out.find("page size 1000 bytes") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
    // Not a store, a missing store, a missing folder for the copy.
    const fs::path other = t / "other.db";
    {
        sqlite3* raw = nullptr;
        REQUIRE(sqlite3_open(other.c_str(), &raw) == SQLITE_OK);
        sqlite3_exec(raw, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
        sqlite3_close(raw);
    }
    r = run_cli("db copy --db " + other.string() + " --out " + out.string());
    CHECK(r.code == 2);
    CHECK(r.out.find("not an eolstation store") != std::string::npos);
    r = run_cli("db copy --db " + (t / "missing.db").string() + " --out " + out.string());
    CHECK(r.code == 2);
    CHECK(r.out.find("no such database") != std::string::npos);
    r = run_cli("db copy --db " + db.string() + " --out " + (t / "no-folder" / "c.db").string());
    CHECK(r.code == 2);
    CHECK(r.out.find("nothing written") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
    no_temporaries();
    // A copy that cannot be finished (a file-size limit: the disk "full"
    // part-way) leaves no copy and no temporary.
    int code = -1;
    const std::string err = eol::test::run_command("sh -c \"trap '' XFSZ; ulimit -f 64; exec " + std::string(EOL_CLI) +
                                            " db copy --db " + db.string() + " --out " + out.string() + "\" 2>&1",
                                        code);
    INFO(err);
    CHECK(code == 2);
    CHECK(err.find("nothing written") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
    no_temporaries();
}

TEST_CASE("store: db info reports versions, counts and journal mode, read-only, without migrating") {
    TempDir t;
    const fs::path p = t / "r.db";
    {
        Store st = create_store(p);
        std::vector<TestRecord> batch;
        for (int k = 0; k < 7; ++k) batch.push_back(crash_record(k));
        st.write_batch(batch);
        st.append_quarantine(ev(QuarantineAction::hold, QuarantineScope::lot, "C001"));
        const DbInfo i = st.info();
        CHECK(i.schema_version == Store::latest_schema_version());
        CHECK(i.known_version == Store::latest_schema_version());
        CHECK(i.journal_mode == "wal");
        CHECK(i.page_size > 0);
        CHECK(i.file_size_bytes > 0);
    }
    const DbInfo i = Store::inspect(p);
    std::map<std::string, std::int64_t> counts(i.table_counts.begin(), i.table_counts.end());
    CHECK(counts.size() == kAllTables.size());
    CHECK(counts["cells"] == 7);
    CHECK(counts["test_runs"] == 7);
    CHECK(counts["traces"] == 7);
    CHECK(counts["model_fits"] == 7);
    CHECK(counts["fit_parameters"] == 14);
    CHECK(counts["quarantine_events"] == 1);
    CHECK(counts["station_events"] == 0);
    std::int64_t m = 0;
    for (int k = 0; k < 7; ++k) m += 3 + k % 5;
    CHECK(counts["measurements"] == m);

    Run r = run_cli("db info --json --db " + p.string());
    REQUIRE(r.code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["schema_version"] == Store::latest_schema_version());
    CHECK(j["known_version"] == Store::latest_schema_version());
    CHECK(j["journal_mode"] == "wal");
    CHECK(j["tables"]["measurements"] == m);
    CHECK(j["tables"]["cells"] == 7);
    CHECK(j["file_size_bytes"].get<std::int64_t>() > 0);

    r = run_cli("db info --db " + p.string());
    CHECK(r.code == 0);
    CHECK(r.out.find("journal mode    wal") != std::string::npos);
    CHECK(r.out.find("test_runs") != std::string::npos);

    // A file that does not exist is not created.
    r = run_cli("db info --db " + (t / "missing.db").string());
    CHECK(r.code == 2);
    CHECK(r.out.find("no such database") != std::string::npos);
    CHECK_FALSE(fs::exists(t / "missing.db"));
    CHECK(run_cli("db info").code == 2);
}

TEST_CASE("store: crash safety — SIGKILL a writer mid-batch, reopen, nothing committed lost, nothing partial") {
    TempDir t;
    const fs::path p = t / "crash.db";
    constexpr int kBatch = 10;
    std::mt19937 rng(2024);
    std::int64_t reported_total = 0;
    for (int round = 0; round < 3; ++round) {
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // Child: write batches forever; after each commit report the total.
            ::close(fds[0]);
            try {
                Store st = create_store(p);
                std::int64_t k = st.count("test_runs");
                std::vector<TestRecord> batch;
                for (int i = 0; i < 100000; ++i) {
                    batch.clear();
                    for (int b = 0; b < kBatch; ++b) batch.push_back(crash_record(k + b));
                    st.write_batch(batch);
                    k += kBatch;
                    if (::write(fds[1], &k, sizeof k) != static_cast<ssize_t>(sizeof k)) ::_exit(4);
                }
            } catch (...) {
                ::_exit(3);
            }
            ::_exit(0);
        }
        ::close(fds[1]);
        // Wait for the first commit, then let it run 200–500 ms and kill it.
        pollfd pfd{fds[0], POLLIN, 0};
        REQUIRE(::poll(&pfd, 1, 60000) == 1);
        std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 300));
        REQUIRE(::kill(pid, SIGKILL) == 0);
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        REQUIRE_MESSAGE(WIFSIGNALED(status), "the writer ended by itself, status ", status);
        CHECK(WTERMSIG(status) == SIGKILL);
        std::int64_t v = 0;
        while (::read(fds[0], &v, sizeof v) == static_cast<ssize_t>(sizeof v)) reported_total = std::max(reported_total, v);
        ::close(fds[0]);

        // Reopen: recovery of the WAL happens here.
        Store st = Store::open(p);
        Raw raw(p);
        CHECK(raw.text("PRAGMA integrity_check") == "ok");
        CHECK(raw.integer("SELECT count(*) FROM pragma_foreign_key_check") == 0);
        const std::int64_t runs = st.count("test_runs");
        MESSAGE("round ", round, ": ", reported_total, " records reported committed, ", runs, " in the store");
        CHECK(runs >= reported_total);           // nothing committed is lost
        CHECK(runs % kBatch == 0);               // no partial batch
        CHECK(runs <= reported_total + kBatch);  // at most the batch committed just before the kill
        // Every run is whole, and they are exactly records 0..runs-1.
        const auto ids = raw.column("SELECT id FROM test_runs ORDER BY start_unix_s");
        REQUIRE(static_cast<std::int64_t>(ids.size()) == runs);
        for (std::int64_t k = 0; k < runs; ++k) {
            const auto run_id = std::stoll(ids[static_cast<std::size_t>(k)]);
            const auto info = st.run(run_id);
            REQUIRE(info);
            REQUIRE(info->start_unix_s == 1.0e9 + static_cast<double>(k));
            check_crash_record(st, run_id, k);
        }
        // No orphans anywhere.
        CHECK(raw.integer("SELECT count(*) FROM measurements WHERE run_id NOT IN (SELECT id FROM test_runs)") == 0);
        CHECK(raw.integer("SELECT count(*) FROM traces WHERE run_id NOT IN (SELECT id FROM test_runs)") == 0);
        CHECK(raw.integer("SELECT count(*) FROM model_fits WHERE run_id NOT IN (SELECT id FROM test_runs)") == 0);
        CHECK(raw.integer("SELECT count(*) FROM fit_parameters WHERE fit_id NOT IN (SELECT id FROM model_fits)") == 0);
        CHECK(raw.integer("SELECT count(*) FROM cells WHERE serial NOT IN (SELECT serial FROM test_runs)") == 0);
        CHECK(raw.integer("SELECT count(*) FROM test_runs WHERE id NOT IN (SELECT run_id FROM traces)") == 0);
        // A cell's latest verdict is written with its run, never apart from it.
        CHECK(raw.integer("SELECT count(*) FROM cells WHERE latest_verdict IS NOT "
                          "(SELECT verdict FROM test_runs WHERE id = cells.latest_run_id)") == 0);
        CHECK(raw.integer("SELECT count(*) FROM cells WHERE latest_verdict IS NULL") == 0);
        CHECK(st.count("cells") == runs);
        reported_total = runs;
    }
    CHECK(reported_total > 0);
}

TEST_CASE("store: a version-1 store migrates to the step records and keeps every result") {
    TempDir t;
    const fs::path p = t / "v1.db";
    std::int64_t old_id = 0;
    {
        Store st = create_store(p);
        TestRecord r = full_record();
        r.steps.clear();
        old_id = st.write(r);
    }
    {
        // What a version-1 binary left: no run_steps table (nor the later
        // devices and users tables, nor the cells' latest verdict), user_version 1.
        Raw raw(p);
        REQUIRE(raw.exec(std::string(kUndoSchema6) + "DROP TRIGGER cells_latest_verdict_update; DROP TRIGGER cells_latest_verdict_insert; "
                         "ALTER TABLE cells DROP COLUMN latest_verdict; "
                         "DROP TABLE auth_events; DROP TABLE sessions; DROP TABLE users; "
                         "DROP TABLE device_links; DROP TABLE devices; DROP TABLE run_steps; "
                         "PRAGMA user_version = 1") == "");
        CHECK(raw.integer("SELECT count(*) FROM sqlite_schema WHERE name = 'run_steps'") == 0);
    }
    {
        Store ro = Store::open(p, OpenOptions{.read_only = true});
        CHECK(ro.schema_version() == 1);
        CHECK(ro.steps(old_id).empty());  // read-only: not migrated, read as far as the tables go
    }
    Store st = Store::open(p);
    CHECK(st.schema_version() == Store::latest_schema_version());
    const auto old = st.read_record(old_id);
    REQUIRE(old);
    CHECK(old->serial == full_record().serial);
    // Migration 5 filled the cell's latest verdict from its run.
    CHECK(Raw(p).text("SELECT latest_verdict FROM cells WHERE serial = '" + old->serial + "'") ==
          std::string(to_string(old->verdict)));
    CHECK(old->steps.empty());
    const std::int64_t id = st.write(full_record());
    CHECK(st.steps(id).size() == 2);
    Raw raw(p);
    CHECK(raw.exec("DELETE FROM run_steps").find("append-only") != std::string::npos);
    CHECK(raw.exec("UPDATE run_steps SET outcome = 'pass'").find("append-only") != std::string::npos);
}

TEST_CASE("store: a station's counts since a time — verdicts, holds at test time, held cells answered without a test") {
    TempDir tmp;
    Store store = create_store(tmp / "c.db");
    const double t0 = 1.7e9;
    auto run = [&](std::uint64_t seq, const char* station, double start, Verdict v) {
        TestRecord r = eol::test::make_record(eol::test::make_serial("0042", {2023, 3, 14}, seq), station, "eol-18650",
                                              start, 100, {{"ocv_v", 3.9}}, "V");
        r.verdict = v;
        store.write(r);
        return r.serial;
    };
    run(1, "EOL-01", t0 - 500, Verdict::pass);  // before the shift
    run(2, "EOL-01", t0 + 10, Verdict::pass);
    run(3, "EOL-01", t0 + 20, Verdict::fail);
    const std::string outlier = run(4, "EOL-01", t0 + 30, Verdict::pass);
    const std::string hot = run(5, "EOL-01", t0 + 40, Verdict::abort);
    run(6, "EOL-01", t0 + 50, Verdict::error);
    run(7, "EOL-02", t0 + 60, Verdict::pass);  // another station
    auto hold = [&](const std::string& serial, double at, const char* reason, const char* role) {
        QuarantineEvent e;
        e.time_unix_s = at;
        e.target = serial;
        e.reason = reason;
        e.actor = "eolstation controller";
        e.role = role;
        store.append_quarantine(e);
    };
    hold(outlier, t0 + 131, "screen at test: MCD d² 40 > 26", "station");
    hold(hot, t0 + 141, "hazardous: aborted for over-temperature at test (…)", "station");
    StationEvent ev;
    ev.time_unix_s = t0 + 200;
    ev.station_id = "EOL-01";
    ev.kind = "hold_at_test";
    ev.message = "position 3: … not tested";
    store.append_station_event(ev);
    ev.time_unix_s = t0 - 1;  // before the shift
    store.append_station_event(ev);

    const auto c = store.station_counts_since("EOL-01", t0);
    CHECK(c.tested == 6);  // 5 runs + 1 held cell answered without a test
    CHECK(c.pass == 1);
    CHECK(c.fail == 1);
    CHECK(c.hold == 2);    // the outlier at test, the held cell
    CHECK(c.abort == 1);   // a hazard hold does not make an abort a hold
    CHECK(c.error == 1);
    const auto all = store.station_counts_since("EOL-01", 0.0);
    CHECK(all.tested == 8);
    CHECK(all.pass == 2);
    CHECK(store.station_counts_since("EOL-03", 0.0).tested == 0);
}
