// Genealogy through the real eolstation binary on real SQLite files: device
// serials (serial make/check --device), genealogy link/show/unlink/import,
// lookup and ship answering for devices (exit codes, "kind"), recall export
// --devices, and device lookups over a whole simulated production against
// the simulator's device truth.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "eol/station/csv.hpp"
#include "eol/station/genealogy.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/store.hpp"
#include "support/auth_test.hpp"
#include "support/cli_test.hpp"
#include "support/genealogy_test.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using eol::test::create_store;
using eol::test::device_serial;
using eol::test::Run;
using eol::test::TestLogins;
using eol::test::add_test_users;
using eol::test::run_cli_as;
using eol::test::run_cli;
using eol::test::TempDir;
using eol::test::write_cells;
using nlohmann::json;

namespace {

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

Store read_only(const fs::path& db) {
    OpenOptions o;
    o.read_only = true;
    return Store::open(db, o);
}

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
    return s;
}

// The results of `lookup --json` by serial.
std::map<std::string, json> lookup_results(const std::string& text) {
    std::map<std::string, json> out;
    const json j = json::parse(text);
    for (const auto& r : j["results"]) out[r["serial"].get<std::string>()] = r;
    return out;
}

}  // namespace

TEST_CASE("genealogy CLI: serial make and check --device use the device scheme") {
    Run r = run_cli("serial make --device --count 3 --plant P1 --line A --start 40");
    REQUIRE(r.code == 0);
    std::istringstream in(r.out);
    std::vector<std::string> made;
    for (std::string line; std::getline(in, line);) made.push_back(line);
    REQUIRE(made.size() == 3);
    CHECK(made[0] == device_serial(40));
    for (const auto& s : made) CHECK(s.size() == 16);
    r = run_cli("serial check --device " + join(made, " "));
    CHECK(r.code == 0);
    CHECK(has(r.out, "sequence=41"));
    std::string bad = made[0];
    bad[10] = bad[10] == '3' ? '4' : '3';
    r = run_cli("serial check --device " + bad);
    CHECK(r.code == 1);
    CHECK(has(r.out, "check"));
    r = run_cli("serial make --device --lot 42 --count 1");
    CHECK(r.code == 2);
    CHECK(has(r.out, "--lot: the device serial scheme has no lot field"));
    r = run_cli("serial make --count 1 --date 2023-03-14");
    CHECK(r.code == 2);
    CHECK(has(r.out, "--lot is required"));
}

