// Genealogy (station/genealogy): the device serial scheme, the assembly
// interlock (each refusal, and that a refused cell writes nothing for its
// device), holds propagating to devices by computation (a lot hold after
// assembly holds the device; the release frees it), rework (unlink/relink
// keeps the history), the device ship gate, two links of one cell raced
// from two connections (only one wins), and bulk device lookups (parallel
// readers, inside a write transaction, as units) agreeing with single ones
// and with a one-by-one reference over holds, rework and odd links.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sqlite3.h>

#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>
#include <cctype>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/genealogy.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/store.hpp"
#include "support/cli_test.hpp"
#include "support/genealogy_test.hpp"
#include "support/raw_sqlite.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using eol::test::create_store;
using eol::test::kUndoSchema6;
using eol::test::device_serial;
using eol::test::link_request;
using eol::test::make_serial;
using eol::test::TempDir;
using eol::test::write_cells;

namespace {
const Actor kQuality{"qe-anna", "quality"};
const Actor kOperator{"op-ben", "operator"};

// SQL run on the file by hand, as anyone with the sqlite3 shell could: ""
// when it worked, else SQLite's message.
std::string raw_sql(const fs::path& db, const std::string& sql) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
    std::string out = rc == SQLITE_OK ? "" : (err ? err : "error");
    sqlite3_free(err);
    sqlite3_close(h);
    return out;
}

// Links `cells` into `device` straight through the store, around the
// assembly interlock (the store takes what it is given).
void link_around_interlock(Store& store, const DeviceInfo& device, std::initializer_list<std::string> cells) {
    std::vector<DeviceLinkEvent> ev;
    for (const auto& c : cells) {
        DeviceLinkEvent e;
        e.device_serial = device.serial;
        e.cell_serial = c;
        e.station_id = device.station_id;
        ev.push_back(e);
    }
    store.append_device_links(device, ev);
}
}  // namespace

TEST_CASE("genealogy: the device serial scheme is the shipped config/device-serial-scheme.toml") {
    const SerialScheme& ds = device_serial_scheme();
    CHECK(SerialScheme::load(fs::path(EOL_CONFIG_DIR) / "device-serial-scheme.toml") == ds);
    CHECK(ds.length() == 16);
    CHECK(ds.alphabet().find('O') == std::string::npos);
    CHECK(ds.alphabet().find('I') == std::string::npos);
    CHECK(ds.has_check());
    const std::string d = device_serial(42);
    CHECK(d.size() == 16);
    CHECK(ds.normalize(d).ok());
    // As typed: lower case, dashes, O for 0.
    std::string typed = d;
    for (auto& c : typed) c = c == '0' ? 'o' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    CHECK(ds.normalize(typed.substr(0, 4) + "-" + typed.substr(4)).serial == d);
    // One wrong character fails the check.
    std::string bad = d;
    bad[8] = bad[8] == '7' ? '6' : '7';
    const NormalizeResult r = ds.normalize(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error->kind == SerialErrorKind::bad_check);
}

TEST_CASE("genealogy: each interlock refusal names its reason and nothing is written for the device") {
    TempDir tmp;
    Store store = create_store(tmp / "g.db");
    const auto good = write_cells(store, "0042", {2023, 3, 14}, 12);
    const auto failed = write_cells(store, "0042", {2023, 3, 14}, 1, Verdict::fail, 100);
    const auto untested = write_cells(store, "0042", {2023, 3, 14}, 1, Verdict::error, 200);
    const auto lot_held = write_cells(store, "0043", {2023, 3, 15}, 1, Verdict::pass, 1);
    const auto window_held = write_cells(store, "0044", {2023, 5, 2}, 1, Verdict::pass, 1);
    Quarantine q(store);
    q.hold(Scope::serial(good[1]), "p_x high", kOperator);
    q.hold(Scope::lot("0043"), "lot outlier rate", kOperator);
    q.hold(Scope::window({2023, 5, 1}, {2023, 5, 3}), "supplier notice", kOperator);
    q.scrap(Scope::serial(good[2]), "dented can", kQuality);
    Genealogy g(store);
    // good[3] is inside another device already.
    REQUIRE(g.link(link_request(device_serial(1), "A1112", {good[3], good[4], good[5]})).linked);
    const std::int64_t links_before = store.count("device_links");
    const std::int64_t devices_before = store.count("devices");

    struct Case {
        const char* name;
        std::string cell;
        LinkRefusalKind kind;
        const char* says;
    };
    const std::string unknown = make_serial("0099", {2023, 3, 14}, 1);
    const std::string first_device = device_serial(1);
    const std::vector<Case> cases{
        {"unknown", unknown, LinkRefusalKind::unknown, "never tested"},
        {"untested", untested[0], LinkRefusalKind::untested, "no completed test"},
        {"failed", failed[0], LinkRefusalKind::failed, "fail"},
        {"held by serial", good[1], LinkRefusalKind::held, "p_x high"},
        {"held by lot", lot_held[0], LinkRefusalKind::held, "lot 0043"},
        {"held by window", window_held[0], LinkRefusalKind::held, "window 2023-05-01..2023-05-03"},
        {"scrapped", good[2], LinkRefusalKind::scrapped, "dented can"},
        {"inside another device", good[3], LinkRefusalKind::in_other_device, first_device.c_str()},
        {"invalid", "01A33E00420000XX", LinkRefusalKind::invalid, "cell"},
    };
    std::uint64_t seq = 10;
    for (const Case& c : cases) {
        CAPTURE(c.name);
        const std::string dev = device_serial(seq++);
        // A good cell first: it must not be written either.
        const LinkResult r = g.link(link_request(dev, "A1112", {good[0], c.cell, good[6]}));
        CHECK_FALSE(r.linked);
        REQUIRE(r.refused.size() == 1);
        CHECK(r.refused[0].kind == c.kind);
        CHECK_MESSAGE(r.refused[0].reason.find(c.says) != std::string::npos, r.refused[0].reason);
        CHECK(r.cells.empty());
        CHECK_FALSE(store.device(dev).has_value());
        CHECK_FALSE(store.device_of_cell(good[0]).has_value());
        CHECK(store.count("device_links") == links_before);
        CHECK(store.count("devices") == devices_before);
    }
    // Device-level refusals: a repeated cell, a bad device serial, no model,
    // no cells, another model for a stored device, a scrapped device.
    LinkResult r = g.link(link_request(device_serial(50), "A1112", {good[0], good[0]}));
    REQUIRE(r.refused.size() == 1);
    CHECK(r.refused[0].kind == LinkRefusalKind::repeated);
    r = g.link(link_request("P1A0000000000!2Z", "A1112", {good[0]}));
    REQUIRE(r.refused.size() == 1);
    CHECK(r.refused[0].kind == LinkRefusalKind::device_invalid);
    CHECK(r.refused[0].reason.find("position 14") != std::string::npos);
    CHECK(g.link(link_request(device_serial(51), " ", {good[0]})).refused.at(0).kind == LinkRefusalKind::device_model);
    CHECK(g.link(link_request(device_serial(52), "A1112", {})).refused.at(0).kind == LinkRefusalKind::no_cells);
    r = g.link(link_request(device_serial(1), "A3102", {good[7]}));
    CHECK(r.refused.at(0).kind == LinkRefusalKind::device_model);
    CHECK(r.refused.at(0).reason.find("is a A1112") != std::string::npos);
    q.scrap(Scope::serial(device_serial(1)), "dropped in rework", kQuality);
    r = g.link(link_request(device_serial(1), "A1112", {good[7]}));
    CHECK(r.refused.at(0).kind == LinkRefusalKind::device_scrapped);
    // Several bad cells: each is named.
    r = g.link(link_request(device_serial(53), "A1112", {failed[0], unknown, good[8]}));
    CHECK(r.refused.size() == 2);
    CHECK(store.count("device_links") == links_before);
    CHECK(store.count("devices") == devices_before);
    // And the good cells alone link.
    r = g.link(link_request(device_serial(54), "A3102", {good[0], good[6]}));
    CHECK(r.linked);
    CHECK(r.cells == std::vector<std::string>{good[0], good[6]});
    CHECK(store.device_of_cell(good[0]) == device_serial(54));
    // Linking the same cell into the same device again is refused too.
    r = g.link(link_request(device_serial(54), "A3102", {good[0]}));
    CHECK(r.refused.at(0).kind == LinkRefusalKind::already_linked);
}

