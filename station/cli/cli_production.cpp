// eolstation sim-production — a simulated production (months of lots, with a
// defect window) tested end-of-line through the cell physics and written to
// a results store, with the ground truth as CSV for judging a screen.
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "embedded_config.hpp"
#include "eol/station/config.hpp"
#include "eol/station/production_sim.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/store.hpp"

namespace eol::cli {
namespace {

using namespace eol::station;

struct ProductionOptions {
    std::string db;
    std::size_t cells = 20000;
    std::string from = "2023-01-01";
    std::string to = "2023-06-30";
    std::string defect_window;
    double defect_short_fraction = 0.03;
    double defect_r0_shift = 0.04;
    double background_short_fraction = 0.0005;
    std::uint64_t seed = 1;
    unsigned threads = 0;
    std::string truth;
    std::string recipe;
    std::string formation;
    std::string assemble = "A1112:3,A3102:2";
    double assembly_fraction = 0.6;
    int fixture_positions = 1;
    double tc_offset_c = 0.0;
    double entropic_scale = 1.0;
    bool calibrate_thermocouples = false;
    bool commissioned_thermocouples = false;
    double commission_sd_k = 0.05;
    std::vector<std::string> fixture_drift;
    bool traces = false;
    bool all_traces = false;
    bool json = false;
    bool quiet = false;
};

Date date_option(const std::string& flag, const std::string& text) {
    const auto d = Date::parse_iso(text);
    if (!d) throw UsageError(fmt::format("{}: '{}' is not a valid date (YYYY-MM-DD)", flag, text));
    return *d;
}

// "a:b::c" → {"a", "b", "", "c"}.
std::vector<std::string> split_colons(const std::string& text) {
    std::vector<std::string> parts;
    std::size_t a = 0;
    while (a <= text.size()) {
        const std::size_t b = std::min(text.find(':', a), text.size());
        parts.push_back(text.substr(a, b - a));
        a = b + 1;
    }
    return parts;
}

// "A1112:3,A3102:2" (model:cells[:share], comma-separated); "" or "none": no assembly.
std::vector<DeviceModelSpec> device_models_option(const std::string& text) {
    std::vector<DeviceModelSpec> out;
    if (text.empty() || text == "none") return out;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(',', start), text.size());
        const std::string item = text.substr(start, end - start);
        const std::vector<std::string> parts = split_colons(item);
        DeviceModelSpec m;
        bool ok = (parts.size() == 2 || parts.size() == 3) && !parts[0].empty();
        if (ok) {
            m.model = parts[0];
            try {
                std::size_t used = 0;
                const unsigned long cells = std::stoul(parts[1], &used);
                ok = used == parts[1].size() && cells >= 1 && cells <= 64;
                m.cells = cells;
                if (ok && parts.size() == 3) {
                    m.share = std::stod(parts[2], &used);
                    ok = used == parts[2].size() && m.share > 0.0 && std::isfinite(m.share);
                }
            } catch (const std::exception&) {
                ok = false;
            }
        }
        if (!ok)
            throw UsageError(fmt::format("--assemble: '{}' is not MODEL:CELLS[:SHARE] (cells 1…64, share > 0), "
                                         "e.g. A1112:3,A3102:2",
                                         item));
        out.push_back(std::move(m));
        start = end + 1;
    }
    return out;
}

// "POS:YYYY-MM-DD:MOHM_PER_WEEK[:K_PER_WEEK]": a position wearing from that date.
FixtureDrift fixture_drift_option(const std::string& text, int positions) {
    const std::vector<std::string> parts = split_colons(text);
    FixtureDrift d;
    bool ok = parts.size() == 3 || parts.size() == 4;
    std::optional<Date> start;
    if (ok) {
        try {
            std::size_t used = 0;
            d.position = std::stoi(parts[0], &used);
            ok = used == parts[0].size() && d.position >= 1 && d.position <= positions;
            start = Date::parse_iso(parts[1]);
            ok = ok && start.has_value();
            d.ohm_per_week = std::stod(parts[2], &used) * 1e-3;
            ok = ok && used == parts[2].size() && std::isfinite(d.ohm_per_week) && d.ohm_per_week >= 0;
            if (ok && parts.size() == 4) {
                d.tc_k_per_week = std::stod(parts[3], &used);
                ok = used == parts[3].size() && std::isfinite(d.tc_k_per_week);
            }
        } catch (const std::exception&) {
            ok = false;
        }
    }
    if (!ok)
        throw UsageError(fmt::format("--fixture-drift: '{}' is not POSITION:YYYY-MM-DD:MOHM_PER_WEEK[:K_PER_WEEK] "
                                     "(position 1…{}, mOhm per week >= 0), e.g. 3:2023-03-01:0.5",
                                     text, positions));
    d.start = *start;
    return d;
}

