// Screening at test time (test_time_screen.hpp): a finished record judged
// against the earlier lots of its cell model — shorted cells of a new lot
// held, good cells not, an injected outlier named by its features, a new
// model without history, the record and its hold in one transaction,
// concurrent judging with one refit, and how test-time holds agree with the
// lot screen's over a lot.
#include <doctest/doctest.h>

#include "support/cli_test.hpp"
#include "support/station_test.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/production_sim.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/screen_store.hpp"
#include "eol/station/store.hpp"
#include "eol/station/test_time_screen.hpp"

using namespace eol::station;
using eol::test::create_store;
using eol::test::make_serial;
using eol::test::shipped_recipe;
using eol::test::TempDir;

namespace {

constexpr double kDay = 86400.0;
constexpr double kT0 = 1.6725e9;  // 2023-01-03

bool names(const TestTimeVerdict& v, const std::string& feature) {
    for (const auto& p : v.pat)
        if (p.feature == feature) return true;
    for (const auto& t : v.top)
        if (t.feature == feature) return true;
    return false;
}

ScreeningConfig small_config() {
    ScreeningConfig c;
    c.features = {"ocv_v", "r0_ohm", "p_x_w"};
    return c;
}

// A passing record of lot 0007 (not stored) with the fill_lots features.
TestRecord lot7_record(std::uint64_t seq, double ocv_v, double r0_ohm, double p_x_w) {
    return eol::test::make_record(make_serial("0007", Date{2023, 3, 10}, seq), "EOL-01", "eol-18650",
                                  kT0 + 70 * kDay + static_cast<double>(seq), 100,
                                  {{"ocv_v", ocv_v}, {"r0_ohm", r0_ohm}, {"p_x_w", p_x_w}});
}

// Every EOL record of `lot` in the store, by serial.
std::vector<TestRecord> eol_records_of(Store& store, const std::string& lot) {
    std::vector<TestRecord> out;
    CellFilter f;
    f.lot = lot;
    std::vector<std::int64_t> ids;
    store.for_each_cell(f, [&](const CellInfo& c) {
        if (c.latest_run_id) ids.push_back(*c.latest_run_id);
    });
    for (auto id : ids) {
        auto r = store.read_record(id);
        REQUIRE(r);
        out.push_back(std::move(*r));
    }
    return out;
}

}  // namespace