TEST_CASE("genealogy: a lot hold after assembly holds the device — releasing the lot frees it") {
    TempDir tmp;
    Store store = create_store(tmp / "g.db");
    const auto a = write_cells(store, "0042", {2023, 3, 14}, 2);
    const auto b = write_cells(store, "0051", {2023, 4, 20}, 1);
    Genealogy g(store);
    const std::string dev = device_serial(7);
    REQUIRE(g.link(link_request(dev, "A1112", {a[0], a[1], b[0]})).linked);
    const std::string other = device_serial(8);
    const auto c = write_cells(store, "0060", {2023, 6, 1}, 2);
    REQUIRE(g.link(link_request(other, "A3102", {c[0], c[1]})).linked);

    DeviceLookup d = g.lookup_device(dev);
    CHECK(d.known);
    CHECK(d.model == "A1112");
    CHECK(d.cells.size() == 3);
    CHECK(d.may_ship);
    CHECK(d.status() == "clear");

    Quarantine q(store);
    q.hold(Scope::lot("0051"), "lot outlier rate", kOperator);  // after assembly
    d = g.lookup_device(dev);
    CHECK_FALSE(d.may_ship);
    CHECK(d.state() == CellState::held);
    CHECK(d.own_state == CellState::clear);  // nothing was copied onto the device
    CHECK(d.why_not().find(b[0]) != std::string::npos);
    CHECK(d.why_not().find("lot 0051") != std::string::npos);
    CHECK(g.lookup_device(other).may_ship);  // no cell of that lot

    q.release(Scope::lot("0051"), "retest passed", kQuality);
    d = g.lookup_device(dev);
    CHECK(d.may_ship);
    CHECK(d.state() == CellState::released);

    // A window hold, and a hold of the device itself, by the same rule.
    q.hold(Scope::window({2023, 3, 1}, {2023, 3, 31}), "March cells", kOperator);
    CHECK_FALSE(g.lookup_device(dev).may_ship);
    q.release(Scope::window({2023, 3, 1}, {2023, 3, 31}), "cleared", kQuality);
    CHECK(g.lookup_device(dev).may_ship);
    q.hold(Scope::serial(dev), "drop test", kOperator);
    d = g.lookup_device(dev);
    CHECK_FALSE(d.may_ship);
    CHECK(d.own_state == CellState::held);
    CHECK(d.why_not().find("drop test") != std::string::npos);

    // Bulk device lookups and lookups of either kind agree with single ones.
    const std::vector<std::string> inputs{other, dev, a[0], "P1A000000000000Z", device_serial(999)};
    const auto units = g.lookup_units(inputs);
    REQUIRE(units.size() == 5);
    CHECK(units[0].is_device);
    CHECK(units[0].may_ship());
    CHECK(units[1].is_device);
    CHECK_FALSE(units[1].may_ship());
    CHECK_FALSE(units[2].is_device);
    CHECK(units[2].may_ship());  // the cell itself is clear
    CHECK_FALSE(units[3].may_ship());
    CHECK_FALSE(units[4].is_device);  // unknown device serial: answered as a (unknown) cell
    CHECK_FALSE(units[4].may_ship());
}

TEST_CASE("genealogy: unlink and relink for rework keep the whole history") {
    TempDir tmp;
    Store store = create_store(tmp / "g.db");
    const auto c = write_cells(store, "0042", {2023, 3, 14}, 4);
    Genealogy g(store);
    const std::string d1 = device_serial(1), d2 = device_serial(2);
    REQUIRE(g.link(link_request(d1, "A3102", {c[0], c[1]})).linked);

    CHECK_THROWS_AS(g.unlink(d1, c[1], "swollen", kOperator), QuarantineRefused);  // role
    CHECK_THROWS_AS(g.unlink(d1, c[1], "  ", kQuality), UsageError);               // reason
    CHECK_THROWS_AS(g.unlink(d1, c[2], "not inside", kQuality), QuarantineRefused);
    CHECK_THROWS_AS(g.unlink(d2, c[1], "no such device", kQuality), QuarantineRefused);
    CHECK(store.count("device_links") == 2);

    CHECK(g.unlink(d1, c[1], "connector damaged in rework", kQuality) > 0);
    CHECK(store.device(d1)->cells == std::vector<std::string>{c[0]});
    CHECK_FALSE(store.device_of_cell(c[1]).has_value());
    CHECK(g.lookup_device(d1).may_ship);  // one good cell left

    // The freed cell goes into another device; a new cell into the first.
    REQUIRE(g.link(link_request(d2, "A3102", {c[1], c[3]})).linked);
    REQUIRE(g.link(link_request(d1, "A3102", {c[2]})).linked);
    CHECK(store.device(d1)->cells == std::vector<std::string>{c[0], c[2]});
    CHECK(store.device_of_cell(c[1]) == d2);

    const auto h1 = store.device_history(d1);
    REQUIRE(h1.size() == 4);
    CHECK(h1[2].action == LinkAction::unlink);
    CHECK(h1[2].reason == "connector damaged in rework");
    CHECK(h1[2].actor == "qe-anna");
    CHECK(h1[2].role == "quality");
    const auto hc = store.cell_link_history(c[1]);
    REQUIRE(hc.size() == 3);
    CHECK(hc[0].device_serial == d1);
    CHECK(hc[1].action == LinkAction::unlink);
    CHECK(hc[2].device_serial == d2);
    CHECK(store.device(d1)->device.assembled_unix_s == h1[0].time_unix_s);
    // Unlinking everything leaves an empty device, which may not ship.
    g.unlink(d1, c[0], "rework", kQuality);
    g.unlink(d1, c[2], "rework", kQuality);
    const DeviceLookup e = g.lookup_device(d1);
    CHECK(e.cells.empty());
    CHECK(e.status() == "empty");
    CHECK_FALSE(e.may_ship);
}