TEST_CASE("genealogy CLI: link, show, lookup and ship of a device — refusals exit 1 and write nothing") {
    TempDir tmp;
    const fs::path db = tmp / "g.db";
    std::vector<std::string> c, failed;
    {
        Store store = create_store(db);
        c = write_cells(store, "0042", {2023, 3, 14}, 6);
        failed = write_cells(store, "0042", {2023, 3, 14}, 1, Verdict::fail, 50);
    }
    const std::string D = " --db " + db.string();
    const std::string d1 = device_serial(1), d2 = device_serial(2);

    Run r = run_cli("genealogy link" + D + " --device " + d1 + " --model A1112 --cells \"" + c[0] + "," + c[1] + ", " + c[2] + "\"");
    CHECK(r.code == 0);
    CHECK(has(r.out, "linked device " + d1));
    // A cell already inside d1, and a failed one: refused, each named; nothing written for d2.
    r = run_cli("genealogy link" + D + " --device " + d2 + " --model A3102 --cells " + c[3] + "," + c[1] + "," +
                failed[0]);
    CHECK(r.code == 1);
    CHECK(has(r.out, "already inside device " + d1));
    CHECK(has(r.out, "failed"));
    CHECK(has(r.out, "nothing written"));
    CHECK_FALSE(read_only(db).device(d2).has_value());
    r = run_cli("genealogy link --json" + D + " --device " + d2 + " --model A3102 --cells " + c[3] + ",XYZ");
    CHECK(r.code == 1);
    CHECK(json::parse(r.out)["refused"][0]["kind"] == "invalid");
    r = run_cli("genealogy link" + D + " --device " + d2 + " --model A3102 --cells " + c[3] + ",,");
    CHECK(r.code == 2);
    CHECK(has(r.out, "--cells: item 2 is empty"));

    // show: a device's cells with their status; a cell's device.
    r = run_cli("genealogy show --json" + D + " " + d1);
    CHECK(r.code == 0);
    json j = json::parse(r.out);
    CHECK(j["kind"] == "device");
    CHECK(j["model"] == "A1112");
    CHECK(j["cells"].size() == 3);
    CHECK(j["history"].size() == 3);
    r = run_cli("genealogy show" + D + " " + c[0]);
    CHECK(r.code == 0);
    CHECK(has(r.out, "inside device " + d1 + " (A1112)"));

    // lookup answers for devices and cells alike, with the same exit codes.
    r = run_cli("lookup" + D + " " + d1);
    CHECK(r.code == 0);
    CHECK(has(r.out, "may ship"));
    r = run_cli("lookup --json" + D + " " + d1 + " " + c[4]);
    CHECK(r.code == 0);
    auto res = lookup_results(r.out);
    CHECK(res[d1]["kind"] == "device");
    CHECK(res[c[4]]["kind"] == "cell");
    const TestLogins who = add_test_users(db);
    CHECK(run_cli_as(who.quality, "quarantine hold" + D + " --lot 0042 --reason drift").code == 0);
    r = run_cli("lookup" + D + " " + d1);
    CHECK(r.code == 1);
    CHECK(has(r.out, "held"));
    CHECK(has(r.out, "lot 0042"));
    r = run_cli("ship" + D + " --actor dock " + d1);
    CHECK(r.code == 1);
    CHECK(has(r.out, "NOT shipped"));
    CHECK(run_cli_as(who.quality, "quarantine release" + D + " --lot 0042 --reason retested").code == 0);
    r = run_cli("ship" + D + " --actor dock --reference PO-7 " + d1);
    CHECK(r.code == 0);
    CHECK(has(r.out, "shipped 1 unit (1 device)"));

    // Rework: a logged-in quality (or admin) user, a reason required; a typed role grants nothing.
    const std::string unlink = "genealogy unlink" + D + " --device " + d1 + " --cell " + c[2];
    r = run_cli_as(who.operator_, unlink + " --reason bad");
    CHECK(r.code == 1);
    CHECK(has(r.out, "quality"));
    r = run_cli_as(who.quality, unlink);
    CHECK(r.code == 2);
    r = run_cli(unlink + " --reason bad --actor qe --role quality");
    CHECK(r.code == 2);
    CHECK(has(r.out, "no longer grants anything"));
    r = run_cli(unlink + " --reason bad");  // nobody logged in
    CHECK(r.code == 2);
    r = run_cli_as(who.quality, unlink + " --reason \"tab weld cracked\"");
    CHECK(r.code == 0);
    r = run_cli("genealogy show" + D + " " + d1);
    CHECK(has(r.out, "unlink"));
    CHECK(has(r.out, "tab weld cracked"));
    CHECK(has(r.out, "by lee (quality)"));  // the audit names the logged-in user

    // recall export --devices: the shipped device is listed with its cells of the lot.
    r = run_cli("recall export --devices --json" + D + " --lot 0042");
    CHECK(r.code == 0);
    j = json::parse(r.out);
    CHECK(j["devices"] == 1);
    CHECK(j["list"][0]["device_serial"] == d1);
    CHECK(j["list"][0]["shipped"] == true);
    CHECK(j["list"][0]["affected_cells"].size() == 2);  // c[2] was taken out
    CHECK(j["models"]["A1112"]["shipped"] == 1);
    r = run_cli("recall export --devices" + D + " --window 2023-03 --model A3102");
    CHECK(r.code == 0);
    CHECK(has(r.out, "device_serial,model,"));
    CHECK(has(r.out, "0 devices contain affected cells of window 2023-03"));
    CHECK(run_cli("recall export" + D + " --model A1112 --window 2023-03").code == 2);
}

