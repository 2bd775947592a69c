// Real data: the Samsung 30Q HPPC record in ../shared/data/real (ARTS-Lab,
// CC BY-SA 4.0, read in place, never copied). Every 10 s, 6 A discharge pulse
// with its ~180 s relaxation is fitted with 2 RC pairs, every 3 A heating step
// with the ~90 min rest that follows with the thermal model. The test fails
// (does not skip) when the file is missing.
//
// The file's time column is a logger artefact at step changes: it restarts
// at 0, jumps back ~10 s, or jumps forward by 13, 183 or 376 s between two
// samples that are in fact ~1 s apart (current, voltage and temperature are
// continuous across them, and 3 A × 361 samples = 0.30 Ah is the file's
// 10 % SoC step of a 3.0 Ah cell). stitch_time replaces every non-positive or
// over-long interval by the median interval.
//
// Thermal expectations. The lead's brief quoted C_th 150–190 J/K and R_th
// 9–13 K/W "-ish" (../shared/domain.md §4). On the correctly stitched time
// base those are not what the data say: with the heat I²·R_heat from the
// circuit fit of each window (R_heat ≈ 52–60 mΩ), C_th = 60–112 J/K and
// R_th = 11–22 K/W; with the heat I·(OCV₀ − V) (which also carries the heat
// of the SoC change, ≈ 1.3× more), C_th = 86–154 J/K and R_th = 8–17 K/W.
// Keeping the forward clock jumps as real time (the 3 A step then lasts
// 737 s instead of 361 s) doubles the heat and gives numbers near the brief's,
// with twice the residual. τ = R_th·C_th does not depend on the heat scale:
// 1100–2100 s in every window. The assertions below are those of the data.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "eol/models/ecm.hpp"
#include "eol/models/series.hpp"
#include "eol/models/thermal.hpp"
#include "support/cli_test.hpp"

using eol::models::Series;

namespace {

const std::string kFile = std::string(EOL_SHARED_DIR) + "/data/real/samsung-30q-hppc-20c-10pct-soc-steps.txt";

/// The LabVIEW measurement file: header up to "***End_of_Header***", then
/// tab-separated rows time_s current_a voltage_v power_w cell_temp_c chamber_temp_c.
/// Current is negated (the file has discharge negative).
Series read_labview(const std::string& path) {
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot open the real data file " << path);
    std::string line;
    bool header = true;
    std::size_t lineno = 0;
    Series s;
    while (std::getline(in, line)) {
        ++lineno;
        if (header) {
            if (line.rfind("***End_of_Header***", 0) == 0) header = false;
            continue;
        }
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        std::istringstream ls(line);
        double t, i, v, p, tc, ta;
        if (!(ls >> t >> i >> v >> p >> tc >> ta)) FAIL(path << ":" << lineno << ": not 6 numbers");
        s.t_s.push_back(t);
        s.i_a.push_back(-i);
        s.v_v.push_back(v);
        s.t_cell_c.push_back(tc);
        s.t_amb_c.push_back(ta);
    }
    REQUIRE_FALSE(header);
    return s;
}

struct Window {
    std::size_t first, last;  // samples [first, last)
};

/// Current level of a sample: 6 (pulse), 3 (SoC step), -1 (charge), 0 (rest).
int level(double i) {
    if (i > 4.5) return 6;
    if (i > 1.5) return 3;
    if (i < -1.5) return -1;
    return 0;
}

/// Windows that start 10 samples before a segment at `lvl` and end with the
/// rest segment that follows it.
std::vector<Window> windows(const Series& s, int lvl) {
    std::vector<Window> out;
    std::size_t k = 0;
    const std::size_t n = s.size();
    while (k < n) {
        std::size_t e = k;
        while (e < n && level(s.i_a[e]) == level(s.i_a[k])) ++e;
        if (level(s.i_a[k]) == lvl && e < n && level(s.i_a[e]) == 0) {
            std::size_t r = e;
            while (r < n && level(s.i_a[r]) == 0) ++r;
            out.push_back({k >= 10 ? k - 10 : 0, r});
        }
        k = e;
    }
    return out;
}

/// The record, read once per test run.
const Series& raw_record() {
    static const Series s = read_labview(kFile);
    return s;
}

Series stitched_record() {
    Series s = raw_record();
    s.t_s = eol::models::stitch_time(s.t_s).t_s;
    return s;
}

using eol::test::run_cli;

/// Writes samples [w.first, w.last) as CSV with the file's sign (discharge negative).
std::string write_window(const Series& s, const Window& w, const std::string& name) {
    const std::string path = std::string(EOL_BINARY_DIR) + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("time_s,current_a,voltage_v,cell_c,chamber_c\n", f);
    for (std::size_t k = w.first; k < w.last; ++k)
        std::fprintf(f, "%.17g,%.17g,%.17g,%.17g,%.17g\n", s.t_s[k], -s.i_a[k], s.v_v[k], s.t_cell_c[k], s.t_amb_c[k]);
    std::fclose(f);
    return path;
}

}  // namespace

