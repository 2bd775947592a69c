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
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "eol/models/ecm.hpp"
#include "eol/models/series.hpp"
#include "eol/models/thermal.hpp"

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

Series stitched_record() {
    Series s = read_labview(kFile);
    const auto st = eol::models::stitch_time(s.t_s);
    s.t_s = st.t_s;
    return s;
}

}  // namespace

TEST_CASE("real data: the record is read and stitched into one time base") {
    const Series s = stitched_record();
    CHECK(s.size() == 49213);
    s.validate(2, true);  // strictly increasing now
    const auto st = eol::models::stitch_time(read_labview(kFile).t_s);
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
        MESSAGE("ecm window " << w.first << ": R0 " << f.r0_ohm.value * 1e3 << " mOhm R1 " << f.rc[0].r_ohm.value * 1e3
                              << " tau1 " << f.rc[0].tau_s.value << " R2 " << f.rc[1].r_ohm.value * 1e3 << " tau2 "
                              << f.rc[1].tau_s.value << " rmse " << f.rmse_v * 1e3 << " mV it " << f.iterations);
    }
}

TEST_CASE("real data: thermal fits of every 3 A step and the cooling rest") {
    const Series s = stitched_record();
    const auto ws = windows(s, 3);
    REQUIRE(ws.size() == 8);
    for (const auto& w : ws) {
        const Series win = s.slice(w.first, w.last);
        for (auto src : {eol::models::HeatingSource::circuit, eol::models::HeatingSource::overpotential}) {
            eol::models::ThermalOptions o;
            o.heating = src;
            const auto f = eol::models::fit_thermal(win, o);
            MESSAGE("thermal window " << w.first << " " << f.heating_source << ": C " << f.c_th_j_per_k.value << " ± "
                                      << f.c_th_j_per_k.ci95 << " R " << f.r_th_k_per_w.value << " tau "
                                      << f.tau_s.value << " Rh " << f.heating_ohm.value * 1e3 << " Px "
                                      << f.p_extra_w.value << " rmse " << f.rmse_k * 1e3 << " mK");
            CHECK(f.converged);
        }
    }
}
