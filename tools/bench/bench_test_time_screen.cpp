// Screening at test time (test_time_screen.hpp) against a store of N cells
// (default 20,000 in 100 lots of 200), side by side with the lot screen over
// the same store:
//
//   TestTimeScreen::build        the model from the store: feature table of
//                                every earlier cell of the model (with the
//                                K-value's earlier run), static PAT, FAST-MCD
//   judge(record, store)         one finished record: its K-value read, PAT,
//                                robust distance — per record, p50/p99/max
//   judge(record, features)      the same without the store (pure figure)
//   screen_store (dry run)       the lot screen over the whole store (reference)
//
// and the agreement over the lot under test: the cells test time holds, the
// cells the lot screen flags, and both.
//
// The fixture (bench only; `--db FILE` uses an existing store instead, e.g.
// one `eolstation sim-production` made): per cell a formation record (ocv_v)
// five days before its EOL record (ocv_v, dcir_ohm, r0_ohm, r1_ohm, tau1_s,
// p_x_w); correlated Gaussian features (R0 drives DCIR, R1 and τ1), a
// log-normal self-discharge; 0.5 % of cells planted outliers (a short: OCV
// down and p_x up; or R0 +25 % alone). Seeded: the same store every run.
//
// and over the last --agree-lots lots (default 20), each judged in turn as the
// lot under test (judge() refits at each lot change, timed).
//
// Usage: bench_test_time_screen [--cells N] [--db FILE] [--judge N] [--agree-lots N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "eol/station/quarantine.hpp"
#include "eol/station/screen_store.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"
#include "eol/station/test_time_screen.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr std::size_t kLotSize = 200;
constexpr double kDay = 86400.0;

Measurement m(const std::string& name, double v, const std::string& unit) {
    return Measurement::judged(name, v, unit, std::nullopt, std::nullopt);
}

// Writes the synthetic production; returns the last lot's id.
std::string build_fixture(Store& store, std::size_t cells) {
    std::mt19937_64 rng(7);
    std::normal_distribution<double> n01(0.0, 1.0);
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    const SerialScheme& scheme = SerialScheme::default_scheme();
    std::vector<TestRecord> batch;
    std::string last_lot;
    const double t0 = 1.6725e9;  // 2023-01-03
    for (std::size_t i = 0; i < cells; ++i) {
        const std::size_t lot = i / kLotSize;
        SerialSpec s;
        s.plant = "01";
        s.line = "A";
        s.lot = fmt::format("{:04d}", lot + 1);
        s.date = Date{2023, 1 + static_cast<int>(lot / 28) % 12, 1 + static_cast<int>(lot % 28)};
        s.sequence = i % kLotSize + 1;
        last_lot = s.lot;
        const std::string serial = scheme.make(s);
        const double t_eol = t0 + static_cast<double>(lot) * kDay + static_cast<double>(i % kLotSize) * 60.0;
        double ocv = 4.05 + 0.004 * n01(rng);
        double r0 = 0.033 * (1.0 + 0.03 * n01(rng));
        const double r1 = 0.012 + 0.25 * (r0 - 0.033) + 0.0006 * n01(rng);
        const double tau1 = 10.0 + 100.0 * (r0 - 0.033) + 0.8 * n01(rng);
        const double dcir = r0 + r1 + 0.0008 * n01(rng);
        double k_mv_day = std::exp(std::log(0.3) + 0.25 * n01(rng));
        double p_x = 0.002 * n01(rng);
        const double planted = u01(rng);
        if (planted < 0.0025) {  // an internal short
            k_mv_day *= 10.0 + 20.0 * u01(rng);
            ocv -= 0.01;
            p_x += 0.02;
        } else if (planted < 0.005) {
            r0 *= 1.25;
        }
        TestRecord base;
        base.serial = serial;
        base.cell_model = "INR18650-30Q";
        base.lot = s.lot;
        base.production_date = s.date.iso();
        base.verdict = Verdict::pass;
        base.recipe_version = "1";
        TestRecord form = base;
        form.station_id = "FORM-01";
        form.recipe_name = "formation";
        form.start_unix_s = t_eol - 5 * kDay;
        form.end_unix_s = form.start_unix_s + 60;
        form.measurements.push_back(m("ocv_v", ocv + 5.0 * k_mv_day / 1000.0, "V"));
        TestRecord eol = base;
        eol.station_id = "EOL-01";
        eol.recipe_name = "eol-18650";
        eol.start_unix_s = t_eol;
        eol.end_unix_s = t_eol + 120;
        eol.measurements = {m("ocv_v", ocv, "V"),       m("dcir_ohm", dcir, "ohm"), m("r0_ohm", r0, "ohm"),
                            m("r1_ohm", r1, "ohm"),     m("tau1_s", tau1, "s"),     m("p_x_w", p_x, "W")};
        batch.push_back(std::move(form));
        batch.push_back(std::move(eol));
        if (batch.size() >= 4000) {
            store.write_batch(batch);
            batch.clear();
        }
    }
    if (!batch.empty()) store.write_batch(batch);
    return last_lot;
}