TEST_CASE("real data: the record is read and stitched into one time base") {
    const Series s = stitched_record();
    CHECK(s.size() == 49213);
    s.validate(2, true);  // strictly increasing now
    const auto st = eol::models::stitch_time(raw_record().t_s);
    CHECK(st.repaired.size() == 47);  // 24 clock restarts/jumps back + 23 jumps forward
    CHECK(st.nominal_dt_s == doctest::Approx(1.0).epsilon(0.01));
    CHECK(s.t_s.back() == doctest::Approx(49212.0).epsilon(0.01));
}

TEST_CASE("real data: 2 RC fits of every 6 A pulse and its relaxation") {
    const Series s = stitched_record();
    const auto ws = windows(s, 6);
    REQUIRE(ws.size() == 8);
    for (const auto& w : ws) {
        const Series win = s.slice(w.first, w.last);
        const auto f = eol::models::fit_ecm(win);
        INFO("window " << w.first << ".." << w.last << ": R0 " << f.r0_ohm.value * 1e3 << " mOhm, RMSE "
                       << f.rmse_v * 1e3 << " mV, tau " << f.rc[0].tau_s.value << " / " << f.rc[1].tau_s.value);
        CHECK(f.converged);
        CHECK(f.r0_ohm.value > 0.030);
        CHECK(f.r0_ohm.value < 0.036);
        CHECK(f.r0_ohm.identifiable);
        CHECK(f.rmse_v < 2e-3);
        CHECK(f.rmse_v > 0.5e-3);  // the record's own noise floor: a fit cannot go below it
        CHECK(f.rc[0].tau_s.value < f.rc[1].tau_s.value);
        CHECK(f.ocv_v.value == doctest::Approx(win.v_v.front()).epsilon(0.002));
    }
}

TEST_CASE("real data: thermal fits of every 3 A step and the cooling rest") {
    const Series s = stitched_record();
    const auto ws = windows(s, 3);
    REQUIRE(ws.size() == 8);
    for (const auto& w : ws) {
        const Series win = s.slice(w.first, w.last);
        eol::models::ThermalOptions circuit, over;
        over.heating = eol::models::HeatingSource::overpotential;
        const auto f = eol::models::fit_thermal(win, circuit);
        const auto g = eol::models::fit_thermal(win, over);
        INFO("window " << w.first << ": circuit C " << f.c_th_j_per_k.value << " R " << f.r_th_k_per_w.value << " tau "
                       << f.tau_s.value << " Rh " << f.heating_ohm.value * 1e3 << " rmse " << f.rmse_k * 1e3
                       << " mK; overpotential C " << g.c_th_j_per_k.value << " R " << g.r_th_k_per_w.value << " rmse "
                       << g.rmse_k * 1e3 << " mK");
        CHECK(f.converged);
        CHECK(g.converged);
        CHECK(f.ambient_source == "column");
        CHECK_FALSE(f.heating_only);
        CHECK(f.c_th_j_per_k.identifiable);
        CHECK(f.r_th_k_per_w.identifiable);
        // Heat from the circuit: R0 ≈ 33 mΩ plus the polarisation branches.
        CHECK(f.heating_ohm.value > 0.045);
        CHECK(f.heating_ohm.value < 0.065);
        CHECK(f.tau_s.value > 1000.0);
        CHECK(f.tau_s.value < 2200.0);
        CHECK(f.c_th_j_per_k.value > 50.0);
        CHECK(f.c_th_j_per_k.value < 130.0);
        CHECK(f.r_th_k_per_w.value > 10.0);
        CHECK(f.r_th_k_per_w.value < 25.0);
        // The circuit's own heat (R0·I² + Σ Vk²/Rk, lagging the current)
        // explains the temperature to 14–34 mK. The overpotential heat
        // I·(OCV0 − V) is larger (it includes the heat of the state-of-charge
        // change), so C_th comes out larger and R_th smaller, with a time
        // constant within 20 %; neither heat is the better fit in every window.
        CHECK(f.rmse_k < 0.040);
        CHECK(g.rmse_k < 0.060);
        CHECK(g.heating_ohm.value > f.heating_ohm.value);
        CHECK(g.c_th_j_per_k.value > f.c_th_j_per_k.value);
        CHECK(g.c_th_j_per_k.value < 170.0);
        CHECK(g.r_th_k_per_w.value > 7.0);
        CHECK(g.r_th_k_per_w.value < f.r_th_k_per_w.value);
        CHECK(g.tau_s.value == doctest::Approx(f.tau_s.value).epsilon(0.2));
    }
}

