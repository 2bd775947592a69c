// Quarantine: the state machine and its precedence over serial / lot /
// window scopes, the release policy (quality role + reason), append-only
// history, lookups (normalization, statuses, ship gate), shipments, and the
// lookup session agreeing with the store's own status() on random histories.
#include <doctest/doctest.h>

#include "support/auth_test.hpp"
#include "support/cli_test.hpp"
#include "support/station_test.hpp"
#include <unistd.h>

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "eol/models/calendar.hpp"
#include "eol/models/lot_tests.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace fs = std::filesystem;
using namespace eol::station;

namespace {

using eol::test::Run;
using eol::test::run_cli;
using eol::test::create_store;
using eol::test::TempDir;
using eol::test::make_serial;
using eol::test::TestLogins;
using eol::test::add_test_users;
using eol::test::run_cli_as;

TestRecord record(const std::string& serial, Verdict verdict = Verdict::pass, double start = 1.68e9) {
    TestRecord r = eol::test::make_record(serial, "EOL-01", "eol-18650", start, 1500, {{"ocv_v", 3.95}}, "V");
    r.verdict = verdict;
    return r;
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

const Actor kOperator{"ana", "operator"};
const Actor kQuality{"qe-lee", "quality"};

}  // namespace

TEST_CASE("quarantine: production windows parse as months or dates, with errors naming the part") {
    auto w = parse_window("2023-03..2023-04");
    CHECK(w.first == Date{2023, 3, 1});
    CHECK(w.second == Date{2023, 4, 30});
    w = parse_window("2024-02");
    CHECK(w.first == Date{2024, 2, 1});
    CHECK(w.second == Date{2024, 2, 29});
    w = parse_window("2023-03-14..2023-04");
    CHECK(w.first == Date{2023, 3, 14});
    CHECK(w.second == Date{2023, 4, 30});
    w = parse_window("2023-03-14");
    CHECK(w.first == w.second);
    CHECK_THROWS_WITH_AS(parse_window("2023-13..2023-04"), doctest::Contains("'2023-13'"), UsageError);
    CHECK_THROWS_WITH_AS(parse_window("2023-03..March"), doctest::Contains("'March'"), UsageError);
    CHECK_THROWS_WITH_AS(parse_window("2023-04..2023-03"), doctest::Contains("ends (2023-03-31) before"),
                         UsageError);
    CHECK(eol::models::days_in_month(1900, 2) == 28);
    CHECK(eol::models::days_in_month(2000, 2) == 29);
}

TEST_CASE("quarantine: clear -> held -> released, and scrapped is terminal") {
    TempDir tmp;
    Store store = create_store(tmp / "q.db");
    const std::string s = make_serial("0042", {2023, 3, 14}, 1);
    store.write(record(s));
    Quarantine q(store);
    LookupSession look(store);

    CHECK(look.lookup(s).state == CellState::clear);
    CHECK(look.lookup(s).may_ship);

    const auto hold_id = q.hold(Scope::serial(s), "K-value 6.1 mV/day", kOperator, 1.7e9);
    LookupResult r = look.lookup(s);
    CHECK(r.state == CellState::held);
    CHECK(r.status() == "held");
    CHECK_FALSE(r.may_ship);
    REQUIRE(r.because.size() == 1);
    CHECK(r.because[0].id == hold_id);
    CHECK(r.because[0].reason == "K-value 6.1 mV/day");
    CHECK(r.because[0].time_unix_s == doctest::Approx(1.7e9));

    // Holding again what is held is refused; the history is unchanged.
    CHECK_THROWS_AS(q.hold(Scope::serial(s), "again", kOperator), QuarantineRefused);

    // Release: quality role and a reason, else nothing is written.
    CHECK_THROWS_WITH_AS(q.release(Scope::serial(s), "retested ok", kOperator),
                         doctest::Contains("needs the role 'quality'"), QuarantineRefused);
    CHECK_THROWS_WITH_AS(q.release(Scope::serial(s), "  ", kQuality), doctest::Contains("reason is required"),
                         UsageError);
    CHECK_THROWS_AS(q.release(Scope::serial(s), "ok", Actor{"", "quality"}), UsageError);
    CHECK(store.quarantine_events().size() == 1);
    q.release(Scope::serial(s), "retested: K 0.4 mV/day", kQuality);
    r = look.lookup(s);
    CHECK(r.state == CellState::released);
    CHECK(r.may_ship);
    // Nothing left to release.
    CHECK_THROWS_WITH_AS(q.release(Scope::serial(s), "again", kQuality), doctest::Contains("not held"),
                         QuarantineRefused);

    // Held again, then scrapped: terminal, whatever comes after.
    q.hold(Scope::serial(s), "customer return", kOperator);
    CHECK_THROWS_AS(q.scrap(Scope::serial(s), "swollen", kOperator), QuarantineRefused);  // role
    q.scrap(Scope::serial(s), "swollen", kQuality);
    CHECK(look.lookup(s).state == CellState::scrapped);
    CHECK_THROWS_WITH_AS(q.hold(Scope::serial(s), "x", kOperator), doctest::Contains("scrapped"),
                         QuarantineRefused);
    CHECK_THROWS_AS(q.release(Scope::serial(s), "x", kQuality), QuarantineRefused);
    CHECK_THROWS_AS(q.scrap(Scope::serial(s), "x", kQuality), QuarantineRefused);
    CHECK_FALSE(look.may_ship(s));

    // Append-only: every decision is one more event, oldest first, none changed.
    const auto hist = q.history_of_serial(s);
    REQUIRE(hist.size() == 4);
    CHECK(hist[0].action == QuarantineAction::hold);
    CHECK(hist[0].reason == "K-value 6.1 mV/day");
    CHECK(hist[0].actor == "ana");
    CHECK(hist[0].role == "operator");
    CHECK(hist[1].action == QuarantineAction::release);
    CHECK(hist[1].role == "quality");
    CHECK(hist[3].action == QuarantineAction::scrap);
    CHECK(hist[0].id < hist[1].id);
    CHECK(hist[1].id < hist[2].id);
}

TEST_CASE("quarantine: precedence of serial, lot and window scopes") {
    TempDir tmp;
    Store store = create_store(tmp / "q.db");
    const std::string a = make_serial("0042", {2023, 3, 14}, 1);
    const std::string b = make_serial("0042", {2023, 3, 14}, 2);
    const std::string c = make_serial("0043", {2023, 3, 15}, 1);
    const std::string d = make_serial("0050", {2023, 5, 2}, 1);
    for (const auto& s : {a, b, c, d}) store.write(record(s));
    Quarantine q(store);
    LookupSession look(store);
    auto state = [&](const std::string& s) { return look.lookup(s).state; };

    // A lot hold holds every unit of the lot (lot ids are normalized: "42" is lot 0042).
    q.hold(Scope::lot("42"), "lot outlier rate 4.1 % (p = 3e-9)", Actor{"screen", "screening"});
    CHECK(state(a) == CellState::held);
    CHECK(state(b) == CellState::held);
    CHECK(state(c) == CellState::clear);
    CHECK(q.history_of_lot("0042").size() == 1);

    // Quality releases one unit of the held lot individually: it may ship, its siblings stay held.
    q.release(Scope::serial(a), "retested, K 0.3 mV/day", kQuality);
    CHECK(state(a) == CellState::released);
    CHECK(state(b) == CellState::held);

    // A window hold made later covers the released unit again (the latest covering hold wins).
    const auto [from, to] = parse_window("2023-03..2023-04");
    q.hold(Scope::window(from, to), "defect window", kQuality);
    CHECK(state(a) == CellState::held);
    CHECK(state(c) == CellState::held);
    CHECK(state(d) == CellState::clear);

    // Releasing the lot does not release what the window still holds …
    q.release(Scope::lot("0042"), "lot dispositioned", kQuality);
    CHECK(state(b) == CellState::held);
    REQUIRE(look.lookup(b).because.size() == 1);
    CHECK(look.lookup(b).because[0].scope == QuarantineScope::window);
    // … and a lot that only a window holds cannot be released as a lot.
    CHECK_THROWS_WITH_AS(q.release(Scope::lot("0043"), "x", kQuality), doctest::Contains("never held"),
                         QuarantineRefused);
    // Releasing the window releases both lots' units.
    q.release(Scope::window(from, to), "containment lifted", kQuality);
    CHECK(state(a) == CellState::released);
    CHECK(state(b) == CellState::released);
    CHECK(state(c) == CellState::released);
    CHECK(state(d) == CellState::clear);
    CHECK_THROWS_AS(q.release(Scope::window(from, to), "x", kQuality), QuarantineRefused);

    // Scrapping a lot scraps every unit, and nothing brings them back.
    q.scrap(Scope::lot("0042"), "destroyed", kQuality);
    CHECK(state(a) == CellState::scrapped);
    CHECK(state(b) == CellState::scrapped);
    CHECK_THROWS_AS(q.release(Scope::serial(b), "x", kQuality), QuarantineRefused);

    // Active holds list: targets whose latest event is a hold.
    q.hold(Scope::serial(d), "p_x 12 mW", kOperator);
    q.hold(Scope::lot("0050"), "lot drift", kOperator);
    const auto holds = q.active_holds();
    REQUIRE(holds.size() == 2);
    CHECK(holds[0].event.scope == QuarantineScope::serial);
    CHECK(holds[0].cells_covered == 1);
    CHECK(holds[1].event.target == "0050");
    CHECK(holds[1].cells_covered == 1);

    // Bad targets are usage errors naming the place.
    CHECK_THROWS_WITH_AS(q.hold(Scope::lot("00#1"), "x", kOperator), doctest::Contains("position 3"), UsageError);
    CHECK_THROWS_WITH_AS(q.hold(Scope::serial("01A3#3E004200001C"), "x", kOperator),
                         doctest::Contains("position 5"), UsageError);
}

TEST_CASE("quarantine: lookups normalize serials and report unknown / clear / held / released / scrapped") {
    TempDir tmp;
    Store store = create_store(tmp / "q.db");
    const std::string ok = make_serial("0042", {2023, 3, 14}, 1);
    const std::string failed = make_serial("0042", {2023, 3, 14}, 2);
    const std::string untested = make_serial("0042", {2023, 3, 14}, 3);
    store.write(record(ok));
    store.write(record(failed, Verdict::fail));
    LookupSession look(store);

    // As typed: lower case, dashes, spaces, O for 0 and I for 1.
    std::string typed = ok;
    for (auto& ch : typed) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    typed.insert(4, "-");
    typed.insert(9, " ");
    LookupResult r = look.lookup(typed);
    CHECK(r.serial == ok);
    CHECK(r.status() == "clear");
    CHECK(r.verdict == Verdict::pass);
    CHECK(r.lot == "0042");
    CHECK(r.production_date == "2023-03-14");
    CHECK(r.may_ship);

    r = look.lookup("01A3#3E004200001C");
    CHECK(r.status() == "invalid");
    REQUIRE(r.error);
    CHECK(r.error->position == 5);
    CHECK_FALSE(r.may_ship);

    // A unit that failed its test is clear of quarantine but may not ship.
    r = look.lookup(failed);
    CHECK(r.status() == "clear");
    CHECK(r.verdict == Verdict::fail);
    CHECK_FALSE(r.may_ship);

    // Never tested here: unknown (and may not ship), even though its lot is decoded.
    r = look.lookup(untested);
    CHECK(r.status() == "unknown");
    CHECK(r.lot == "0042");
    CHECK_FALSE(r.may_ship);

    // A hold made after the session started is seen by the next lookup.
    Quarantine q(store);
    q.hold(Scope::lot("0042"), "drift", kOperator);
    CHECK(look.lookup(ok).status() == "held");
    CHECK(look.lookup(untested).state == CellState::held);  // the lot hold covers it too
    CHECK(look.lookup(untested).status() == "unknown");

    // Bulk: same answers, same order.
    const std::vector<std::string> many{untested, "nonsense", ok, failed};
    const auto rs = look.lookup_many(many);
    REQUIRE(rs.size() == 4);
    CHECK(rs[0].status() == "unknown");
    CHECK(rs[1].status() == "invalid");
    CHECK(rs[2].status() == "held");
    CHECK(rs[3].status() == "held");
    CHECK(rs[2].input == ok);
}

TEST_CASE("quarantine: the lookup session decides like Store::status on random histories") {
    TempDir tmp;
    Store store = create_store(tmp / "q.db");
    std::mt19937_64 rng(7);
    std::vector<std::string> serials;
    const std::vector<std::string> lots{"0001", "0002", "0003"};
    for (int lot = 0; lot < 3; ++lot)
        for (int k = 0; k < 6; ++k) {
            const std::string s = make_serial(lots[static_cast<std::size_t>(lot)], {2023, 3 + lot, 10 + k},
                                              static_cast<std::uint64_t>(k + 1));
            serials.push_back(s);
            if (k < 5) store.write(record(s));  // the 6th of each lot stays unknown
        }
    const std::vector<std::pair<std::string, std::string>> windows{
        {"2023-03-01", "2023-03-31"}, {"2023-03-12", "2023-04-12"}, {"2023-05-01", "2023-05-31"}};
    std::vector<QuarantineEvent> evs;
    for (int i = 0; i < 120; ++i) {
        QuarantineEvent e;
        e.time_unix_s = 1.7e9 + i;
        const auto pick = rng() % 100;
        e.action = pick < 55 ? QuarantineAction::hold : pick < 97 ? QuarantineAction::release : QuarantineAction::scrap;
        switch (rng() % 3) {
            case 0:
                e.scope = QuarantineScope::serial;
                e.target = serials[rng() % serials.size()];
                break;
            case 1:
                e.scope = QuarantineScope::lot;
                e.target = lots[rng() % lots.size()];
                break;
            default: {
                e.scope = QuarantineScope::window;
                const auto& w = windows[rng() % windows.size()];
                e.window_from = w.first;
                e.window_to = w.second;
                break;
            }
        }
        e.reason = "r" + std::to_string(i);
        e.actor = "t";
        evs.push_back(e);
    }
    // Check agreement after every 10 events.
    LookupSession look(store);
    std::size_t states_seen[4] = {0, 0, 0, 0};
    for (std::size_t done = 0; done < evs.size(); done += 10) {
        store.append_quarantine_batch(std::span(evs).subspan(done, 10));
        for (const auto& s : serials) {
            const LookupResult r = look.lookup(s);
            const auto [lot, date] = Quarantine(store).lot_and_date(s);
            const CellStatus st = store.status(s, lot, date);
            CHECK(r.state == st.state);
            REQUIRE(r.because.size() == st.because.size());
            for (std::size_t k = 0; k < r.because.size(); ++k) CHECK(r.because[k].id == st.because[k].id);
            ++states_seen[static_cast<int>(r.state)];
        }
    }
    // The history exercised every state.
    for (auto n : states_seen) CHECK(n > 0);
}

TEST_CASE("quarantine: bulk lookups in parallel slices answer like single lookups") {
    TempDir tmp;
    Store store = create_store(tmp / "bulk.db");
    std::vector<std::string> serials;
    std::vector<TestRecord> recs;
    for (int lot = 1; lot <= 4; ++lot)
        for (int k = 1; k <= 300; ++k) {
            char l[8];
            std::snprintf(l, sizeof l, "%04d", lot);
            const std::string s = make_serial(l, {2023, 2 + lot, 1 + k % 28}, static_cast<std::uint64_t>(k));
            serials.push_back(s);
            if (k % 10 == 0) continue;  // every 10th stays unknown
            recs.push_back(record(s, k % 13 == 0 ? Verdict::fail : Verdict::pass));
            if (k % 97 == 0) {  // a stored lot unlike the serial's
                char rw[8];
                std::snprintf(rw, sizeof rw, "R%03d", k);
                recs.back().lot = rw;
            }
        }
    store.write_batch(recs);
    Quarantine q(store);
    q.hold(Scope::lot("0002"), "drift", kOperator);
    q.hold(Scope::lot("R194"), "rework lot", kOperator);
    q.hold(Scope::serial(serials[5]), "outlier", kOperator);
    q.hold(Scope::serial(serials[6]), "outlier", kOperator);
    q.release(Scope::serial(serials[6]), "retested", kQuality);
    q.scrap(Scope::serial(serials[7]), "vent damage", kQuality);
    q.hold(Scope::window(Date{2023, 5, 1}, Date{2023, 5, 10}), "window", kOperator);
    q.hold(Scope::serial(serials[320]), "outlier in a held lot", kOperator);
    // Inputs as typed: lower case, dashes, repeats, and some nonsense; shuffled.
    std::vector<std::string> inputs;
    for (std::size_t i = 0; i < serials.size(); ++i) {
        std::string s = serials[i];
        if (i % 7 == 0) for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (i % 11 == 0) s.insert(4, "-");
        inputs.push_back(s);
        if (i % 50 == 0) inputs.push_back(serials[i]);
    }
    inputs.push_back("nonsense");
    inputs.push_back("");
    std::string bad_check = serials[9];
    bad_check.back() = bad_check.back() == 'A' ? 'B' : 'A';
    inputs.push_back(bad_check);
    std::mt19937_64 rng(3);
    std::shuffle(inputs.begin(), inputs.end(), rng);
    REQUIRE(inputs.size() >= 1024);  // several slices on any machine with 2+ threads

    LookupSession look(store);
    const auto bulk = look.lookup_many(inputs);
    // A batch below the parallel threshold takes the store's own reads.
    const std::vector<std::string> few(inputs.begin(), inputs.begin() + 200);
    const auto small = look.lookup_many(few);
    REQUIRE(bulk.size() == inputs.size());
    REQUIRE(small.size() == few.size());
    std::size_t held = 0, may_ship = 0, unknown = 0, invalid = 0, stored_lot = 0;
    std::map<std::string, std::size_t> states;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const LookupResult one = look.lookup(inputs[i]);
        CAPTURE(inputs[i]);
        for (const LookupResult* b : {&bulk[i], i < small.size() ? &small[i] : nullptr}) {
            if (!b) continue;
            CHECK(b->input == inputs[i]);
            CHECK(b->serial == one.serial);
            CHECK(b->status() == one.status());
            CHECK(b->may_ship == one.may_ship);
            CHECK(b->known == one.known);
            CHECK(b->lot == one.lot);
            CHECK(b->production_date == one.production_date);
            CHECK(b->verdict == one.verdict);
            REQUIRE(static_cast<bool>(b->error) == static_cast<bool>(one.error));
            if (one.error) CHECK(b->error->message == one.error->message);
            REQUIRE(b->because.size() == one.because.size());
            for (std::size_t k = 0; k < one.because.size(); ++k) CHECK(b->because[k].id == one.because[k].id);
        }
        held += bulk[i].state == CellState::held;
        may_ship += bulk[i].may_ship;
        unknown += bulk[i].status() == "unknown";
        invalid += bulk[i].status() == "invalid";
        stored_lot += bulk[i].lot.rfind('R', 0) == 0;
        ++states[std::string(bulk[i].status())];
    }
    CHECK(held > 300);     // lot 0002 and more
    CHECK(may_ship > 500);
    CHECK(unknown > 0);
    CHECK(invalid == 3);
    CHECK(stored_lot >= 4);  // the stored lot, not the serial's
    for (const char* st : {"clear", "held", "released", "scrapped", "unknown", "invalid"}) {
        CAPTURE(st);
        CHECK(states[st] > 0);
    }
}

