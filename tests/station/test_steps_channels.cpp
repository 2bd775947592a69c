// The step engine over several fixture positions at once, through the real
// drivers against the simulated instruments on loopback: a failure inside
// one cell (a fit that throws) is that cell's verdict error and the others
// finish; a safety abort skips the remaining steps; the load is off on the
// simulator afterwards in every case; not measured is never a pass.
#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "eol/station/steps.hpp"
#include "support/sim_rig.hpp"

namespace {

using namespace eol;
using station::StepKind;
using station::StepOutcome;
using station::Verdict;

/// Keeps every record it is handed (a stand-in for the store, the PLC, …).
struct CollectSink : station::RecordSink {
    std::mutex m;
    std::vector<station::TestRecord> seen;
    void consume(const station::TestRecord& r) override {
        std::lock_guard lk(m);
        seen.push_back(r);
    }
};

}  // namespace

TEST_CASE("steps: a fit that throws in one cell of a four-channel round is that cell's verdict error, the others finish") {
    test::SimRig rig(50.0);  // a 30 s step margin is 0.6 s of wall time: a loaded host does not eat it
    const station::Recipe recipe = rig.recipe_of({StepKind::ocv, StepKind::pulse});
    REQUIRE(recipe.steps.size() == 2);
    std::vector<station::ChannelJob> jobs;
    for (int pos = 1; pos <= 4; ++pos) jobs.push_back(rig.job(pos, "CELL-" + std::to_string(pos), sim::CellParams{}));
    auto throwing = std::make_shared<station::StepFits>(station::StepFits::standard());
    throwing->ecm = [](const models::Series&, const models::EcmOptions&) -> models::EcmFit {
        throw models::InputError("injected: the circuit fit cannot use this pulse", "v_v", 7);
    };
    jobs[1].fits = throwing;  // position 2

    station::ScaledWallClock clock(rig.cfg.sim.time_scale);
    station::RunContext ctx;
    ctx.station_id = "T-1";
    ctx.clock = &clock;
    CollectSink sink;
    station::RecordSink* sinks[] = {&sink};
    const auto recs = station::run_channels(recipe, rig.cfg.limits, jobs, ctx, sinks);

    REQUIRE(recs.size() == 4);
    CHECK(sink.seen.size() == 4);  // each record went to the sink once
    for (int pos = 1; pos <= 4; ++pos) {
        const auto& r = recs[static_cast<std::size_t>(pos - 1)];
        std::string ms;
        for (const auto& m : r.measurements) ms += m.name + "=" + std::to_string(m.value) + " ";
        INFO("position " << pos << ": " << station::to_string(r.verdict) << " " << r.abort_reason << " " << ms);
        CHECK(r.serial == "CELL-" + std::to_string(pos));
        CHECK(r.channel == pos);
        CHECK_FALSE(rig.input_on(pos));
        REQUIRE(r.steps.size() == 2);
        CHECK(r.steps[0].outcome == StepOutcome::pass);  // the OCV
        if (pos == 2) {
            CHECK(r.verdict == Verdict::error);
            CHECK(r.abort_reason.find("step 'pulse'") != std::string::npos);
            CHECK(r.abort_reason.find("injected") != std::string::npos);
            CHECK(r.steps[1].outcome == StepOutcome::error);
            // The pulse's measurements are there, unset: not measured is not pass.
            for (std::size_t k = r.steps[1].first_measurement; k < r.measurements.size(); ++k)
                if (r.measurements[k].name != "pulse_v_min_v") CHECK(r.measurements[k].outcome == station::Outcome::unset);
        } else {
            CHECK(r.verdict == Verdict::pass);
            CHECK(r.steps[1].outcome == StepOutcome::pass);
            REQUIRE(r.fits.size() == 1);
            CHECK(r.fits[0].kind == "ecm2");
            CHECK(r.steps[1].sample_count > 100);  // the logger's trace is in the record
        }
    }
}