TEST_CASE("test-time screen: a p_x outlier of a new lot is held by PAT, a typical cell is not") {
    TempDir tmp;
    Store store = create_store(tmp / "t.db");
    eol::test::fill_lots(store);  // 300 cells in lots 0001..0006, a few p_x outliers among them
    TestTimeScreen screen = TestTimeScreen::build(store, "INR18650-30Q", small_config(), nullptr, "0007");
    const TestTimeModelInfo info = screen.info();
    CHECK(info.history);
    CHECK(info.excluded_lot == "0007");
    CHECK(info.cells == 300);
    CHECK(info.lots == 6);
    CHECK(info.mcd);
    REQUIRE(info.features == std::vector<std::string>{"ocv_v", "r0_ohm", "p_x_w"});
    // Static PAT of p_x_w: median ≈ 0 ± 6 · 0.002, robust to the 12 planted outliers.
    CHECK(info.pat_high[2] > 0.008);
    CHECK(info.pat_high[2] < 0.016);

    const TestTimeVerdict good = screen.judge(lot7_record(1, 4.0, 0.033, 0.0005), store);
    CHECK(good.kind == TestTimeVerdict::Kind::not_outlier);
    CHECK(good.pat.empty());
    CHECK(good.distance_sq < good.cutoff_sq);
    CHECK(good.distance_features == 3);
    CHECK(good.reason.find("not an outlier vs 300 cells of 6 earlier lots of INR18650-30Q") != std::string::npos);

    const TestTimeVerdict bad = screen.judge(lot7_record(2, 4.0, 0.033, 0.03), store);
    CHECK(bad.kind == TestTimeVerdict::Kind::outlier);
    REQUIRE(bad.pat.size() == 1);
    CHECK(bad.pat[0].feature == "p_x_w");
    CHECK(bad.pat[0].value == doctest::Approx(0.03));
    CHECK(bad.pat[0].high == doctest::Approx(info.pat_high[2]));
    CHECK(bad.distance_outlier);
    CHECK(bad.reason.find("PAT: p_x_w 0.03 above") != std::string::npos);
    CHECK(bad.reason.find("MCD: d²") != std::string::npos);

    // Unremarkable in each feature alone, wrong in combination: ocv_v and
    // r0_ohm are drawn independently (sigma 2 mV and 1 mOhm), so +4 sigma in
    // both (d² ≈ 32 > χ²_3(0.999) = 16.3) is far by distance and still inside
    // the ±6 sigma PAT limits.
    const TestTimeVerdict combo = screen.judge(lot7_record(3, 4.0 + 0.008, 0.033 + 0.004, 0.0), store);
    CHECK(combo.pat.empty());
    CHECK(combo.kind == TestTimeVerdict::Kind::outlier);
    CHECK(combo.distance_outlier);
    CHECK(names(combo, "ocv_v"));
    CHECK(names(combo, "r0_ohm"));

    // A record missing a feature is scored on those it has (k = 2).
    TestRecord partial = lot7_record(4, 4.0, 0.033, 0.0);
    partial.measurements.pop_back();  // r0_ohm (name order: ocv_v, p_x_w, r0_ohm)
    const TestTimeVerdict pv = screen.judge(partial, store);
    CHECK(pv.distance_features == 2);
    CHECK(pv.kind == TestTimeVerdict::Kind::not_outlier);

    // A failed record is not screened: its limits decided.
    TestRecord failed = lot7_record(5, 4.0, 0.033, 0.03);
    failed.verdict = Verdict::fail;
    CHECK(screen.judge(failed, store).kind == TestTimeVerdict::Kind::not_judged);

    // Another model: refused, one screen per model.
    TestRecord other = lot7_record(6, 4.0, 0.033, 0.0);
    other.cell_model = "INR21700-50E";
    CHECK_THROWS_AS(screen.judge(other, store), UsageError);
}

TEST_CASE("test-time screen: a new model without history says so and the spec limits alone judge") {
    TempDir tmp;
    Store store = create_store(tmp / "t.db");
    eol::test::fill_lots(store);
    TestTimeScreen screen = TestTimeScreen::build(store, "INR21700-50E", small_config());
    CHECK_FALSE(screen.info().history);
    TestRecord rec = lot7_record(1, 4.0, 0.033, 0.5);
    rec.cell_model = "INR21700-50E";
    const TestTimeVerdict v = screen.judge(rec, store);
    CHECK(v.kind == TestTimeVerdict::Kind::no_history);
    CHECK(v.reason == "no history for model INR21700-50E (n earlier cells 0 < 200): spec limits only");
    CHECK_FALSE(v.outlier());

    // The record says so: a station event beside it, in the same transaction.
    const ScreenedWrite w = write_record_screened(store, rec, v, Actor{"eolstation controller", "station"});
    CHECK(w.run_id > 0);
    CHECK_FALSE(w.hold_event_id);
    REQUIRE(w.note_event_id);
    const auto evs = store.station_events(1);
    REQUIRE(evs.size() == 1);
    CHECK(evs[0].kind == "screen_at_test");
    CHECK(evs[0].message.find(rec.serial) != std::string::npos);
    CHECK(evs[0].message.find("spec limits only") != std::string::npos);
    CHECK(store.status(rec.serial).state == CellState::clear);

    // The threshold: exactly min_history_cells earlier cells are a history, one fewer is not.
    TestTimeScreenOptions o;
    o.min_history_cells = 300;
    CHECK(TestTimeScreen::build(store, "INR18650-30Q", small_config(), nullptr, "0007", o).info().history);
    o.min_history_cells = 301;
    const TestTimeScreen few = TestTimeScreen::build(store, "INR18650-30Q", small_config(), nullptr, "0007", o);
    CHECK_FALSE(few.info().history);
    CHECK(few.judge(lot7_record(2, 4.0, 0.033, 0.5), std::vector<double>{4.0, 0.033, 0.5}).reason ==
          "no history for model INR18650-30Q (n earlier cells 300 < 301): spec limits only");
    o.min_history_cells = 10;
    o.min_history_lots = 7;
    CHECK(TestTimeScreen::build(store, "INR18650-30Q", small_config(), nullptr, "0007", o)
              .judge(lot7_record(2, 4.0, 0.033, 0.5), std::vector<double>{4.0, 0.033, 0.5})
              .reason == "no history for model INR18650-30Q (earlier lots 6 < 7): spec limits only");
}