TEST_CASE("real data: the fit CLI on a window written as CSV") {
    const Series s = stitched_record();
    const auto pulses = windows(s, 6);
    const auto heats = windows(s, 3);
    REQUIRE(pulses.size() == 8);
    REQUIRE(heats.size() == 8);
    const std::string pulse = write_window(s, pulses[2], "real_pulse_window.csv");
    std::string out;
    REQUIRE(run_cli("fit ecm --csv " + pulse + " --columns time_s,current_a,voltage_v --discharge-negative --json",
                    out) == 0);
    const auto j = nlohmann::json::parse(out);
    for (const char* key : {"ocv_v", "r0_ohm", "r1_ohm", "tau1_s", "c1_f", "r2_ohm", "tau2_s", "c2_f"}) {
        INFO(key);
        CHECK(j.at(key).is_number());
        CHECK(j.at("ci95").at(key).is_number());
        CHECK(j.at("identifiable").at(key).is_boolean());
    }
    CHECK(j.at("rmse_v").is_number());
    CHECK(j.at("converged").get<bool>());
    CHECK(j.at("iterations").is_number_integer());
    const auto lib = eol::models::fit_ecm(s.slice(pulses[2].first, pulses[2].last));
    CHECK(j.at("r0_ohm").get<double>() == doctest::Approx(lib.r0_ohm.value).epsilon(1e-9));
    CHECK(j.at("tau2_s").get<double>() > j.at("tau1_s").get<double>());

    const std::string heat = write_window(s, heats[0], "real_heat_window.csv");
    REQUIRE(run_cli("fit thermal --csv " + heat +
                        " --columns time_s,current_a,voltage_v,cell_c,chamber_c --discharge-negative --json",
                    out) == 0);
    const auto t = nlohmann::json::parse(out);
    for (const char* key : {"c_th_j_per_k", "r_th_k_per_w", "tau_s", "heating_ohm", "p_extra_w"}) {
        INFO(key);
        CHECK(t.at(key).is_number());
        CHECK(t.at("ci95").contains(key));
        CHECK(t.at("identifiable").at(key).is_boolean());
    }
    CHECK(t.at("rmse_k").get<double>() < 0.06);

    // Usage errors: exit 2 with file and column named.
    CHECK(run_cli("fit ecm --csv " + pulse + " --discharge-negative", out) == 2);
    CHECK(out.find("no column 'time'") != std::string::npos);
    CHECK(out.find("real_pulse_window.csv") != std::string::npos);
    CHECK(run_cli("fit thermal --csv " + heat + " --columns time_s,current_a,voltage_v", out) == 2);
    CHECK(out.find("--columns") != std::string::npos);
    // The time column is not stitched by the CLI: a record whose clock jumps
    // back is an error at the line where it does.
    const std::string raw = std::string(EOL_BINARY_DIR) + "/real_raw_head.csv";
    {
        std::FILE* f = std::fopen(raw.c_str(), "w");
        REQUIRE(f != nullptr);
        std::fputs("time,current,voltage\n", f);
        const Series& r = raw_record();
        for (std::size_t k = 0; k < 40; ++k) std::fprintf(f, "%.6f,%.6f,%.6f\n", r.t_s[k], -r.i_a[k], r.v_v[k]);
        std::fclose(f);
    }
    CHECK(run_cli("fit ecm --csv " + raw + " --discharge-negative", out) == 2);
    CHECK(out.find("real_raw_head.csv:14: column 'time': time is not increasing at sample 12") != std::string::npos);
    std::remove(pulse.c_str());
    std::remove(heat.c_str());
    std::remove(raw.c_str());
}
