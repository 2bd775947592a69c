// `eolstation demo` end to end: the simulated instruments on loopback, the
// station controller over the real drivers, screening, the ship gate — and
// repeatable for a given seed: the demo runs in virtual time
// (virtual_time.hpp), so two runs with the same seed give the same readings,
// fits, verdicts and holds, bit for bit, whatever the host's load and the
// pace (the two runs here use different paces and run at the same time).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>

#include <fmt/core.h>

#include "eol/station/store.hpp"
#include "support/cli_test.hpp"
#include "support/process.hpp"

namespace fs = std::filesystem;

namespace {

struct Outcome {
    std::map<std::string, std::string> verdicts;  // serial -> verdict of its EOL run
    std::map<std::string, std::string> reasons;   // serial -> why not pass
    std::map<std::string, std::string> values;    // serial -> every measurement, to the last bit
    std::set<std::string> holds;                  // "scope target" of each hold event
    std::size_t runs = 0;
};

Outcome demo_outcome(const fs::path& db) {
    eol::station::OpenOptions o;
    o.read_only = true;
    auto store = eol::station::Store::open(db, o);
    Outcome out;
    std::vector<std::string> serials;
    store.for_each_cell({}, [&](const eol::station::CellInfo& c) { serials.push_back(c.serial); });
    for (const auto& s : serials)
        for (const auto& r : store.runs_for(s))
            if (r.station_id != "FORM-01") {
                out.verdicts[s] = std::string(eol::station::to_string(r.verdict));
                out.reasons[s] = r.abort_reason;
                if (const auto rec = store.read_record(r.id)) {
                    for (const auto& m : rec->measurements) out.values[s] += fmt::format("{}={:a} ", m.name, m.value);
                    for (const auto& f : rec->fits)
                        for (const auto& [name, value] : f.parameters) out.values[s] += fmt::format("{}.{}={:a} ", f.kind, name, value);
                }
                ++out.runs;
            }
    for (const auto& e : store.quarantine_events())
        out.holds.insert(std::string(eol::station::to_string(e.action)) + " " +
                         std::string(eol::station::to_string(e.scope)) + " " + e.target);
    return out;
}

}  // namespace

TEST_CASE("demo cli: two runs with the same seed give the same readings, verdicts and holds, bit for bit") {
    eol::test::TempDir tmp;
    Outcome runs[2];
    std::string truth[2];  // the demo's "truth" lines: each shorted cell and whether the station stopped it
    // Both at once, at different paces: the host is as loaded as it gets here.
    std::future<eol::test::ProcessResult> procs[2];
    for (int k = 0; k < 2; ++k)
        procs[k] = std::async(std::launch::async, [&tmp, k] {
            return eol::test::run_process({EOL_CLI, "demo", "--out", (tmp.dir / ("run" + std::to_string(k))).string(),
                                           "--cells", "12", "--lots", "4", "--history-cells", "40", "--seed", "11",
                                           "--time-scale", k == 0 ? "2000" : "700"},
                                          400);
        });
    for (int k = 0; k < 2; ++k) {
        const auto r = procs[k].get();
        INFO(r.err);
        REQUIRE(r.exit == 0);
        CHECK(r.out.find("ship gate") != std::string::npos);
        const fs::path dir = tmp.dir / ("run" + std::to_string(k));
        runs[k] = demo_outcome(dir / "results.db");
        // What the demo leaves for a person: the lot report, the holds, the panel it served.
        CHECK(r.out.find("  panel    http://127.0.0.1:") != std::string::npos);
        // Every cell went through the PLC interface (the virtual PLC's cycles, logged by the server).
        CHECK(r.out.find("  plc      a virtual line PLC drives every cell over Modbus TCP") != std::string::npos);
        CHECK(r.err.find("position 1 cycle 1: start") != std::string::npos);
        CHECK(r.err.find("cycle 12: result") != std::string::npos);
        CHECK(fs::file_size(dir / "report.html") > 10000);
        std::ifstream holds(dir / "holds.csv");
        std::string header, line;
        std::getline(holds, header);
        std::size_t hold_rows = 0;
        while (std::getline(holds, line)) hold_rows += !line.empty();
        CHECK(!header.empty());
        CHECK(hold_rows >= 1);
        for (std::size_t at = r.out.find("  truth "); at != std::string::npos; at = r.out.find("  truth ", at + 1))
            truth[k] += r.out.substr(at, r.out.find('\n', at) - at) + "\n";
        // Several lots: two good February lots, two from the March–April 2023 defect window, after
        // 40 cells of January history; the summary judges the ship gate against the simulator's truth.
        CHECK(r.out.find("history  40 cells in 20 lots made 2023-01-09..2023-02-03") != std::string::npos);
        for (const char* lot : {"0021   2023-02-21 good        3", "0022   2023-02-28 good        3",
                                "0023   2023-03-14 defect      3", "0024   2023-03-28 defect      3"})
            CHECK_MESSAGE(r.out.find(lot) != std::string::npos, lot);
        CHECK(r.out.find("inside the defect window 2023-03-01..2023-04-30") != std::string::npos);
        CHECK(r.out.find("lot stopped whole") != std::string::npos);
        CHECK(r.out.find("good cells of good lots stopped: 0 of 6") != std::string::npos);
        CHECK(r.out.find("report     " + (dir / "report.html").string() + " (production 2023-02-21..2023-03-28: 12 tested") !=
              std::string::npos);
    }
    // 12 cells at the station, 40 of history (tested by the same station id, in process).
    CHECK(runs[0].runs == 52);
    CHECK(runs[0].verdicts.size() == 52);
    for (const auto& [serial, v] : runs[0].values)
        if (runs[1].values[serial] != v) MESSAGE(serial << ":\n  " << v << "\n  " << runs[1].values[serial]);
    CHECK(runs[0].values == runs[1].values);
    CHECK(runs[0].verdicts == runs[1].verdicts);
    CHECK(runs[0].reasons == runs[1].reasons);
    CHECK(runs[0].holds == runs[1].holds);
    CHECK(!runs[0].holds.empty());
    // The shorted cells (the simulator's truth) are the same and stopped in both runs.
    CHECK(!truth[0].empty());
    CHECK(truth[0] == truth[1]);
    CHECK(truth[0].find("MISSED") == std::string::npos);
}
