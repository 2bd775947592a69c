// thermal_sim_roc — does an internal short still separate from good cells by
// its unexplained heat P_x when the simulator is not kinder than reality?
// (issue 16, part 1; docs/models.md quotes the output.)
//
// Cells with reversible heat (CellParams::entropic_scale = 1, dU/dT from the
// state of charge, drawn uniform in [soc-min, soc-max]) are tested on the
// positions of a fixture whose thermocouples read per-channel offsets
// (MeasurementNoise::t_offset_c, uniform in ±offset K, deterministic from the
// seed). Each cell: 60 s rest, 600 s at 3 A, --cooling-s (1800) s cooling, 1 Hz — the
// station's production heat step with a lead-in rest. A fraction of the cells
// carries an internal short of --short-ohm (1 kΩ ≈ 15 mW at 3.9 V).
//
// Scores (P_x, higher = more suspect):
//   plain          the station's fit (3 RC pairs of circuit heat), P_x
//                  assuming no sensor offset — what screening reads today;
//   plain+cal      the plain fit with each channel's offset calibrated:
//                  P_x − o_plain/R_th;
//   extended+cal   reversible heat k·I fitted per window, P_x = (c − o)/R_th
//                  with c = offset + R_th·P_x and o the channel's offset;
//   ... median R_th the same with R_th the median over the position's cells
//                  (one window's R_th trades against k; R_th is a property
//                  of the cell model in its fixture, as the joint fit of the
//                  real windows shares it);
//   known k + cal  (--known-k V [--known-k-per-ah V/Ah]) the plain fit with
//                  the reversible heat k·I added to the heat as known
//                  (ThermalOptions::entropic_v, entropic_v_per_ah: k moving
//                  with the charge drawn; what a recipe's entropic_v does in
//                  the station's heat step), read against each channel's
//                  calibration of that same model: P_x − o_known/R_th;
//                  or (--known-k-from-ocv) k read per cell as the station's
//                  heat step reads a recipe's [cell.entropy]: the state of
//                  charge from the rest voltage before the current (the
//                  table being the simulator's OCV and dU/dT curves), k =
//                  −T·dU/dT there and its secant over the step's 0.5 Ah.
// Also printed: the good cells' R_th, C_th and τ per fit (the recipe's EOL
// limits are R_th 5–20 K/W, C_th 100–300 J/K), the median k the extended fit
// estimates over all cells (blind to the labels: "characterising" the cell
// model, meaningful with a cooling of about τ, --cooling-s 1800) and the true
// k of the simulated cells averaged over their 600 s of current
// (−T·dU/dT(SoC) × entropic scale, SoC falling 17 % over the step).
// The channel calibration is blind to the labels: the median over all cells
// the position tested (shorts are a minority; in production: the position's
// history, issue 16 part 3).
// Prints, per score: quantiles of good and shorted cells' P_x, the ROC AUC,
// and the detection rate at the thresholds that hold 0.5 % and 1 % of good
// cells. Deterministic for a seed.
// Usage: thermal_sim_roc [--positions 8] [--cells 60] [--short-fraction 0.2]
//        [--short-ohm 1000] [--offset 0.5] [--soc-min 0.3] [--soc-max 0.9] [--entropic-scale 1]
//        [--cooling-s 1800] [--known-k V [--known-k-per-ah V/Ah] | --known-k-from-ocv] [--seed 1]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "eol/models/thermal.hpp"
#include "eol/sim/cell.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/station/config.hpp"  // CellEntropy

