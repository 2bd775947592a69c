#include "eol/station/production_sim.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <limits>
#include <map>
#include <type_traits>
#include <variant>
#include <memory>
#include <mutex>
#include <thread>

#include "eol/models/ecm.hpp"
#include "eol/models/lot_tests.hpp"
#include "eol/models/thermal.hpp"
#include "eol/sim/fixture.hpp"

namespace eol::station {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::uint64_t mix(std::uint64_t x) {  // splitmix64
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// The shipped eol-18650 recipe (config/recipes/eol-18650.toml), for runs
// without a recipe file: same steps, parameters and limits.
Recipe make_shipped_recipe() {
    Recipe r;
    r.name = "eol-18650";
    r.cell_model = "INR18650-30Q";
    r.capacity_ah = 3.0;
    auto m = [](const char* name, const char* unit, std::optional<double> low, std::optional<double> high) {
        MeasurementSpec s;
        s.name = name;
        s.quantity = name;
        s.unit = unit;
        s.low = low;
        s.high = high;
        return s;
    };
    constexpr std::optional<double> none;
    auto step = [&](const char* name, auto params, std::vector<MeasurementSpec> ms) {
        RecipeStep st;
        st.name = name;
        st.params = params;
        st.measurements = std::move(ms);
        r.steps.push_back(std::move(st));
    };
    step("settle", RestParams{5.0}, {});
    step("ocv", OcvParams{10, 0.1}, {m("ocv_v", "V", 3.40, 4.20)});
    step("dcir", DcirParams{0.2, 10.0, 1.0, 1.0, 0.6, 3.0}, {m("dcir_ohm", "ohm", none, 0.060)});
    step("relax-after-dcir", RestParams{30.0}, {});
    step("pulse", PulseParams{6.0, 10.0, 1.0, 60.0, 0.05},
         {m("r0_ohm", "ohm", none, 0.045), m("r1_ohm", "ohm", none, 0.030), m("tau1_s", "s", 2.0, 40.0),
          m("r2_ohm", "ohm", none, 0.040), m("tau2_s", "s", none, none), m("fit_rmse_v", "V", none, 0.003),
          m("pulse_v_min_v", "V", 3.0, none)});
    step("heat", HeatParams{3.0, 600.0, 600.0, 1.0},
         {m("temp_rise_k", "K", none, 3.0), m("c_th_j_per_k", "J/K", 100.0, 300.0),
          m("r_th_k_per_w", "K/W", 5.0, 20.0), m("p_x_w", "W", none, 0.05)});
    return r;
}

Measurement judged(const MeasurementSpec& spec, double value) {
    Measurement m;
    m.name = spec.name;
    m.value = value;
    m.unit = spec.unit;
    m.low = spec.low;
    m.high = spec.high;
    m.pass = std::isfinite(value) && !(m.low && value < *m.low) && !(m.high && value > *m.high);
    return m;
}

struct Planned {
    std::size_t day_index = 0;
    std::string serial, lot, date;
    std::int32_t day = 0;
    bool defect = false;
    double r0_shift = 0.0;
    double ambient_c = 25.0;
};

struct Simulated {
    TestRecord formation, eol;
    CellTruth truth;
};

double mean_of(const std::vector<double>& v, std::size_t a, std::size_t b) {
    double s = 0;
    for (std::size_t i = a; i < b; ++i) s += v[i];
    return s / static_cast<double>(b - a);
}

const Recipe& shipped_recipe() {
    static const Recipe r = make_shipped_recipe();
    return r;
}

double ocv_step(sim::Fixture& fx, sim::SimClock& clock, int samples, double interval_s) {
    double s = 0;
    const int n = std::max(1, samples);
    for (int k = 0; k < n; ++k) {
        if (k > 0) clock.skip(interval_s);
        s += fx.measure_voltage_v(0);
    }
    return s / n;
}

// IEC 61960: low level then high level, logged every 0.1 s; U and I at the
// last sample of each level.
double dcir_step(sim::Fixture& fx, sim::SimClock& clock, const DcirParams& p) {
    constexpr double kDt = 0.1;
    const auto n_low = static_cast<std::size_t>(std::llround(p.low_s / kDt));
    const auto n_all = static_cast<std::size_t>(std::llround((p.low_s + p.high_s) / kDt));
    if (n_low < 1 || n_all <= n_low) {
        clock.skip(p.low_s + p.high_s);
        return kNaN;
    }
    fx.start_profile(0, {{p.low_a, p.low_s}, {p.high_a, p.high_s}}, kDt, n_all);
    clock.skip(p.low_s + p.high_s);
    const sim::LoggedSamples s = fx.fetch_log(0);
    if (s.t_s.size() < n_all) return kNaN;
    const std::size_t k1 = n_low - 1, k2 = n_all - 1;
    const double di = s.i_a[k2] - s.i_a[k1];
    return di > 1e-3 ? (s.v_v[k1] - s.v_v[k2]) / di : kNaN;
}

ModelFit fit_record(const char* kind, bool converged, double rmse) {
    ModelFit m;
    m.kind = kind;
    m.converged = converged;
    m.rmse = rmse;
    return m;
}
void put(ModelFit& m, const std::string& name, const models::Estimate& e) {
    m.parameters[name] = e.value;
    m.ci95[name] = Interval{e.value - e.ci95, e.value + e.ci95};
}

// Hardware-logged pulse → equivalent circuit (2 RC), named as the runner does.
std::map<std::string, double, std::less<>> pulse_step(sim::Fixture& fx, sim::SimClock& clock, const PulseParams& p,
                                                      models::Series& trace, std::vector<ModelFit>& fits) {
    fx.start_profile(0, {{0.0, p.pre_s}, {p.current_a, p.duration_s}, {0.0, p.relaxation_s}}, p.sample_interval_s,
                     p.points());
    clock.skip(p.pre_s + p.duration_s + p.relaxation_s);
    sim::LoggedSamples s = fx.fetch_log(0);
    trace.t_s = std::move(s.t_s);
    trace.i_a = std::move(s.i_a);
    trace.v_v = std::move(s.v_v);
    std::map<std::string, double, std::less<>> q;
    if (!trace.v_v.empty()) q["pulse_v_min_v"] = *std::min_element(trace.v_v.begin(), trace.v_v.end());
    try {
        const models::EcmFit f = models::fit_ecm(trace);
        ModelFit m = fit_record("ecm2", f.converged, f.rmse_v);
        put(m, "ocv_v", f.ocv_v);
        put(m, "r0_ohm", f.r0_ohm);
        q["r0_ohm"] = f.r0_ohm.value;
        q["fit_rmse_v"] = f.rmse_v;
        for (std::size_t k = 0; k < f.rc.size(); ++k) {
            const std::string n = std::to_string(k + 1);
            put(m, "r" + n + "_ohm", f.rc[k].r_ohm);
            put(m, "tau" + n + "_s", f.rc[k].tau_s);
            put(m, "c" + n + "_f", f.rc[k].c_f);
            q["r" + n + "_ohm"] = f.rc[k].r_ohm.value;
            q["tau" + n + "_s"] = f.rc[k].tau_s.value;
        }
        fits.push_back(std::move(m));
    } catch (const models::InputError&) {
        // No fit: its measurements stay NaN and fail.
    }
    return q;
}

// Heating then cooling, read every sample_interval_s → thermal fit.
//
// The heat the fit is given: models::fit_thermal takes heating as I²·R with R
// constant, but the RC branches take minutes (τ2 ≈ 90 s) to reach their share
// of the Joule heat; over a 600 s step that lag biases R_th and P_x by more
// than a short's heat. So the Joule heat is computed from a circuit
// identified on the heat step itself and passed as the equivalent current
// sqrt(P/R) through heating_ohm = R:
//   - R: the steady-state DC resistance, (V at rest at the end of cooling − V
//     under load at the end of heating)/I — same state of charge, every branch
//     settled;
//   - R0, R1, τ1, τ2: an ECM fit of the last 10 samples under load and the
//     relaxation (branch voltages at its start fitted), with R2 = R − R0 − R1
//     (the relaxation alone pins R2 poorly; the DC resistance pins the sum);
//   - P[n] = models::ecm_joule_power_w of that circuit over the whole step.
// (The pulse fit's R2/τ2 do not serve: a 60 s relaxation does not resolve
// τ2 ≈ 90 s.)
std::map<std::string, double, std::less<>> heat_step(sim::Fixture& fx, sim::SimClock& clock, const HeatParams& p,
                                                     std::vector<ModelFit>& fits) {
    const double dt = p.sample_interval_s;
    const auto n_on = static_cast<std::size_t>(std::llround(p.duration_s / dt));
    const auto n_off = static_cast<std::size_t>(std::llround(p.cooling_s / dt));
    models::Series heat;
    auto sample = [&] {
        heat.t_s.push_back(heat.t_s.empty() ? 0.0 : heat.t_s.back() + dt);
        heat.t_cell_c.push_back(fx.measure_temp_c(0));
        heat.t_amb_c.push_back(fx.measure_ambient_c());
        heat.v_v.push_back(fx.measure_voltage_v(0));
        heat.i_a.push_back(fx.measure_current_a(0));  // the current from this instant on
    };
    heat.t_s.reserve(n_on + n_off + 1);
    fx.set_load(0, {sim::LoadMode::cc, p.current_a, true});
    sample();
    for (std::size_t k = 1; k <= n_on + n_off; ++k) {
        clock.skip(dt);
        if (k == n_on) fx.set_load(0, {sim::LoadMode::cc, 0.0, false});
        sample();
    }
    std::map<std::string, double, std::less<>> q;
    q["temp_rise_k"] = *std::max_element(heat.t_cell_c.begin(), heat.t_cell_c.end()) - heat.t_cell_c.front();
    constexpr std::size_t kAvg = 10;
    if (n_on < 2 * kAvg || n_off < 3 * kAvg) return q;  // too short to identify the heating
    const double i_on = mean_of(heat.i_a, 0, n_on);
    const std::size_t n = heat.size();
    const double r_heat = (mean_of(heat.v_v, n - kAvg, n) - mean_of(heat.v_v, n_on - kAvg, n_on)) / i_on;
    if (!(i_on > 0.1 && r_heat > 0)) return q;
    try {
        models::Series relax = heat.slice(n_on - kAvg, n);
        const double t0 = relax.t_s.front();
        for (double& t : relax.t_s) t -= t0;
        relax.t_cell_c.clear();
        relax.t_amb_c.clear();
        models::EcmOptions eo;
        eo.free_initial_state = true;
        models::EcmParams circuit = models::fit_ecm(relax, eo).params();
        circuit.v0_v.clear();  // relaxed when the heating starts
        if (circuit.rc.size() == 2)
            circuit.rc[1].r_ohm = std::max(0.0, r_heat - circuit.r0_ohm - circuit.rc[0].r_ohm);
        const std::vector<double> joule = models::ecm_joule_power_w(heat.t_s, heat.i_a, circuit);
        models::Series eq = heat;
        for (std::size_t k = 1; k < n; ++k) eq.i_a[k - 1] = std::sqrt(std::max(0.0, joule[k]) / r_heat);
        eq.i_a.back() = 0.0;
        models::ThermalOptions o;
        o.heating = models::HeatingSource::fixed;
        o.heating_ohm = r_heat;
        const models::ThermalFit f = models::fit_thermal(eq, o);
        q["c_th_j_per_k"] = f.c_th_j_per_k.value;
        q["r_th_k_per_w"] = f.r_th_k_per_w.value;
        q["p_x_w"] = f.p_extra_w.value;
        ModelFit m = fit_record("thermal", f.converged, f.rmse_k);
        put(m, "c_th_j_per_k", f.c_th_j_per_k);
        put(m, "r_th_k_per_w", f.r_th_k_per_w);
        put(m, "tau_s", f.tau_s);
        put(m, "p_extra_w", f.p_extra_w);
        put(m, "heating_ohm", f.heating_ohm);
        m.parameters["p_heat_w"] = i_on * i_on * r_heat;  // steady-state I²R of the heat step
        fits.push_back(std::move(m));
    } catch (const models::InputError&) {
        // No fit: its measurements stay NaN and fail.
    }
    return q;
}

Simulated simulate_cell(const ProductionSpec& spec, const Planned& pl, std::size_t index) {
    std::mt19937_64 rng(mix(spec.seed * 0x100000001b3ULL + index));
    sim::PopulationSpec pop = spec.population;
    pop.r0_shift_rel = pl.defect ? pl.r0_shift : 0.0;
    pop.short_fraction = pl.defect ? spec.defect_short_fraction : spec.background_short_fraction;
    const sim::CellParams p = sim::draw_cell(pop, rng);
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    std::normal_distribution<double> n01(0.0, 1.0);
    const double leak_a = spec.leak_median_ma * 1e-3 * std::exp(spec.leak_sigma_log * n01(rng));
    const double rest_days = spec.rest_days_min + (spec.rest_days_max - spec.rest_days_min) * u01(rng);
    const double t_form = static_cast<double>(pl.day) * 86400.0 + 6 * 3600.0 + 12 * 3600.0 * u01(rng);
    const double t_eol = t_form + rest_days * 86400.0;
    const std::uint64_t noise_seed = mix(spec.seed ^ (index * 0x9e3779b97f4a7c15ULL));

    Simulated out;
    CellTruth& tr = out.truth;
    tr.serial = pl.serial;
    tr.lot = pl.lot;
    tr.production_date = pl.date;
    tr.defect_lot = pl.defect;
    tr.shorted = std::isfinite(p.r_isc_ohm);
    tr.r_isc_ohm = tr.shorted ? p.r_isc_ohm : 0.0;
    tr.r0_ohm = p.r0_ohm;
    tr.leak_ma = leak_a * 1e3;
    tr.rest_days = rest_days;

    auto base = [&](TestRecord& r, const std::string& station, const std::string& recipe, double start) {
        r.serial = pl.serial;
        r.cell_model = spec.cell_model;
        r.lot = pl.lot;
        r.production_date = pl.date;
        r.station_id = station;
        r.channel = 1;
        r.recipe_name = recipe;
        r.recipe_version = "1";
        r.start_unix_s = start;
    };

    // 1. Formation: OCV at rest after a minute in the fixture.
    {
        auto clock = std::make_shared<sim::SimClock>(1e-12);
        sim::Fixture fx(1, clock, pl.ambient_c, noise_seed);
        fx.load_cell(0, pl.serial, p);
        clock->skip(60.0);
        const double ocv = ocv_step(fx, *clock, 10, 0.1);
        TestRecord& r = out.formation;
        base(r, spec.formation_station, "formation", t_form);
        MeasurementSpec ms;
        ms.name = ms.quantity = "ocv_v";
        ms.unit = "V";
        ms.low = 3.0;
        ms.high = 4.25;
        r.measurements.push_back(judged(ms, ocv));
        r.end_unix_s = t_form + 62.0;
        r.verdict = r.measurements.back().pass ? Verdict::pass : Verdict::fail;
    }

    // 2. Storage: leakage and the short drain the cell (1-hour steps).
    double soc = p.soc0;
    {
        const double hours = std::max(0.0, (rest_days * 86400.0 - spec.fixture_wait_s) / 3600.0);
        const auto steps = static_cast<int>(std::ceil(hours));
        const double h = steps > 0 ? hours / steps : 0.0;
        for (int k = 0; k < steps; ++k) {
            const double ocv = sim::ocv_nmc_v(soc) + p.ocv_offset_v;
            double i = leak_a;
            if (tr.shorted) i += ocv / p.r_isc_ohm;
            soc = std::clamp(soc - i * h / p.capacity_ah, 0.0, 1.0);
        }
    }

    // 3. EOL station: the recipe's steps, in order.
    const Recipe& recipe = spec.recipe ? *spec.recipe : shipped_recipe();
    TestRecord& r = out.eol;
    base(r, spec.eol_station, recipe.name, t_eol + spec.fixture_wait_s);
    r.recipe_version = spec.recipe ? recipe.file.filename().string() : std::string("eol-18650.toml");
    if (!recipe.cell_model.empty()) r.cell_model = recipe.cell_model;
    sim::CellParams pe = p;
    pe.soc0 = soc;
    auto clock = std::make_shared<sim::SimClock>(1e-12);
    sim::Fixture fx(1, clock, pl.ambient_c, noise_seed + 1);
    fx.load_cell(0, pl.serial, pe);
    clock->skip(spec.fixture_wait_s);  // waiting in the fixture: a short's heat settles
    double elapsed = 0.0;
    bool pulse_kept = false;
    for (const RecipeStep& step : recipe.steps) {
        std::map<std::string, double, std::less<>> q;
        std::visit(
            [&](const auto& prm) {
                using P = std::decay_t<decltype(prm)>;
                if constexpr (std::is_same_v<P, RestParams>) {
                    clock->skip(prm.duration_s);
                    elapsed += prm.duration_s;
                } else if constexpr (std::is_same_v<P, OcvParams>) {
                    q["ocv_v"] = ocv_step(fx, *clock, prm.samples, prm.interval_s);
                    elapsed += step.duration_s();
                } else if constexpr (std::is_same_v<P, DcirParams>) {
                    q["dcir_ohm"] = dcir_step(fx, *clock, prm);
                    elapsed += prm.low_s + prm.high_s;
                } else if constexpr (std::is_same_v<P, PulseParams>) {
                    models::Series trace;
                    q = pulse_step(fx, *clock, prm, trace, r.fits);
                    if (spec.store_traces && !pulse_kept) {
                        r.trace = std::move(trace);
                        pulse_kept = true;
                    }
                    elapsed += prm.pre_s + prm.duration_s + prm.relaxation_s;
                } else if constexpr (std::is_same_v<P, HeatParams>) {
                    q = heat_step(fx, *clock, prm, r.fits);
                    elapsed += prm.duration_s + prm.cooling_s;
                }
            },
            step.params);
        for (const MeasurementSpec& m : step.measurements) {
            const auto it = q.find(m.quantity.empty() ? m.name : m.quantity);
            r.measurements.push_back(judged(m, it == q.end() ? kNaN : it->second));
        }
    }
    r.end_unix_s = r.start_unix_s + elapsed;
    const bool pass =
        std::all_of(r.measurements.begin(), r.measurements.end(), [](const Measurement& m) { return m.pass; });
    r.verdict = pass ? Verdict::pass : Verdict::fail;
    tr.eol_pass = pass;
    return out;
}

std::vector<Planned> plan(const ProductionSpec& spec, const SerialScheme& scheme, std::size_t& lots,
                          std::size_t& defect_lots) {
    if (spec.cells == 0) throw UsageError("production: cells must be > 0");
    if (!spec.from.valid() || !spec.to.valid() || spec.to < spec.from)
        throw UsageError(fmt::format("production: dates {}..{} are not a valid range", spec.from.iso(), spec.to.iso()));
    const auto d0 = models::parse_iso_day(spec.from.iso());
    const auto d1 = models::parse_iso_day(spec.to.iso());
    std::vector<std::int32_t> days;
    for (std::int32_t d = *d0; d <= *d1; ++d)
        if (((d % 7) + 7 + 3) % 7 < 5) days.push_back(d);  // 1970-01-01 was a Thursday (3, Monday = 0)
    if (days.empty()) throw UsageError("production: no working day (Mon–Fri) between the dates");
    std::vector<Planned> out;
    out.reserve(spec.cells);
    lots = defect_lots = 0;
    const std::size_t n_days = days.size();
    for (std::size_t k = 0; k < n_days; ++k) {
        const std::size_t count = (k + 1) * spec.cells / n_days - k * spec.cells / n_days;
        if (count == 0) continue;
        const std::string iso = models::day_to_iso(days[k]);
        const Date date = *Date::parse_iso(iso);
        const bool defect = spec.defect_window && !(date < spec.defect_window->first) &&
                            !(spec.defect_window->second < date);
        std::mt19937_64 lot_rng(mix(spec.seed * 7919 + k + 1));
        std::uniform_real_distribution<double> u(0.0, 1.0);
        const double shift = spec.defect_r0_shift_rel * (0.7 + 0.6 * u(lot_rng));
        const double ambient = spec.ambient_c + (u(lot_rng) - 0.5);
        SerialSpec s;
        s.plant = spec.plant;
        s.line = spec.line;
        s.lot = fmt::format("{:04d}", spec.first_lot + lots);
        s.date = date;
        s.sequence = 1;
        const std::vector<std::string> serials = scheme.make_range(s, count);
        const std::string lot = scheme.decode(serials.front()).value.lot;
        for (const auto& serial : serials) {
            Planned p;
            p.day_index = k;
            p.serial = serial;
            p.lot = lot;
            p.date = iso;
            p.day = days[k];
            p.defect = defect;
            p.r0_shift = shift;
            p.ambient_c = ambient;
            out.push_back(std::move(p));
        }
        ++lots;
        if (defect) ++defect_lots;
    }
    return out;
}

}  // namespace

ProductionSummary simulate_production(Store& store, const ProductionSpec& spec, const SerialScheme& scheme,
                                      const std::function<void(std::size_t, std::size_t)>& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    ProductionSummary sum;
    const std::vector<Planned> planned = plan(spec, scheme, sum.lots, sum.defect_lots);
    const std::size_t n = planned.size();
    const std::size_t batch = std::max<std::size_t>(1, spec.batch_cells);
    unsigned threads = spec.threads ? spec.threads : std::max(1u, std::thread::hardware_concurrency());

    std::vector<std::optional<Simulated>> slot(n);
    std::atomic<std::size_t> next{0};
    std::mutex m;
    std::condition_variable cv;
    std::size_t done_prefix = 0;  // slots [0, done_prefix) are filled (under m)
    std::vector<char> filled(n, 0);
    std::atomic<bool> stop{false};
    std::exception_ptr error;

    auto worker = [&] {
        try {
            for (;;) {
                if (stop) return;
                const std::size_t i = next++;
                if (i >= n) return;
                Simulated s = simulate_cell(spec, planned[i], i);
                std::lock_guard lk(m);
                slot[i] = std::move(s);
                filled[i] = 1;
                while (done_prefix < n && filled[done_prefix]) ++done_prefix;
                cv.notify_all();
            }
        } catch (...) {
            std::lock_guard lk(m);
            if (!error) error = std::current_exception();
            stop = true;
            cv.notify_all();
        }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(worker);

    std::vector<TestRecord> records;
    std::size_t written = 0;
    try {
        while (written < n) {
            const std::size_t end = std::min(n, written + batch);
            {
                std::unique_lock lk(m);
                cv.wait(lk, [&] { return done_prefix >= end || stop; });
                if (stop) break;
            }
            records.clear();
            for (std::size_t i = written; i < end; ++i) {
                Simulated& s = *slot[i];
                records.push_back(std::move(s.formation));
                records.push_back(std::move(s.eol));
                sum.shorted += s.truth.shorted ? 1 : 0;
                sum.eol_failed += s.truth.eol_pass ? 0 : 1;
                sum.truth.push_back(std::move(s.truth));
                slot[i].reset();
            }
            store.write_batch(records);
            written = end;
            if (progress) progress(written, n);
        }
    } catch (...) {
        stop = true;
        for (auto& t : pool) t.join();
        throw;
    }
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return sum;
}

void write_truth_csv(const std::filesystem::path& file, std::span<const CellTruth> truth) {
    std::ofstream out(file, std::ios::binary);
    if (!out) throw UsageError(fmt::format("{}: cannot write", file.string()));
    std::string text = "serial,lot,production_date,defect_lot,shorted,r_isc_ohm,r0_ohm,leak_ma,rest_days,eol_pass\n";
    for (const auto& t : truth)
        text += fmt::format("{},{},{},{},{},{:.1f},{:.6f},{:.4f},{:.3f},{}\n", t.serial, t.lot, t.production_date,
                            t.defect_lot ? 1 : 0, t.shorted ? 1 : 0, t.r_isc_ohm, t.r0_ohm, t.leak_ma, t.rest_days,
                            t.eol_pass ? 1 : 0);
    out << text;
    out.close();
    if (!out) throw UsageError(fmt::format("{}: write failed", file.string()));
}

}  // namespace eol::station
