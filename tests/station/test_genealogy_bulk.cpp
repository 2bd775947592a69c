// The bulk device check (Genealogy::check_devices: straight from the store's
// read, no DeviceLookup per device) against the one-by-one device lookup, on
// a generated store with held lots, a held window, held and scrapped cells
// and devices, unlinked and reworked devices and devices linked around the
// interlock: random batches (deterministic for their seed) of known devices,
// repeats, unknown and invalid serials and serials as typed, on the bulk
// readers (the merge walk of Store::for_each_device_cells when the batch is a
// large share of the devices, one search each when not), on the store's
// connection and inside a write transaction; and the bulk readers, kept open,
// after the file has grown under them (their mapped pages and page caches).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "eol/station/genealogy.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/store.hpp"
#include "support/cli_test.hpp"
#include "support/genealogy_test.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using eol::test::create_store;
using eol::test::device_serial;
using eol::test::link_request;
using eol::test::make_serial;
using eol::test::TempDir;
using eol::test::write_cells;

namespace {
const Actor kQuality{"qe-anna", "quality"};
const Actor kOperator{"op-ben", "operator"};

// The store's generated content: its devices (every one, also the emptied
// ones) and the serials a batch draws from.
struct Plant {
    std::vector<std::string> devices;
    std::vector<std::string> cells;
};

// 8 lots of 150 cells over March–May 2023, devices of 1–3 cells (random,
// seeded), then rework, holds and devices linked around the interlock.
Plant build_plant(Store& store, Genealogy& g, std::uint64_t seed) {
    Plant p;
    for (int lot = 0; lot < 8; ++lot) {
        const auto c = write_cells(store, fmt::format("{:04d}", 20 + lot), {2023, 3 + lot / 3, 1 + 3 * lot}, 150);
        p.cells.insert(p.cells.end(), c.begin(), c.end());
    }
    std::mt19937_64 rng(seed);
    std::shuffle(p.cells.begin(), p.cells.end(), rng);  // cells of a device from anywhere: not the key order
    store.write_transaction([&] {
        std::size_t k = 0;
        for (std::uint64_t d = 0; k < p.cells.size(); ++d) {
            const std::size_t n = std::min<std::size_t>(1 + rng() % 3, p.cells.size() - k);
            std::vector<std::string> in(p.cells.begin() + static_cast<std::ptrdiff_t>(k),
                                        p.cells.begin() + static_cast<std::ptrdiff_t>(k + n));
            k += n;
            p.devices.push_back(device_serial(1000 + 7 * d));  // gaps: unknown serials between known ones
            REQUIRE(g.link(link_request(p.devices.back(), d % 4 == 0 ? "A3102" : "A1112", in)).linked);
        }
        return true;
    });
    // Rework: some devices emptied, cells moved from one device to another.
    for (std::size_t i = 5; i < p.devices.size(); i += 97) {
        const std::vector<std::string> inside = store.device(p.devices[i])->cells;
        for (const auto& c : inside) g.unlink(p.devices[i], c, "rework", kQuality);
    }
    for (std::size_t i = 11; i + 1 < p.devices.size(); i += 61) {
        const auto from = store.device(p.devices[i]);
        if (!from || from->cells.empty()) continue;
        const std::string moved = from->cells.front();
        g.unlink(p.devices[i], moved, "swap", kQuality);
        REQUIRE(g.link(link_request(p.devices[i + 1], store.device(p.devices[i + 1])->device.model, {moved})).linked);
    }
    // Linked around the interlock: a failed, an untested, a never-tested cell.
    const auto failed = write_cells(store, "0040", {2023, 6, 2}, 2, Verdict::fail);
    const auto aborted = write_cells(store, "0041", {2023, 6, 3}, 2, Verdict::abort);
    const DeviceInfo odd{device_serial(900000), "A1112", 1.7e9, "ASSY-02"};
    std::vector<DeviceLinkEvent> ev;
    for (const auto& c : {failed[0], aborted[0], make_serial("0042", {2023, 6, 4}, 1)}) {
        DeviceLinkEvent e;
        e.device_serial = odd.serial;
        e.cell_serial = c;
        e.station_id = odd.station_id;
        ev.push_back(e);
    }
    store.append_device_links(odd, ev);
    p.devices.push_back(odd.serial);
    // Holds: two lots (one released again), a window, cells, devices.
    Quarantine q(store);
    q.hold(Scope::lot("0021"), "lot outlier rate", kOperator);
    q.hold(Scope::lot("0024"), "screen", kOperator);
    q.release(Scope::lot("0024"), "retest passed", kQuality);
    q.hold(Scope::window({2023, 4, 1}, {2023, 4, 10}), "April defect window", kOperator);
    for (std::size_t i = 3; i < p.cells.size(); i += 83) q.hold(Scope::serial(p.cells[i]), "swollen", kOperator);
    q.release(Scope::serial(p.cells[3]), "retest passed", kQuality);
    q.scrap(Scope::serial(p.cells[50]), "short", kQuality);
    q.hold(Scope::serial(p.devices[20]), "drop test", kOperator);
    q.hold(Scope::serial(p.devices[21]), "drop test", kOperator);
    q.release(Scope::serial(p.devices[21]), "passed", kQuality);
    q.scrap(Scope::serial(p.devices[22]), "crushed", kQuality);
    return p;
}

// A batch of `n` inputs (deterministic for `seed`): known devices (some as
// typed: lower case, dashes), repeats, unknown device serials, cell serials,
// invalid serials — and, wherever the seed puts them, the devices of every
// kind of answer (emptied, held, released and scrapped by their own serial,
// the one linked around the interlock).
std::vector<std::string> random_batch(const Plant& p, std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::string> out;
    for (const std::size_t i : {std::size_t{5}, std::size_t{20}, std::size_t{21}, std::size_t{22}, p.devices.size() - 1})
        out.push_back(p.devices[i]);
    while (out.size() < n) {
        const auto r = rng() % 100;
        if (r < 70) {
            std::string s = p.devices[rng() % p.devices.size()];
            if (r < 5) {
                for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                s = s.substr(0, 5) + "-" + s.substr(5);
            }
            out.push_back(std::move(s));
        } else if (r < 80 && !out.empty()) {
            out.push_back(out[rng() % out.size()]);  // a repeat
        } else if (r < 90) {
            out.push_back(device_serial(1000 + 7 * (rng() % 2000) + 1 + rng() % 6));  // between known ones
        } else if (r < 95) {
            out.push_back(p.cells[rng() % p.cells.size()]);  // a cell: not a device serial
        } else {
            out.push_back(fmt::format("P1A{}!", rng() % 1000));  // invalid
        }
    }
    std::shuffle(out.begin(), out.end(), rng);
    return out;
}

// check_devices(batch) against DeviceCheck::of(lookup_device(input)), input
// by input; the kinds of answer seen.
std::map<std::string, std::size_t> agree(Genealogy& g, const std::vector<std::string>& batch) {
    const std::vector<DeviceCheck> bulk = g.check_devices(batch);
    REQUIRE(bulk.size() == batch.size());
    std::map<std::string, std::size_t> kinds;
    std::size_t differ = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const DeviceLookup one = g.lookup_device(batch[i]);
        const bool same = bulk[i].may_ship == one.may_ship && bulk[i].status_text() == one.status();
        if (!same && ++differ <= 5)
            FAIL_CHECK(fmt::format("input {} '{}': bulk {} / {}, one by one {} / {}", i, batch[i],
                                   bulk[i].status_text(), bulk[i].may_ship, one.status(), one.may_ship));
        ++kinds[std::string(bulk[i].status_text()) + (bulk[i].may_ship ? "+ship" : "")];
    }
    CHECK(differ == 0);
    return kinds;
}
}  // namespace