TEST_CASE("genealogy: the device ship gate records devices in one transaction, and refuses a held one") {
    TempDir tmp;
    Store store = create_store(tmp / "g.db");
    const auto c = write_cells(store, "0042", {2023, 3, 14}, 5);
    Genealogy g(store);
    const std::string d1 = device_serial(1), d2 = device_serial(2);
    REQUIRE(g.link(link_request(d1, "A1112", {c[0], c[1], c[2]})).linked);
    REQUIRE(g.link(link_request(d2, "A3102", {c[3], c[4]})).linked);
    Quarantine(store).hold(Scope::serial(c[4]), "p_x high", kOperator);
    const Actor dock{"dock", "logistics"};
    const std::vector<std::string> both{d1, d2};
    UnitShipment s = ship_units(store, g, both, "SHIP-01", dock, "PO-1");
    CHECK_FALSE(s.shipped);
    REQUIRE(s.refused.size() == 1);
    CHECK(s.refused[0].serial() == d2);
    CHECK(shipped_serials(store).empty());
    const std::vector<std::string> one{d1, d1};
    s = ship_units(store, g, one, "SHIP-01", dock, "PO-2");
    CHECK(s.shipped);
    CHECK(s.units == 1);
    CHECK(s.devices == 1);
    CHECK(s.repeats == 1);
    CHECK(shipped_serials(store).count(d1) == 1);

    // The recall list: devices containing a cell of lot 0042, shipped or not.
    CellFilter f;
    f.lot = "0042";
    DeviceRecall rec = recall_devices(store, f);
    REQUIRE(rec.devices.size() == 2);
    CHECK(rec.devices[0].device.serial == d1);
    CHECK(rec.devices[0].shipped_unix_s.has_value());
    CHECK(rec.devices[0].affected_cells.size() == 3);
    CHECK_FALSE(rec.devices[1].shipped_unix_s.has_value());
    CHECK(rec.models.at("A1112").shipped == 1);
    CHECK(rec.models.at("A3102").in_stock == 1);
    CHECK(recall_devices(store, f, std::string("A3102")).devices.size() == 1);
    f.lot = "0043";
    CHECK(recall_devices(store, f).devices.empty());
}

TEST_CASE("hostile: two links of the same cell into two devices at once: only one wins") {
    TempDir tmp;
    const fs::path db = tmp / "race.db";
    constexpr int kRounds = 12;
    std::vector<std::string> cells;
    {
        Store store = create_store(db);
        cells = write_cells(store, "0042", {2023, 3, 14}, kRounds);
    }
    std::atomic<int> wins{0}, refusals{0}, errors{0};
    std::atomic<int> ready{0};
    auto worker = [&](int who) {
        Store store = Store::open(db);  // a connection of its own
        Genealogy g(store);
        for (int k = 0; k < kRounds; ++k) {
            ++ready;
            while (ready.load() < 2 * (k + 1)) std::this_thread::yield();
            try {
                const LinkResult r = g.link(link_request(
                    device_serial(static_cast<std::uint64_t>(1000 * who + k + 1)), "A1112",
                    {cells[static_cast<std::size_t>(k)]}));
                if (r.linked) ++wins;
                else if (r.refused.size() == 1 && r.refused[0].kind == LinkRefusalKind::in_other_device) ++refusals;
                else ++errors;
            } catch (const std::exception&) {
                ++errors;
            }
        }
    };
    std::thread t1(worker, 1), t2(worker, 2);
    t1.join();
    t2.join();
    CHECK(errors == 0);
    CHECK(wins == kRounds);
    CHECK(refusals == kRounds);
    Store store = Store::open(db);
    CHECK(store.count("device_links") == kRounds);
    CHECK(store.count("devices") == kRounds);  // the loser's device was not written either
    for (const auto& c : cells) CHECK(store.cell_link_history(c).size() == 1);
}

TEST_CASE("genealogy: a version-2 store migrates to devices and links, and both are append-only") {
    TempDir tmp;
    const fs::path db = tmp / "v2.db";
    std::vector<std::string> c;
    {
        Store store = create_store(db);
        c = write_cells(store, "0042", {2023, 3, 14}, 3);
    }
    // What a version-2 binary left: no devices tables (nor the users tables
    // of migration 4, nor the latest verdict of migration 5), user_version 2.
    REQUIRE(raw_sql(db, std::string(kUndoSchema6) + "DROP TRIGGER cells_latest_verdict_update; DROP TRIGGER cells_latest_verdict_insert; "
                        "ALTER TABLE cells DROP COLUMN latest_verdict; "
                        "DROP TABLE auth_events; DROP TABLE sessions; DROP TABLE users; "
                        "DROP TABLE device_links; DROP TABLE devices; PRAGMA user_version = 2") == "");
    {
        OpenOptions ro;
        ro.read_only = true;
        Store old = Store::open(db, ro);
        CHECK(old.schema_version() == 2);
    }
    Store store = Store::open(db);
    CHECK(store.schema_version() == Store::latest_schema_version());
    CHECK(Store::latest_schema_version() >= 3);
    CHECK(store.count("cells") == 3);  // results kept
    Genealogy g(store);
    const std::string d = device_serial(3);
    REQUIRE(g.link(link_request(d, "A1112", c)).linked);
    REQUIRE(g.unlink(d, c[2], "rework", kQuality) > 0);

    CHECK(raw_sql(db, "UPDATE device_links SET cell_serial = 'X'").find("append-only") != std::string::npos);
    CHECK(raw_sql(db, "DELETE FROM device_links").find("append-only") != std::string::npos);
    CHECK(raw_sql(db, "INSERT OR REPLACE INTO device_links (id, time_unix_s, action, device_serial, cell_serial, "
                      "station_id) VALUES (1, 0, 'unlink', '" + d + "', '" + c[0] + "', 'X')")
              .find("append-only") != std::string::npos);
    CHECK(raw_sql(db, "UPDATE devices SET model = 'A3102'").find("append-only") != std::string::npos);
    CHECK(raw_sql(db, "DELETE FROM devices").find("append-only") != std::string::npos);
    // An unlink without a reason and an actor is refused by the schema itself.
    CHECK(raw_sql(db, "INSERT INTO device_links (time_unix_s, action, device_serial, cell_serial, station_id) "
                      "VALUES (1, 'unlink', '" + d + "', '" + c[0] + "', 'X')")
              .find("CHECK") != std::string::npos);
    CHECK(store.device(d)->cells == std::vector<std::string>{c[0], c[1]});
    CHECK(store.device_history(d).size() == 4);
}

