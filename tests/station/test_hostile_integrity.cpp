// Hostile cases against the real eolstation binary and real SQLite files:
// the ship gate and quarantine decisions under concurrent writers, output
// that must never be cut short silently, files that are not stores, and
// serial lists with invisible characters. Bounded in count and time.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/quarantine.hpp"
#include "eol/station/store.hpp"
#include "support/auth_test.hpp"
#include "support/cli_test.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using eol::test::create_store;
using eol::test::make_serial;
using eol::test::run_cli;
using eol::test::add_test_users;
using eol::test::run_command;
using eol::test::Run;
using eol::test::TempDir;

namespace {

const std::string kCli = EOL_CLI;

TestRecord passed(const std::string& serial) {
    return eol::test::make_record(serial, "EOL-01", "eol", 1.68e9, 60.0, {{"ocv_v", 3.6}}, "V");
}

/// A store with `n` passed cells of lot 0042; their serials.
std::vector<std::string> store_with(const fs::path& db, int n) {
    Store st = create_store(db);
    std::vector<std::string> serials;
    std::vector<TestRecord> recs;
    for (int k = 1; k <= n; ++k) {
        serials.push_back(make_serial("0042", {2023, 3, 14}, static_cast<std::uint64_t>(k)));
        recs.push_back(passed(serials.back()));
    }
    st.write_batch(recs);
    return serials;
}

std::int64_t count(const fs::path& db, const std::string& sql) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    std::int64_t v = -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

}  // namespace

