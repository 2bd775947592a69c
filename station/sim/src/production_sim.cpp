#include "eol/station/production_sim.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "eol/models/lot_tests.hpp"
#include "eol/models/pat.hpp"  // median_inplace
#include "eol/sim/fixture.hpp"
#include "eol/station/fixture_health.hpp"
#include "eol/station/genealogy.hpp"
#include "eol/station/output.hpp"
#include "eol/station/sim_roles.hpp"
#include "eol/station/steps.hpp"

namespace eol::station {
namespace {

std::uint64_t mix(std::uint64_t x) {  // splitmix64
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
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

// The cell's draw from its own RNG (seed, index): parameters, leakage, rest
// and formation time of day, in that order (the order is the production's
// reproducibility: changing it changes every simulated production).
DrawnCell draw_cell_of(const ProductionSpec& spec, const Planned& pl, std::size_t index) {
    std::mt19937_64 rng(mix(spec.seed * 0x100000001b3ULL + index));
    sim::PopulationSpec pop = spec.population;
    pop.r0_shift_rel = pl.defect ? pl.r0_shift : 0.0;
    pop.short_fraction = pl.defect ? spec.defect_short_fraction : spec.background_short_fraction;
    DrawnCell c;
    c.params = sim::draw_cell(pop, rng);
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    std::normal_distribution<double> n01(0.0, 1.0);
    c.leak_a = spec.leak_median_ma * 1e-3 * std::exp(spec.leak_sigma_log * n01(rng));
    c.rest_days = spec.rest_days_min + (spec.rest_days_max - spec.rest_days_min) * u01(rng);
    c.formation_unix_s = static_cast<double>(pl.day) * 86400.0 + 6 * 3600.0 + 12 * 3600.0 * u01(rng);
    c.ambient_c = pl.ambient_c;
    c.noise_seed = mix(spec.seed ^ (index * 0x9e3779b97f4a7c15ULL));
    c.identity = CellIdentity{pl.serial, spec.cell_model, pl.lot, pl.date};

    CellTruth& tr = c.truth;
    tr.serial = pl.serial;
    tr.lot = pl.lot;
    tr.production_date = pl.date;
    tr.defect_lot = pl.defect;
    tr.shorted = std::isfinite(c.params.r_isc_ohm);
    tr.r_isc_ohm = tr.shorted ? c.params.r_isc_ohm : 0.0;
    tr.r0_ohm = c.params.r0_ohm;
    tr.leak_ma = c.leak_a * 1e3;
    tr.rest_days = c.rest_days;
    return c;
}

TestRecord run_formation(const ProductionSpec& spec, const DrawnCell& c, double t_form_unix_s) {
    InProcessRun form;
    form.station_id = spec.formation_station;
    form.ambient_c = c.ambient_c;
    form.noise_seed = c.noise_seed;
    form.unix_start_s = t_form_unix_s;
    return run_in_process(*spec.formation, spec.limits, c.params, c.identity, form);
}

// The EOL fixture position of cell `index` and its state at `t_unix_s`.
struct PositionState {
    int position = 1;
    double contact_ohm = 0.0;
    double tc_offset_c = 0.0;
};

PositionState fixture_state(const ProductionSpec& spec, std::size_t index, double t_unix_s) {
    PositionState st;
    const auto n = static_cast<std::size_t>(std::max(1, spec.fixture_positions));
    st.position = static_cast<int>(index % n) + 1;
    st.contact_ohm = spec.contact_ohm;
    if (spec.tc_offset_c != 0) {
        const std::uint64_t key = spec.seed * std::uint64_t{0x9E3779B97F4A7C15} + std::uint64_t{0xF1C7} +
                                 static_cast<std::uint64_t>(st.position);
        std::mt19937_64 rng(mix(key));
        st.tc_offset_c = spec.tc_offset_c * (2.0 * std::uniform_real_distribution<double>(0.0, 1.0)(rng) - 1.0);
    }
    for (const auto& d : spec.fixture_drift) {
        if (d.position != st.position) continue;
        const auto start = models::parse_iso_day(d.start.iso());
        if (!start) continue;
        const double weeks = (t_unix_s - static_cast<double>(*start) * 86400.0) / (7 * 86400.0);
        if (weeks <= 0) continue;
        st.contact_ohm += d.ohm_per_week * weeks;
        st.tc_offset_c += d.tc_k_per_week * weeks;
    }
    return st;
}

// A drawn cell as it goes into the EOL fixture after `storage_h` hours on the
// shelf: its state of charge drained by the leakage (and any short), with the
// production's reversible heat — for the simulated and the live EOL test alike.
sim::CellParams params_at_eol(const ProductionSpec& spec, const DrawnCell& c, double storage_h) {
    sim::CellParams p = c.params;
    p.soc0 = storage_soc(c.params, c.params.soc0, c.leak_a, storage_h);
    p.entropic_scale = spec.entropic_scale;
    return p;
}

Simulated simulate_cell(const ProductionSpec& spec, const DrawnCell& c, std::size_t index,
                        std::optional<double> thermo_offset_k = std::nullopt) {
    const double t_form = c.formation_unix_s;
    const double t_eol = t_form + c.rest_days * 86400.0;
    Simulated out;
    out.truth = c.truth;

    // 1. Formation: the formation recipe on the production day.
    out.formation = run_formation(spec, c, t_form);

    // 2. Storage until the cell goes into the EOL fixture.
    const sim::CellParams pe =
        params_at_eol(spec, c, std::max(0.0, (c.rest_days * 86400.0 - spec.fixture_wait_s) / 3600.0));

    // 3. EOL station: the recipe, after the wait in the fixture (a short's heat settles).
    InProcessRun eol;
    eol.station_id = spec.eol_station;
    eol.ambient_c = c.ambient_c;
    eol.noise_seed = c.noise_seed + 1;
    eol.wait_s = spec.fixture_wait_s;
    eol.unix_start_s = t_eol + spec.fixture_wait_s;
    eol.trace = spec.store_all_traces ? RunContext::Trace::all
                : spec.store_traces   ? RunContext::Trace::pulse_only
                                      : RunContext::Trace::none;
    const PositionState at = fixture_state(spec, index, eol.unix_start_s);
    eol.position = at.position;
    eol.contact_ohm = at.contact_ohm;
    eol.tc_offset_c = at.tc_offset_c;
    eol.thermo_offset_k = thermo_offset_k;
    out.eol = run_in_process(*spec.recipe, spec.limits, pe, c.identity, eol);
    out.truth.eol_pass = out.eol.verdict == Verdict::pass;
    out.truth.position = at.position;
    out.truth.contact_ohm = at.contact_ohm;
    out.truth.tc_offset_c = at.tc_offset_c;
    out.truth.eol_unix_s = eol.unix_start_s;
    return out;
}

// The station's thermocouple calibration (ProductionSpec::calibrate_thermocouples):
// per cell, the offset its heat step fits with (none for a position's first
// calibration_cells cells in test order, whose steady offsets make it), and
// those first cells already simulated (plain: what the production keeps).
struct StationCalibration {
    std::vector<std::optional<double>> offset_k;
    std::vector<std::optional<Simulated>> simulated;
};

// Each cell's EOL test start (unix s), in production order.
std::vector<double> eol_starts(const ProductionSpec& spec, const std::vector<Planned>& planned) {
    std::vector<double> t(planned.size());
    for (std::size_t i = 0; i < planned.size(); ++i) {
        const DrawnCell c = draw_cell_of(spec, planned[i], i);
        t[i] = c.formation_unix_s + c.rest_days * 86400.0 + spec.fixture_wait_s;
    }
    return t;
}

StationCalibration station_calibration(const ProductionSpec& spec, const std::vector<Planned>& planned,
                                       const std::vector<double>& t_eol) {
    const std::size_t n = planned.size();
    StationCalibration out{std::vector<std::optional<double>>(n), std::vector<std::optional<Simulated>>(n)};
    if (spec.commissioned_thermocouples) {
        // Each position's offset at its first cell, as measured then.
        std::map<int, std::pair<double, double>> first;  // position → (EOL start, offset)
        std::vector<int> position_of(n);
        for (std::size_t i = 0; i < n; ++i) {
            const PositionState at = fixture_state(spec, i, t_eol[i]);
            position_of[i] = at.position;
            auto [it, fresh] = first.try_emplace(at.position, t_eol[i], at.tc_offset_c);
            if (!fresh && t_eol[i] < it->second.first) it->second = {t_eol[i], at.tc_offset_c};
        }
        std::map<int, double> commissioned;
        for (const auto& [position, f] : first) {
            const std::uint64_t key = spec.seed * std::uint64_t{0x2545F4914F6CDD1D} + std::uint64_t{0xC0DE} +
                                     static_cast<std::uint64_t>(position);
            std::mt19937_64 rng(mix(key));
            commissioned[position] = f.second + spec.commission_sd_k * std::normal_distribution<double>(0.0, 1.0)(rng);
        }
        for (std::size_t i = 0; i < n; ++i) out.offset_k[i] = commissioned.at(position_of[i]);
        return out;
    }
    if (!spec.calibrate_thermocouples || n == 0) return out;
    std::map<int, std::vector<std::pair<double, std::size_t>>> by_position;  // (EOL start, index)
    for (std::size_t i = 0; i < n; ++i) by_position[fixture_state(spec, i, t_eol[i]).position].emplace_back(t_eol[i], i);
    for (auto& [position, cells] : by_position) {
        std::sort(cells.begin(), cells.end());
        const std::size_t first = std::min(spec.calibration_cells, cells.size());
        std::vector<double> steady;
        for (std::size_t k = 0; k < first; ++k) {
            const std::size_t i = cells[k].second;
            out.simulated[i] = simulate_cell(spec, draw_cell_of(spec, planned[i], i), i);
            // What the controller's monitor learns from the record.
            const double c = fixture_reading(out.simulated[i]->eol, FixtureHealthConfig{}).steady_offset_k;
            if (std::isfinite(c)) steady.push_back(c);
        }
        if (first < spec.calibration_cells || steady.empty()) continue;  // never calibrated: all plain
        const double cal = models::median_inplace(steady);
        for (std::size_t k = first; k < cells.size(); ++k) out.offset_k[cells[k].second] = cal;
    }
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
    if (spec.lot_days.empty()) {
        for (std::int32_t d = *d0; d <= *d1; ++d)
            if (((d % 7) + 7 + 3) % 7 < 5) days.push_back(d);  // 1970-01-01 was a Thursday (3, Monday = 0)
        if (days.empty()) throw UsageError("production: no working day (Mon–Fri) between the dates");
    } else {
        for (const Date& d : spec.lot_days) {
            const auto day = d.valid() ? models::parse_iso_day(d.iso()) : std::nullopt;
            if (!day) throw UsageError("production: lot day " + d.iso() + " is not a valid date");
            if (!days.empty() && *day <= days.back())
                throw UsageError("production: lot days must be in increasing order (" + d.iso() + ")");
            days.push_back(*day);
        }
    }
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

// The assembly stage (see the header): passing cells into devices through
// the genealogy interlock.
void assemble(Store& store, const ProductionSpec& spec, const SerialScheme& cell_scheme, ProductionSummary& sum,
              const std::vector<double>& eol_end) {
    if (spec.device_models.empty() || spec.assembly_fraction <= 0.0) return;
    double total_share = 0.0;
    for (const auto& m : spec.device_models) {
        if (m.model.empty() || m.cells == 0 || !(m.share > 0.0))
            throw UsageError(fmt::format("production: device model '{}' needs a name, cells > 0 and a share > 0",
                                         m.model));
        total_share += m.share;
    }
    const SerialScheme& dscheme = spec.device_scheme ? *spec.device_scheme : device_serial_scheme();
    Genealogy genealogy(store, cell_scheme, dscheme);
    std::mt19937_64 rng(mix(spec.seed * 0x2545F4914F6CDD1DULL + 17));
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    auto draw_model = [&]() -> const DeviceModelSpec& {
        double x = u01(rng) * total_share;
        for (const auto& m : spec.device_models) {
            if (x < m.share) return m;
            x -= m.share;
        }
        return spec.device_models.back();
    };
    SerialSpec ds;
    ds.plant = spec.plant;
    ds.line = spec.line;
    std::uint64_t sequence = 1;
    const DeviceModelSpec* model = &draw_model();
    DeviceTruth building;
    double latest_eol = 0.0;
    std::vector<DeviceTruth> built;
    auto flush = [&] {
        if (built.empty()) return;
        store.write_transaction([&] {
            for (auto& d : built) {
                LinkRequest req;
                req.device = d.serial;
                req.model = d.model;
                req.cells = d.cells;
                req.station_id = spec.assembly_station;
                req.actor = "sim-production";
                req.time_unix_s = d.assembled_unix_s;
                if (genealogy.link(req).linked) sum.devices.push_back(std::move(d));
                else ++sum.devices_refused;
            }
            return true;
        });
        built.clear();
    };
    for (std::size_t i = 0; i < sum.truth.size(); ++i) {
        const CellTruth& t = sum.truth[i];
        if (!t.eol_pass || u01(rng) >= spec.assembly_fraction) continue;
        building.cells.push_back(t.serial);
        building.shorted = building.shorted || t.shorted;
        building.defect_lot = building.defect_lot || t.defect_lot;
        latest_eol = std::max(latest_eol, eol_end[i]);
        if (building.cells.size() < model->cells) continue;
        ds.sequence = sequence++;
        building.serial = dscheme.make(ds);
        building.model = model->model;
        building.assembled_unix_s = std::floor(latest_eol + 86400.0 * (1.0 + 4.0 * u01(rng)));
        built.push_back(std::move(building));
        building = DeviceTruth{};
        latest_eol = 0.0;
        model = &draw_model();
        if (built.size() >= std::max<std::size_t>(1, spec.batch_cells)) flush();
    }
    flush();
}

}  // namespace

std::vector<DrawnCell> draw_production(const ProductionSpec& spec, const SerialScheme& scheme, std::size_t* lots,
                                       std::size_t* defect_lots) {
    std::size_t n_lots = 0, n_defect = 0;
    const std::vector<Planned> planned = plan(spec, scheme, n_lots, n_defect);
    if (lots) *lots = n_lots;
    if (defect_lots) *defect_lots = n_defect;
    std::vector<DrawnCell> out;
    out.reserve(planned.size());
    for (std::size_t i = 0; i < planned.size(); ++i) out.push_back(draw_cell_of(spec, planned[i], i));
    return out;
}

FormedCell form_and_store(const ProductionSpec& spec, const DrawnCell& cell, double t_eol_unix_s) {
    if (!spec.formation) throw UsageError("production: the formation recipe is needed (config/recipes/formation.toml)");
    FormedCell f;
    f.formation = run_formation(spec, cell, t_eol_unix_s - cell.rest_days * 86400.0);
    f.at_eol = params_at_eol(spec, cell, cell.rest_days * 24.0);
    return f;
}

std::vector<DeviceModelSpec> default_device_models() {
    return {{"A1112", 3, 2.0}, {"A3102", 2, 1.0}};
}

ProductionSummary simulate_production(Store& store, const ProductionSpec& spec, const SerialScheme& scheme,
                                      const std::function<void(std::size_t, std::size_t)>& progress) {
    if (!spec.recipe || !spec.formation)
        throw UsageError("production: the EOL recipe and the formation recipe are needed (config/recipes/)");
    const auto t0 = std::chrono::steady_clock::now();
    ProductionSummary sum;
    const std::vector<Planned> planned = plan(spec, scheme, sum.lots, sum.defect_lots);
    const std::size_t n = planned.size();
    const std::size_t batch = std::max<std::size_t>(1, spec.batch_cells);
    unsigned threads = spec.threads ? spec.threads : std::max(1u, std::thread::hardware_concurrency());

    // Written in the order the EOL station tests the cells (start time, then
    // production order), as a live station stores them: a replay of the
    // store in run-id order (fixture health) learns what the station learned.
    const std::vector<double> t_eol = eol_starts(spec, planned);
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return t_eol[a] != t_eol[b] ? t_eol[a] < t_eol[b] : a < b; });
    StationCalibration calibration = station_calibration(spec, planned, t_eol);
    std::vector<std::optional<Simulated>> slot(n);  // by write position
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
                const std::size_t w = next++;
                if (w >= n) return;
                const std::size_t i = order[w];
                // A position's first cells were simulated for its calibration (each i is one worker's).
                Simulated s = calibration.simulated[i]
                                  ? std::move(*calibration.simulated[i])
                                  : simulate_cell(spec, draw_cell_of(spec, planned[i], i), i, calibration.offset_k[i]);
                calibration.simulated[i].reset();
                std::lock_guard lk(m);
                slot[w] = std::move(s);
                filled[w] = 1;
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
    std::vector<double> eol_end(n, 0.0);  // for the assembly stage (production order)
    sum.truth.resize(n);
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
            for (std::size_t w = written; w < end; ++w) {
                Simulated& s = *slot[w];
                const std::size_t i = order[w];
                eol_end[i] = s.eol.end_unix_s;
                records.push_back(std::move(s.formation));
                records.push_back(std::move(s.eol));
                sum.shorted += s.truth.shorted ? 1 : 0;
                sum.eol_failed += s.truth.eol_pass ? 0 : 1;
                sum.truth[i] = std::move(s.truth);
                slot[w].reset();
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
    assemble(store, spec, scheme, sum, eol_end);
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return sum;
}

void write_truth_csv(const std::filesystem::path& file, std::span<const CellTruth> truth) {
    std::string text =
        "serial,lot,production_date,defect_lot,shorted,r_isc_ohm,r0_ohm,leak_ma,rest_days,eol_pass,"
        "position,contact_ohm,tc_offset_c,eol_unix_s\n";
    for (const auto& t : truth)
        text += fmt::format("{},{},{},{},{},{:.1f},{:.6f},{:.4f},{:.3f},{},{},{:.6f},{:.3f},{:.0f}\n", t.serial, t.lot,
                            t.production_date, t.defect_lot ? 1 : 0, t.shorted ? 1 : 0, t.r_isc_ohm, t.r0_ohm,
                            t.leak_ma, t.rest_days, t.eol_pass ? 1 : 0, t.position, t.contact_ohm, t.tc_offset_c,
                            t.eol_unix_s);
    write_file_atomically(file, text);
}

}  // namespace eol::station

namespace eol::station {

void write_device_truth_csv(const std::filesystem::path& file, std::span<const DeviceTruth> devices) {
    std::string text = "device_serial,model,cells,assembled_unix_s,shorted,defect_lot,affected\n";
    for (const auto& d : devices) {
        std::string cells;
        for (const auto& c : d.cells) {
            if (!cells.empty()) cells += ';';
            cells += c;
        }
        text += fmt::format("{},{},{},{:.0f},{},{},{}\n", d.serial, d.model, cells, d.assembled_unix_s,
                            d.shorted ? 1 : 0, d.defect_lot ? 1 : 0, d.affected() ? 1 : 0);
    }
    write_file_atomically(file, text);
}

std::filesystem::path device_truth_path(const std::filesystem::path& truth) {
    std::filesystem::path p = truth;
    const std::string ext = p.extension().string();
    p.replace_extension();
    p += ".devices" + (ext.empty() ? std::string(".csv") : ext);
    return p;
}

}  // namespace eol::station
