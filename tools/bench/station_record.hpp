// A test record of the example recipe's shape (tools/bench): what the station
// writes per cell with config/recipes/eol-18650.toml — six steps, 13 judged
// measurements, an ecm2 and a thermal fit, a trace of 1,420 pulse-logger
// samples and 1,200 heat-step samples — with values from a seeded generator.
// Used to write a store's history before a benchmark measures it, so that
// the store is in the state a running line's is (tables and indexes past
// their first pages, a write-ahead log reused after its checkpoints), not
// a new file's.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "eol/station/record.hpp"

namespace eol::bench {

inline station::TestRecord station_shaped_record(const std::string& serial, std::uint64_t seed, double start_unix_s) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(0.0, 1.0);
    station::TestRecord r;
    r.serial = serial;
    r.cell_model = "INR18650-30Q";
    r.lot = "0042";
    r.production_date = "2023-03-14";
    r.station_id = "BENCH";
    r.channel = 1;
    r.recipe_name = "eol-18650";
    r.recipe_version = "eol-18650.toml";
    r.start_unix_s = start_unix_s;
    r.verdict = station::Verdict::pass;
    struct M {
        const char* name;
        double value;
        const char* unit;
        double low, high;
    };
    const M ms[] = {{"ocv_v", 3.62, "V", 3.4, 4.2},          {"dcir_ohm", 0.021, "ohm", 0.005, 0.05},
                    {"pulse_v_min_v", 3.41, "V", 3.0, 4.2},  {"r0_ohm", 0.014, "ohm", 0.005, 0.04},
                    {"r1_ohm", 0.004, "ohm", 0.0, 0.03},     {"tau1_s", 0.8, "s", 0.01, 10},
                    {"r2_ohm", 0.006, "ohm", 0.0, 0.03},     {"tau2_s", 12.0, "s", 1, 100},
                    {"fit_rmse_v", 4e-4, "V", 0, 0.005},     {"temp_rise_k", 1.9, "K", 0, 10},
                    {"c_th_j_per_k", 68.0, "J/K", 20, 200},  {"r_th_k_per_w", 14.0, "K/W", 2, 60},
                    {"p_x_w", 0.004, "W", -0.1, 0.1}};
    for (const M& m : ms)
        r.measurements.push_back(station::Measurement::judged(m.name, m.value * (1.0 + 0.01 * noise(rng)), m.unit,
                                                              m.low, m.high));
    const char* steps[][2] = {{"settle", "rest"}, {"ocv", "ocv"},   {"dcir", "dcir"},
                              {"relax", "rest"},  {"pulse", "pulse"}, {"heat", "heat"}};
    const std::size_t step_measurements[] = {0, 1, 1, 0, 7, 4};
    const double step_s[] = {10, 1, 11, 20, 71, 1200};
    const std::size_t step_samples[] = {0, 0, 0, 0, 1420, 1200};
    double t = start_unix_s;
    std::size_t m0 = 0, s0 = 0;
    for (std::size_t k = 0; k < 6; ++k) {
        station::StepRecord s;
        s.name = steps[k][0];
        s.kind = steps[k][1];
        s.start_unix_s = t;
        t += step_s[k];
        s.end_unix_s = t;
        s.outcome = station::StepOutcome::pass;
        s.first_measurement = m0;
        s.measurement_count = step_measurements[k];
        s.first_sample = s0;
        s.sample_count = step_samples[k];
        m0 += step_measurements[k];
        s0 += step_samples[k];
        r.steps.push_back(std::move(s));
    }
    r.end_unix_s = t;
    // Pulse: 0.05 s logger samples of 0 / 6 A / 0; heat: 1 Hz samples of 3 A then rest.
    const double t_pulse = start_unix_s + 42;
    for (std::size_t k = 0; k < 1420; ++k) {
        const double ts = 0.05 * static_cast<double>(k);
        const double i = ts >= 1 && ts < 11 ? 6.0 : 0.0;
        r.trace.t_s.push_back(t_pulse + ts);
        r.trace.i_a.push_back(i + 1e-3 * noise(rng));
        r.trace.v_v.push_back(3.62 - 0.02 * i + 2e-4 * noise(rng));
        r.trace.t_cell_c.push_back(25.0 + 0.01 * noise(rng));
        r.trace.t_amb_c.push_back(25.0 + 0.01 * noise(rng));
    }
    const double t_heat = start_unix_s + 113;
    for (std::size_t k = 0; k < 1200; ++k) {
        const double ts = static_cast<double>(k);
        const double i = ts < 600 ? 3.0 : 0.0;
        r.trace.t_s.push_back(t_heat + ts);
        r.trace.i_a.push_back(i + 1e-3 * noise(rng));
        r.trace.v_v.push_back(3.6 - 0.02 * i + 2e-4 * noise(rng));
        r.trace.t_cell_c.push_back(25.0 + 2.0 * (1 - std::exp(-std::min(ts, 600.0) / 900)) + 0.02 * noise(rng));
        r.trace.t_amb_c.push_back(25.0 + 0.02 * noise(rng));
    }
    station::ModelFit ecm;
    ecm.kind = "ecm2";
    ecm.converged = true;
    ecm.rmse = 4e-4;
    for (const char* p : {"ocv_v", "r0_ohm", "r1_ohm", "tau1_s", "c1_f", "r2_ohm", "tau2_s", "c2_f"}) {
        ecm.parameters[p] = 1.0 + 0.01 * noise(rng);
        ecm.ci95[p] = {0.99, 1.01};
    }
    station::ModelFit th;
    th.kind = "thermal";
    th.converged = true;
    th.rmse = 0.02;
    for (const char* p : {"c_th_j_per_k", "r_th_k_per_w", "tau_s", "heating_ohm", "p_extra_w", "p_heat_w"}) {
        th.parameters[p] = 1.0 + 0.01 * noise(rng);
        th.ci95[p] = {0.99, 1.01};
    }
    r.fits = {ecm, th};
    return r;
}

}  // namespace eol::bench