TEST_CASE("test-time screen: the reference leaves out the lot under test, failed and held cells") {
    TempDir tmp;
    Store store = create_store(tmp / "t.db");
    const auto serials = eol::test::fill_lots(store);  // lot k: serials[50(k-1) .. 50k)
    Quarantine q(store);
    q.hold(Scope::serial(serials[0]), "p_x outlier", Actor{"qa", "quality"});
    q.hold(Scope::lot("0006"), "bad lot", Actor{"qa", "quality"});
    TestRecord failed = eol::test::make_record(serials[1], "EOL-01", "eol-18650", kT0 + 40 * kDay, 100,
                                               {{"ocv_v", 4.0}, {"r0_ohm", 0.05}, {"p_x_w", 0.0}});
    failed.verdict = Verdict::fail;
    failed.abort_reason = "r0_ohm above its limit";
    store.write(failed);  // its latest completed run now fails

    TestTimeScreen screen = TestTimeScreen::build(store, "INR18650-30Q", small_config(), nullptr, "0003");
    const TestTimeModelInfo info = screen.info();
    CHECK(info.cells == 300 - 50 /*0003*/ - 1 /*failed*/ - 1 /*held serial*/ - 50 /*held lot*/);
    CHECK(info.cells_failed == 1);
    CHECK(info.cells_held == 51);
    CHECK(info.lots == 4);
    // Judging a record of another lot refits without that lot (lot 0003 joins).
    TestRecord r = eol::test::make_record(make_serial("0002", Date{2023, 1, 20}, 77), "EOL-01", "eol-18650",
                                          kT0 + 50 * kDay, 100, {{"ocv_v", 4.0}, {"r0_ohm", 0.033}, {"p_x_w", 0.0}});
    const TestTimeVerdict v = screen.judge(r, store);
    CHECK(v.excluded_lot == "0002");
    CHECK(v.history_cells == 300 - 50 /*0002*/ - 1 /*held serial, in 0001*/ - 1 /*failed, in 0001*/ - 50);
    CHECK(screen.info().excluded_lot == "0002");
    CHECK(screen.records_since_fit() == 1);
}

TEST_CASE("test-time screen: an outlier's record and its serial hold are written in one transaction") {
    TempDir tmp;
    Store store = create_store(tmp / "t.db");
    eol::test::fill_lots(store);
    TestTimeScreen screen = TestTimeScreen::build(store, "INR18650-30Q", small_config(), nullptr, "0007");
    const TestRecord rec = lot7_record(9, 4.0, 0.033, 0.03);
    const TestTimeVerdict v = screen.judge(rec, store);
    REQUIRE(v.outlier());
    const Actor actor{"eolstation controller", "station"};
    const ScreenedWrite w = write_record_screened(store, rec, v, actor);
    REQUIRE(w.hold_event_id);
    CHECK_FALSE(w.already_held);
    const CellStatus st = store.status(rec.serial);
    CHECK(st.state == CellState::held);
    REQUIRE(st.because.size() == 1);
    CHECK(st.because[0].scope == QuarantineScope::serial);
    CHECK(st.because[0].reason == v.reason);
    CHECK(st.because[0].actor == "eolstation controller");
    CHECK(store.run(w.run_id)->verdict == Verdict::pass);  // the record's verdict is its limits'; the hold holds it

    // Tested again and still an outlier: the record is stored, the hold not doubled.
    TestRecord again = rec;
    again.start_unix_s += 3600;
    again.end_unix_s += 3600;
    const ScreenedWrite w2 = write_record_screened(store, again, screen.judge(again, store), actor);
    CHECK(w2.already_held);
    CHECK_FALSE(w2.hold_event_id);
    CHECK(store.runs_for(rec.serial).size() == 2);
    CHECK(store.quarantine_events().size() == 1);

    // A record the store refuses: neither record nor hold.
    TestRecord broken = lot7_record(10, 4.0, 0.033, 0.03);
    const TestTimeVerdict bv = screen.judge(broken, store);
    REQUIRE(bv.outlier());
    broken.cell_model = "";  // the stored cell model contradicts nothing, but an empty one is invalid
    broken.serial = "";
    CHECK_THROWS_AS(write_record_screened(store, broken, bv, actor), StoreError);
    CHECK(store.quarantine_events().size() == 1);
}

