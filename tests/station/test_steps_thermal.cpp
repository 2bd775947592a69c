// The step engine's heat step end to end: the shipped station's simulated
// instruments on loopback (SCPI load, Modbus thermocouple module), the real
// drivers (support/sim_rig.hpp), run_recipe() with the shipped recipe's heat step (3 A for 600 s,
// 600 s cooling, 1 Hz), the thermal fit on what the drivers read. A good
// cell must show no unexplained heat (|P_x| within a few mW, the fit's
// noise), a cell with a 10 Ω internal short its OCV²/R_isc (≈ 1.6 W).
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <variant>

#include "eol/sim/cell.hpp"
#include "eol/station/steps.hpp"
#include "support/sim_rig.hpp"

namespace {

using namespace eol;

struct HeatRun {
    double p_x_w = NAN;
    double r_th_k_per_w = NAN;
    double c_th_j_per_k = NAN;
    std::string verdict;
};

/// Runs only the shipped recipe's heat step on fixture position 1 holding a
/// cell with parameters `cell`.
HeatRun run_heat_step(const sim::CellParams& cell) {
    test::SimRig rig(500.0);
    const station::Recipe recipe = rig.recipe_of({station::StepKind::heat});
    REQUIRE(recipe.steps.size() == 1);
    const station::ChannelJob job = rig.job(1, "TEST-CELL", cell);
    REQUIRE(job.io.ambient_channel.has_value());
    station::ScaledWallClock clock(rig.cfg.sim.time_scale);
    station::RunContext ctx;
    ctx.station_id = "test";
    ctx.position = 1;
    ctx.clock = &clock;
    const station::TestRecord rec = station::run_recipe(recipe, rig.cfg.limits, job.io, job.cell, ctx);
    CHECK_FALSE(rig.input_on(1));
    HeatRun out;
    out.verdict = std::string(station::to_string(rec.verdict));
    INFO("abort reason: " << rec.abort_reason);
    for (const auto& f : rec.fits)
        if (f.kind == "thermal") {
            out.p_x_w = f.parameters.at("p_extra_w");
            out.r_th_k_per_w = f.parameters.at("r_th_k_per_w");
            out.c_th_j_per_k = f.parameters.at("c_th_j_per_k");
        }
    return out;
}

}  // namespace

TEST_CASE("steps: heat step shows no unexplained heat on a good cell, OCV²/R on a 10 ohm short") {
    sim::CellParams good;  // nominal: C_th 170 J/K, R_th 11 K/W, no short
    const HeatRun g = run_heat_step(good);
    INFO("good cell: P_x " << g.p_x_w * 1e3 << " mW, R_th " << g.r_th_k_per_w << " K/W, C_th " << g.c_th_j_per_k
                           << " J/K, verdict " << g.verdict);
    MESSAGE("good cell: P_x " << g.p_x_w * 1e3 << " mW, R_th " << g.r_th_k_per_w << " K/W, C_th " << g.c_th_j_per_k
                              << " J/K");
    REQUIRE(std::isfinite(g.p_x_w));
    // Mean heat ≈ 0.25 W over the window; before the heating model took the
    // RC branches' lag and the state-of-charge change into account, good
    // cells showed −20 to −70 mW here and R_th twice the truth.
    CHECK(std::abs(g.p_x_w) < 0.020);
    CHECK(g.r_th_k_per_w == doctest::Approx(good.r_th_k_per_w).epsilon(0.2));
    CHECK(g.c_th_j_per_k == doctest::Approx(good.c_th_j_per_k).epsilon(0.2));

    sim::CellParams shorted = good;
    shorted.r_isc_ohm = 10.0;  // OCV²/R ≈ 1.6 W
    const HeatRun s = run_heat_step(shorted);
    INFO("10 ohm short: P_x " << s.p_x_w * 1e3 << " mW, R_th " << s.r_th_k_per_w << " K/W, verdict " << s.verdict);
    MESSAGE("10 ohm short: P_x " << s.p_x_w * 1e3 << " mW (OCV²/R ≈ 1600 mW), R_th " << s.r_th_k_per_w << " K/W");
    REQUIRE(std::isfinite(s.p_x_w));
    const double expected = 4.0 * 4.0 / 10.0;
    CHECK(s.p_x_w > 0.5 * expected);
    CHECK(s.p_x_w < 1.5 * expected);
}
