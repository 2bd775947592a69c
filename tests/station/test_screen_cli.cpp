// `eolstation screen --db FILE` through the real binary on a real SQLite
// file: dry run (what would be held and why, nothing written), --apply (holds
// in one transaction with actor and role, visible to lookup), screening again
// (already held: nothing new), filters (--lot, --since), re-screening with new
// settings listing units that already shipped, and usage errors (exit 2).
#include <doctest/doctest.h>

#include "support/auth_test.hpp"
#include "support/cli_test.hpp"
#include "support/station_test.hpp"
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "eol/station/quarantine.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using nlohmann::json;

namespace {

using eol::test::Run;
using eol::test::run_cli;
using eol::test::TempDir;

// The six lots of eol::test::fill_lots (two p_x outliers in lot 0002; lot
// 0006, made 2023-03-01, bad) in a new store at `db`, closed again.
std::vector<std::string> fill(const fs::path& db) {
    Store store = eol::test::create_store(db);
    return eol::test::fill_lots(store);
}

std::size_t events_in(const fs::path& db) {
    OpenOptions o;
    o.read_only = true;
    return Store::open(db, o).quarantine_events().size();
}

}  // namespace

TEST_CASE("screen CLI --db: dry run, apply in one transaction, already held, filters") {
    TempDir tmp;
    const fs::path db = tmp / "s.db";
    const std::vector<std::string> serials = fill(db);
    const std::string D = " --db " + db.string() + " --columns ocv_v,r0_ohm,p_x_w";

    // Dry run, text: what would be held and why; nothing written.
    Run r = run_cli("screen" + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("screened 300 cells") != std::string::npos);
    CHECK(r.out.find("would hold") != std::string::npos);
    CHECK(r.out.find(serials[50]) != std::string::npos);  // lot 0002, p_x 0.05
    CHECK(r.out.find("p_x_w") != std::string::npos);
    CHECK(r.out.find("lot 0006") != std::string::npos);
    CHECK(r.out.find("binomial") != std::string::npos);
    CHECK(r.out.find("dry run: nothing written") != std::string::npos);
    CHECK(events_in(db) == 0);

    // Dry run, JSON.
    r = run_cli("screen --json" + D);
    CHECK(r.code == 1);
    const json dry = json::parse(r.out);
    CHECK(dry["applied"] == false);
    CHECK(dry["cells_screened"] == 300);
    CHECK(dry["event_ids"].empty());
    // Six production days: too few for the drift-window scan (it says so).
    CHECK(dry["drift"]["evaluated"] == false);
    CHECK(dry["drift"]["windows"].empty());
    CHECK(r.out.find("drift windows: 6 production days") != std::string::npos);
    CHECK(run_cli("screen --drift credible --features " + db.string()).code == 2);
    CHECK(run_cli("screen --drift sometimes" + D).code == 2);
    std::set<std::string> flagged;
    for (const auto& c : dry["cells"]) {
        flagged.insert(c["serial"].get<std::string>());
        CHECK_FALSE(c["reasons"].empty());
        CHECK(c["already_held"] == false);
    }
    CHECK(flagged.count(serials[50]) == 1);
    CHECK(flagged.count(serials[51]) == 1);
    CHECK(flagged.count(serials[250]) == 1);
    bool lot6 = false;
    for (const auto& g : dry["groups"]) {
        if (g["scope"] == "lot" && g["target"] == "0006") lot6 = true;
        CHECK_FALSE((g["scope"] == "lot" && g["target"] == "0002"));  // 2 of 50: not significant
    }
    CHECK(lot6);
    CHECK(events_in(db) == 0);

    // --apply needs a logged-in user; a typed actor or role grants nothing; a usage error writes nothing.
    const eol::test::TestLogins who = eol::test::add_test_users(db);
    r = run_cli("screen --apply" + D);
    CHECK(r.code == 2);
    CHECK(r.out.find("EOL_TOKEN") != std::string::npos);
    r = run_cli("screen --apply --actor qe-lee --role quality" + D);
    CHECK(r.code == 2);
    CHECK(r.out.find("no longer grants anything") != std::string::npos);
    r = eol::test::run_cli_as("not-a-token", "screen --apply" + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("not authenticated") != std::string::npos);
    CHECK(events_in(db) == 0);

    // Apply: every hold written, by the logged-in user, in one batch.
    r = eol::test::run_cli_as(who.quality, "screen --apply --json" + D);
    CHECK(r.code == 1);
    const json applied = json::parse(r.out);
    CHECK(applied["applied"] == true);
    const std::size_t written = applied["event_ids"].size();
    CHECK(written == applied["cells"].size() + applied["groups"].size());
    {
        OpenOptions o;
        o.read_only = true;
        Store store = Store::open(db, o);
        const auto ev = store.quarantine_events();
        REQUIRE(ev.size() == written);
        for (const auto& e : ev) {
            CHECK(e.action == QuarantineAction::hold);
            CHECK(e.actor == "lee");
            CHECK(e.role == "quality");
            CHECK(e.reason.rfind("screen: ", 0) == 0);
        }
        // Written as one batch: consecutive ids.
        for (std::size_t k = 1; k < ev.size(); ++k) CHECK(ev[k].id == ev[k - 1].id + 1);
    }
    // The ship gate now refuses them: a flagged cell, and a clean cell of the held lot.
    r = run_cli("lookup " + serials[50] + " --db " + db.string());
    CHECK(r.code == 1);
    CHECK(r.out.find("held") != std::string::npos);
    CHECK(r.out.find("screen: ") != std::string::npos);
    CHECK(run_cli("lookup " + serials[299] + " --db " + db.string()).code == 1);
    CHECK(run_cli("lookup " + serials[0] + " --db " + db.string()).code == 0);

    // Screening again: all already held, nothing new written.
    r = eol::test::run_cli_as(who.quality, "screen --apply --json" + D);
    const json again = json::parse(r.out);
    CHECK(again["event_ids"].empty());
    for (const auto& c : again["cells"]) CHECK(c["already_held"] == true);
    for (const auto& g : again["groups"]) CHECK(g["already_held"] == true);
    CHECK(events_in(db) == written);

    // Filters.
    r = run_cli("screen --json --lot 1" + D);
    CHECK(json::parse(r.out)["cells_screened"] == 50);
    r = run_cli("screen --json --since 2023-02-15" + D);
    CHECK(json::parse(r.out)["cells_screened"] == 100);

    // Usage errors: exit 2, naming what is wrong.
    r = run_cli("screen --lot 1 --since 2023-02-15" + D);
    CHECK(r.code == 2);
    r = run_cli("screen --since 2023-02-30" + D);
    CHECK(r.code == 2);
    CHECK(r.out.find("2023-02-30") != std::string::npos);
    r = run_cli("screen --db " + db.string());  // built-in features: no dcir_ohm etc. stored here
    CHECK(r.code == 2);
    CHECK(r.out.find("dcir_ohm") != std::string::npos);
    r = run_cli("screen --db " + db.string() + " --features " + db.string());
    CHECK(r.code == 2);
    r = run_cli("screen --lot 1");
    CHECK(r.code == 2);
}