TEST_CASE("genealogy CLI: import links one device per transaction and reports what was refused") {
    TempDir tmp;
    const fs::path db = tmp / "g.db";
    std::vector<std::string> c, failed;
    {
        Store store = create_store(db);
        c = write_cells(store, "0042", {2023, 3, 14}, 6);
        failed = write_cells(store, "0042", {2023, 3, 14}, 1, Verdict::fail, 50);
    }
    const std::string d1 = device_serial(1), d2 = device_serial(2), d3 = device_serial(3);
    const fs::path csv = tmp.write("assy.csv", "device_serial,model,cell_serial,assembled_at\n" +
                                                   d1 + ",A3102," + c[0] + ",2023-03-20\n" +
                                                   d1 + ",A3102," + c[1] + ",2023-03-20\n" +
                                                   d2 + ",A3102," + c[2] + ",2023-03-21T08:00:00Z\n" +
                                                   d2 + ",A3102," + failed[0] + ",2023-03-21T08:00:00Z\n" +
                                                   d3 + ",A1112," + c[3] + ",\n" +
                                                   d3 + ",A1112," + c[4] + ",\n" +
                                                   d3 + ",A1112," + c[5] + ",\n");
    const std::string D = " --db " + db.string();
    Run r = run_cli("genealogy import" + D + " --csv " + csv.string());
    CHECK(r.code == 1);
    CHECK(has(r.out, "assy.csv:4: device " + d2 + ": refused: cell " + failed[0]));
    CHECK(has(r.out, "2 devices linked (5 cells), 1 refused"));
    {
        Store st = read_only(db);
        CHECK(st.count("devices") == 2);
        CHECK_FALSE(st.device(d2).has_value());
        CHECK_FALSE(st.device_of_cell(c[2]).has_value());  // the good cell of the refused device
        CHECK(st.device(d1)->device.assembled_unix_s == doctest::Approx(1679270400.0));  // 2023-03-20
        CHECK(st.device(d3)->cells.size() == 3);
    }
    // Again: everything is refused now (already inside), nothing new written.
    r = run_cli("genealogy import --json" + D + " --csv " + csv.string());
    CHECK(r.code == 1);
    const json j = json::parse(r.out);
    CHECK(j["linked"] == 0);
    CHECK(j["refused"] == 3);
    CHECK(read_only(db).count("device_links") == 5);
    // Bad files: a missing column, a bad date — exit 2 naming where.
    const fs::path nocol = tmp.write("nocol.csv", "device_serial,model\n" + d1 + ",A1112\n");
    r = run_cli("genealogy import" + D + " --csv " + nocol.string());
    CHECK(r.code == 2);
    CHECK(has(r.out, "cell_serial"));
    const fs::path baddate = tmp.write("bad.csv", "device_serial,model,cell_serial,assembled_at\n" + d1 + ",A3102," +
                                                      c[0] + ",2023-13-01\n");
    r = run_cli("genealogy import" + D + " --csv " + baddate.string());
    CHECK(r.code == 2);
    CHECK(has(r.out, "bad.csv:2: column 'assembled_at'"));
}