TEST_CASE("steps: a safety abort ends the run, skips the remaining steps and leaves the load off") {
    test::SimRig rig(400.0);
    const station::Recipe recipe = rig.recipe_of({StepKind::ocv, StepKind::dcir, StepKind::pulse});
    REQUIRE(recipe.steps.size() == 3);
    station::Limits limits = rig.cfg.limits;
    limits.v_min_v = 3.95;  // above what a 3 A DCIR level leaves a half-charged cell
    const station::ChannelJob job = rig.job(1, "CELL-A", sim::CellParams{});
    const station::TestRecord r = rig.run(recipe, limits, job);
    INFO(r.abort_reason);
    CHECK(r.verdict == Verdict::abort);
    CHECK(r.abort_reason.find("step 'dcir'") != std::string::npos);
    CHECK(r.abort_reason.find("below 3.950 V") != std::string::npos);
    REQUIRE(r.steps.size() == 3);
    CHECK(r.steps[0].outcome == StepOutcome::pass);
    CHECK(r.steps[1].outcome == StepOutcome::aborted);
    CHECK(r.steps[2].outcome == StepOutcome::skipped);
    CHECK(r.steps[2].measurement_count == 0);
    CHECK_FALSE(rig.input_on(1));
}

TEST_CASE("steps: a step asking more than the safety current is an error before any current flows") {
    test::SimRig rig(400.0);
    const station::Recipe recipe = rig.recipe_of({StepKind::pulse});
    station::Limits limits = rig.cfg.limits;
    limits.i_max_a = 1.0;  // the pulse asks 6 A
    const station::ChannelJob job = rig.job(1, "CELL-B", sim::CellParams{});
    const station::TestRecord r = rig.run(recipe, limits, job);
    CHECK(r.verdict == Verdict::error);
    CHECK(r.abort_reason.find("more than limits.i_max_a = 1 A") != std::string::npos);
    CHECK(r.trace.size() == 0);
    CHECK_FALSE(rig.input_on(1));
}

TEST_CASE("record: judge() and decide_verdict(): not measured is never a pass") {
    using station::judge;
    using station::Outcome;
    CHECK(judge(3.6, 3.4, 4.2) == Outcome::pass);
    CHECK(judge(3.4, 3.4, 4.2) == Outcome::pass);  // inclusive
    CHECK(judge(4.3, 3.4, 4.2) == Outcome::fail);
    CHECK(judge(std::nan(""), 3.4, 4.2) == Outcome::unset);
    CHECK(judge(std::nan(""), std::nullopt, std::nullopt) == Outcome::unset);
    CHECK(judge(INFINITY, std::nullopt, std::nullopt) == Outcome::unset);
    CHECK(judge(-1e9, std::nullopt, std::nullopt) == Outcome::pass);
    CHECK(station::Measurement{}.outcome == Outcome::unset);  // a default measurement does not pass

    station::TestRecord r;
    r.verdict = Verdict::pass;
    r.measurements = {station::Measurement::judged("ocv_v", 3.6, "V", 3.4, 4.2),
                      station::Measurement::judged("r0_ohm", std::nan(""), "ohm", std::nullopt, 0.05)};
    station::decide_verdict(r);
    CHECK(r.verdict == Verdict::fail);
    CHECK(r.abort_reason == "not measured: r0_ohm");
    r.measurements[1] = station::Measurement::judged("r0_ohm", 0.06, "ohm", std::nullopt, 0.05);
    station::decide_verdict(r);
    CHECK(r.verdict == Verdict::fail);
    CHECK(r.abort_reason == "out of limits: r0_ohm");
    r.measurements[1] = station::Measurement::judged("r0_ohm", 0.03, "ohm", std::nullopt, 0.05);
    station::decide_verdict(r);
    CHECK(r.verdict == Verdict::pass);
    CHECK(r.abort_reason.empty());
    r.verdict = Verdict::abort;  // a stopped run keeps its verdict
    station::decide_verdict(r);
    CHECK(r.verdict == Verdict::abort);
}