TEST_CASE("hostile: a hold committed while ship waits for the write lock is seen: nothing ships") {
    TempDir tmp;
    const fs::path db = tmp / "t.db";
    const std::string s = store_with(db, 1).front();
    // Another writer takes the write lock, inserts a hold of the serial and
    // commits after 1.5 s; ship starts while it holds the lock.
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    REQUIRE(sqlite3_exec(h, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    const std::string ins = "INSERT INTO quarantine_events (time_unix_s, action, scope, target, reason, actor, role) "
                            "VALUES (1.7e9, 'hold', 'serial', '" + s + "', 'rival hold', 'qe', 'quality')";
    REQUIRE(sqlite3_exec(h, ins.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    std::thread commit_later([h] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        sqlite3_exec(h, "COMMIT", nullptr, nullptr, nullptr);
    });
    const Run r = run_cli("ship --db " + db.string() + " --actor dock " + s);
    commit_later.join();
    sqlite3_close(h);
    INFO(r.out);
    CHECK(r.code == 1);
    CHECK(r.out.find("NOT shipped") != std::string::npos);
    CHECK(count(db, "SELECT count(*) FROM station_events WHERE kind = 'shipment'") == 0);
    CHECK(run_cli("lookup --db " + db.string() + " " + s).code == 1);
}

TEST_CASE("hostile: concurrent holds and shipments of the same units never ship a held unit") {
    TempDir tmp;
    const fs::path db = tmp / "t.db";
    const auto serials = store_with(db, 20);
    const std::string as_qe = "EOL_TOKEN=" + add_test_users(db).quality + " ";
    std::string script;
    for (const auto& s : serials) {
        script += as_qe + kCli + " quarantine hold --db " + db.string() + " --serial " + s +
                  " --reason race >/dev/null 2>&1 &\n";
        script += kCli + " ship --db " + db.string() + " --actor dock " + s + " >/dev/null 2>&1 &\n";
    }
    script += "wait\n";
    const fs::path sh = tmp.write("race.sh", script);
    int code = -1;
    run_command("sh " + sh.string(), code);
    CHECK(code == 0);
    // Every hold was written (one per unit); a shipment, when there is one,
    // was recorded before the hold of its unit, never after.
    CHECK(count(db, "SELECT count(*) FROM quarantine_events") == 20);
    Store st = Store::open(db, OpenOptions{.read_only = true});
    std::map<std::string, double> hold_at;
    for (const auto& e : st.quarantine_events()) hold_at[e.target] = e.time_unix_s;
    int shipped = 0;
    for (const auto& [serial, t_ship] : shipped_serials(st)) {
        ++shipped;
        REQUIRE(hold_at.count(serial) == 1);
        CHECK_MESSAGE(t_ship <= hold_at[serial], serial << " shipped after its hold");
    }
    MESSAGE(shipped << " of 20 units shipped before their hold; the other holds came first and stopped them");
}

TEST_CASE("hostile: concurrent holds of the same serial and of the same lot write one event each") {
    TempDir tmp;
    const fs::path db = tmp / "t.db";
    const std::string s = store_with(db, 1).front();
    const std::string as_qe = "EOL_TOKEN=" + add_test_users(db).quality + " ";
    std::string script;
    for (int k = 0; k < 10; ++k) {
        script += as_qe + kCli + " quarantine hold --db " + db.string() + " --serial " + s +
                  " --reason dup >/dev/null 2>&1 &\n";
        script += as_qe + kCli + " quarantine hold --db " + db.string() +
                  " --lot 0042 --reason dup >/dev/null 2>&1 &\n";
    }
    script += "wait\n";
    int code = -1;
    run_command("sh " + tmp.write("dup.sh", script).string(), code);
    CHECK(count(db, "SELECT count(*) FROM quarantine_events WHERE scope = 'serial'") == 1);
    CHECK(count(db, "SELECT count(*) FROM quarantine_events WHERE scope = 'lot'") == 1);
}

TEST_CASE("hostile: two screens applied at once write each hold once") {
    TempDir tmp;
    const fs::path db = tmp / "s.db";
    {
        Store st = create_store(db);
        eol::test::fill_lots(st);
    }
    const std::string apply = "EOL_TOKEN=" + eol::test::add_test_users(db).quality + " " + kCli + " screen --db " +
                              db.string() + " --columns ocv_v,r0_ohm,p_x_w --apply >/dev/null 2>&1";
    int code = -1;
    run_command(apply + " & " + apply + " & wait", code);
    const auto events = count(db, "SELECT count(*) FROM quarantine_events");
    CHECK(events > 0);
    CHECK(count(db, "SELECT count(*) FROM (SELECT DISTINCT scope, target FROM quarantine_events)") == events);
}

TEST_CASE("hostile: ship counts a unit named several times once and says so") {
    TempDir tmp;
    const fs::path db = tmp / "t.db";
    const auto s = store_with(db, 2);
    std::string lower = s[0];
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const Run r = run_cli("ship --db " + db.string() + " --actor dock " + s[0] + " " + s[1] + " " + s[0] + " " + lower);
    INFO(r.out);
    CHECK(r.code == 0);
    CHECK(r.out.find("shipped 2 units") != std::string::npos);
    CHECK(r.out.find("2 repeated inputs counted once") != std::string::npos);
    Store st = Store::open(db, OpenOptions{.read_only = true});
    CHECK(shipped_serials(st).size() == 2);
}

TEST_CASE("hostile: output that cannot be written is an error, and --out never leaves a partial file") {
    TempDir tmp;
    const fs::path db = tmp / "t.db";
    store_with(db, 2000);  // a recall list of about 110 kB
    int code = -1;
    const std::string out = run_command(kCli + " recall export --db " + db.string() +
                                            " --window 2023-03..2023-04 > /dev/full 2>&1", code);
    CHECK(code == 2);
    run_command(kCli + " recall export --db " + db.string() + " --window 2023-03..2023-04 2>&1 > /dev/full", code);
    CHECK(code == 2);
    const std::string msg = run_command(kCli + " serial make --lot 0001 --date 2023-03-14 --count 20000 2>&1 >/dev/full", code);
    CHECK(code == 2);
    CHECK(msg.find("No space left on device") != std::string::npos);
    // A file size limit makes the write fail part-way (EFBIG): the target
    // must not exist afterwards, and no temporary file is left behind.
    const fs::path target = tmp / "recall.csv";
    const std::string err = run_command("sh -c \"trap '' XFSZ; ulimit -f 64; exec " + kCli + " recall export --db " +
                                            db.string() + " --window 2023-03..2023-04 --out " + target.string() +
                                            "\" 2>&1",
                                        code);
    INFO(err);
    CHECK(code == 2);
    CHECK(err.find("nothing written") != std::string::npos);
    CHECK_FALSE(fs::exists(target));
    for (const auto& e : fs::directory_iterator(tmp.dir)) CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
    // Without the limit the same export is whole.
    CHECK(run_cli("recall export --db " + db.string() + " --window 2023-03..2023-04 --out " + target.string()).code == 0);
    std::ifstream in(target);
    std::size_t lines = 0;
    for (std::string l; std::getline(in, l);) ++lines;
    CHECK(lines == 2001);
}

TEST_CASE("hostile: an empty file or a FIFO given as --db is refused with a message, never turned into a store") {
    TempDir tmp;
    const fs::path empty = tmp.write("empty.db", "");
    const std::string serial = make_serial("0042", {2023, 3, 14}, 1);
    Run r = run_cli("quarantine hold --db " + empty.string() + " --serial " + serial + " --reason x");
    CHECK(r.code == 2);
    CHECK(r.out.find("not an eolstation store") != std::string::npos);
    CHECK(fs::file_size(empty) == 0);
    r = run_cli("db info --db " + empty.string());
    CHECK(r.code == 2);
    r = run_cli("lookup --db " + empty.string() + " " + serial);
    CHECK(r.code == 2);
    CHECK(r.out.find("no such table") == std::string::npos);
    const fs::path fifo = tmp / "fifo.db";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const auto t0 = std::chrono::steady_clock::now();
    for (const std::string& cmd : {std::string("db info"), "lookup " + serial, std::string("recall export --window 2023-03..2023-04")}) {
        r = run_cli(cmd + " --db " + fifo.string());
        CHECK(r.code == 2);
        CHECK(r.out.find("not a regular file (a FIFO)") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
}

TEST_CASE("hostile: serial lists with a BOM, lone CRs, comments and invisible characters") {
    TempDir tmp;
    const fs::path db = tmp / "t.db";
    const auto s = store_with(db, 3);
    std::string invisible = s[0];
    invisible.insert(4, "\xE2\x80\x8B");  // a zero-width space inside
    const std::string list = "\xEF\xBB\xBF" + s[0] + "\r" + s[1] + "\r\n# a comment line\n\n" + s[2] + "\n" +
                             invisible + "\n";
    const fs::path f = tmp.write("list.txt", list);
    const Run r = run_cli("lookup --db " + db.string() + " --file " + f.string());
    INFO(r.out);
    CHECK(r.code == 1);  // the last line is invalid
    for (const auto& x : s) CHECK(r.out.find(x + "  clear") != std::string::npos);
    CHECK(r.out.find(f.string() + ":6:") != std::string::npos);  // line numbers count every line
    CHECK(r.out.find("<U+200B>") != std::string::npos);
    CHECK(r.out.find("\xE2\x80\x8B") == std::string::npos);  // never printed raw
    CHECK(r.out.find("comment") == std::string::npos);
}