TEST_CASE("screen CLI --db: re-screening with new settings lists units that already shipped") {
    TempDir tmp;
    const fs::path db = tmp / "s.db";
    const std::vector<std::string> serials = fill(db);
    const std::string D = " --db " + db.string() + " --columns ocv_v,r0_ohm,p_x_w";
    // Lot 0003 ships through the gate (all clear).
    std::string lot3;
    for (std::size_t i = 100; i < 150; ++i) lot3 += " " + serials[i];
    REQUIRE(run_cli("ship" + lot3 + " --actor dock --db " + db.string()).code == 0);

    // Far tighter PAT limits: many more cells would now be held, some shipped.
    Run r = run_cli("screen --json --k 1.5" + D);
    CHECK(r.code == 1);
    const json rep = json::parse(r.out);
    REQUIRE_FALSE(rep["shipped"].empty());
    std::set<std::string> flagged;
    for (const auto& c : rep["cells"]) flagged.insert(c["serial"].get<std::string>());
    for (const auto& u : rep["shipped"]) {
        const std::string s = u["serial"];
        CHECK(u["lot"] == "0003");
        CHECK(lot3.find(s) != std::string::npos);
        CHECK_FALSE(u["why"].get<std::string>().empty());
        if (flagged.count(s)) CHECK(u["why"].get<std::string>().rfind("outlier", 0) == 0);  // "outlier[, lot …]"
    }
    r = run_cli("screen --k 1.5" + D);
    CHECK(r.out.find("ALREADY SHIPPED") != std::string::npos);
    // The default settings hold nothing of lot 0003: nothing shipped is listed.
    r = run_cli("screen --json" + D);
    CHECK(json::parse(r.out)["shipped"].empty());
}
