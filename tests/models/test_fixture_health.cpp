// Fixture health monitor: a fixture of 16 positions testing cells whose R0
// spreads 3 % (0.54 mΩ) and whose thermocouples read static offsets of up to
// ±0.5 K; one position's contacts wear (linear growth), another's
// thermocouple drifts. The worn position is flagged within the stated bound
// (window_readings cells at that position after its true offset crosses the
// limit), nothing else is flagged, a reset relearns, and bad settings are
// refused.
#include <doctest/doctest.h>

#include <cmath>
#include <optional>
#include <random>
#include <vector>

#include "eol/models/fixture_health.hpp"
#include "eol/models/series.hpp"

using namespace eol::models;

namespace {

struct Fixture16 {
    std::mt19937_64 rng{7};
    std::normal_distribution<double> r0{0.018, 0.00054};
    std::normal_distribution<double> tc_noise{0.0, 0.03};
    std::vector<double> tc_static;
    Fixture16() {
        std::uniform_real_distribution<double> u(-0.5, 0.5);
        for (int p = 0; p < 16; ++p) tc_static.push_back(u(rng));
    }
};

}  // namespace

TEST_CASE("fixture health: a wearing position is flagged within its window after crossing the limit, no other") {
    FixtureHealthSettings s;  // W = 15, contact 2 mΩ, thermocouple 1 K
    FixtureMonitor mon(s);
    Fixture16 fx;
    const int worn = 5;
    const double rate_ohm_per_cell = 0.00002;  // at the worn position: 2 mΩ after 100 of its cells
    std::optional<std::size_t> crossed_at, flagged_at;  // cells at the worn position
    std::size_t worn_cells = 0;
    std::vector<FixtureAlarm> alarms;
    for (int k = 0; k < 16 * 200; ++k) {
        const int pos = 1 + k % 16;
        FixtureReading r;
        r.position = pos;
        double contact = 0.0;
        if (pos == worn) {
            ++worn_cells;
            contact = worn_cells > 20 ? rate_ohm_per_cell * static_cast<double>(worn_cells - 20) : 0.0;
            if (!crossed_at && contact > s.contact_limit_ohm) crossed_at = worn_cells;
        }
        r.resistance_ohm = fx.r0(fx.rng) + contact;
        r.rest_offset_k = fx.tc_static[static_cast<std::size_t>(pos - 1)] + fx.tc_noise(fx.rng);
        if (auto a = mon.add(r)) {
            alarms.push_back(*a);
            if (a->position == worn && !flagged_at) flagged_at = worn_cells;
        }
    }
    REQUIRE(crossed_at);
    REQUIRE(flagged_at);
    REQUIRE(alarms.size() == 1);  // the worn position only, and once
    CHECK(alarms[0].position == worn);
    CHECK(alarms[0].quantity == "contact_resistance");
    CHECK(alarms[0].value > s.contact_limit_ohm);
    CHECK(alarms[0].reason.find("position 5: contact resistance +") != std::string::npos);
    // The stated bound: within W cells at the position after the crossing
    // (the median lags W/2 on a ramp; the noise adds a little).
    MESSAGE("crossed at cell ", *crossed_at, ", flagged at cell ", *flagged_at, " of the worn position");
    CHECK(*flagged_at <= *crossed_at + s.window_readings);
    // Not early by much: the noise of a 15-cell median (≈0.2 mΩ here) can
    // flag a ramp a little before it crosses, never far below the limit.
    CHECK(rate_ohm_per_cell * static_cast<double>(*flagged_at - 20) > 0.75 * s.contact_limit_ohm);
    // The offset learned is what the contacts add (the other positions are the reference).
    CHECK(mon.contact_offset_ohm(worn) == doctest::Approx(rate_ohm_per_cell * (200 - 20 - 7)).epsilon(0.15));
    for (int p = 1; p <= 16; ++p)
        if (p != worn) CHECK(std::fabs(mon.contact_offset_ohm(p)) < 0.0007);  // ~4 standard errors
    CHECK(mon.alarm(worn).has_value());

    // Serviced: the flag is cleared and the position learns again from its next cells.
    mon.reset(worn);
    CHECK_FALSE(mon.alarm(worn).has_value());
    CHECK(mon.contact_offset_ohm(worn) == 0.0);
    for (int k = 0; k < 16 * 30; ++k) {
        FixtureReading r;
        r.position = 1 + k % 16;
        r.resistance_ohm = fx.r0(fx.rng);
        r.rest_offset_k = fx.tc_static[static_cast<std::size_t>(r.position - 1)] + fx.tc_noise(fx.rng);
        CHECK_FALSE(mon.add(r).has_value());
    }
    CHECK(std::fabs(mon.contact_offset_ohm(worn)) < 0.0007);
}

