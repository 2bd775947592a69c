// The heat step's thermal fit searched on a reduced record (the default above
// 1000 samples) against the search on every sample, over the heat windows of
// a simulated production stored whole (good and shorted cells, through the
// step engine and the simulator's cell physics): the same results within the
// search's tolerance, and the same failures. A shorted cell whose reduced
// search finds an unphysical circuit is searched again on every sample.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "eol/models/thermal.hpp"
#include "eol/station/config.hpp"
#include "eol/station/steps.hpp"
#include "eol/station/production_sim.hpp"
#include "eol/station/store.hpp"
#include "support/cli_test.hpp"
#include "support/station_test.hpp"

using namespace eol;
using namespace eol::station;

namespace {

/// |a − b| against the larger of |a|, |b| and `floor`; 0 when both are NaN,
/// infinite when one is.
double rel(double a, double b, double floor) {
    if (std::isnan(a) && std::isnan(b)) return 0.0;
    if (std::isnan(a) != std::isnan(b)) return INFINITY;
    return std::abs(a - b) / std::max({std::abs(a), std::abs(b), floor});
}

}  // namespace

TEST_CASE("thermal search: a reduced record agrees with every sample on a simulated production's heat windows, shorted cells included") {
    test::TempDir tmp;
    Store store = test::create_store(tmp / "p.db");
    ProductionSpec spec;
    spec.cells = 24;
    spec.from = {2023, 3, 1};
    spec.to = {2023, 3, 3};
    spec.defect_window = std::pair{Date{2023, 3, 2}, Date{2023, 3, 3}};
    spec.defect_short_fraction = 0.5;
    spec.background_short_fraction = 0.0;
    spec.fixture_wait_s = 1800;
    spec.seed = 3;
    spec.threads = 2;
    spec.store_all_traces = true;
    const Recipe eol = test::shipped_recipe("eol-18650");
    const Recipe formation = test::shipped_recipe("formation");
    spec.recipe = &eol;
    spec.formation = &formation;
    const ProductionSummary sum = simulate_production(store, spec);
    REQUIRE(sum.shorted > 0);

    const auto heat = std::find_if(eol.steps.begin(), eol.steps.end(), [](const auto& st) { return st.kind() == StepKind::heat; });
    REQUIRE(heat != eol.steps.end());
    const auto& hp = std::get<HeatParams>(heat->params);
    int windows = 0, again = 0, failed = 0;
    for (std::int64_t id = 1; id <= store.count("test_runs"); ++id) {
        const auto steps = store.steps(id);
        const auto it = std::find_if(steps.begin(), steps.end(), [](const auto& s) { return s.kind == "heat"; });
        if (it == steps.end()) continue;
        const models::Series s = step_window(store.trace(id), it->first_sample, it->sample_count);
        REQUIRE(s.t_amb_c.size() == s.size());  // every position of the production sim has an ambient sensor
        REQUIRE(s.size() > 1000);  // the station's window is searched reduced by default
        double ocv_v = NAN;
        for (const auto& m : store.measurements(id))
            if (m.name == "ocv_v") ocv_v = m.value;
        REQUIRE(std::isfinite(ocv_v));
        REQUIRE(eol.entropy);
        const auto options = heat_fit_options(hp, eol, ocv_v, s.t_cell_c.front());
        REQUIRE(options);
        CHECK(options->entropy_soc.has_value());
        const models::ThermalOptions& opt = options->thermal;  // as the heat step fits
        CHECK(opt.search_every_sample_up_to == 1000);
        const models::ThermalFit reduced = models::fit_thermal(s, opt);
        models::ThermalOptions every = opt;
        every.search_every_sample_up_to = 3000;
        const models::ThermalFit full = models::fit_thermal(s, every);
        ++windows;
        failed += std::isnan(full.p_extra_w.value) ? 1 : 0;
        for (const auto& n : reduced.notes) again += n.find("searched again on every sample") != std::string::npos ? 1 : 0;
        INFO("run " << id << ": C_th " << full.c_th_j_per_k.value << " / " << reduced.c_th_j_per_k.value << ", R_th "
                    << full.r_th_k_per_w.value << " / " << reduced.r_th_k_per_w.value << ", P_x " << full.p_extra_w.value
                    << " / " << reduced.p_extra_w.value << " W, R_heat " << full.heating_ohm.value << " / "
                    << reduced.heating_ohm.value);
        CHECK(rel(full.c_th_j_per_k.value, reduced.c_th_j_per_k.value, 1e-12) <= 1e-2);
        CHECK(rel(full.r_th_k_per_w.value, reduced.r_th_k_per_w.value, 1e-12) <= 1e-2);
        CHECK(rel(full.p_extra_w.value, reduced.p_extra_w.value, 1e-3) <= 1e-2);  // P_x against 1 mW
        CHECK(full.converged == reduced.converged);
        if (std::isfinite(full.p_extra_w.value))
            CHECK(rel(full.heating_ohm.value, reduced.heating_ohm.value, 1e-12) <= 1e-2);
    }
    MESSAGE(windows << " heat windows, " << failed << " with the fit failed on both sides, " << again
                    << " searched again on every sample");
    CHECK(windows == 24);
    CHECK(again >= 1);  // seed 3: two shorted cells take the search on every sample again
}

