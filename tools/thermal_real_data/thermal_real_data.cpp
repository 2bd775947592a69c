// thermal_real_data — the thermal model on the eight real 3 A heating windows
// of the Samsung 30Q record, before and after the extended model (issue 16,
// part 1). Prints markdown tables (docs/models.md quotes them):
//   before   the plain model, circuit heat with 2 pairs (`eolstation fit
//            thermal` default) and 3 pairs (the station's runner), P_x = c/R_th
//            assuming no sensor offset;
//   after    the extended model per window (reversible heat k·I, free start
//            state, no sensor offset known → P_x not identifiable), and the
//            joint fit of the eight windows with shared τ and R_th;
//   cooling  τ of the cooling rest alone (the model-free shape).
// Usage: thermal_real_data [--file PATH]   (default ../shared/data/real/…)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "eol/models/thermal.hpp"
#include "real_record.hpp"

using eol::models::Series;
using eol::models::ThermalFit;
using eol::models::ThermalOptions;

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void spread(const char* name, const std::vector<double>& v) {
    const double md = median(v);
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    std::printf("%s: median %.4g, range %.4g to %.4g (%+.0f %% / %+.0f %% of the median)\n", name, md, *lo, *hi,
                100.0 * (*lo / md - 1.0), 100.0 * (*hi / md - 1.0));
}

}  // namespace

