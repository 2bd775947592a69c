// Genealogy after a real screen: a simulated production with its assembly
// stage (devices built before any screening), screened over the store as the
// station would (screen_store, --apply), then every device looked up. Every
// device containing a shorted cell or a cell of a defect-window lot is held,
// and a device is held exactly when a cell inside it is held — no other
// device (the screen's own few false positives at cell level are the only
// way a device without a defect can be held, and each is accounted for).
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/genealogy.hpp"
#include "eol/station/production_sim.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/screen_store.hpp"
#include "eol/station/store.hpp"
#include "support/cli_test.hpp"
#include "support/station_test.hpp"

using namespace eol::station;
using eol::test::create_store;
using eol::test::shipped_recipe;
using eol::test::TempDir;


TEST_CASE("genealogy: after a real screen, devices with a shorted or defect-window cell are held, no other") {
    TempDir tmp;
    Store store = create_store(tmp / "a.db");
    const Recipe recipe = eol::test::light_eol_recipe();
    const Recipe formation = shipped_recipe("formation");
    ProductionSpec spec;
    spec.formation = &formation;
    spec.recipe = &recipe;
    spec.cells = 500;
    spec.from = {2023, 2, 1};
    spec.to = {2023, 6, 30};
    spec.defect_window = parse_window("2023-03..2023-04");
    spec.defect_short_fraction = 0.15;
    spec.defect_r0_shift_rel = 0.06;
    spec.background_short_fraction = 0.005;
    spec.fixture_wait_s = 600;
    spec.seed = 1;
    spec.threads = 2;
    spec.device_models = default_device_models();
    spec.assembly_fraction = 0.6;
    const ProductionSummary sum = simulate_production(store, spec);
    REQUIRE(sum.devices.size() > 60);
    CHECK(sum.devices_refused == 0);
    std::size_t affected = 0, in_defect_lots = 0;
    for (const auto& d : sum.devices) {
        affected += d.affected() ? 1u : 0u;
        in_defect_lots += d.defect_lot ? 1u : 0u;
    }
    REQUIRE(affected > 0);
    REQUIRE(in_defect_lots > 0);  // devices assembled from lots the screen will hold

    // Before screening every device may ship.
    Genealogy g(store);
    std::vector<std::string> serials;
    for (const auto& d : sum.devices) serials.push_back(d.serial);
    for (const auto& d : g.lookup_devices(serials)) CHECK(d.may_ship);

    ScreeningConfig config;
    config.features = {"ocv_v", "dcir_ohm", "r0_ohm", "r1_ohm", "tau1_s", "k_log10_mv_per_day"};
    config.mcd_quantile = 0.9999;
    screen_store(store, config, {}, true, Actor{"screen", "screening"});
    for (const auto& e : store.quarantine_events())
        for (const auto& d : sum.devices) REQUIRE(d.assembled_unix_s < e.time_unix_s);  // holds came after assembly

    const auto looked = g.lookup_devices(serials);
    std::map<std::string, CellTruth> cell_truth;
    for (const auto& t : sum.truth) cell_truth[t.serial] = t;
    LookupSession cells(store);
    std::size_t affected_held = 0, other_held = 0, other_free = 0;
    for (std::size_t i = 0; i < looked.size(); ++i) {
        const DeviceTruth& t = sum.devices[i];
        const DeviceLookup& d = looked[i];
        CAPTURE(t.serial);
        REQUIRE(d.known);
        REQUIRE(d.cells.size() == t.cells.size());
        // Exactly propagation: held when (and only when) a cell inside is held.
        bool any_cell_blocked = false;
        for (const auto& c : t.cells) any_cell_blocked = any_cell_blocked || !cells.lookup(c).may_ship;
        CHECK(d.may_ship == !any_cell_blocked);
        if (t.affected()) {
            CHECK_FALSE(d.may_ship);
            CHECK(d.state() == CellState::held);
            affected_held += d.may_ship ? 0u : 1u;
        } else if (d.may_ship) {
            ++other_free;
        } else {
            // Only a screen false positive can hold a device without a
            // defect: a cell inside that is neither shorted nor of a defect lot.
            ++other_held;
            bool false_positive_inside = false;
            for (const auto& c : d.cells)
                false_positive_inside = false_positive_inside ||
                                        (c.state == CellState::held && !cell_truth[c.serial].shorted &&
                                         !cell_truth[c.serial].defect_lot);
            CHECK(false_positive_inside);
        }
    }
    MESSAGE(sum.devices.size(), " devices: ", affected, " with a shorted or defect-window cell (", affected_held,
            " held); of the others ", other_free, " free, ", other_held, " held by a screen false positive");
    CHECK(affected_held == affected);
    CHECK(static_cast<double>(other_held) <= 0.05 * static_cast<double>(other_held + other_free));
}