TEST_CASE("heat window: step_window cuts a step's samples and drops an ambient column with a gap, and heat_fit_options reads [cell.entropy] at the OCV") {
    models::Series trace;
    for (int k = 0; k < 10; ++k) {
        trace.t_s.push_back(k);
        trace.i_a.push_back(k >= 3 ? 3.0 : 0.0);
        trace.v_v.push_back(4.0 - 0.01 * k);
        trace.t_cell_c.push_back(25.0 + 0.1 * k);
        trace.t_amb_c.push_back(25.0);
    }
    const models::Series w = step_window(trace, 2, 5);
    REQUIRE(w.size() == 5);
    CHECK(w.t_s.front() == 2.0);
    CHECK(w.t_s.back() == 6.0);
    CHECK(w.t_amb_c.size() == 5);
    trace.t_amb_c[8] = NAN;  // outside the window: kept
    CHECK(step_window(trace, 2, 5).t_amb_c.size() == 5);
    trace.t_amb_c[4] = NAN;  // inside: the window has no ambient
    CHECK(step_window(trace, 2, 5).t_amb_c.empty());
    CHECK(step_window(trace, 2, 5).t_cell_c.size() == 5);
    CHECK(step_window(trace, 10, 0).size() == 0);
    CHECK_THROWS_WITH_AS(step_window(trace, 8, 3), "a step's samples 8..11 are past the trace's 10 samples", std::out_of_range);
    CHECK_THROWS_AS(step_window(trace, 11, 0), std::out_of_range);

    const Recipe eol = test::shipped_recipe("eol-18650");
    REQUIRE(eol.entropy);
    const auto heat = std::find_if(eol.steps.begin(), eol.steps.end(), [](const auto& st) { return st.kind() == StepKind::heat; });
    REQUIRE(heat != eol.steps.end());
    HeatParams hp = std::get<HeatParams>(heat->params);
    REQUIRE_FALSE(hp.entropic_v);
    CHECK_FALSE(heat_fit_options(hp, eol, NAN, 25.0).has_value());  // no OCV: the step errs
    const auto lo = heat_fit_options(hp, eol, 3.6, 25.0), hi = heat_fit_options(hp, eol, 4.1, 25.0);
    REQUIRE(lo);
    REQUIRE(hi);
    CHECK(lo->thermal.heating_rc_pairs == 3);
    REQUIRE(lo->entropy_soc);
    REQUIRE(hi->entropy_soc);
    CHECK(*lo->entropy_soc < *hi->entropy_soc);  // the state of charge the OCV says
    REQUIRE(lo->thermal.entropic_v);
    const auto rev = eol.entropy->reversible(3.6, 25.0, hp.current_a * hp.duration_s / 3600.0, eol.capacity_ah);
    CHECK(*lo->thermal.entropic_v == rev.k_v);
    // The step's own coefficient wins over the table, and needs no OCV.
    hp.entropic_v = 0.012;
    const auto own = heat_fit_options(hp, eol, NAN, 25.0);
    REQUIRE(own);
    CHECK(*own->thermal.entropic_v == 0.012);
    CHECK_FALSE(own->entropy_soc);
}