namespace {

using eol::models::Series;

struct Args {
    std::size_t positions = 8, cells = 60;
    double short_fraction = 0.2, short_ohm = 1000.0, offset_k = 0.5, soc_min = 0.3, soc_max = 0.9, entropic = 1.0;
    double cooling_s = 1800.0;
    std::optional<double> known_k, known_k_per_ah;
    bool k_from_ocv = false;  // --known-k-from-ocv
    std::uint64_t seed = 1;
};

double parse_num(const char* name, const char* text) {
    char* end = nullptr;
    const double v = std::strtod(text, &end);
    if (end == text || *end != '\0' || !std::isfinite(v))
        throw std::invalid_argument(std::string(name) + ": '" + text + "' is not a number");
    return v;
}

Args parse(int argc, char** argv) {
    Args a;
    for (int k = 1; k < argc; ++k) {
        const std::string opt = argv[k];
        if (opt == "--known-k-from-ocv") {
            a.k_from_ocv = true;
            continue;
        }
        if (k + 1 >= argc) throw std::invalid_argument(opt + ": missing value (see the header of thermal_sim_roc.cpp)");
        const double v = parse_num(argv[k], argv[k + 1]);
        ++k;
        auto count = [&](double x) {
            if (x < 1 || x > 10000 || x != std::floor(x)) throw std::invalid_argument(opt + ": a count 1..10000");
            return static_cast<std::size_t>(x);
        };
        if (opt == "--positions") a.positions = count(v);
        else if (opt == "--cells") a.cells = count(v);
        else if (opt == "--short-fraction") a.short_fraction = v;
        else if (opt == "--short-ohm") a.short_ohm = v;
        else if (opt == "--offset") a.offset_k = v;
        else if (opt == "--soc-min") a.soc_min = v;
        else if (opt == "--soc-max") a.soc_max = v;
        else if (opt == "--seed") a.seed = count(v);
        else if (opt == "--entropic-scale") a.entropic = v;
        else if (opt == "--cooling-s") a.cooling_s = v;
        else if (opt == "--known-k") a.known_k = v;
        else if (opt == "--known-k-per-ah") a.known_k_per_ah = v;
        else throw std::invalid_argument("unknown option " + opt);
    }
    if (!(a.short_fraction > 0 && a.short_fraction < 1)) throw std::invalid_argument("--short-fraction: in (0, 1)");
    if (!(a.short_ohm > 0)) throw std::invalid_argument("--short-ohm: positive");
    if (!(a.offset_k >= 0 && a.offset_k <= 5)) throw std::invalid_argument("--offset: 0..5 K");
    if (!(a.cooling_s >= 60 && a.cooling_s <= 20000)) throw std::invalid_argument("--cooling-s: 60..20000 s");
    if (!(a.entropic >= 0 && a.entropic <= 5)) throw std::invalid_argument("--entropic-scale: 0..5");
    if (a.known_k && !(*a.known_k >= -1 && *a.known_k <= 1)) throw std::invalid_argument("--known-k: -1..1 V");
    if (a.known_k_per_ah && !a.known_k) throw std::invalid_argument("--known-k-per-ah needs --known-k");
    if (a.k_from_ocv && a.known_k) throw std::invalid_argument("--known-k-from-ocv excludes --known-k");
    if (!(a.soc_min >= 0.05 && a.soc_min <= a.soc_max && a.soc_max <= 1.0))
        throw std::invalid_argument("--soc-min/--soc-max: 0.05 ≤ min ≤ max ≤ 1");
    return a;
}

/// 60 s rest, 600 s at 3 A, `cooling_s` rest, 1 Hz, read as a station would.
Series heat_step(eol::sim::Fixture& fx, eol::sim::SimClock& clock, std::size_t pos, double cooling_s) {
    Series s;
    double t = 0.0;
    auto sample = [&] {
        s.t_s.push_back(t);
        s.i_a.push_back(fx.measure_current_a(pos));
        s.v_v.push_back(fx.measure_voltage_v(pos));
        s.t_cell_c.push_back(fx.measure_temp_c(pos));
        s.t_amb_c.push_back(fx.measure_ambient_c());
    };
    sample();
    const int end = 660 + static_cast<int>(cooling_s);
    for (int k = 1; k <= end; ++k) {
        if (k == 60) fx.set_load(pos, {eol::sim::LoadMode::cc, 3.0, true});
        if (k == 660) fx.set_load(pos, {eol::sim::LoadMode::cc, 0.0, false});
        clock.skip(1.0);
        t += 1.0;
        sample();
    }
    return s;
}

double quantile(std::vector<double> v, double q) {  // type 7
    std::sort(v.begin(), v.end());
    const double h = q * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(h));
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (h - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

double median(const std::vector<double>& v) { return quantile(v, 0.5); }

double auc(const std::vector<double>& good, const std::vector<double>& bad) {
    double wins = 0.0;
    for (double b : bad)
        for (double g : good) wins += b > g ? 1.0 : (b == g ? 0.5 : 0.0);
    return wins / static_cast<double>(good.size() * bad.size());
}

/// Fraction of shorts above the threshold that holds `fpr` of good cells.
double tpr_at(const std::vector<double>& good, const std::vector<double>& bad, double fpr) {
    std::vector<double> g = good;
    std::sort(g.begin(), g.end(), std::greater<>());
    const auto held = static_cast<std::size_t>(std::floor(fpr * static_cast<double>(g.size())));
    const double thr = g[std::min(held, g.size() - 1)];  // strictly above: at most `held` good cells
    return static_cast<double>(std::count_if(bad.begin(), bad.end(), [&](double b) { return b > thr; })) /
           static_cast<double>(bad.size());
}

struct Cell {
    std::size_t pos;
    bool shorted;
    double soc;
    eol::models::ThermalFit plain, ext, known;
    double k_true_v;  // the simulated k averaged over the 600 s of current
};

/// The simulated cell's k = −T·dU/dT × scale averaged over 600 s at 3 A from
/// `soc0` (capacity `ah`), T at 25 °C + 1 K (the cell's mean rise).
double true_k_v(double soc0, double ah, double scale) {
    double sum = 0.0;
    for (int k = 0; k < 600; ++k) {
        const double soc = soc0 - 3.0 * (k + 0.5) / 3600.0 / ah;
        sum += -(26.0 + 273.15) * scale * eol::sim::entropic_du_dt_v_per_k(soc);
    }
    return sum / 600.0;
}

/// The shipped recipes' [cell.entropy]: the simulator's OCV and dU/dT curves on
/// their grid (both piecewise linear between these points, so the same curves).
eol::station::CellEntropy simulator_entropy() {
    eol::station::CellEntropy e;
    for (int k = 0; k <= 10; ++k) {
        const double soc = 0.1 * k;
        e.soc.push_back(soc);
        e.ocv_v.push_back(eol::sim::ocv_nmc_v(soc));
        e.du_dt_v_per_k.push_back(eol::sim::entropic_du_dt_v_per_k(soc));
    }
    return e;
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    try {
        a = parse(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "thermal_sim_roc: %s\n", e.what());
        return 2;
    }
    auto clock = eol::sim::SimClock::manual();
    eol::sim::MeasurementNoise noise;
    noise.t_offset_c = a.offset_k;
    eol::sim::Fixture fx(a.positions, clock, 25.0, a.seed, noise);
    eol::sim::PopulationSpec spec;
    spec.nominal.entropic_scale = a.entropic;
    std::mt19937_64 rng(a.seed * 0x9E3779B97F4A7C15ull + 17);
    std::uniform_real_distribution<double> soc(a.soc_min, a.soc_max), u01(0.0, 1.0);

    const bool use_known = a.known_k || a.k_from_ocv;
    const eol::station::CellEntropy entropy = simulator_entropy();
    std::vector<Cell> cells;
    std::size_t failed = 0;
    for (std::size_t c = 0; c < a.cells; ++c)
        for (std::size_t p = 0; p < a.positions; ++p) {
            eol::sim::CellParams cp = eol::sim::draw_cell(spec, rng);
            cp.soc0 = soc(rng);
            const bool shorted = u01(rng) < a.short_fraction;
            if (shorted) cp.r_isc_ohm = a.short_ohm;
            fx.load_cell(p, "C" + std::to_string(p) + "-" + std::to_string(c), cp);
            const Series s = heat_step(fx, *clock, p, a.cooling_s);
            fx.unload(p);
            eol::models::ThermalOptions plain;
            plain.heating_rc_pairs = 3;
            eol::models::ThermalOptions ext = plain;
            ext.reversible_heat = true;
            eol::models::ThermalOptions known = plain;
            known.entropic_v = a.known_k;
            known.entropic_v_per_ah = a.known_k_per_ah;
            if (a.k_from_ocv) {
                // As the station's heat step: the table read at the rest voltage, the
                // model's nominal capacity, 600 s at 3 A.
                const auto rev = entropy.reversible(s.v_v.front(), s.t_cell_c.front(), 0.5, spec.nominal.capacity_ah);
                known.entropic_v = rev.k_v;
                known.entropic_v_per_ah = rev.k_v_per_ah;
            }
            try {
                cells.push_back({p, shorted, cp.soc0, eol::models::fit_thermal(s, plain), eol::models::fit_thermal(s, ext),
                                 known.entropic_v ? eol::models::fit_thermal(s, known) : eol::models::ThermalFit{},
                                 true_k_v(cp.soc0, cp.capacity_ah, a.entropic)});
            } catch (const std::exception& e) {
                ++failed;
                std::fprintf(stderr, "cell %zu on position %zu: %s\n", c, p, e.what());
            }
        }

    // Channel calibration, blind to the labels.
    std::vector<double> o_plain(a.positions), o_ext(a.positions), r_ext(a.positions), o_known(a.positions);
    std::printf("## thermal_sim_roc: %zu positions x %zu cells, %.0f %% with a %.0f ohm short, thermocouple offsets "
                "±%.2f K, SoC %.2f..%.2f, reversible heat × %.2f, cooling %.0f s, seed %llu; %zu fits failed\n\n",
                a.positions, a.cells, 100 * a.short_fraction, a.short_ohm, a.offset_k, a.soc_min, a.soc_max, a.entropic,
                a.cooling_s,
                static_cast<unsigned long long>(a.seed), failed);
    std::printf("| position | true offset (cell − ambient) K | calibrated, plain K | calibrated, extended K | "
                "median R_th, extended K/W |\n");
    std::printf("|---|---|---|---|---|\n");
    for (std::size_t p = 0; p < a.positions; ++p) {
        std::vector<double> cp, ce, re, ck;
        for (const auto& c : cells)
            if (c.pos == p) {
                cp.push_back(c.plain.p_extra_w.value * c.plain.r_th_k_per_w.value);
                ce.push_back(c.ext.steady_offset_k.value);
                re.push_back(c.ext.r_th_k_per_w.value);
                ck.push_back(c.known.p_extra_w.value * c.known.r_th_k_per_w.value);
            }
        o_plain[p] = median(cp);
        o_ext[p] = median(ce);
        r_ext[p] = median(re);
        o_known[p] = use_known ? median(ck) : 0.0;
        std::printf("| %zu | %+.3f | %+.3f | %+.3f | %.2f |\n", p, fx.thermocouple_offset_c(p) - fx.ambient_offset_c(),
                    o_plain[p], o_ext[p], r_ext[p]);
    }

    struct Score {
        const char* name;
        std::vector<double> good, bad;
    };
    std::vector<Score> scores{{"plain (station today: no offset assumed)", {}, {}},
                              {"plain + calibrated channel offset", {}, {}},
                              {"extended (k·I) + calibrated channel offset", {}, {}},
                              {"extended + calibrated offset, the position's median R_th", {}, {}},
                              {"plain + known k + calibrated channel offset", {}, {}}};
    std::size_t ext_identifiable = 0;
    for (const auto& c : cells) {
        ext_identifiable += c.ext.p_extra_identifiable ? 1 : 0;
        const double v[5] = {c.plain.p_extra_w.value,
                             c.plain.p_extra_w.value - o_plain[c.pos] / c.plain.r_th_k_per_w.value,
                             (c.ext.steady_offset_k.value - o_ext[c.pos]) / c.ext.r_th_k_per_w.value,
                             (c.ext.steady_offset_k.value - o_ext[c.pos]) / r_ext[c.pos],
                             c.known.p_extra_w.value - o_known[c.pos] / c.known.r_th_k_per_w.value};
        for (std::size_t k = 0; k < (use_known ? 5u : 4u); ++k)
            (c.shorted ? scores[k].bad : scores[k].good).push_back(1e3 * v[k]);
    }
    std::printf("\nExtended fit without a calibration: P_x identifiable in %zu of %zu cells (it must be 0).\n\n",
                ext_identifiable, cells.size());
    std::printf("| score | good cells P_x mW: min / 5 %% / median / 95 %% / max | shorts P_x mW: min / 5 %% / median / "
                "95 %% / max | ROC AUC | shorts caught holding 0.5 %% / 1 %% of good |\n");
    std::printf("|---|---|---|---|---|\n");
    for (const auto& s : scores) {
        if (s.good.empty() || s.bad.empty()) continue;
        auto q5 = [](const std::vector<double>& v) {
            char buf[128];
            std::snprintf(buf, sizeof buf, "%.1f / %.1f / %.1f / %.1f / %.1f", quantile(v, 0), quantile(v, 0.05),
                          quantile(v, 0.5), quantile(v, 0.95), quantile(v, 1));
            return std::string(buf);
        };
        std::printf("| %s | %s | %s | %.3f | %.0f %% / %.0f %% |\n", s.name, q5(s.good).c_str(), q5(s.bad).c_str(),
                    auc(s.good, s.bad), 100 * tpr_at(s.good, s.bad, 0.005), 100 * tpr_at(s.good, s.bad, 0.01));
    }
    std::printf("\n(%zu good cells, %zu shorts; OCV²/R_isc ≈ %.1f mW at 3.9 V)\n", scores[0].good.size(),
                scores[0].bad.size(), 1e3 * 3.9 * 3.9 / a.short_ohm);

    // The good cells' thermal parameters per fit, against the recipe's EOL limits.
    auto q3 = [](const std::vector<double>& v) {
        char buf[96];
        if (v.empty()) return std::string("-");
        std::snprintf(buf, sizeof buf, "%.1f / %.1f / %.1f", quantile(v, 0), quantile(v, 0.5), quantile(v, 1));
        return std::string(buf);
    };
    std::printf("\n| fit, good cells | R_th K/W min / median / max | C_th J/K | tau s | outside R_th 5–20 or C_th "
                "100–300 |\n|---|---|---|---|---|\n");
    auto params = [&](const char* name, auto get) {
        std::vector<double> r, c, t;
        std::size_t out = 0;
        for (const auto& cell : cells) {
            if (cell.shorted) continue;
            const eol::models::ThermalFit& f = get(cell);
            r.push_back(f.r_th_k_per_w.value);
            c.push_back(f.c_th_j_per_k.value);
            t.push_back(f.tau_s.value);
            const bool in = f.r_th_k_per_w.value >= 5 && f.r_th_k_per_w.value <= 20 && f.c_th_j_per_k.value >= 100 &&
                            f.c_th_j_per_k.value <= 300;
            out += in ? 0 : 1;
        }
        std::printf("| %s | %s | %s | %s | %zu of %zu |\n", name, q3(r).c_str(), q3(c).c_str(), q3(t).c_str(), out,
                    r.size());
    };
    params("plain", [](const Cell& c) -> const eol::models::ThermalFit& { return c.plain; });
    params("extended (k free)", [](const Cell& c) -> const eol::models::ThermalFit& { return c.ext; });
    if (use_known) params(a.k_from_ocv ? "plain + k from OCV" : "plain + known k", [](const Cell& c) -> const eol::models::ThermalFit& { return c.known; });
    std::vector<double> k_ext, k_true_good;
    for (const auto& c : cells) {
        k_ext.push_back(c.ext.entropic_v.value);
        if (!c.shorted) k_true_good.push_back(c.k_true_v);
    }
    std::printf("\nk, mV: extended fit over all cells (blind to the labels) min / median / max %s; simulated "
                "(−T·dU/dT averaged over the current, good cells) %s%s\n",
                q3([&] { std::vector<double> m; for (double x : k_ext) m.push_back(1e3 * x); return m; }()).c_str(),
                q3([&] { std::vector<double> m; for (double x : k_true_good) m.push_back(1e3 * x); return m; }()).c_str(),
                a.known_k ? (std::string("; given ") + std::to_string(1e3 * *a.known_k) + " mV " +
                             std::to_string(1e3 * a.known_k_per_ah.value_or(0.0)) + " mV/Ah")
                                .c_str()
                : a.k_from_ocv ? "; known k read per cell from its rest voltage ([cell.entropy])"
                               : "");
    return failed == 0 ? 0 : 1;
}