TEST_CASE("genealogy CLI: device lookups over a simulated production match the simulator's device truth") {
    TempDir tmp;
    const fs::path db = tmp / "p.db";
    const fs::path truth = tmp / "truth.csv";
    // Two weeks of production, the second week a defect window; many shorts
    // so that some pass EOL and are built into devices.
    Run r = run_cli("sim-production --db " + db.string() +
                    " --cells 120 --from 2023-02-27 --to 2023-03-10 --defect-window 2023-03-06..2023-03-10"
                    " --defect-short-fraction 0.15 --background-short-fraction 0.05 --assembly-fraction 0.8"
                    " --seed 5 --threads 2 --json --truth " + truth.string());
    REQUIRE(r.code == 0);
    const json sum = json::parse(r.out);
    const fs::path device_truth = tmp / "truth.devices.csv";
    CHECK(sum["device_truth"] == device_truth.string());
    CHECK(sum["devices_refused"] == 0);
    const CsvTable cells = CsvTable::read_file(truth.string());
    const CsvTable devs = CsvTable::read_file(device_truth.string());
    REQUIRE(devs.rows() == sum["devices"].get<std::size_t>());
    REQUIRE(devs.rows() >= 20);
    std::map<std::string, bool> affected;
    std::set<std::string> defect_window_devices;
    std::size_t n_affected = 0;
    for (std::size_t i = 0; i < devs.rows(); ++i) {
        affected[devs.cell(i, devs.index("device_serial"))] = devs.cell(i, devs.index("affected")) == "1";
        n_affected += devs.cell(i, devs.index("affected")) == "1" ? 1u : 0u;
        if (devs.cell(i, devs.index("defect_lot")) == "1")
            defect_window_devices.insert(devs.cell(i, devs.index("device_serial")));
    }
    // The truth has both kinds, and devices with a shorted cell outside the window.
    CHECK(n_affected > 0);
    CHECK(n_affected < devs.rows());
    std::string list;
    for (const auto& [serial, a] : affected) list += serial + "\n";
    const fs::path list_file = tmp.write("devices.txt", list);
    const std::string D = " --db " + db.string();

    // Assembled before any screening: every device may ship now.
    r = run_cli("lookup --json" + D + " --file " + list_file.string());
    CHECK(r.code == 0);
    for (const auto& [serial, res] : lookup_results(r.out)) {
        CHECK(res["kind"] == "device");
        CHECK(res["may_ship"] == true);
    }

    // Screening's holds, as a screen that finds every defect would place
    // them: the defect window's lots, and every shorted cell by serial.
    const TestLogins who = add_test_users(db);
    CHECK(run_cli_as(who.quality, "quarantine hold" + D + " --window 2023-03-06..2023-03-10 --reason \"lot outlier rate\"")
              .code == 0);
    std::string shorted;
    for (std::size_t i = 0; i < cells.rows(); ++i)
        if (cells.cell(i, cells.index("shorted")) == "1") shorted += " --serial " + cells.cell(i, cells.index("serial"));
    REQUIRE_FALSE(shorted.empty());
    CHECK(run_cli_as(who.quality, "quarantine hold" + D + shorted + " --reason \"p_x high\"").code == 0);

    // Every device with a shorted or defect-window cell is held; no other.
    r = run_cli("lookup --json" + D + " --file " + list_file.string());
    CHECK(r.code == 1);
    const auto after = lookup_results(r.out);
    REQUIRE(after.size() == affected.size());
    std::size_t held = 0;
    for (const auto& [serial, res] : after) {
        CAPTURE(serial);
        CHECK(res["may_ship"] == !affected.at(serial));
        if (affected.at(serial)) {
            CHECK(res["state"] == "held");
            ++held;
        }
    }
    CHECK(held == n_affected);
    // And the recall list of the window is exactly the devices with a defect-window cell.
    r = run_cli("recall export --devices --json" + D + " --window 2023-03-06..2023-03-10");
    CHECK(r.code == 0);
    std::set<std::string> listed;
    const json recall = json::parse(r.out);
    for (const auto& d : recall["list"]) listed.insert(d["device_serial"].get<std::string>());
    CHECK(listed == defect_window_devices);
}

