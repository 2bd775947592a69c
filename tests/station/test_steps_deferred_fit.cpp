// The pulse's circuit fit runs on the compute lane while the next step drives
// the instruments, and the pulse step is judged once the fit is done: through
// the real drivers against the simulated instruments on loopback. The record
// is the same as when the fit ran in its step (the fits in recipe order, each
// step's measurements in its own range); a fit that fails is the pulse
// step's error, and the steps after the one that ran beside it are skipped.
#include <doctest/doctest.h>

#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "eol/station/steps.hpp"
#include "support/sim_rig.hpp"

namespace {

using namespace eol;
using station::StepKind;
using station::StepOutcome;
using station::Verdict;

/// Each step's measurements lie in its own range, one after the other, and
/// the ranges cover the record's measurements.
void check_ranges(const station::TestRecord& r) {
    std::size_t next = 0;
    for (const auto& st : r.steps) {
        INFO("step " << st.name);
        CHECK(st.first_measurement == next);
        next += st.measurement_count;
    }
    CHECK(next == r.measurements.size());
}

/// A run's context with its fits on a compute lane of their own (a strand on
/// a one-thread pool), as the controller runs them.
struct ComputeRun {
    explicit ComputeRun(const test::SimRig& rig, std::shared_ptr<const station::StepFits> fits)
        : clock(rig.cfg.sim.time_scale) {
        ctx.station_id = "T-1";
        ctx.position = 1;
        ctx.clock = &clock;
        ctx.fits = std::move(fits);
        ctx.compute = &compute;
    }
    station::TestRecord run(const station::Recipe& recipe, const test::SimRig& rig, const station::ChannelJob& job) {
        auto r = station::run_recipe(recipe, rig.cfg.limits, job.io, job.cell, ctx);
        pool.join();
        return r;
    }
    boost::asio::thread_pool pool{1};
    const station::Lane compute = boost::asio::make_strand(pool.get_executor());
    station::ScaledWallClock clock;
    station::RunContext ctx;
};

}  // namespace

TEST_CASE("steps: the pulse's circuit fit runs while the next step drives the instruments, and the record keeps recipe order") {
    test::SimRig rig(400.0);
    const station::Recipe recipe = rig.recipe_of({StepKind::ocv, StepKind::pulse, StepKind::heat});
    REQUIRE(recipe.steps.size() == 3);
    REQUIRE(recipe.steps[1].kind() == StepKind::pulse);
    REQUIRE(recipe.steps[2].kind() == StepKind::heat);
    const station::ChannelJob job = rig.job(1, "CELL-D1", sim::CellParams{});

    // The fit waits (at most 20 s) until the heat step has begun: were the
    // pulse judged before the next step started, it would wait in vain.
    std::mutex m;
    std::condition_variable cv;
    bool heat_started = false, fit_saw_heat = false;
    auto fits = std::make_shared<station::StepFits>(station::StepFits::standard());
    const auto standard = station::StepFits::standard();
    fits->ecm = [&, standard](const models::Series& s, const models::EcmOptions& o) {
        {
            std::unique_lock lk(m);
            fit_saw_heat = cv.wait_for(lk, std::chrono::seconds(20), [&] { return heat_started; });
        }
        return standard.ecm(s, o);
    };
    ComputeRun cr(rig, fits);
    cr.ctx.on_step = [&](std::size_t index, const std::string& name) {
        if (index == 2) {
            CHECK(name == recipe.steps[2].name);
            std::lock_guard lk(m);
            heat_started = true;
            cv.notify_all();
        }
    };
    const station::TestRecord r = cr.run(recipe, rig, job);
    INFO(station::to_string(r.verdict) << " " << r.abort_reason);
    CHECK(fit_saw_heat);
    // The heat step without the recipe's rests before it may judge P_x out
    // of its limits; what matters here is that both steps completed.
    CHECK((r.verdict == Verdict::pass || r.verdict == Verdict::fail));
    REQUIRE(r.steps.size() == 3);
    CHECK(r.steps[1].outcome == StepOutcome::pass);
    CHECK((r.steps[2].outcome == StepOutcome::pass || r.steps[2].outcome == StepOutcome::fail));
    REQUIRE(r.fits.size() == 2);
    CHECK(r.fits[0].kind == "ecm2");
    CHECK(r.fits[0].converged);
    CHECK(r.fits[0].parameters.count("r0_ohm") == 1);
    CHECK(r.fits[1].kind == "thermal");
    check_ranges(r);
    bool r0_judged = false;
    for (std::size_t k = r.steps[1].first_measurement; k < r.steps[1].first_measurement + r.steps[1].measurement_count;
         ++k)
        if (r.measurements[k].name == "r0_ohm") {
            r0_judged = r.measurements[k].outcome == station::Outcome::pass;
            CHECK(r.measurements[k].value == doctest::Approx(r.fits[0].parameters.at("r0_ohm")));
        }
    CHECK(r0_judged);
    // The pulse ended when its logger was read, before its fit: its step
    // ends no later than the heat step begins.
    CHECK(r.steps[1].end_unix_s <= r.steps[2].start_unix_s);
    CHECK_FALSE(rig.input_on(1));
}

TEST_CASE("steps: a pulse fit that fails while the next step runs is the pulse's error, and the steps after are skipped") {
    test::SimRig rig(400.0);
    station::Recipe recipe = rig.recipe_of({StepKind::ocv, StepKind::pulse, StepKind::heat});
    REQUIRE(recipe.steps.size() == 3);
    station::RecipeStep again = recipe.steps[0];
    again.name = "ocv-again";
    recipe.steps.push_back(again);
    const station::ChannelJob job = rig.job(1, "CELL-D2", sim::CellParams{});
    auto fits = std::make_shared<station::StepFits>(station::StepFits::standard());
    fits->ecm = [](const models::Series&, const models::EcmOptions&) -> models::EcmFit {
        throw models::InputError("injected: the circuit fit cannot use this pulse", "v_v", 7);
    };
    ComputeRun cr(rig, fits);
    const station::TestRecord r = cr.run(recipe, rig, job);
    INFO(station::to_string(r.verdict) << " " << r.abort_reason);
    CHECK(r.verdict == Verdict::error);
    CHECK(r.abort_reason.find("step 'pulse") != std::string::npos);
    CHECK(r.abort_reason.find("circuit fit: injected") != std::string::npos);
    REQUIRE(r.steps.size() == 4);
    CHECK(r.steps[0].outcome == StepOutcome::pass);
    CHECK(r.steps[1].outcome == StepOutcome::error);
    CHECK(r.steps[2].outcome != StepOutcome::skipped);  // it ran beside the fit
    CHECK(r.steps[2].measurement_count > 0);
    CHECK(r.steps[3].outcome == StepOutcome::skipped);
    CHECK(r.steps[3].measurement_count == 0);
    // No circuit fit in the record; the thermal fit of the step that ran is.
    REQUIRE(r.fits.size() == 1);
    CHECK(r.fits[0].kind == "thermal");
    // The pulse's fitted measurements are there, unset: not measured is not pass.
    for (std::size_t k = r.steps[1].first_measurement; k < r.steps[1].first_measurement + r.steps[1].measurement_count;
         ++k)
        if (r.measurements[k].name != "pulse_v_min_v") CHECK(r.measurements[k].outcome == station::Outcome::unset);
    check_ranges(r);
    CHECK_FALSE(rig.input_on(1));
}