void run_production(const ProductionOptions& o) {
    ProductionSpec spec;
    spec.cells = o.cells;
    spec.from = date_option("--from", o.from);
    spec.to = date_option("--to", o.to);
    if (!o.defect_window.empty()) spec.defect_window = parse_window(o.defect_window);
    spec.defect_short_fraction = o.defect_short_fraction;
    spec.defect_r0_shift_rel = o.defect_r0_shift;
    spec.background_short_fraction = o.background_short_fraction;
    spec.seed = o.seed;
    spec.threads = o.threads;
    spec.store_traces = o.traces;
    spec.store_all_traces = o.all_traces;
    spec.device_models = device_models_option(o.assemble);
    spec.assembly_fraction = o.assembly_fraction;
    spec.fixture_positions = o.fixture_positions;
    spec.tc_offset_c = o.tc_offset_c;
    spec.entropic_scale = o.entropic_scale;
    spec.calibrate_thermocouples = o.calibrate_thermocouples;
    spec.commissioned_thermocouples = o.commissioned_thermocouples;
    spec.commission_sd_k = o.commission_sd_k;
    for (const auto& text : o.fixture_drift) spec.fixture_drift.push_back(fixture_drift_option(text, o.fixture_positions));
    // The shipped recipes (embedded) unless a file is given.
    const Recipe recipe = o.recipe.empty() ? embedded_recipe("recipes/eol-18650.toml") : load_recipe(o.recipe);
    const Recipe formation = o.formation.empty() ? embedded_recipe("recipes/formation.toml") : load_recipe(o.formation);
    spec.recipe = &recipe;
    spec.formation = &formation;
    OpenOptions oo;
    oo.create = true;
    Store store = Store::open(o.db, oo);
    if (const auto n = store.count("cells"); n > 0)
        throw UsageError(fmt::format("{}: already holds {} cells; simulate into a new file", o.db, n));
    std::size_t last_pct = 0;
    const ProductionSummary sum = simulate_production(
        store, spec, SerialScheme::default_scheme(), [&](std::size_t done, std::size_t total) {
            const std::size_t pct = done * 100 / total;
            if (!o.quiet && !o.json && pct / 10 != last_pct / 10) fmt::print(stderr, "  {:3d} % ({} cells)\n", pct, done);
            last_pct = pct;
        });
    std::string device_truth;
    if (!o.truth.empty()) {
        write_truth_csv(o.truth, sum.truth);
        if (!spec.device_models.empty()) {
            device_truth = device_truth_path(o.truth).string();
            write_device_truth_csv(device_truth, sum.devices);
        }
    }
    std::size_t affected = 0;
    for (const auto& d : sum.devices) affected += d.affected() ? 1u : 0u;
    if (o.json) {
        fmt::print("{}\n", nlohmann::json{{"cells", sum.truth.size()},
                                          {"lots", sum.lots},
                                          {"defect_lots", sum.defect_lots},
                                          {"shorted", sum.shorted},
                                          {"eol_failed", sum.eol_failed},
                                          {"devices", sum.devices.size()},
                                          {"devices_affected", affected},
                                          {"devices_refused", sum.devices_refused},
                                          {"device_truth", device_truth},
                                          {"seconds", sum.seconds},
                                          {"db", o.db},
                                          {"truth", o.truth}}
                               .dump(2));
        return;
    }
    fmt::print("{} cells in {} lots ({} in the defect window), {} with internal shorts, {} failed EOL limits; "
               "{:.1f} s\n",
               sum.truth.size(), sum.lots, sum.defect_lots, sum.shorted, sum.eol_failed, sum.seconds);
    if (!spec.device_models.empty())
        fmt::print("{} devices assembled ({} contain a shorted or defect-window cell), {} refused by the interlock\n",
                   sum.devices.size(), affected, sum.devices_refused);
    if (!o.truth.empty()) fmt::print("truth: {}\n", o.truth);
    if (!device_truth.empty()) fmt::print("device truth: {}\n", device_truth);
}

}  // namespace