TEST_CASE("hostile: steps a slow instrument on a compressed clock does not time out a step with a default timeout, a declared one still does") {
    // At 400x the default margin of an OCV step (30 s) is 75 ms of wall
    // time; replies 40 ms late make its ten samples take about 1.2 s of wall
    // time (~500 station s). The default timeout keeps 5 s of wall time over
    // the step's duration: the step passes. A declared timeout is the
    // recipe's own: the same step with timeout_s = 1 s times out.
    test::SimRig rig(400.0);
    station::Recipe recipe = rig.recipe_of({StepKind::ocv});
    REQUIRE(recipe.steps.size() == 1);
    REQUIRE(recipe.steps[0].timeout_s == 0);  // the default
    const station::ChannelJob job = rig.job(1, "CELL-SLOW", sim::CellParams{});
    const std::string load_name = rig.cfg.find_position(1)->load;
    rig.sim->faults(load_name).update([](sim::FaultSettings& s) { s.latency_s = 0.04; });
    const station::TestRecord r = rig.run(recipe, rig.cfg.limits, job);
    INFO(r.abort_reason);
    REQUIRE(r.steps.size() == 1);
    const double took_s = r.steps[0].end_unix_s - r.steps[0].start_unix_s;
    MESSAGE("OCV step with 40 ms replies at 400x: " << took_s << " station s");
    CHECK(took_s > recipe.steps[0].default_timeout_s());  // past the station-time default: the floor kept it
    CHECK(r.steps[0].outcome == StepOutcome::pass);
    CHECK(r.verdict == Verdict::pass);

    recipe.steps[0].timeout_s = 1.0;
    const station::TestRecord t = rig.run(recipe, rig.cfg.limits, job);
    REQUIRE(t.steps.size() == 1);
    CHECK(t.steps[0].outcome == StepOutcome::timeout);
    CHECK(t.verdict == Verdict::error);
    rig.sim->faults(load_name).update([](sim::FaultSettings& s) { s.latency_s = 0; });
    CHECK_FALSE(rig.input_on(1));
}

TEST_CASE("steps: a rest before a pulse programs it, every step keeps its nominal duration and the pulse its whole log") {
    // The rest programs the pulse's list and logger in its last part, the
    // pulse reads its temperatures inside its profile, the DCIR and OCV
    // readings are timed to complete at their windows' ends: none of it may
    // shorten a step or the pulse's log, and the load ends off.
    test::SimRig rig(200.0);
    const station::Recipe recipe = rig.recipe_of({StepKind::rest, StepKind::ocv, StepKind::dcir, StepKind::pulse});
    std::size_t pulse_at = recipe.steps.size();
    for (std::size_t k = 0; k < recipe.steps.size(); ++k)
        if (recipe.steps[k].kind() == StepKind::pulse) pulse_at = k;
    REQUIRE(pulse_at < recipe.steps.size());
    REQUIRE(pulse_at > 0);
    REQUIRE(recipe.steps[pulse_at - 1].kind() == StepKind::rest);
    const station::ChannelJob job = rig.job(1, "CELL-ARM", sim::CellParams{});
    const station::TestRecord r = rig.run(recipe, rig.cfg.limits, job);
    INFO(r.abort_reason);
    REQUIRE(r.steps.size() == recipe.steps.size());
    for (std::size_t k = 0; k < r.steps.size(); ++k) {
        CAPTURE(r.steps[k].name);
        CHECK(r.steps[k].outcome == StepOutcome::pass);
        // A reading may complete at a window's end, never before it: a step
        // takes at least its nominal duration (less a tenth of the DCIR's
        // high level and of the OCV's span, the most a reading starts early).
        const double least_s = recipe.steps[k].duration_s() -
                               (recipe.steps[k].kind() == StepKind::rest || recipe.steps[k].kind() == StepKind::pulse
                                    ? 1e-6
                                    : 0.2 * recipe.steps[k].duration_s());
        CHECK(r.steps[k].end_unix_s - r.steps[k].start_unix_s >= least_s);
    }
    const auto& pp = std::get<station::PulseParams>(recipe.steps[pulse_at].params);
    CHECK(r.steps[pulse_at].sample_count == pp.points());
    CHECK_FALSE(rig.input_on(1));
}