TEST_CASE("genealogy CLI: a bulk lookup of devices and cells (the store's reader threads) answers each serial as smaller lookups do, in input order") {
    TempDir tmp;
    const fs::path db = tmp / "bulk.db";
    std::vector<std::string> devices, cells;
    {
        Store store = create_store(db);
        Genealogy g(store);
        cells = write_cells(store, "0042", {2023, 3, 14}, 120);
        const auto later = write_cells(store, "0043", {2023, 3, 15}, 60);
        cells.insert(cells.end(), later.begin(), later.end());
        for (std::size_t k = 0; k + 3 <= 168; k += 3) {  // 56 devices; 12 cells of lot 0043 stay free
            devices.push_back(device_serial(10 + k));
            REQUIRE(g.link(eol::test::link_request(devices.back(), k % 2 ? "A1112" : "A3102",
                                                   {cells[k], cells[k + 1], cells[k + 2]}))
                        .linked);
        }
        // Lot 0043 held after assembly: the devices with its cells may not ship.
        Quarantine(store).hold(Scope::lot("0043"), "lot outlier rate", Actor{"qe-anna", "quality"});
    }
    // 400 lines: each device 5 times, 40 unknown device serials, 60 cells
    // (inside devices and free), 20 invalid — shuffled by a fixed stride.
    std::vector<std::string> in;
    for (int rep = 0; rep < 5; ++rep) in.insert(in.end(), devices.begin(), devices.end());
    for (std::uint64_t k = 0; k < 40; ++k) in.push_back(device_serial(5000 + k));
    for (std::size_t k = 0; k < 60; ++k) in.push_back(cells[k * 3 % cells.size()]);
    for (int k = 0; k < 20; ++k) in.push_back("not-a-serial-" + std::to_string(k));
    std::vector<std::string> lines(in.size());
    for (std::size_t k = 0; k < in.size(); ++k) lines[k] = in[k * 7 % in.size()];  // 400 and 7 coprime
    REQUIRE(lines.size() == 400);
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    const fs::path big = tmp.write("big.txt", all);
    const std::string D = " --db " + db.string();

    // The whole file: more than 256 device serials, read on the reader threads.
    Run whole = run_cli("lookup --json" + D + " --file " + big.string());
    CHECK(whole.code == 1);
    const json w = json::parse(whole.out);
    REQUIRE(w["results"].size() == 400);
    // The same serials in files of 100 (each read on the store's own connection).
    json parts = json::array();
    std::size_t blocked = 0;
    for (std::size_t from = 0; from < lines.size(); from += 100) {
        std::string part;
        for (std::size_t k = from; k < from + 100; ++k) part += lines[k] + "\n";
        Run r = run_cli("lookup --json" + D + " --file " + tmp.write("part.txt", part).string());
        const json p = json::parse(r.out);
        blocked += p["may_not_ship"].get<std::size_t>();
        for (const auto& x : p["results"]) parts.push_back(x);
    }
    CHECK(w["may_not_ship"] == blocked);
    std::size_t n_devices = 0, n_held = 0;
    for (std::size_t k = 0; k < 400; ++k) {
        CAPTURE(k);
        json a = w["results"][k], b = parts[k];
        CHECK(a["input"] == lines[k]);  // input order kept
        if (a.contains("source")) {  // cells: where each came from
            CHECK(a["source"] == big.string() + ":" + std::to_string(k + 1));
            a.erase("source");
            b.erase("source");
        }
        CHECK(a == b);
        n_devices += a["kind"] == "device" && a["known"] == true;
        n_held += a["kind"] == "device" && a["state"] == "held";
    }
    CHECK(n_devices == 280);
    CHECK(n_held == 5 * 16);  // devices 40..55 hold lot-0043 cells (cells 120..167)
    // The text: one line per serial in input order, the same answers; --quiet only those that may not ship.
    Run text = run_cli("lookup" + D + " --file " + big.string());
    Run quiet = run_cli("lookup --quiet" + D + " --file " + big.string());
    std::istringstream t(text.out);
    std::string line, expect_quiet;
    std::size_t k = 0;
    while (std::getline(t, line) && k < 400) {
        CAPTURE(k);
        CHECK(line.find(lines[k]) != std::string::npos);
        const bool ok = w["results"][k]["may_ship"].get<bool>();
        if (w["results"][k].contains("error"))  // an invalid serial: where it came from and why
            CHECK(line.rfind(big.string() + ":" + std::to_string(k + 1) + ": " + lines[k] + ": error: ", 0) == 0);
        else
            CHECK(has(line, ok ? "  may ship" : "  may NOT ship"));
        if (!ok) expect_quiet += line + "\n";
        ++k;
    }
    CHECK(k == 400);
    const std::string summary = fmt::format("400 checked, {} may ship, {} may not\n", 400 - blocked, blocked);
    CHECK(line + "\n" == summary);
    CHECK(quiet.out == expect_quiet + summary);
}