namespace {
// Everything a device lookup answers, as one comparable text (event ids for
// the reasons, so that two paths agree on which events decide).
std::string describe_lookup(const DeviceLookup& d) {
    auto ids = [](const std::vector<QuarantineEvent>& ev) {
        std::string s;
        for (const auto& e : ev) s += std::to_string(e.id) + ",";
        return s;
    };
    std::string s = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|own {} [{}]|", d.input, d.serial, d.error != nullptr,
                                d.known, d.model, d.assembled_unix_s, d.station_id, d.may_ship, d.status(),
                                d.why_not(), to_string(d.own_state), ids(d.own_because));
    for (const auto& c : d.cells)
        s += fmt::format("<{}|{}|{}|{}|{}|{}|{}|{}|{}|[{}]>", c.input, c.serial, c.error != nullptr, c.known, c.lot,
                         c.production_date, c.verdict ? to_string(*c.verdict) : "-", to_string(c.state), c.may_ship,
                         ids(c.because));
    return s;
}
}  // namespace

TEST_CASE("genealogy: bulk device lookups (parallel readers, one statement) agree with single ones") {
    TempDir tmp;
    Store store = create_store(tmp / "g.db");
    // 8 lots of 200 cells over March–May 2023 (533 devices: two parallel
    // readers even on two cores); a few failed and untested cells.
    std::vector<std::string> cells;
    for (int lot = 0; lot < 8; ++lot) {
        const auto c = write_cells(store, fmt::format("{:04d}", 40 + lot), {2023, 3 + lot / 3, 1 + 3 * lot}, 200);
        cells.insert(cells.end(), c.begin(), c.end());
    }
    const auto failed = write_cells(store, "0060", {2023, 6, 2}, 3, Verdict::fail);
    const auto aborted = write_cells(store, "0061", {2023, 6, 3}, 2, Verdict::abort);  // untested: no completed run
    const std::string never_tested = make_serial("0062", {2023, 6, 4}, 1);

    Genealogy g(store);
    Quarantine q(store);
    std::vector<std::string> devices;
    store.write_transaction([&] {  // one commit for the whole assembly
        for (std::size_t k = 0; k + 3 <= cells.size(); k += 3) {
            devices.push_back(device_serial(100 + k));
            const std::size_t n = k % 7 == 0 ? 2 : 3;  // some devices of two cells
            std::vector<std::string> in(cells.begin() + static_cast<std::ptrdiff_t>(k),
                                        cells.begin() + static_cast<std::ptrdiff_t>(k + n));
            REQUIRE(g.link(link_request(devices.back(), k % 5 == 0 ? "A3102" : "A1112", in)).linked);
        }
        return true;
    });
    // Rework: emptied devices, a cell moved into another device, relinks.
    const std::string emptied = devices[10], donor = devices[11], taker = devices[12];
    const std::vector<std::string> emptied_cells = store.device(emptied)->cells;
    for (const auto& c : emptied_cells) g.unlink(emptied, c, "rework", kQuality);
    const std::string moved = store.device(donor)->cells[1];
    g.unlink(donor, moved, "swap", kQuality);
    const std::string freed = store.device(taker)->cells[0];
    g.unlink(taker, freed, "swap", kQuality);
    REQUIRE(g.link(link_request(taker, store.device(taker)->device.model, {moved})).linked);
    REQUIRE(g.link(link_request(donor, store.device(donor)->device.model, {freed})).linked);
    // Devices linked around the interlock (the store takes what it is given):
    // a failed, an untested and a never-tested cell inside.
    const DeviceInfo odd{device_serial(9000), "A1112", 1.7e9, "ASSY-02"};
    link_around_interlock(store, odd, {failed[0], aborted[0], never_tested});
    devices.push_back(odd.serial);

    // Holds: a lot, a window (released again in part), serials of cells,
    // devices' own serials (held, released, scrapped), a scrapped cell.
    q.hold(Scope::lot("0041"), "lot outlier rate", kOperator);
    q.hold(Scope::window({2023, 4, 1}, {2023, 4, 10}), "April defect window", kOperator);
    q.hold(Scope::lot("0045"), "screen", kOperator);
    q.release(Scope::lot("0045"), "retest passed", kQuality);
    q.hold(Scope::serial(cells[850]), "swollen", kOperator);
    q.hold(Scope::serial(cells[903]), "retest", kOperator);
    q.release(Scope::serial(cells[903]), "retest passed", kQuality);
    q.scrap(Scope::serial(cells[1250]), "short", kQuality);
    q.hold(Scope::serial(devices[20]), "drop test", kOperator);
    q.hold(Scope::serial(devices[21]), "drop test", kOperator);
    q.release(Scope::serial(devices[21]), "passed", kQuality);
    q.scrap(Scope::serial(devices[22]), "crushed", kQuality);

    // Inputs: every device (some as typed: lower case, dashes, O for 0), an
    // unknown device serial, an invalid one, a cell serial, repeats.
    std::vector<std::string> inputs = devices;
    inputs.push_back(device_serial(777777));
    inputs.push_back("P1A00000000000Z");
    inputs.push_back(cells[5]);
    inputs.push_back(devices[3]);
    std::string typed = devices[4];
    for (auto& ch : typed) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    inputs.push_back(typed.substr(0, 4) + "-" + typed.substr(4));
    REQUIRE(inputs.size() >= 512);  // the parallel path, two readers

    std::vector<std::string> single;
    for (const auto& in : inputs) single.push_back(describe_lookup(g.lookup_device(in)));

    // The reference: the store's device record (devices_many: one device at a
    // time) and each cell through the cell ship gate one by one.
    LookupSession cells_gate(store);
    const auto records = store.devices_many(devices);
    std::size_t may_ship = 0, held = 0, scrapped = 0, empty = 0;
    for (std::size_t k = 0; k < devices.size(); ++k) {
        const DeviceLookup d = g.lookup_device(devices[k]);
        REQUIRE(records[k]);
        REQUIRE(d.cells.size() == records[k]->cells.size());
        bool ok = !records[k]->cells.empty() && d.own_state != CellState::held && d.own_state != CellState::scrapped;
        for (std::size_t j = 0; j < d.cells.size(); ++j) {
            const LookupResult ref = cells_gate.lookup(records[k]->cells[j]);
            CHECK(d.cells[j].serial == ref.serial);
            CHECK(d.cells[j].state == ref.state);
            CHECK(d.cells[j].verdict == ref.verdict);
            CHECK(d.cells[j].known == ref.known);
            CHECK(d.cells[j].lot == ref.lot);
            CHECK(d.cells[j].may_ship == ref.may_ship);
            ok = ok && ref.may_ship;
        }
        CHECK(d.may_ship == ok);
        may_ship += d.may_ship;
        held += d.state() == CellState::held;
        scrapped += d.state() == CellState::scrapped;
        empty += d.status() == "empty";
    }
    // The store is not trivial: every kind of answer occurs.
    CHECK(may_ship > 100);
    CHECK(held > 50);  // lot 0041, the April window, a cell, a device
    CHECK(scrapped == 2);
    CHECK(empty == 1);
    CHECK(g.lookup_device(emptied).status() == "empty");
    CHECK(g.lookup_device(odd.serial).why_not().find("last test fail") != std::string::npos);
    CHECK(g.lookup_device(taker).cells.back().serial == moved);

    SUBCASE("in bulk, on parallel read-only connections") {
        const auto bulk = g.lookup_devices(inputs);
        REQUIRE(bulk.size() == inputs.size());
        for (std::size_t i = 0; i < inputs.size(); ++i) CHECK(describe_lookup(bulk[i]) == single[i]);
    }
    SUBCASE("through the visitor and as compact checks: each input once, at its place, the same answers") {
        // More repeats (as typed and normalized), unknown and invalid serials
        // spread through the batch, in an order that is not the key order.
        std::vector<std::string> mixed;
        for (std::size_t i = inputs.size(); i-- > 0;) {
            mixed.push_back(inputs[i]);
            if (i % 50 == 0) mixed.push_back(inputs[i]);                              // a repeat
            if (i % 97 == 0) mixed.push_back(device_serial(500000 + i));             // unknown
            if (i % 89 == 0) mixed.push_back("P1A" + std::to_string(i) + "!");  // invalid
        }
        std::vector<std::string> expected;
        for (const auto& in : mixed) expected.push_back(describe_lookup(g.lookup_device(in)));
        REQUIRE(store.bulk_readers(mixed.size()) > 0);  // the parallel path
        std::vector<std::string> visited(mixed.size());
        std::vector<int> times(mixed.size(), 0);
        std::mutex m;
        std::size_t out_of_range = 0;
        g.for_each_device(mixed, [&](std::size_t i, const DeviceLookup& d) {
            std::string text = describe_lookup(d);
            const std::lock_guard lock(m);
            if (i >= mixed.size()) {
                ++out_of_range;
                return;
            }
            ++times[i];
            visited[i] = std::move(text);
        });
        CHECK(out_of_range == 0);
        for (std::size_t i = 0; i < mixed.size(); ++i) {
            CHECK(times[i] == 1);
            CHECK(visited[i] == expected[i]);
        }
        auto compact = [&](const std::vector<DeviceCheck>& checks) {
            REQUIRE(checks.size() == mixed.size());
            std::map<std::string_view, std::size_t> kinds;
            for (std::size_t i = 0; i < mixed.size(); ++i) {
                const DeviceLookup d = g.lookup_device(mixed[i]);
                CHECK(checks[i].may_ship == d.may_ship);
                CHECK(checks[i].status_text() == d.status());
                ++kinds[checks[i].status_text()];
            }
            // Every kind of answer is among them.
            for (const char* k : {"invalid", "unknown", "empty", "clear", "held", "released", "scrapped"})
                CHECK_MESSAGE(kinds[k] > 0, k);
        };
        compact(g.check_devices(mixed));
        store.write_transaction([&] {  // one slice on the store's connection, in its snapshot
            compact(g.check_devices(mixed));
            return false;
        });
        // A visitor that throws stops the check; the next one answers in full.
        std::atomic<int> seen{0};
        CHECK_THROWS_WITH_AS(g.for_each_device(mixed,
                                               [&](std::size_t, const DeviceLookup&) {
                                                   if (++seen == 100) throw std::runtime_error("visitor gave up");
                                               }),
                             "visitor gave up", std::runtime_error);
        compact(g.check_devices(mixed));
        CHECK(g.check_devices({}).empty());
    }
    SUBCASE("in bulk inside a write transaction (the store's connection)") {
        store.write_transaction([&] {
            const auto bulk = g.lookup_devices(inputs);
            REQUIRE(bulk.size() == inputs.size());
            for (std::size_t i = 0; i < inputs.size(); ++i) CHECK(describe_lookup(bulk[i]) == single[i]);
            return false;
        });
    }
    SUBCASE("as units of either kind") {
        const auto units = g.lookup_units(inputs);
        REQUIRE(units.size() == inputs.size());
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const bool device = i < devices.size() || i >= devices.size() + 3;
            CHECK(units[i].is_device == device);
            if (device) CHECK(describe_lookup(units[i].device) == single[i]);
            else CHECK(units[i].cell.may_ship == g.cell_session().lookup(inputs[i]).may_ship);
        }
    }
    SUBCASE("the bulk readers stay open between calls but see every later commit") {
        REQUIRE(store.bulk_readers(devices.size()) > 0);
        const auto before = g.lookup_devices(devices);
        std::size_t k = 40;
        while (!before[k].may_ship || before[k].cells.size() < 2) ++k;
        const std::string d = devices[k];
        g.unlink(d, before[k].cells[0].serial, "rework", kQuality);
        // A later test of a cell of the next shippable device fails.
        std::size_t m = k + 1;
        while (!before[m].may_ship) ++m;
        TestRecord retest = eol::test::make_record(before[m].cells.back().serial, "EOL-01", "eol-18650", 1.9e9, 60.0,
                                                   {{"ocv_v", 3.1}}, "V");
        retest.verdict = Verdict::fail;
        store.write(retest);
        const auto after = g.lookup_devices(devices);
        CHECK(after[k].cells.size() + 1 == before[k].cells.size());
        CHECK(after[k].may_ship);  // the cells left inside still pass
        CHECK_FALSE(after[m].may_ship);
        CHECK(after[m].cells.back().verdict == Verdict::fail);
        CHECK(describe_lookup(after[m]) == describe_lookup(g.lookup_device(devices[m])));
    }
    SUBCASE("the recall list: parallel readers, one connection and a one-by-one reference agree") {
        CellFilter f;
        f.date_from = "2023-03-01";
        f.date_to = "2023-04-30";
        auto text = [](const DeviceRecall& r) {
            std::string s;
            for (const auto& d : r.devices) {
                s += fmt::format("{}:{}:{}:", d.device.serial, d.device.model, d.device.station_id);
                for (const auto& c : d.affected_cells) s += c.serial + "/" + c.lot + "/" + c.production_date + ",";
                s += ";";
            }
            for (const auto& [m, c] : r.models)
                s += fmt::format("{}={}/{}/{}/{};", m, c.devices, c.shipped, c.in_stock, c.affected_cells);
            return s + std::to_string(r.affected_cells_in_devices);
        };
        std::size_t in_window = 0;
        store.for_each_cell(f, [&](const CellInfo&) { ++in_window; });
        REQUIRE(store.bulk_readers(in_window) > 0);  // the parallel path
        const DeviceRecall parallel = recall_devices(store, f);
        std::string one;  // inside a transaction: this connection, one snapshot
        store.write_transaction([&] {
            one = text(recall_devices(store, f));
            return false;
        });
        CHECK(text(parallel) == one);
        // The reference: each cell of the window and the device it is inside now.
        std::map<std::string, std::vector<std::string>> ref;
        store.for_each_cell(f, [&](const CellInfo& c) {
            if (const auto d = store.device_of_cell(c.serial)) ref[*d].push_back(c.serial);
        });
        REQUIRE(ref.size() > 100);
        REQUIRE(parallel.devices.size() == ref.size());
        std::size_t j = 0;
        for (const auto& [d, cs] : ref) {
            CHECK(parallel.devices[j].device.serial == d);
            std::vector<std::string> got;
            for (const auto& c : parallel.devices[j].affected_cells) got.push_back(c.serial);
            CHECK(got == cs);  // both by serial
            ++j;
        }
    }
    SUBCASE("a hold placed after a bulk lookup is seen by the next one") {
        const std::size_t before = [&] {
            std::size_t n = 0;
            for (const auto& d : g.lookup_devices(devices)) n += d.may_ship;
            return n;
        }();
        q.hold(Scope::lot("0047"), "late finding", kOperator);
        std::size_t after = 0, in_lot = 0;
        for (const auto& d : g.lookup_devices(devices)) {
            after += d.may_ship;
            bool has = false;
            for (const auto& c : d.cells) has = has || c.lot == "0047";
            in_lot += has;
            if (has) CHECK_FALSE(d.may_ship);
        }
        CHECK(in_lot > 50);
        CHECK(after < before);
    }
}