TEST_CASE("quarantine: the ship gate records shipments only when every unit may ship") {
    TempDir tmp;
    Store store = create_store(tmp / "q.db");
    const std::string a = make_serial("0007", {2023, 1, 9}, 1);
    const std::string b = make_serial("0007", {2023, 1, 9}, 2);
    store.write(record(a));
    store.write(record(b));
    Quarantine q(store);
    LookupSession look(store);
    q.hold(Scope::serial(b), "p_x high", kOperator);

    const std::vector<std::string> both{a, b};
    ShipmentResult res = ship(store, look, both, "SHIP-1", Actor{"dock", "logistics"}, "PO-1");
    CHECK_FALSE(res.shipped);
    REQUIRE(res.refused.size() == 1);
    CHECK(res.refused[0].serial == b);
    CHECK(shipped_serials(store).empty());

    const std::vector<std::string> one{a};
    res = ship(store, look, one, "SHIP-1", Actor{"dock", "logistics"}, "PO-1");
    CHECK(res.shipped);
    const auto shipped = shipped_serials(store);
    CHECK(shipped.size() == 1);
    CHECK(shipped.count(a) == 1);
    CHECK_THROWS_AS(ship(store, look, one, "", Actor{"dock", "logistics"}, "PO-2"), UsageError);
}