TEST_CASE("genealogy: the bulk device check agrees with one-by-one lookups over random batches") {
    TempDir tmp;
    Store store = create_store(tmp / "g.db");
    Genealogy g(store);
    const Plant p = build_plant(store, g, 7);
    REQUIRE(p.devices.size() > 500);

    for (const std::uint64_t seed : {1u, 2u, 3u}) {
        CAPTURE(seed);
        const auto batch = random_batch(p, 2000 + 500 * seed, seed);
        REQUIRE(store.bulk_readers(batch.size()) > 0);  // the parallel readers
        const auto kinds = agree(g, batch);
        // Every kind of answer occurs.
        for (const char* k : {"invalid", "unknown", "empty", "clear+ship", "held", "released+ship", "scrapped", "clear"})
            CHECK_MESSAGE(kinds.count(k) == 1, k);
    }
    SUBCASE("a small batch (the store's connection) and one inside a write transaction") {
        const auto small = random_batch(p, 200, 11);
        REQUIRE(store.bulk_readers(small.size()) == 0);
        agree(g, small);
        const auto big = random_batch(p, 1500, 12);
        store.write_transaction([&] {
            REQUIRE(store.bulk_readers(big.size()) == 0);  // its own snapshot: the connection
            agree(g, big);
            return false;
        });
    }
    SUBCASE("a hold and a release placed between two checks are seen by the second") {
        const auto batch = random_batch(p, 1000, 21);
        const auto before = g.check_devices(batch);
        Quarantine q(store);
        q.hold(Scope::lot("0026"), "late finding", kOperator);
        q.release(Scope::lot("0021"), "cleared", kQuality);
        const auto after = g.check_devices(batch);
        std::size_t changed = 0;
        for (std::size_t i = 0; i < batch.size(); ++i) changed += before[i].may_ship != after[i].may_ship;
        CHECK(changed > 50);
        agree(g, batch);
    }
}

