// bench_fit — time of the circuit and thermal fits on the benchmark
// records, printed as a table (and as JSON for run_fit_bench, which puts
// them side by side with SciPy on the same data).
//
//   ecm_2rc_40k   2 RC fit of a 10 s, 6 A pulse + 30 s relaxation sampled at
//                 1 kHz (40,000 samples; R0 33 mΩ, R1 12 mΩ/1 s, R2 20 mΩ/12 s,
//                 noise 0.5 mV and 1 mA)
//   thermal_2h    thermal fit of a 2 h record at 1 Hz (a 600 s, 3 A heating
//                 step, then cooling; C 120 J/K, R 12 K/W, 5 mK noise), heat
//                 I²·50 mΩ given (the thermal fit alone)
//   thermal_2h_circuit  the same with the heating from a circuit fit of the
//                 record (circuit fit included in the time)
//
// The records are generated here (fixed seeds); with --data-dir they are also
// written there as CSV so that the SciPy script fits the identical data
// (tools/bench/run_fit_bench does that in a temporary directory).
//
// Usage: bench_fit [--data-dir DIR] [--json FILE] [--repeat N]
#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "eol/models/ecm.hpp"
#include "eol/models/thermal.hpp"

namespace {

using eol::models::Series;

Series ecm_record() {
    std::mt19937_64 rng(2024);
    std::normal_distribution<double> n01(0.0, 1.0);
    Series s;
    double v1 = 0.0, v2 = 0.0, ip = 0.0;
    const double a1 = std::exp(-0.001 / 1.0), a2 = std::exp(-0.001 / 12.0);
    for (int k = 0; k < 40000; ++k) {
        const double i = (k >= 50 && k < 10050) ? 6.0 : 0.0;
        if (k > 0) {
            v1 = a1 * v1 + 0.012 * (1 - a1) * ip;
            v2 = a2 * v2 + 0.020 * (1 - a2) * ip;
        }
        s.t_s.push_back(k * 0.001);
        s.i_a.push_back(i + 1e-3 * n01(rng));
        s.v_v.push_back(3.95 - 0.033 * i - v1 - v2 + 5e-4 * n01(rng));
        ip = i;
    }
    return s;
}

Series thermal_record() {
    std::mt19937_64 rng(7);
    std::normal_distribution<double> n01(0.0, 1.0);
    Series s;
    double v1 = 0.0, v2 = 0.0, temp = 20.2, ip = 0.0;
    const double a1 = std::exp(-1.0 / 5.0), a2 = std::exp(-1.0 / 60.0), at = std::exp(-1.0 / (120.0 * 12.0));
    for (int k = 0; k < 7200; ++k) {
        const double i = (k >= 60 && k < 660) ? 3.0 : 0.0;
        const double amb = 20.0 + 0.1 * std::sin(k / 900.0);
        if (k > 0) {
            v1 = a1 * v1 + 0.010 * (1 - a1) * ip;
            v2 = a2 * v2 + 0.015 * (1 - a2) * ip;
            temp = at * temp + (1 - at) * (s.t_amb_c.back() + 12.0 * (ip * ip * 0.05 + 0.02));
        }
        s.t_s.push_back(k);
        s.i_a.push_back(i + 1e-3 * n01(rng));
        s.v_v.push_back(3.9 - 0.025 * i - v1 - v2 + 5e-4 * n01(rng));
        s.t_cell_c.push_back(temp + 5e-3 * n01(rng));
        s.t_amb_c.push_back(amb);
        ip = i;
    }
    return s;
}

void write_csv(const std::string& path, const Series& s) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + path);
    const bool th = !s.t_cell_c.empty();
    std::fputs(th ? "time,current,voltage,cell_temp,ambient_temp\n" : "time,current,voltage\n", f);
    for (std::size_t k = 0; k < s.size(); ++k) {
        if (th)
            std::fprintf(f, "%.17g,%.17g,%.17g,%.17g,%.17g\n", s.t_s[k], s.i_a[k], s.v_v[k], s.t_cell_c[k], s.t_amb_c[k]);
        else
            std::fprintf(f, "%.17g,%.17g,%.17g\n", s.t_s[k], s.i_a[k], s.v_v[k]);
    }
    std::fclose(f);
}

double cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

struct Timing {
    double wall_ms = 0.0, cpu_ms = 0.0, wall_min_ms = 0.0;
};

template <class F>
Timing time_it(int repeat, F&& f) {
    std::vector<double> wall, cpu;
    for (int r = 0; r < repeat; ++r) {
        const double c0 = cpu_ms();
        const auto w0 = std::chrono::steady_clock::now();
        f();
        const auto w1 = std::chrono::steady_clock::now();
        cpu.push_back(cpu_ms() - c0);
        wall.push_back(std::chrono::duration<double, std::milli>(w1 - w0).count());
    }
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    return {wall[wall.size() / 2], cpu[cpu.size() / 2], wall.front()};
}

}  // namespace