TEST_CASE("test-time screen: concurrent judges share one refit and agree with a single thread") {
    TempDir tmp;
    const auto db = tmp / "t.db";
    {
        Store store = create_store(db);
        eol::test::fill_lots(store);
    }
    Store main = Store::open(db);
    TestTimeScreen screen = TestTimeScreen::build(main, "INR18650-30Q", small_config());  // without lot 0007: stale
    std::vector<TestRecord> recs;
    std::vector<std::vector<double>> xs;
    for (std::uint64_t k = 1; k <= 40; ++k) {
        const double px = k % 10 == 0 ? 0.03 : 0.0001 * static_cast<double>(k % 7);
        recs.push_back(lot7_record(k, 4.0 + 0.0001 * static_cast<double>(k % 5), 0.033, px));
        xs.push_back({recs.back().measurements[0].value, recs.back().measurements[2].value,
                      recs.back().measurements[1].value});
    }
    std::vector<TestTimeVerdict::Kind> got(recs.size());
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            Store own = Store::open(db);  // a Store per thread
            for (std::size_t i = t; i < recs.size(); i += 4) got[i] = screen.judge(recs[i], own).kind;
        });
    for (auto& th : threads) th.join();
    CHECK(screen.info().excluded_lot == "0007");
    CHECK(screen.records_since_fit() == recs.size());  // one refit (the first caller's), then none
    std::size_t outliers = 0;
    for (std::size_t i = 0; i < recs.size(); ++i) {
        CHECK(got[i] == screen.judge(recs[i], xs[i]).kind);
        outliers += got[i] == TestTimeVerdict::Kind::outlier ? 1u : 0u;
    }
    CHECK(outliers == 4);  // the p_x_w = 0.03 ones
}