TEST_CASE("genealogy: bulk readers kept open answer for what was written after the store's file grew") {
    TempDir tmp;
    const fs::path db = tmp / "g.db";
    Store store = create_store(db);
    Genealogy g(store);
    const Plant p = build_plant(store, g, 9);
    const auto batch = random_batch(p, 1500, 5);
    REQUIRE(store.bulk_readers(batch.size()) > 0);
    agree(g, batch);  // the readers are open (the walk: a large share of the devices)
    const auto size_before = fs::file_size(db);

    // Thousands more cells and devices: the WAL is checkpointed into the file
    // (automatically, every 1000 pages), which grows beyond the mapping.
    std::vector<std::string> fresh_cells;
    for (int lot = 0; lot < 10; ++lot) {
        const auto c = write_cells(store, fmt::format("{:04d}", 60 + lot), {2024, 1, 1 + lot}, 1000);
        fresh_cells.insert(fresh_cells.end(), c.begin(), c.end());
    }
    std::vector<std::string> fresh_devices;
    store.write_transaction([&] {
        for (std::size_t k = 0; k + 2 <= fresh_cells.size(); k += 2) {
            fresh_devices.push_back(device_serial(2000000 + k));
            REQUIRE(g.link(link_request(fresh_devices.back(), "A1263", {fresh_cells[k], fresh_cells[k + 1]})).linked);
        }
        return true;
    });
    Quarantine(store).hold(Scope::lot("0062"), "late finding", kOperator);
    // A write of its own connection makes the store checkpoint at the next
    // commit; the file then holds the new pages.
    for (int i = 0; i < 3 && fs::file_size(db) <= size_before; ++i)
        write_cells(store, fmt::format("{:04d}", 70 + i), {2024, 2, 1 + i}, 2000);
    REQUIRE(fs::file_size(db) > size_before);

    // The old batch alone is now a small share (one search each: the
    // check's cells-only read, a device's link events without its devices
    // row, then the serials without events — unknown or empty — through the
    // full read); with the new devices a large one (the walk).
    {
        const auto search = agree(g, batch);
        for (const char* k : {"invalid", "unknown", "empty", "clear+ship", "held", "released+ship", "scrapped"})
            CHECK_MESSAGE(search.count(k) == 1, k);
        // The store's cells-only read visits the same devices with the same
        // cells as the full read, and no unknown serial.
        std::vector<std::string> norm;
        for (const auto& b : batch)
            if (std::string n; g.device_scheme().normalize_into(b, n)) norm.push_back(n);
        REQUIRE(store.bulk_readers(norm.size()) > 0);
        std::vector<int> full_seen(norm.size(), 0), cells_seen(norm.size(), 0);
        std::vector<std::vector<std::string>> full_cells(norm.size()), only_cells(norm.size());
        std::mutex m;
        store.for_each_device_cells(norm, [&](std::size_t, std::size_t i, const DeviceCells& d) {
            const std::lock_guard lock(m);
            ++full_seen[i];
            for (const auto& c : d.cells) full_cells[i].push_back(c.serial + "/" + c.lot + "/" + (c.known ? "k" : "u"));
        });
        store.for_each_device_cells(
            norm,
            [&](std::size_t, std::size_t i, const DeviceCells& d) {
                const std::lock_guard lock(m);
                ++cells_seen[i];
                CHECK(d.device.serial == norm[i]);
                for (const auto& c : d.cells) only_cells[i].push_back(c.serial + "/" + c.lot + "/" + (c.known ? "k" : "u"));
            },
            false);
        std::size_t unknown = 0;
        for (std::size_t i = 0; i < norm.size(); ++i) {
            CHECK(full_seen[i] == cells_seen[i]);
            CHECK(full_cells[i] == only_cells[i]);
            unknown += full_seen[i] == 0;
        }
        CHECK(unknown > 0);
    }
    std::vector<std::string> again = batch;
    again.insert(again.end(), fresh_devices.begin(), fresh_devices.end());
    const auto kinds = agree(g, again);
    const auto checks = g.check_devices(fresh_devices);
    std::size_t known = 0, held = 0;
    for (const auto& c : checks) {
        known += c.status != DeviceCheck::Status::unknown;
        held += c.status == DeviceCheck::Status::held;
    }
    CHECK(known == fresh_devices.size());
    CHECK(held == 500);  // lot 0062: 1000 cells, two a device
    CHECK(kinds.count("unknown") == 1);

    // The store's read visits every place of a known device exactly once —
    // also a device named twice whose two places a chunk of the walk (4096
    // devices) would split — with the cells inside it now.
    std::vector<std::string> twice;
    for (const auto& d : fresh_devices) {
        twice.push_back(d);
        twice.push_back(d);
    }
    twice.insert(twice.end(), p.devices.begin(), p.devices.end());
    REQUIRE(fresh_devices.size() + p.devices.size() > 4096);
    std::vector<int> times(twice.size(), 0);
    std::vector<std::size_t> cells_inside(twice.size(), 0);
    std::mutex m;
    store.for_each_device_cells(twice, [&](std::size_t, std::size_t i, const DeviceCells& d) {
        const std::lock_guard lock(m);
        ++times[i];
        cells_inside[i] = d.cells.size();
        CHECK(d.device.serial == twice[i]);
    });
    for (std::size_t i = 0; i < twice.size(); ++i) {
        CHECK(times[i] == 1);
        CHECK(cells_inside[i] == store.device(twice[i])->cells.size());
    }
}