int main(int argc, char** argv) {
    std::string dir, json_path;
    int repeat = 200;
    for (int k = 1; k < argc; ++k) {
        const std::string a = argv[k];
        if (a == "--data-dir" && k + 1 < argc) dir = argv[++k];
        else if (a == "--json" && k + 1 < argc) json_path = argv[++k];
        else if (a == "--repeat" && k + 1 < argc) repeat = std::max(1, std::atoi(argv[++k]));
        else {
            std::fprintf(stderr, "usage: bench_fit [--data-dir DIR] [--json FILE] [--repeat N]\n");
            return 2;
        }
    }
    const Series ecm = ecm_record();
    const Series th = thermal_record();
    if (!dir.empty()) {
        write_csv(dir + "/ecm_2rc_40k.csv", ecm);
        write_csv(dir + "/thermal_2h.csv", th);
    }

    eol::models::EcmFit ef;
    const Timing te = time_it(repeat, [&] { ef = eol::models::fit_ecm(ecm); });
    eol::models::ThermalOptions fixed;
    fixed.heating = eol::models::HeatingSource::fixed;
    fixed.heating_ohm = 0.05;
    eol::models::ThermalFit tf, tc;
    const Timing tt = time_it(repeat, [&] { tf = eol::models::fit_thermal(th, fixed); });
    const Timing ttc = time_it(std::max(1, repeat / 4), [&] { tc = eol::models::fit_thermal(th); });
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double peak_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;

    fmt::print("eol::models fits ({} repetitions, median; CPU = this thread's CPU time)\n", repeat);
    fmt::print("{:<22} {:>8} {:>10} {:>10} {:>9}  {}\n", "case", "samples", "wall ms", "cpu ms", "min ms", "result");
    fmt::print("{:<22} {:>8} {:>10.3f} {:>10.3f} {:>9.3f}  R0 {:.3f} mOhm, tau {:.3f}/{:.2f} s, rmse {:.4f} mV, {} it\n",
               "ecm_2rc_40k", ecm.size(), te.wall_ms, te.cpu_ms, te.wall_min_ms, ef.r0_ohm.value * 1e3,
               ef.rc[0].tau_s.value, ef.rc[1].tau_s.value, ef.rmse_v * 1e3, ef.iterations);
    fmt::print("{:<22} {:>8} {:>10.3f} {:>10.3f} {:>9.3f}  C {:.2f} J/K, R {:.3f} K/W, rmse {:.3f} mK, {} it\n",
               "thermal_2h", th.size(), tt.wall_ms, tt.cpu_ms, tt.wall_min_ms, tf.c_th_j_per_k.value,
               tf.r_th_k_per_w.value, tf.rmse_k * 1e3, tf.iterations);
    fmt::print("{:<22} {:>8} {:>10.3f} {:>10.3f} {:>9.3f}  C {:.2f} J/K, R {:.3f} K/W, heating {:.2f} mOhm\n",
               "thermal_2h_circuit", th.size(), ttc.wall_ms, ttc.cpu_ms, ttc.wall_min_ms, tc.c_th_j_per_k.value,
               tc.r_th_k_per_w.value, tc.heating_ohm.value * 1e3);
    fmt::print("peak resident memory {:.1f} MB (whole process, both records held)\n", peak_mb);

    if (!json_path.empty()) {
        std::ofstream out(json_path);
        out << fmt::format(
            "{{\"ecm_2rc_40k\": {{\"wall_ms\": {}, \"cpu_ms\": {}, \"r0_ohm\": {}, \"rmse_v\": {}, \"samples\": {}}},\n"
            " \"thermal_2h\": {{\"wall_ms\": {}, \"cpu_ms\": {}, \"c_th_j_per_k\": {}, \"r_th_k_per_w\": {}, \"rmse_k\": {}, \"samples\": {}}},\n"
            " \"thermal_2h_circuit\": {{\"wall_ms\": {}, \"cpu_ms\": {}, \"heating_ohm\": {}}},\n"
            " \"peak_rss_mb\": {}}}\n",
            te.wall_ms, te.cpu_ms, ef.r0_ohm.value, ef.rmse_v, ecm.size(), tt.wall_ms, tt.cpu_ms,
            tf.c_th_j_per_k.value, tf.r_th_k_per_w.value, tf.rmse_k, th.size(), ttc.wall_ms, ttc.cpu_ms,
            tc.heating_ohm.value, peak_mb);
    }
    return 0;
}