TEST_CASE("test-time screen: simulated production — shorted cells of a new lot held, good ones not, "
          "agreement with the lot screen") {
    TempDir tmp;
    Store store = create_store(tmp / "p.db");
    const Recipe recipe = eol::test::light_eol_recipe();
    const Recipe formation = shipped_recipe("formation");
    ProductionSpec spec;
    spec.recipe = &recipe;
    spec.formation = &formation;
    spec.cells = 240;                 // 10 lots of 24 (one lot per working day)
    spec.from = {2023, 1, 2};
    spec.to = {2023, 1, 13};
    spec.background_short_fraction = 0.0;
    spec.fixture_wait_s = 600;
    spec.seed = 21;
    spec.threads = 2;
    const ProductionSummary history = simulate_production(store, spec);
    REQUIRE(history.lots == 10);

    // A good new lot, then one whose every cell has an internal short.
    ProductionSpec good = spec;
    good.cells = 24;
    good.from = good.to = {2023, 1, 16};
    good.first_lot = 11;
    good.seed = 22;
    const ProductionSummary good_sum = simulate_production(store, good);
    ProductionSpec bad = good;
    bad.from = bad.to = {2023, 1, 17};
    bad.first_lot = 12;
    bad.seed = 23;
    bad.defect_window = std::pair{Date{2023, 1, 17}, Date{2023, 1, 17}};
    bad.defect_short_fraction = 1.0;
    bad.defect_r0_shift_rel = 0.0;
    const ProductionSummary bad_sum = simulate_production(store, bad);
    REQUIRE(bad_sum.shorted == 24);
    const std::string good_lot = good_sum.truth[0].lot, bad_lot = bad_sum.truth[0].lot;

    ScreeningConfig config;
    config.features = {"ocv_v", "dcir_ohm", "r0_ohm", "r1_ohm", "tau1_s", "k_log10_mv_per_day"};
    config.mcd_quantile = 0.9999;  // a few hundred cells: small-sample MCD distances run large (as the lot test)
    TestTimeScreen screen = TestTimeScreen::build(store, "INR18650-30Q", config, &recipe, good_lot);
    REQUIRE(screen.info().history);
    CHECK(screen.info().features == config.features);  // the K-value has its formation runs

    std::set<std::string> tt_held;
    std::size_t good_judged = 0, good_held = 0;
    for (const TestRecord& r : eol_records_of(store, good_lot)) {
        if (r.verdict != Verdict::pass) continue;
        const TestTimeVerdict v = screen.judge(r, store);
        ++good_judged;
        if (v.outlier()) {
            ++good_held;
            tt_held.insert(r.serial);
            MESSAGE("good cell held at test: ", v.reason);
        }
    }
    CHECK(good_judged >= 20);
    CHECK(good_held <= 1);
    CHECK(screen.info().excluded_lot == good_lot);  // judged by a model without its own lot

    std::set<std::string> judged;  // passed their limits: what test time screens
    for (const TestRecord& r : eol_records_of(store, good_lot))
        if (r.verdict == Verdict::pass) judged.insert(r.serial);
    std::size_t bad_judged = 0, bad_held = 0, bad_k = 0, bad_failed = 0;
    for (const TestRecord& r : eol_records_of(store, bad_lot)) {
        if (r.verdict != Verdict::pass) {  // a heavy short drains the cell below its OCV limit: the limits fail it
            ++bad_failed;
            continue;
        }
        judged.insert(r.serial);
        const TestTimeVerdict v = screen.judge(r, store);
        ++bad_judged;
        if (v.outlier()) {
            ++bad_held;
            tt_held.insert(r.serial);
            bad_k += names(v, "k_log10_mv_per_day") || names(v, "ocv_v") ? 1u : 0u;
            if (bad_held == 1) MESSAGE("a shorted cell held at test: ", v.reason);
        } else {
            MESSAGE("shorted cell not held at test: ", v.reason);
        }
    }
    CHECK(screen.info().excluded_lot == bad_lot);  // a new lot began: refitted, the good lot joined the history
    CHECK(screen.info().cells >= 240);
    CHECK(bad_judged + bad_failed == 24);
    CHECK(bad_judged >= 8);
    CHECK(bad_held == bad_judged);   // every shorted cell that passed its limits is held at test
    CHECK(bad_k == bad_held);        // by its self-discharge (K) or OCV

    // The lot screen (dry run) over everything, as when the lots close.
    const ScreenReport rep = screen_store(store, config, {}, false, Actor{}, &recipe);
    std::set<std::string> lot_held_cells;
    for (const auto& c : rep.cells)
        if (judged.count(c.serial) > 0) lot_held_cells.insert(c.serial);  // of the cells both screens see
    bool bad_lot_held_whole = false;
    for (const auto& g : rep.groups) bad_lot_held_whole = bad_lot_held_whole || (g.scope == QuarantineScope::lot && g.target == bad_lot);
    std::size_t both = 0;
    for (const auto& s : tt_held) both += lot_held_cells.count(s);
    MESSAGE("agreement over lots ", good_lot, " and ", bad_lot, " (", judged.size(), " cells that passed their limits, ",
            bad_failed, " shorted cells failed them): test time holds ", tt_held.size(), " (good cells: ", good_held, " of ", good_judged, ")",
            ", lot screen flags ", lot_held_cells.size(), ", both ", both, "; lot ", bad_lot,
            std::string(bad_lot_held_whole ? " held whole" : " not held whole"));
    CHECK(both >= bad_held - 1);                      // the shorted cells: both screens
    CHECK(tt_held.size() - both <= 1);                // test time holds little the lot screen would not
    CHECK(lot_held_cells.size() - both <= 2);         // and misses little that it flags
}