double pct(std::vector<double> v, double q) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) try {
    std::size_t cells = 20'000, judge_n = 2000, agree_lots = 20;
    fs::path db;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--cells") cells = std::stoul(next());
        else if (a == "--db") db = next();
        else if (a == "--judge") judge_n = std::stoul(next());
        else if (a == "--agree-lots") agree_lots = std::stoul(next());
        else {
            fmt::print(stderr, "usage: bench_test_time_screen [--cells N] [--db FILE] [--judge N] [--agree-lots N]\n");
            return 2;
        }
    }
    fs::path path = db;
    std::string lot_under_test;
    if (db.empty()) {
        path = fs::temp_directory_path() / fmt::format("eol_bench_tts_{}.db", cells);
        fs::remove(path);
        fs::remove(path.string() + "-wal");
        fs::remove(path.string() + "-shm");
        OpenOptions o;
        o.create = true;
        Store store = Store::open(path, o);
        const auto t0 = Clock::now();
        lot_under_test = build_fixture(store, cells);
        fmt::print("fixture: {} cells in {} lots ({} records) written in {:.1f} s: {}\n", cells,
                   (cells + kLotSize - 1) / kLotSize, 2 * cells, seconds_since(t0), path.string());
    }
    Store store = Store::open(path);
    ScreeningConfig config;
    config.features = {"ocv_v", "dcir_ohm", "r0_ohm", "r1_ohm", "tau1_s", "p_x_w", "k_log10_mv_per_day"};
    std::string model = "INR18650-30Q";
    if (lot_under_test.empty()) {  // an existing store: its last lot by serial order of the latest cells
        store.for_each_cell({}, [&](const CellInfo& c) {
            if (c.latest_run_id && c.lot > lot_under_test) lot_under_test = c.lot;
            if (!c.cell_model.empty()) model = c.cell_model;
        });
    }

    // The lot under test: its EOL records, as the controller would hand them over.
    std::vector<TestRecord> recs;
    {
        CellFilter f;
        f.lot = lot_under_test;
        std::vector<std::int64_t> ids;
        store.for_each_cell(f, [&](const CellInfo& c) {
            if (c.latest_run_id) ids.push_back(*c.latest_run_id);
        });
        for (auto id : ids)
            if (auto r = store.read_record(id); r && r->verdict == Verdict::pass) recs.push_back(std::move(*r));
    }
    if (recs.empty()) throw std::runtime_error("no passing records in lot " + lot_under_test);

    std::vector<double> build_s;
    TestTimeScreenOptions opt;
    opt.refresh_every_records = 0;  // the figure is per record, without refits
    std::optional<TestTimeScreen> screen;
    for (int k = 0; k < 3; ++k) {
        const auto t0 = Clock::now();
        screen.emplace(TestTimeScreen::build(store, model, config, nullptr, lot_under_test, opt));
        build_s.push_back(seconds_since(t0));
    }
    const TestTimeModelInfo info = screen->info();
    std::sort(build_s.begin(), build_s.end());

    std::vector<double> judge_us, pure_us;
    std::set<std::string> held;
    std::vector<std::vector<double>> xs;
    for (const auto& r : recs) xs.push_back(screen->features_of(r, &store));
    for (std::size_t k = 0; k < judge_n; ++k) {
        const TestRecord& r = recs[k % recs.size()];
        auto t0 = Clock::now();
        const TestTimeVerdict v = screen->judge(r, store);
        judge_us.push_back(seconds_since(t0) * 1e6);
        if (v.outlier()) held.insert(r.serial);
        t0 = Clock::now();
        const TestTimeVerdict p = screen->judge(r, xs[k % recs.size()]);
        pure_us.push_back(seconds_since(t0) * 1e6);
        if (p.kind != v.kind) throw std::runtime_error("the pure and the store judgement differ for " + r.serial);
    }

    const auto t_lot = Clock::now();
    const ScreenReport rep = screen_store(store, config, {}, false, Actor{});
    const double lot_s = seconds_since(t_lot);
    std::set<std::string> lot_flagged;
    for (const auto& c : rep.cells)
        if (c.lot == lot_under_test) lot_flagged.insert(c.serial);
    std::size_t both = 0;
    for (const auto& s : held) both += lot_flagged.count(s);
    bool lot_held = false;
    for (const auto& g : rep.groups) lot_held = lot_held || (g.scope == QuarantineScope::lot && g.target == lot_under_test);

    fmt::print("\nstore {}: model {}, history {} cells of {} earlier lots (lot under test {}, {} records; "
               "left out: {} failed, {} held)\n",
               path.string(), model, info.cells, info.lots, lot_under_test, recs.size(), info.cells_failed,
               info.cells_held);
    fmt::print("features: {}\n\n", fmt::join(info.features, ", "));
    fmt::print("                                               median      min      max\n");
    fmt::print("TestTimeScreen::build (s, 3 runs)            {:8.3f} {:8.3f} {:8.3f}\n", build_s[1], build_s[0],
               build_s[2]);
    fmt::print("screen_store over the store (s, reference)   {:8.3f}\n\n", lot_s);
    fmt::print("per record (µs), {} judgements                 p50      p99      max\n", judge_n);
    fmt::print("judge(record, store)  (K-value read + judge) {:8.1f} {:8.1f} {:8.1f}\n", pct(judge_us, 0.5),
               pct(judge_us, 0.99), pct(judge_us, 1.0));
    fmt::print("judge(record, features) (pure)               {:8.1f} {:8.1f} {:8.1f}\n\n", pct(pure_us, 0.5),
               pct(pure_us, 0.99), pct(pure_us, 1.0));
    fmt::print("lot {}: test time holds {}, the lot screen flags {}, both {}; the lot screen {} the lot whole\n",
               lot_under_test, held.size(), lot_flagged.size(), both, lot_held ? "holds" : "does not hold");

    // Agreement over the last `agree_lots` lots, each judged as the lot under
    // test (judge(record, store) refits at each lot change: the refit figure).
    if (agree_lots > 0) {
        std::vector<std::string> lots;
        store.for_each_cell({}, [&](const CellInfo& c) {
            if (c.latest_run_id && (lots.empty() || lots.back() != c.lot)) lots.push_back(c.lot);
        });
        std::sort(lots.begin(), lots.end());
        lots.erase(std::unique(lots.begin(), lots.end()), lots.end());
        if (lots.size() > agree_lots) lots.erase(lots.begin(), lots.end() - static_cast<std::ptrdiff_t>(agree_lots));
        TestTimeScreenOptions o2;
        o2.refresh_every_records = 0;
        TestTimeScreen s2 = TestTimeScreen::build(store, model, config, nullptr, lots.front(), o2);
        std::set<std::string> lot_set(lots.begin(), lots.end());
        std::set<std::string> all_flagged;
        for (const auto& c : rep.cells)
            if (lot_set.count(c.lot) > 0) all_flagged.insert(c.serial);
        std::size_t judged = 0, tt = 0, both2 = 0, refits = 0;
        std::vector<double> refit_s;
        std::set<std::string> judged_serials;
        for (const auto& lot : lots) {
            CellFilter f;
            f.lot = lot;
            std::vector<std::int64_t> ids;
            store.for_each_cell(f, [&](const CellInfo& c) {
                if (c.latest_run_id) ids.push_back(*c.latest_run_id);
            });
            for (auto id : ids) {
                auto r = store.read_record(id);
                if (!r || r->verdict != Verdict::pass) continue;
                const bool refit = s2.info().excluded_lot != r->lot;
                const auto t0 = Clock::now();
                const TestTimeVerdict v = s2.judge(*r, store);
                if (refit) {
                    ++refits;
                    refit_s.push_back(seconds_since(t0));
                }
                ++judged;
                judged_serials.insert(r->serial);
                if (v.outlier()) {
                    ++tt;
                    both2 += all_flagged.count(r->serial);
                }
            }
        }
        std::size_t flagged_judged = 0;
        for (const auto& sr : all_flagged) flagged_judged += judged_serials.count(sr);
        fmt::print("last {} lots ({} cells that passed their limits): test time holds {}, the lot screen flags {}, "
                   "both {} (Jaccard {:.3f}); {} refits at lot changes, median {:.3f} s\n",
                   lots.size(), judged, tt, flagged_judged, both2,
                   tt + flagged_judged - both2 > 0
                       ? static_cast<double>(both2) / static_cast<double>(tt + flagged_judged - both2)
                       : 1.0,
                   refits, pct(refit_s, 0.5));
    }
    return 0;
} catch (const std::exception& e) {
    fmt::print(stderr, "bench_test_time_screen: {}\n", e.what());
    return 1;
}
