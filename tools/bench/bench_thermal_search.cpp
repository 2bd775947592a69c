// The thermal fit (heat from a 3-pair circuit, as the station's heat step
// fits it) over every heat step of a store, with the start search on every
// sample (ThermalOptions::search_every_sample_up_to = 3000, the default) and
// on a reduced record (--limit, default 1000), side by side: how many
// windows give the same result, which differ and by how much, and the time
// of each. A store from `eolstation sim-production` holds good and shorted
// cells' windows.
//
//   bench_thermal_search --db STORE [--recipe TOML] [--limit N] [--show K]
//
// The fit's options are the heat step's (steps.cpp): three RC pairs, and the
// recipe's [cell.entropy] at the cell's measured OCV (default recipe: the
// shipped eol-18650, what `eolstation sim-production` tests with).
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "eol/models/thermal.hpp"
#include "eol/station/config.hpp"
#include "eol/station/steps.hpp"
#include "eol/station/store.hpp"

using namespace eol;

namespace {

struct Outcome {
    models::ThermalFit fit;
    std::string error;
    double ms = 0;
};

Outcome fit_once(const models::Series& s, models::ThermalOptions opt, std::size_t limit) {
    opt.search_every_sample_up_to = limit;
    Outcome o;
    const auto t0 = std::chrono::steady_clock::now();
    try {
        o.fit = models::fit_thermal(s, opt);
    } catch (const std::exception& e) {
        o.error = e.what();
    }
    o.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return o;
}

/// |a − b| relative to the larger of |a|, |b| and `floor` (P_x is near zero
/// on a good cell: its differences are read against 1 mW).
double rel(double a, double b, double floor = 1e-12) {
    if (std::isnan(a) && std::isnan(b)) return 0.0;
    if (std::isnan(a) != std::isnan(b)) return INFINITY;
    return std::abs(a - b) / std::max({std::abs(a), std::abs(b), floor});
}

double median(std::vector<double> v) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    std::string db, recipe_file = std::string(EOL_BENCH_CONFIG_DIR) + "/recipes/eol-18650.toml";
    std::size_t limit = 1000;
    int show = 10;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--db" && i + 1 < argc) db = argv[++i];
        else if (a == "--recipe" && i + 1 < argc) recipe_file = argv[++i];
        else if (a == "--limit" && i + 1 < argc) limit = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--show" && i + 1 < argc) show = std::atoi(argv[++i]);
        else {
            fmt::print(stderr, "usage: bench_thermal_search --db STORE [--recipe TOML] [--limit N] [--show K]\n");
            return 2;
        }
    }
    if (db.empty()) {
        fmt::print(stderr, "bench_thermal_search: --db is required\n");
        return 2;
    }
    const station::Recipe recipe = station::load_recipe(recipe_file);
    const auto heat_step = std::find_if(recipe.steps.begin(), recipe.steps.end(),
                                        [](const auto& st) { return st.kind() == station::StepKind::heat; });
    if (heat_step == recipe.steps.end()) {
        fmt::print(stderr, "bench_thermal_search: {} has no heat step\n", recipe_file);
        return 2;
    }
    const auto& hp = std::get<station::HeatParams>(heat_step->params);
    auto store = station::Store::open(db, station::OpenOptions{.read_only = true});
    const auto runs = store.count("test_runs");
    std::size_t windows = 0, same = 0, differ = 0, shown = 0;
    std::size_t within[4] = {0, 0, 0, 0};  // relative difference <= 1e-4, 1e-3, 1e-2, more (finite)
    std::size_t kind_differs = 0;           // an error or a NaN on one side only
    std::size_t again = 0;                  // the reduced search's circuit over its bound: searched again
    std::vector<double> ms_full, ms_reduced;
    double worst = 0;
    double px_abs_w = 0, cth_rel = 0, rth_rel = 0;  // the largest differences, finite pairs
    for (std::int64_t id = 1; id <= runs; ++id) {
        const auto steps = store.steps(id);
        const auto it = std::find_if(steps.begin(), steps.end(), [](const auto& s) { return s.kind == "heat"; });
        if (it == steps.end() || it->sample_count < 10) continue;
        const models::Series s = station::step_window(store.trace(id), it->first_sample, it->sample_count);
        double ocv_v = NAN;
        for (const auto& m : store.measurements(id))
            if (m.name == "ocv_v") ocv_v = m.value;
        const auto options = station::heat_fit_options(hp, recipe, ocv_v, s.t_cell_c.front());
        if (!options) continue;
        const models::ThermalOptions& opt = options->thermal;
        ++windows;
        const Outcome a = fit_once(s, opt, 3000), b = fit_once(s, opt, limit);
        for (const auto& n : b.fit.notes)
            if (n.find("searched again on every sample") != std::string::npos) ++again;
        ms_full.push_back(a.ms);
        ms_reduced.push_back(b.ms);
        double d = a.error == b.error ? 0.0 : INFINITY;
        if (a.error.empty() && b.error.empty())
            d = std::max({rel(a.fit.c_th_j_per_k.value, b.fit.c_th_j_per_k.value),
                          rel(a.fit.r_th_k_per_w.value, b.fit.r_th_k_per_w.value),
                          rel(a.fit.p_extra_w.value, b.fit.p_extra_w.value, 1e-3),
                          rel(a.fit.heating_ohm.value, b.fit.heating_ohm.value)});
        if (a.error.empty() && b.error.empty()) {
            if (std::isfinite(a.fit.p_extra_w.value) && std::isfinite(b.fit.p_extra_w.value))
                px_abs_w = std::max(px_abs_w, std::abs(a.fit.p_extra_w.value - b.fit.p_extra_w.value));
            const double c = rel(a.fit.c_th_j_per_k.value, b.fit.c_th_j_per_k.value);
            const double r = rel(a.fit.r_th_k_per_w.value, b.fit.r_th_k_per_w.value);
            if (std::isfinite(c)) cth_rel = std::max(cth_rel, c);
            if (std::isfinite(r)) rth_rel = std::max(rth_rel, r);
        }
        if (d <= 1e-6) {
            ++same;
            continue;
        }
        ++differ;
        if (std::isfinite(d)) worst = std::max(worst, d);
        if (!std::isfinite(d)) ++kind_differs;
        else ++within[d <= 1e-4 ? 0 : d <= 1e-3 ? 1 : d <= 1e-2 ? 2 : 3];
        if (d <= 1e-3) continue;  // within the search's tolerance: not shown
        if (static_cast<int>(shown++) < show)
            fmt::print("run {} ({} samples, difference {:.3g}): every sample: C_th {:.6g} R_th {:.6g} P_x {:.6g} R_heat {:.6g} {}\n"
                       "{:>{}} reduced:      C_th {:.6g} R_th {:.6g} P_x {:.6g} R_heat {:.6g} {}\n",
                       id, s.size(), d, a.fit.c_th_j_per_k.value, a.fit.r_th_k_per_w.value, a.fit.p_extra_w.value,
                       a.fit.heating_ohm.value, a.error, "", 0, b.fit.c_th_j_per_k.value, b.fit.r_th_k_per_w.value,
                       b.fit.p_extra_w.value, b.fit.heating_ohm.value, b.error);
    }
    fmt::print("\n{} heat windows in {}: {} the same (relative difference <= 1e-6 in C_th, R_th, R_heat; P_x against 1 mW or more), {} differ "
               "(largest finite relative difference {:.3g})\n",
               windows, db, same, differ, worst);
    fmt::print("of those: {} within 1e-4, {} within 1e-3, {} within 1e-2, {} more; {} fail or give NaN on one side only\n",
               within[0], within[1], within[2], within[3], kind_differs);
    fmt::print("{} window(s) searched again on every sample (the reduced search's circuit heat over its bound)\n", again);
    fmt::print("largest differences: C_th {:.3g} relative, R_th {:.3g} relative, P_x {:.3g} mW\n", cth_rel, rth_rel,
               1e3 * px_abs_w);
    fmt::print("median fit time: {:.3f} ms searched on every sample, {:.3f} ms on a reduced record above {} samples\n",
               median(ms_full), median(ms_reduced), limit);
    return 0;
}