TEST_CASE("quarantine CLI: a bulk lookup file (the parallel path) answers like single lookups") {
    TempDir tmp;
    const fs::path db = tmp / "bulk.db";
    std::vector<std::string> lines;
    {
        Store store = create_store(db);
        std::vector<TestRecord> recs;
        for (int k = 1; k <= 1500; ++k) {
            const std::string s = make_serial(k % 2 ? "0061" : "0062", {2023, 4, 1 + k % 20}, static_cast<std::uint64_t>(k));
            lines.push_back(k % 5 == 0 ? s.substr(0, 6) + "-" + s.substr(6) : s);  // some typed with a dash
            if (k % 9 != 0) recs.push_back(record(s, k % 31 == 0 ? Verdict::fail : Verdict::pass));
        }
        store.write_batch(recs);
        Quarantine q(store);
        q.hold(Scope::lot("0062"), "drift", kOperator);
        q.hold(Scope::serial(make_serial("0061", {2023, 4, 2}, 1)), "outlier", kOperator);
    }
    lines.push_back("not-a-serial");
    {
        std::ofstream f(tmp / "serials.txt");
        for (const auto& l : lines) f << l << "\n";
    }
    const Run r = run_cli("lookup --json --file " + (tmp / "serials.txt").string() + " --db " + db.string());
    CHECK(r.code == 1);  // held, failed, unknown and invalid units among them
    const auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["results"].size() == lines.size());
    Store store = Store::open(db, OpenOptions{.create = false, .read_only = true});
    LookupSession look(store);
    std::size_t may_not = 0;
    std::map<std::string, std::size_t> seen;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const LookupResult one = look.lookup(lines[i]);
        const auto& b = j["results"][i];
        CAPTURE(lines[i]);
        CHECK(b["input"] == lines[i]);
        CHECK(b["status"] == std::string(one.status()));
        CHECK(b["may_ship"] == one.may_ship);
        if (!one.error) CHECK(b["serial"] == one.serial);
        may_not += one.may_ship ? 0 : 1;
        ++seen[std::string(one.status())];
    }
    CHECK(j["may_not_ship"] == may_not);
    for (const char* st : {"clear", "held", "unknown", "invalid"}) {
        CAPTURE(st);
        CHECK(seen[st] > 0);
    }
}