TEST_CASE("genealogy: a version-4 store is answered read-only as it is, migration 5 puts each cell's latest verdict on its row, kept by every run") {
    TempDir tmp;
    const fs::path db = tmp / "v4.db";
    std::vector<std::string> cells, devices;
    {
        Store store = create_store(db);
        const auto pass = write_cells(store, "0042", {2023, 3, 14}, 900);
        const auto fail = write_cells(store, "0043", {2023, 3, 15}, 3, Verdict::fail);
        const auto aborted = write_cells(store, "0044", {2023, 3, 16}, 2, Verdict::abort);  // untested
        // fail[0] retested later and passed; pass[0] gets an older (by start) failed run written afterwards:
        // the latest by start time counts.
        store.write(eol::test::make_record(fail[0], "EOL-01", "eol-18650", 1.69e9, 60.0, {{"ocv_v", 3.6}}, "V"));
        TestRecord older = eol::test::make_record(pass[0], "EOL-01", "eol-18650", 1.6e9, 60.0, {{"ocv_v", 3.6}}, "V");
        older.verdict = Verdict::fail;
        store.write(older);
        Genealogy g(store);
        store.write_transaction([&] {
            for (std::size_t k = 0; k + 3 <= pass.size(); k += 3) {
                devices.push_back(device_serial(500 + k));
                REQUIRE(g.link(link_request(devices.back(), "A1112", {pass[k], pass[k + 1], pass[k + 2]})).linked);
            }
            return true;
        });
        const DeviceInfo odd{device_serial(9000), "A3102", 1.7e9, "ASSY-02"};
        link_around_interlock(store, odd, {fail[0], fail[1], aborted[0]});
        devices.push_back(odd.serial);
        Quarantine(store).hold(Scope::serial(pass[7]), "outlier", kOperator);
        cells = pass;
        cells.insert(cells.end(), fail.begin(), fail.end());
        cells.insert(cells.end(), aborted.begin(), aborted.end());
        cells.push_back(make_serial("0045", {2023, 3, 17}, 1));  // never tested
        CHECK(raw_sql(db, "UPDATE cells SET latest_verdict = 'fail' WHERE serial = '" + pass[1] + "'")
                  .find("latest_verdict must be the verdict") != std::string::npos);
    }
    // What a version-4 binary left: no latest_verdict (nor its triggers).
    REQUIRE(raw_sql(db, std::string(kUndoSchema6) + "DROP TRIGGER cells_latest_verdict_update; DROP TRIGGER cells_latest_verdict_insert; "
                        "ALTER TABLE cells DROP COLUMN latest_verdict; PRAGMA user_version = 4") == "");
    // Every answer, single and bulk (parallel readers), cells and devices.
    auto answers = [&](Store& store) {
        Genealogy g(store);
        std::string single, bulk;
        auto cell_text = [](const LookupResult& r) {
            return fmt::format("{}:{}:{}:{}:{};", r.serial, r.verdict ? to_string(*r.verdict) : "-", r.status(),
                               r.lot, r.may_ship);
        };
        for (const auto& c : cells) single += cell_text(g.cell_session().lookup(c));
        for (const auto& r : g.cell_session().lookup_many(cells)) bulk += cell_text(r);
        for (const auto& d : devices) single += describe_lookup(g.lookup_device(d));
        for (const auto& d : g.lookup_devices(devices)) bulk += describe_lookup(d);
        CHECK(single == bulk);
        return single;
    };
    std::string v4;
    {
        Store ro = Store::open(db, OpenOptions{.read_only = true});
        CHECK(ro.schema_version() == 4);
        CHECK(ro.bulk_readers(devices.size()) > 0);  // the bulk statements of the older schema too
        v4 = answers(ro);
        CHECK(ro.gate_cell(cells[0])->verdict == Verdict::pass);
    }
    Store store = Store::open(db);
    CHECK(store.schema_version() == Store::latest_schema_version());
    CHECK(answers(store) == v4);  // the same answers after migrating
    auto stored_verdict = [&](const std::string& serial) {
        std::string v = "-";
        sqlite3* h = nullptr;
        REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
        sqlite3_stmt* q = nullptr;
        REQUIRE(sqlite3_prepare_v2(h, "SELECT latest_verdict FROM cells WHERE serial = ?1", -1, &q, nullptr) == SQLITE_OK);
        sqlite3_bind_text(q, 1, serial.c_str(), -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL)
            v = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        sqlite3_close(h);
        return v;
    };
    CHECK(stored_verdict(cells[0]) == "pass");    // the older failed run did not advance it
    CHECK(stored_verdict(cells[900]) == "pass");  // retested, passed
    CHECK(stored_verdict(cells[901]) == "fail");
    CHECK(stored_verdict(cells[903]) == "-");     // aborted only: untested
    CHECK(store.gate_cell(cells[901])->verdict == Verdict::fail);
    CHECK_FALSE(store.gate_cell(cells.back()));
    // Kept by every run written: a later failed retest moves both columns in its transaction.
    TestRecord retest = eol::test::make_record(cells[1], "EOL-01", "eol-18650", 1.9e9, 60.0, {{"ocv_v", 3.1}}, "V");
    retest.verdict = Verdict::fail;
    store.write(retest);
    CHECK(stored_verdict(cells[1]) == "fail");
    CHECK(Genealogy(store).lookup_device(devices[0]).why_not().find("last test fail") != std::string::npos);
    // And by nobody else: the triggers refuse a disagreeing write, whoever runs the SQL.
    CHECK(raw_sql(db, "UPDATE cells SET latest_verdict = 'pass' WHERE serial = '" + cells[1] + "'")
              .find("latest_verdict must be the verdict") != std::string::npos);
    CHECK(raw_sql(db, "UPDATE cells SET latest_run_id = 1 WHERE serial = '" + cells[1] + "'")
              .find("latest_verdict must be the verdict") != std::string::npos);
    CHECK(raw_sql(db, "INSERT INTO cells (serial, latest_run_id, latest_verdict) VALUES ('X', 1, 'fail')")
              .find("latest_verdict must be the verdict") != std::string::npos);
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, "SELECT count(*), count(latest_verdict) FROM cells WHERE latest_verdict IS NOT "
                                  "(SELECT verdict FROM test_runs WHERE id = cells.latest_run_id) OR latest_run_id IS NOT NULL",
                               -1, &q, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    // Every cell with a completed run has its verdict (903 of the 905 stored: the two aborted have none).
    CHECK(sqlite3_column_int64(q, 0) == 903);
    CHECK(sqlite3_column_int64(q, 1) == 903);
    sqlite3_finalize(q);
    REQUIRE(sqlite3_prepare_v2(h, "SELECT count(*) FROM cells WHERE latest_verdict IS NOT "
                                  "(SELECT verdict FROM test_runs WHERE id = cells.latest_run_id)",
                               -1, &q, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    CHECK(sqlite3_column_int64(q, 0) == 0);
    sqlite3_finalize(q);
    sqlite3_close(h);
}

namespace {
// The device gate's rows (schema 6) as text, in key order.
std::string gate_rows(const fs::path& db) {
    return eol::test::Raw(db).rows("SELECT device_serial, cell_serial, link_id, lot, production_date, latest_verdict "
                                   "FROM device_gate ORDER BY device_serial, cell_serial");
}
}  // namespace

TEST_CASE("genealogy: the device gate (schema 6) mirrors the link events and the cells, in the writing transaction, and migration 6 builds the same rows") {
    TempDir tmp;
    const fs::path db = tmp / "gate.db";
    std::vector<std::string> c, devices;
    {
        Store store = create_store(db);
        CHECK(store.schema_version() >= 6);
        Genealogy g(store);
        c = write_cells(store, "0042", {2023, 3, 14}, 8);
        const auto late = write_cells(store, "0043", {2023, 3, 15}, 1, Verdict::fail);
        devices = {device_serial(1), device_serial(2), device_serial(3)};
        REQUIRE(g.link(link_request(devices[0], "A1112", {c[0], c[1], c[2]})).linked);
        // Linked: one row a cell, in the link's transaction.
        const std::string after_link = gate_rows(db);
        CHECK(std::count(after_link.begin(), after_link.end(), '\n') == 3);
        for (const auto& e : store.device_history(devices[0]))
            CHECK(after_link.find(fmt::format("{}|{}|{}|0042|2023-03-14|pass\n", devices[0], e.cell_serial, e.id)) !=
                  std::string::npos);
        // Rework: c[1] out (reason), c[3] in; then c[1] back into another device.
        REQUIRE(g.unlink(devices[0], c[1], "rework", kQuality) > 0);
        const DeviceInfo d0{devices[0], "A1112", 1.7e9, "ASSY-01"};
        link_around_interlock(store, d0, {c[3]});
        const DeviceInfo d1{devices[1], "A3102", 1.7e9, "ASSY-02"};
        link_around_interlock(store, d1, {c[1], c[4]});
        link_around_interlock(store, d1, {c[4]});  // a second link of a cell inside: the first one stays
        // A retest that fails moves the device's copy in the run's transaction.
        TestRecord retest = eol::test::make_record(c[2], "EOL-01", "eol-18650", 1.9e9, 60.0, {{"ocv_v", 3.1}}, "V");
        retest.verdict = Verdict::fail;
        store.write(retest);
        // A cell linked before it is stored (only around the interlock) is
        // unknown, until its row comes; a deleted row makes it unknown again.
        const DeviceInfo d2{devices[2], "A1263", 1.7e9, "ASSY-01"};
        link_around_interlock(store, d2, {"NOT-YET-STORED", late[0], c[5], c[7]});
        CHECK(Genealogy(store).lookup_device(devices[2]).why_not().find("unknown") != std::string::npos);
        REQUIRE(raw_sql(db, "INSERT INTO cells (serial, cell_model, lot, production_date) "
                            "VALUES ('NOT-YET-STORED', 'INR18650-30Q', '0044', '2023-03-16')") == "");
        REQUIRE(raw_sql(db, "UPDATE cells SET lot = '0099' WHERE serial = '" + c[5] + "'") == "");
        REQUIRE(raw_sql(db, "DELETE FROM cells WHERE serial = '" + c[7] + "'") == "");
        // A rolled-back link leaves no row.
        REQUIRE(raw_sql(db, "BEGIN; INSERT INTO device_links (time_unix_s, action, device_serial, cell_serial, "
                            "station_id) VALUES (1, 'link', '" + devices[2] + "', '" + c[6] + "', 'X'); ROLLBACK") == "");
    }
    // Every cell inside now, once, with its stored fields, and nothing else.
    const std::string rows = gate_rows(db);
    auto row_of = [&](const std::string& dev, const std::string& cell) {
        const std::string key = dev + "|" + cell + "|";
        const auto at = rows.find(key);
        return at == std::string::npos ? std::string("-") : rows.substr(at, rows.find('\n', at) - at);
    };
    auto fields = [](const std::string& row) {  // without the link id
        const auto a = row.find('|', row.find('|') + 1), b = row.find('|', a + 1);
        return row.substr(0, a) + row.substr(b);
    };
    CHECK(std::count(rows.begin(), rows.end(), '\n') == 9);
    CHECK(fields(row_of(devices[0], c[0])) == devices[0] + "|" + c[0] + "|0042|2023-03-14|pass");
    CHECK(row_of(devices[0], c[1]) == "-");  // unlinked
    CHECK(fields(row_of(devices[0], c[2])) == devices[0] + "|" + c[2] + "|0042|2023-03-14|fail");  // retested
    CHECK(fields(row_of(devices[0], c[3])) == devices[0] + "|" + c[3] + "|0042|2023-03-14|pass");
    CHECK(fields(row_of(devices[1], c[1])) == devices[1] + "|" + c[1] + "|0042|2023-03-14|pass");
    CHECK(fields(row_of(devices[2], "NOT-YET-STORED")) == devices[2] + "|NOT-YET-STORED|0044|2023-03-16|NULL");
    CHECK(fields(row_of(devices[2], c[5])) == devices[2] + "|" + c[5] + "|0099|2023-03-14|pass");
    CHECK(fields(row_of(devices[2], c[7])) == devices[2] + "|" + c[7] + "|NULL|NULL|NULL");  // its row deleted
    CHECK(row_of(devices[2], c[6]) == "-");  // rolled back
    // c[4]'s row keeps the link id of its first link (the fold's order).
    {
        Store store = Store::open(db);
        std::int64_t first = 0;
        for (const auto& e : store.device_history(devices[1]))
            if (e.cell_serial == c[4] && first == 0) first = e.id;
        CHECK(row_of(devices[1], c[4]) == fmt::format("{}|{}|{}|0042|2023-03-14|pass", devices[1], c[4], first));
    }
    // The answers read through the gate, single and in bulk (parallel
    // readers: 300 serials, the known ones repeated), as a schema-5 store
    // gives them from the link events.
    std::vector<std::string> many;
    for (std::size_t k = 0; k < 300; ++k) many.push_back(k % 4 == 3 ? device_serial(100 + k) : devices[k % 3]);
    auto answers = [&](Store& store) {
        Genealogy g(store);
        std::string single, bulk, check;
        for (const auto& d : many) single += describe_lookup(g.lookup_device(d));
        for (const auto& d : g.lookup_devices(many)) bulk += describe_lookup(d);
        for (const auto& d : g.check_devices(many)) check += fmt::format("{}:{};", d.may_ship, d.status_text());
        CHECK(single == bulk);
        return single + check;
    };
    std::string v6;
    {
        Store store = Store::open(db);
        REQUIRE(store.bulk_readers(many.size()) > 0);
        v6 = answers(store);
        CHECK(v6.find("last test fail") != std::string::npos);
    }
    REQUIRE(raw_sql(db, kUndoSchema6) == "");
    {
        Store ro = Store::open(db, OpenOptions{.read_only = true});
        CHECK(ro.schema_version() == 5);  // read as it is: the link events
        CHECK(answers(ro) == v6);
    }
    // Migration 6 folds the events into the same rows the triggers kept.
    Store store = Store::open(db);
    CHECK(store.schema_version() == Store::latest_schema_version());
    CHECK(gate_rows(db) == rows);
    CHECK(answers(store) == v6);
}

TEST_CASE("hostile: hand-written writes to the device gate are refused, whoever runs the SQL") {
    TempDir tmp;
    const fs::path db = tmp / "guard.db";
    std::vector<std::string> c;
    const std::string d = device_serial(7);
    std::int64_t unlinked_id = 0;
    {
        Store store = create_store(db);
        Genealogy g(store);
        c = write_cells(store, "0042", {2023, 3, 14}, 6);
        REQUIRE(g.link(link_request(d, "A1112", {c[0], c[1], c[2]})).linked);
        for (const auto& e : store.device_history(d))
            if (e.cell_serial == c[1]) unlinked_id = e.id;
        REQUIRE(g.unlink(d, c[1], "rework", kQuality) > 0);
    }
    const std::string before = gate_rows(db);
    REQUIRE(std::count(before.begin(), before.end(), '\n') == 2);
    std::string may;
    {
        Store store = Store::open(db);
        may = Genealogy(store).lookup_device(d).why_not();
    }
    auto refused = [&](const std::string& sql) {
        CAPTURE(sql);
        const std::string err = raw_sql(db, sql);
        CHECK(err.find("device_gate is kept by the store") != std::string::npos);
    };
    const std::string row = "'" + d + "', '" + c[3] + "', 1, '0042', '2023-03-14', 'pass'";
    // A cell no event put in; a cell unlinked since its event; wrong fields.
    refused("INSERT INTO device_gate VALUES (" + row + ")");
    refused(fmt::format("INSERT INTO device_gate VALUES ('{}', '{}', {}, '0042', '2023-03-14', 'pass')", d, c[1],
                        unlinked_id));
    refused("INSERT OR REPLACE INTO device_gate SELECT device_serial, cell_serial, link_id, '0099', production_date, "
            "latest_verdict FROM device_gate");
    refused("UPDATE device_gate SET lot = '0099'");
    refused("UPDATE device_gate SET latest_verdict = 'fail' WHERE cell_serial = '" + c[0] + "'");
    refused("UPDATE device_gate SET link_id = link_id + 1");
    refused("UPDATE device_gate SET cell_serial = '" + c[4] + "' WHERE cell_serial = '" + c[0] + "'");
    refused("DELETE FROM device_gate WHERE cell_serial = '" + c[0] + "'");
    refused("DELETE FROM device_gate");
    CHECK(gate_rows(db) == before);
    Store store = Store::open(db);
    CHECK(Genealogy(store).lookup_device(d).why_not() == may);
    CHECK(Genealogy(store).lookup_device(d).cells.size() == 2);
}

TEST_CASE("genealogy: migration 7 re-creates the device gate's triggers, also on a schema-6 store without its guards") {
    TempDir tmp;
    const fs::path db = tmp / "m7.db";
    std::vector<std::string> c;
    const std::string d = device_serial(8);
    {
        Store store = create_store(db);
        c = write_cells(store, "0042", {2023, 3, 14}, 3);
        REQUIRE(Genealogy(store).link(link_request(d, "A1112", {c[0], c[1]})).linked);
    }
    const std::string before = gate_rows(db);
    REQUIRE(std::count(before.begin(), before.end(), '\n') == 2);
    // What a development build of session 15 left: migration 6 before it had
    // its insert and update guards.
    REQUIRE(raw_sql(db, "DROP TRIGGER device_gate_guard_insert; DROP TRIGGER device_gate_guard_update; "
                        "DROP TRIGGER device_gate_guard_delete; PRAGMA user_version = 6") == "");
    {
        Store store = Store::open(db);  // migrates to 7
        CHECK(store.schema_version() == Store::latest_schema_version());
        CHECK(store.schema_version() >= 7);
    }
    CHECK(gate_rows(db) == before);
    CHECK(raw_sql(db, "UPDATE device_gate SET lot = '0099'").find("device_gate is kept by the store") !=
          std::string::npos);
    CHECK(raw_sql(db, "INSERT INTO device_gate SELECT device_serial, '" + c[2] +
                          "', link_id, lot, production_date, latest_verdict FROM device_gate LIMIT 1")
              .find("device_gate is kept by the store") != std::string::npos);
    CHECK(raw_sql(db, "DELETE FROM device_gate").find("device_gate is kept by the store") != std::string::npos);
    // A linked cell's change reaches its row; a cell without link events
    // changes nothing in the gate.
    REQUIRE(raw_sql(db, "UPDATE cells SET lot = '0077' WHERE serial = '" + c[0] + "'") == "");
    REQUIRE(raw_sql(db, "UPDATE cells SET lot = '0078' WHERE serial = '" + c[2] + "'") == "");
    const std::string after = gate_rows(db);
    CHECK(after != before);
    CHECK(after.find("0077") != std::string::npos);
    CHECK(after.find("0078") == std::string::npos);
    CHECK(std::count(after.begin(), after.end(), '\n') == 2);
}
