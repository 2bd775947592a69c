// eolstation sim-production — a simulated production (months of lots, with a
// defect window) tested end-of-line through the cell physics and written to
// a results store, with the ground truth as CSV for judging a screen.
#include <fmt/format.h>

#include <memory>
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
    bool traces = false;
    bool json = false;
    bool quiet = false;
};

Date date_option(const std::string& flag, const std::string& text) {
    const auto d = Date::parse_iso(text);
    if (!d) throw UsageError(fmt::format("{}: '{}' is not a valid date (YYYY-MM-DD)", flag, text));
    return *d;
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
    if (!o.truth.empty()) write_truth_csv(o.truth, sum.truth);
    if (o.json) {
        fmt::print("{}\n", nlohmann::json{{"cells", sum.truth.size()},
                                          {"lots", sum.lots},
                                          {"defect_lots", sum.defect_lots},
                                          {"shorted", sum.shorted},
                                          {"eol_failed", sum.eol_failed},
                                          {"seconds", sum.seconds},
                                          {"db", o.db},
                                          {"truth", o.truth}}
                               .dump(2));
        return;
    }
    fmt::print("{} cells in {} lots ({} in the defect window), {} with internal shorts, {} failed EOL limits; "
               "{:.1f} s\n",
               sum.truth.size(), sum.lots, sum.defect_lots, sum.shorted, sum.eol_failed, sum.seconds);
    if (!o.truth.empty()) fmt::print("truth: {}\n", o.truth);
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
    c->add_flag("--traces", o->traces, "Store each cell's pulse trace (about 10 kB a cell)");
    c->add_flag("--json", o->json, "Print the summary as JSON");
    c->add_flag("--quiet", o->quiet, "No progress on stderr");
    c->callback([o] { run_production(*o); });
}

}  // namespace eol::cli