TEST_CASE("quarantine CLI: lookup exit codes as a ship gate, decisions by policy, recall export") {
    TempDir tmp;
    const fs::path db = tmp / "q.db";
    const std::string a = make_serial("0042", {2023, 3, 14}, 1);
    const std::string b = make_serial("0042", {2023, 3, 14}, 2);
    const std::string failed = make_serial("0043", {2023, 3, 15}, 1);
    const std::string may = make_serial("0050", {2023, 5, 2}, 1);
    {
        Store store = create_store(db);
        store.write(record(a));
        store.write(record(b));
        store.write(record(failed, Verdict::fail));
        store.write(record(may));
    }
    const std::string D = " --db " + db.string();

    Run r = run_cli("lookup " + a + D);
    CHECK(r.code == 0);
    CHECK(r.out.find("clear") != std::string::npos);
    CHECK(r.out.find("may ship") != std::string::npos);
    r = run_cli("lookup " + a + " " + failed + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("last test: fail") != std::string::npos);
    r = run_cli("lookup 01A3#3E004200001C" + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("position 5") != std::string::npos);
    r = run_cli("lookup " + a + " --db " + (tmp / "missing.db").string());
    CHECK(r.code == 2);

    // Hold by a logged-in operator; release refused to the operator's role, then allowed to quality.
    const TestLogins who = add_test_users(db);
    r = run_cli_as(who.operator_, "quarantine hold --serial " + a + " --reason 'K 6.1 mV/day'" + D);
    CHECK(r.code == 0);
    r = run_cli("lookup " + a + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("held") != std::string::npos);
    CHECK(r.out.find("K 6.1 mV/day") != std::string::npos);
    r = run_cli_as(who.operator_, "quarantine release --serial " + a + " --reason retested" + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("quality") != std::string::npos);
    r = run_cli_as(who.quality, "quarantine release --serial " + a + D);  // no --reason
    CHECK(r.code == 2);
    r = run_cli_as(who.quality, "quarantine release --serial " + a + " --reason retested" + D);
    CHECK(r.code == 0);
    CHECK(run_cli("lookup " + a + D).code == 0);
    CHECK(run_cli_as(who.operator_, "quarantine hold --serial " + a + " --lot 42 --reason x" + D).code == 2);

    // A window hold, listed; the bulk lookup from a file, as JSON.
    r = run_cli_as(who.quality, "quarantine hold --window 2023-03..2023-04 --reason 'defect window'" + D);
    CHECK(r.code == 0);
    r = run_cli("quarantine list --json" + D);
    CHECK(r.code == 0);
    const auto list = nlohmann::json::parse(r.out);
    REQUIRE(list.size() == 1);
    CHECK(list[0]["target"] == "2023-03-01..2023-04-30");
    CHECK(list[0]["cells_covered"] == 3);
    {
        std::ofstream f(tmp / "serials.txt");
        f << a << "\n\n" << may << "\n" << "not-a-serial\n";
    }
    r = run_cli("lookup --json --file " + (tmp / "serials.txt").string() + D);
    CHECK(r.code == 1);
    const auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["results"].size() == 3);
    CHECK(j["results"][0]["status"] == "held");
    CHECK(j["results"][0]["because"][0]["scope"] == "window");
    CHECK(j["results"][1]["status"] == "clear");
    CHECK(j["results"][1]["may_ship"] == true);
    CHECK(j["results"][2]["status"] == "invalid");
    CHECK(j["results"][2]["source"].get<std::string>().find("serials.txt:4") != std::string::npos);
    CHECK(run_cli("lookup " + may + D).code == 0);

    r = run_cli("quarantine show " + a + D);
    CHECK(r.code == 0);
    CHECK(r.out.find("release") != std::string::npos);
    CHECK(r.out.find("2023-03-01..2023-04-30") != std::string::npos);

    // The ship gate refuses a held unit and records nothing; ships a clear one.
    CHECK(run_cli("ship " + b + " " + may + " --actor dock" + D).code == 1);
    CHECK(run_cli("ship " + may + " --actor dock --reference PO-9" + D).code == 0);

    // Recall export: every stored serial made in the window, with its state.
    const fs::path csv = tmp / "recall.csv";
    r = run_cli("recall export --window 2023-03..2023-04 --out " + csv.string() + D);
    CHECK(r.code == 0);
    const std::string text = read_text(csv);
    CHECK(text.rfind("serial,lot,production_date,state,shipped,shipped_utc\n", 0) == 0);
    CHECK(text.find(a + ",0042,2023-03-14,held,no,") != std::string::npos);
    CHECK(text.find(failed + ",0043,2023-03-15,held,no,") != std::string::npos);
    CHECK(text.find(may) == std::string::npos);  // May is outside the window
    std::size_t lines = 0;
    for (char c : text) lines += c == '\n' ? 1 : 0;
    CHECK(lines == 4);
    r = run_cli("recall export --lot 50" + D);
    CHECK(r.code == 0);
    CHECK(r.out.find(may + ",0050,2023-05-02,clear,yes,") != std::string::npos);
    CHECK(run_cli("recall export --window 2023-13" + D).code == 2);
}