int main(int argc, char** argv) {
    std::string file = std::string(EOL_SHARED_DIR) + "/data/real/samsung-30q-hppc-20c-10pct-soc-steps.txt";
    for (int a = 1; a < argc; ++a) {
        if (std::strcmp(argv[a], "--file") == 0 && a + 1 < argc)
            file = argv[++a];
        else {
            std::fprintf(stderr, "usage: thermal_real_data [--file PATH]\n");
            return 2;
        }
    }
    try {
        const Series s = eol::realdata::read_labview(file);
        const auto ws = eol::realdata::windows(s, 3);
        std::printf("%s: %zu samples, %zu heating windows\n\n", file.c_str(), s.size(), ws.size());
        std::vector<Series> wins;
        for (const auto& w : ws) wins.push_back(s.slice(w.first, w.last));

        {
            // The figures the issue quoted (P_x 4–73 mW, window 0 72.7 ± 1.0 mW,
            // R_th 4.3–8.3 K/W, C_th 141–255 J/K): `fit thermal` defaults on
            // windows whose time base kept the logger's forward jumps.
            const Series raw = eol::realdata::read_labview(file, 1e9);
            const auto rws = eol::realdata::windows(raw, 3);
            std::printf("### Before, as the issue ran it: plain model, `fit thermal` defaults (2 RC pairs), time base "
                        "with the logger's forward jumps kept\n\n");
            std::printf("| window | P_x mW (±95 %%) | R_th K/W | C_th J/K | tau s | corr(P_x,R_th) | RMSE mK |\n");
            std::printf("|---|---|---|---|---|---|---|\n");
            std::vector<double> taus;
            for (std::size_t k = 0; k < rws.size(); ++k) {
                const ThermalFit f = eol::models::fit_thermal(raw.slice(rws[k].first, rws[k].last), {});
                taus.push_back(f.tau_s.value);
                std::printf("| %zu (%zu) | %.1f ± %.1f | %.2f | %.0f | %.0f | %+.2f | %.1f |\n", k, rws[k].first,
                            1e3 * f.p_extra_w.value, 1e3 * f.p_extra_w.ci95, f.r_th_k_per_w.value,
                            f.c_th_j_per_k.value, f.tau_s.value, f.corr_p_extra_r_th, 1e3 * f.rmse_k);
            }
            std::printf("\n");
            spread("tau_s", taus);
            std::printf("\n");
        }

        for (int rc : {2, 3}) {
            std::printf("### Before: plain model, circuit heat with %d RC pairs, P_x assuming no sensor offset\n\n", rc);
            std::printf("| window | P_x mW (±95 %%) | R_th K/W | C_th J/K | tau s | corr(P_x,R_th) | RMSE mK |\n");
            std::printf("|---|---|---|---|---|---|---|\n");
            std::vector<double> taus;
            for (std::size_t k = 0; k < wins.size(); ++k) {
                ThermalOptions o;
                o.heating_rc_pairs = rc;
                const ThermalFit f = eol::models::fit_thermal(wins[k], o);
                taus.push_back(f.tau_s.value);
                std::printf("| %zu (%zu) | %.1f ± %.1f | %.2f | %.0f | %.0f | %+.2f | %.1f |\n", k, ws[k].first,
                            1e3 * f.p_extra_w.value, 1e3 * f.p_extra_w.ci95, f.r_th_k_per_w.value,
                            f.c_th_j_per_k.value, f.tau_s.value, f.corr_p_extra_r_th, 1e3 * f.rmse_k);
            }
            std::printf("\n");
            spread("tau_s", taus);
            std::printf("\n");
        }

        for (int drift = 0; drift < 2; ++drift) {
            std::printf("### After, one window at a time: reversible heat k·I + free start state%s, 3 RC pairs; no "
                        "sensor offset known\n\n",
                        drift ? " + ambient drift" : "");
            std::printf("| window | P_x | c = o + R_th·P_x, K | k = −T·dU/dT, mV | R_th K/W (±95 %%) | C_th J/K (±95 %%) | "
                        "tau s (±95 %%) | corr(P_x,R_th) | corr(k,R_th) | RMSE mK |\n");
            std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
            std::vector<double> taus;
            for (std::size_t k = 0; k < wins.size(); ++k) {
                ThermalOptions o;
                o.heating_rc_pairs = 3;
                o.reversible_heat = true;
                o.offset_from_rest = true;
                o.ambient_drift = drift != 0;
                const ThermalFit f = eol::models::fit_thermal(wins[k], o);
                taus.push_back(f.tau_s.value);
                std::printf("| %zu | %s | %.3f ± %.3f | %.0f ± %.0f | %.1f ± %.1f | %.0f ± %.0f | %.0f ± %.0f | %+.2f | "
                            "%+.2f | %.1f |\n",
                            k, f.p_extra_identifiable ? "identifiable" : "not identifiable", f.steady_offset_k.value,
                            f.steady_offset_k.ci95, 1e3 * f.entropic_v.value, 1e3 * f.entropic_v.ci95,
                            f.r_th_k_per_w.value, f.r_th_k_per_w.ci95, f.c_th_j_per_k.value, f.c_th_j_per_k.ci95,
                            f.tau_s.value, f.tau_s.ci95, f.corr_p_extra_r_th, f.corr_entropic_r_th, 1e3 * f.rmse_k);
            }
            std::printf("\n");
            spread("tau_s", taus);
            std::printf("\n");
        }

        for (int drift = 0; drift < 2; ++drift) {
            ThermalOptions o;
            o.heating_rc_pairs = 3;
            o.reversible_heat = true;
            o.ambient_drift = drift != 0;
            const auto j = eol::models::fit_thermal_joint(wins, o);
            std::printf("### After, joint fit of the 8 windows%s: shared tau and R_th\n\n", drift ? " (+ ambient drift)" : "");
            std::printf("shared: R_th %.2f ± %.2f K/W, C_th %.1f ± %.1f J/K, tau %.0f ± %.0f s, RMSE %.1f mK, %s\n\n",
                        j.r_th_k_per_w.value, j.r_th_k_per_w.ci95, j.c_th_j_per_k.value, j.c_th_j_per_k.ci95,
                        j.tau_s.value, j.tau_s.ci95, 1e3 * j.rmse_k, j.converged ? "converged" : "NOT converged");
            std::vector<double> cs;
            for (const auto& f : j.windows) cs.push_back(f.steady_offset_k.value);
            const double c_med = median(cs);
            std::printf("| window | c K | k mV | P_x mW if the offset were the median c (%.3f K) | RMSE mK |\n", c_med);
            std::printf("|---|---|---|---|---|\n");
            for (std::size_t k = 0; k < j.windows.size(); ++k) {
                const auto& f = j.windows[k];
                std::printf("| %zu | %.3f ± %.3f | %.0f ± %.0f | %.1f | %.1f |\n", k, f.steady_offset_k.value,
                            f.steady_offset_k.ci95, 1e3 * f.entropic_v.value, 1e3 * f.entropic_v.ci95,
                            1e3 * (f.steady_offset_k.value - c_med) / j.r_th_k_per_w.value, 1e3 * f.rmse_k);
            }
            std::printf("\n");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "thermal_real_data: %s\n", e.what());
        return 1;
    }
    return 0;
}