TEST_CASE("fixture health: a thermocouple drifting 1 K from its learned baseline is flagged, static offsets are not") {
    FixtureHealthSettings s;
    FixtureMonitor mon(s);
    Fixture16 fx;
    const int drifting = 11;
    std::size_t cells = 0;
    std::optional<FixtureAlarm> alarm;
    std::optional<std::size_t> crossed_at, flagged_at;
    for (int k = 0; k < 16 * 200 && !alarm; ++k) {
        const int pos = 1 + k % 16;
        FixtureReading r;
        r.position = pos;
        r.resistance_ohm = fx.r0(fx.rng);
        double drift = 0.0;
        if (pos == drifting) {
            ++cells;
            drift = cells > 40 ? 0.01 * static_cast<double>(cells - 40) : 0.0;  // 1 K after 100 more cells
            if (!crossed_at && drift > s.tc_drift_limit_k) crossed_at = cells;
        }
        r.rest_offset_k = fx.tc_static[static_cast<std::size_t>(pos - 1)] + drift + fx.tc_noise(fx.rng);
        if (auto a = mon.add(r)) {
            alarm = a;
            flagged_at = cells;
        }
    }
    REQUIRE(alarm);
    CHECK(alarm->position == drifting);
    CHECK(alarm->quantity == "thermocouple_offset");
    REQUIRE(crossed_at);
    MESSAGE("thermocouple drift crossed 1 K at cell ", *crossed_at, ", flagged at ", *flagged_at);
    CHECK(*flagged_at <= *crossed_at + s.window_readings);
    CHECK(0.01 * static_cast<double>(*flagged_at - 40) > 0.75 * s.tc_drift_limit_k);
    // The static offsets (up to ±0.5 K from the fixture's median) are learned, not flagged.
    for (const auto& p : mon.positions())
        if (p.position != drifting) CHECK_FALSE(p.alarm.has_value());
}

TEST_CASE("fixture health: readings without values, a lone position, and bad settings") {
    FixtureMonitor mon;
    FixtureReading r;
    r.position = 1;
    for (int k = 0; k < 100; ++k) CHECK_FALSE(mon.add(r).has_value());  // NaN: nothing learned
    r.resistance_ohm = 0.030;
    for (int k = 0; k < 100; ++k) CHECK_FALSE(mon.add(r).has_value());  // no other position: no reference
    CHECK(mon.contact_offset_ohm(1) == 0.0);
    CHECK(mon.contact_offset_ohm(99) == 0.0);
    FixtureHealthSettings bad;
    bad.window_readings = 0;
    CHECK_THROWS_AS(FixtureMonitor{bad}, InputError);
    bad = {};
    bad.contact_limit_ohm = 0;
    CHECK_THROWS_AS(FixtureMonitor{bad}, InputError);
    bad = {};
    bad.min_reference = bad.reference_readings + 1;
    CHECK_THROWS_AS(FixtureMonitor{bad}, InputError);
    bad = {};
    bad.calibration_readings = 0;
    CHECK_THROWS_AS(FixtureMonitor{bad}, InputError);
}

TEST_CASE("fixture health: each position's thermocouple calibration is the median steady offset of its last cells") {
    // 8 positions with sensor offsets o_p; good cells read c = o_p + R_th·P_x
    // with P_x ~ N(0, 3 mW) and R_th 11 K/W; 3 % of cells are 1 kΩ shorts
    // (+15 mW). The calibration comes within 20 mK of o_p once a position has
    // calibration_readings cells, the shorts do not move it, and a reset (the
    // sensor replaced) relearns it from the next cells only.
    FixtureHealthSettings s;  // calibration over the last 31 cells
    FixtureMonitor mon(s);
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> u(-0.5, 0.5);
    std::normal_distribution<double> px(0.0, 0.003);
    std::vector<double> o(9);
    for (int p = 1; p <= 8; ++p) o[static_cast<std::size_t>(p)] = u(rng);
    auto feed = [&](int p, double offset) {
        FixtureReading r;
        r.position = p;
        const bool shorted = std::uniform_real_distribution<double>(0, 1)(rng) < 0.03;
        r.steady_offset_k = offset + 11.0 * (px(rng) + (shorted ? 0.015 : 0.0));
        mon.add(r);
    };
    for (int k = 0; k < 30 * 8; ++k) feed(1 + k % 8, o[static_cast<std::size_t>(1 + k % 8)]);
    for (int p = 1; p <= 8; ++p) CHECK(std::isnan(mon.thermo_calibration_k(p)));  // 30 of 31
    for (int k = 0; k < 40 * 8; ++k) feed(1 + k % 8, o[static_cast<std::size_t>(1 + k % 8)]);
    for (int p = 1; p <= 8; ++p) {
        CAPTURE(p);
        CHECK(std::fabs(mon.thermo_calibration_k(p) - o[static_cast<std::size_t>(p)]) < 0.02);
    }
    // Position 3's sensor replaced (+0.8 K): reset, then learned from the new cells alone.
    mon.reset(3);
    CHECK(std::isnan(mon.thermo_calibration_k(3)));
    for (int k = 0; k < 31; ++k) feed(3, 0.8);
    CHECK(std::fabs(mon.thermo_calibration_k(3) - 0.8) < 0.02);
    CHECK(std::isnan(mon.thermo_calibration_k(42)));
    CHECK(mon.positions().size() == 8);
}