TEST_CASE("quarantine CLI: sim-production writes a new store and its truth") {
    TempDir tmp;
    const fs::path db = tmp / "p.db";
    const fs::path truth = tmp / "truth.csv";
    Run r = run_cli("sim-production --db " + db.string() + " --cells 3 --from 2023-03-01 --to 2023-03-01 --truth " +
                    truth.string() + " --json --threads 1");
    CHECK(r.code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["cells"] == 3);
    CHECK(j["lots"] == 1);
    const std::string text = read_text(truth);
    CHECK(text.rfind("serial,lot,production_date,defect_lot,shorted,", 0) == 0);
    std::size_t lines = 0;
    for (char c : text) lines += c == '\n' ? 1 : 0;
    CHECK(lines == 4);
    // Never into a store that already holds cells.
    r = run_cli("sim-production --db " + db.string() + " --cells 3 --from 2023-03-01 --to 2023-03-01 --quiet");
    CHECK(r.code == 2);
    CHECK(r.out.find("already holds 3 cells") != std::string::npos);
    CHECK(run_cli("sim-production --db " + (tmp / "x.db").string() + " --from 2023-02-30").code == 2);
}

TEST_CASE("quarantine state: the store's status() and the lookups (single, small and bulk) agree over every event sequence") {
    // Every sequence of up to three events drawn from {hold, release, scrap}
    // x {the serial, its lot, a window holding its production date}: 820
    // cells, each with its own lot and production date so no event reaches
    // another cell. The one rule (store.hpp quarantine_state) must give every
    // reader the same state and the same reasons.
    TempDir tmp;
    Store store = create_store(tmp / "q.db");
    const QuarantineAction actions[] = {QuarantineAction::hold, QuarantineAction::release, QuarantineAction::scrap};
    const QuarantineScope scopes[] = {QuarantineScope::serial, QuarantineScope::lot, QuarantineScope::window};
    std::vector<std::vector<int>> seqs{{}};
    for (int len = 1; len <= 3; ++len) {
        std::vector<std::vector<int>> next;
        for (const auto& s : seqs)
            if (static_cast<int>(s.size()) == len - 1)
                for (int k = 0; k < 9; ++k) {
                    auto t = s;
                    t.push_back(k);
                    next.push_back(t);
                }
        seqs.insert(seqs.end(), next.begin(), next.end());
    }
    REQUIRE(seqs.size() == 820);
    std::vector<TestRecord> records;
    std::vector<QuarantineEvent> events;
    std::vector<std::string> serials;
    Date date{2020, 1, 1};
    for (std::size_t c = 0; c < seqs.size(); ++c) {
        const std::string lot = fmt::format("{:04d}", c + 1);
        const std::string serial = make_serial(lot, date, 1);
        serials.push_back(serial);
        records.push_back(eol::test::make_record(serial, "EOL-01", "eol", 1.6e9 + static_cast<double>(c), 60.0,
                                                 {{"ocv_v", 3.6}}, "V"));
        for (int k : seqs[c]) {
            QuarantineEvent e;
            e.action = actions[k / 3];
            e.scope = scopes[k % 3];
            e.target = e.scope == QuarantineScope::serial ? serial : e.scope == QuarantineScope::lot ? lot : "";
            if (e.scope == QuarantineScope::window) e.window_from = e.window_to = date.iso();
            e.reason = "combination " + std::to_string(c);
            e.actor = "tester";
            e.role = "quality";
            e.time_unix_s = 1.7e9;
            events.push_back(e);
        }
        // The next day (one production date per cell).
        const auto day = eol::models::parse_iso_day(date.iso());
        date = *Date::parse_iso(eol::models::day_to_iso(*day + 1));
    }
    store.write_batch(records);
    store.append_quarantine_batch(events);

    LookupSession gate(store);
    const std::vector<LookupResult> bulk = gate.lookup_many(serials);  // >= 256: the parallel read-only path
    const std::vector<std::string> few(serials.begin(), serials.begin() + 100);
    const std::vector<LookupResult> small = gate.lookup_many(few);     // the point-read path
    std::map<CellState, int> seen;
    for (std::size_t c = 0; c < serials.size(); ++c) {
        const CellStatus st = store.status(serials[c]);
        const LookupResult one = gate.lookup(serials[c]);
        INFO("combination " << c << " (" << seqs[c].size() << " events)");
        CHECK(st.known);
        CHECK(one.state == st.state);
        CHECK(bulk[c].state == st.state);
        if (c < few.size()) CHECK(small[c].state == st.state);
        CHECK(one.because.size() == st.because.size());
        CHECK(bulk[c].because.size() == st.because.size());
        for (std::size_t k = 0; k < std::min(one.because.size(), st.because.size()); ++k)
            CHECK(one.because[k].id == st.because[k].id);
        CHECK(one.may_ship == (st.state == CellState::clear || st.state == CellState::released));
        ++seen[st.state];
    }
    // Every state is reached by some combination.
    CHECK(seen[CellState::clear] > 0);
    CHECK(seen[CellState::held] > 0);
    CHECK(seen[CellState::released] > 0);
    CHECK(seen[CellState::scrapped] > 0);
}