void add_production_commands(CLI::App& app) {
    auto o = std::make_shared<ProductionOptions>();
    CLI::App* c = app.add_subcommand(
        "sim-production",
        "Simulate a production: cells made on working days in lots (one a day), formed, stored and tested "
        "end-of-line through the simulator's cell physics (OCV, DCIR, pulse + circuit fit, heating + thermal "
        "fit); lots in the defect window carry internal shorts and an R0 shift. Writes the records to a new "
        "store and the ground truth to --truth.");
    c->add_option("--db", o->db, "Results store to create (must hold no cells)")->required();
    c->add_option("--cells", o->cells, "Cells to make")->capture_default_str()->check(CLI::Range(1, 10'000'000));
    c->add_option("--from", o->from, "First production date")->capture_default_str();
    c->add_option("--to", o->to, "Last production date")->capture_default_str();
    c->add_option("--defect-window", o->defect_window, "Production window of the defective lots, e.g. 2023-03..2023-04");
    c->add_option("--defect-short-fraction", o->defect_short_fraction, "Fraction of shorted cells in defect lots")
        ->capture_default_str()->check(finite_range(0.0, 1.0));
    c->add_option("--defect-r0-shift", o->defect_r0_shift, "Lot-wide relative R0 shift of defect lots (± 30 % per lot)")
        ->capture_default_str()->check(finite_range(-0.5, 1.0));
    c->add_option("--background-short-fraction", o->background_short_fraction,
                  "Fraction of shorted cells in every lot")->capture_default_str()->check(finite_range(0.0, 1.0));
    c->add_option("--seed", o->seed, "Random seed")->capture_default_str();
    c->add_option("--threads", o->threads, "Worker threads (0 = all cores)")->capture_default_str();
    c->add_option("--truth", o->truth, "Write the ground truth (CSV) here");
    c->add_option("--recipe", o->recipe, "EOL recipe TOML: its steps run on every cell, its limits judge them (default: the shipped eol-18650)");
    c->add_option("--formation", o->formation, "Formation recipe TOML (default: the shipped formation.toml)");
    c->add_option("--assemble", o->assemble,
                  "Device models assembled from passing cells after the EOL test, MODEL:CELLS[:SHARE] comma-separated "
                  "('none': no assembly); device truth beside --truth (truth.devices.csv)")
        ->capture_default_str();
    c->add_option("--assembly-fraction", o->assembly_fraction, "Fraction of passing cells built into devices")
        ->capture_default_str()->check(CLI::Range(0.0, 1.0));
    c->add_option("--fixture-positions", o->fixture_positions,
                  "EOL fixture positions the cells are tested at in turn (fixture health)")
        ->capture_default_str()
        ->check(CLI::Range(1, 256));
    c->add_option("--tc-offset-c", o->tc_offset_c,
                  "Each position's thermocouple reads a constant offset drawn in ±this (K)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 5.0));
    c->add_option("--entropic-scale", o->entropic_scale,
                  "Reversible (entropic) heat of the cells at the EOL test: 0 none, 1 an NMC cell's dU/dT (±0.3 mV/K)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 5.0));
    CLI::Option* calibrate = c->add_flag(
        "--calibrate-thermocouples", o->calibrate_thermocouples,
        "The station's thermocouple calibration (fixture health): each position's first 31 cells fitted "
        "plain, the later ones' heat steps against the median steady offset of those");
    CLI::Option* commissioned =
        c->add_flag("--commissioned-thermocouples", o->commissioned_thermocouples,
                    "Commissioned thermocouple offsets ([[channels]] thermo_offset_k): each position's offset "
                    "measured before its first cell (with --commission-sd-k of error); every heat step fits "
                    "with it from the first cell")
            ->excludes(calibrate);
    c->add_option("--commission-sd-k", o->commission_sd_k,
                  "With --commissioned-thermocouples: the commissioning measurement's error (SD, K)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1.0))
        ->needs(commissioned);
    c->add_option("--fixture-drift", o->fixture_drift,
                  "A wearing position: POSITION:YYYY-MM-DD:MOHM_PER_WEEK[:K_PER_WEEK] (contact resistance, and "
                  "thermocouple offset, growing from that date); repeatable");
    c->add_flag("--traces", o->traces, "Store each cell's pulse trace (about 10 kB a cell)");
    c->add_flag("--all-traces", o->all_traces,
                "Store each cell's whole EOL trace, the heat step's samples too (about 60 kB a cell; "
                "tools/bench/bench_thermal_search fits them again)");
    c->add_flag("--json", o->json, "Print the summary as JSON");
    c->add_flag("--quiet", o->quiet, "No progress on stderr");
    c->callback([o] { run_production(*o); });
}

}  // namespace eol::cli
