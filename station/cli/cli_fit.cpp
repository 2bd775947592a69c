// eolstation fit ecm | thermal | dcir — fit the circuit or thermal model to a
// CSV record, or read DC resistance off a current step.
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "eol/models/dcir.hpp"
#include "eol/models/ecm.hpp"
#include "eol/models/thermal.hpp"
#include "eol/station/csv.hpp"

namespace eol::cli {
namespace {

using nlohmann::json;

/// The model's name for each selected column, in --columns order.
constexpr const char* kRoles[] = {"time", "current", "voltage", "cell_temp", "ambient_temp"};

struct Input {
    station::CsvTable table;
    std::vector<std::string> names;  // user column names, by role
    models::Series series;
};

std::vector<std::string> split_names(const std::string& list) {
    std::vector<std::string> out;
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ',')) {
        const auto a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
        out.push_back(a == std::string::npos ? std::string() : item.substr(a, b - a + 1));
    }
    return out;
}

/// Reads the CSV and selects columns by role. `need` roles are required;
/// the optional ambient column is used when named or, with default names,
/// when the file has it.
Input read_input(const std::string& path, const std::string& columns, std::size_t need, bool default_columns,
                 bool discharge_negative) {
    Input in{station::CsvTable::read_file(path), split_names(columns), {}};
    if (in.names.size() < need || in.names.size() > need + (need == 4 ? 1 : 0))
        throw station::UsageError(fmt::format("--columns: expected {} names ({}), got '{}'", need,
                                              need == 4 ? "time,current,voltage,cell_temp[,ambient_temp]"
                                                        : "time,current,voltage",
                                              columns));
    for (const auto& n : in.names)
        if (n.empty()) throw station::UsageError(fmt::format("--columns: empty column name in '{}'", columns));
    if (need == 4 && in.names.size() == 5 && default_columns && !in.table.has(in.names[4])) in.names.pop_back();
    auto& s = in.series;
    s.t_s = in.table.numbers(in.names[0]);
    s.i_a = in.table.numbers(in.names[1]);
    s.v_v = in.table.numbers(in.names[2]);
    if (in.names.size() > 3) s.t_cell_c = in.table.numbers(in.names[3]);
    if (in.names.size() > 4) s.t_amb_c = in.table.numbers(in.names[4]);
    if (discharge_negative)
        for (double& i : s.i_a) i = -i;
    return in;
}

/// A model input error mapped back to the file: line and column name.
[[noreturn]] void rethrow(const models::InputError& e, const Input& in) {
    std::string col = e.column();
    for (std::size_t r = 0; r < in.names.size() && r < std::size(kRoles); ++r)
        if (col == kRoles[r]) col = in.names[r];
    if (e.sample() && *e.sample() < in.table.rows()) {
        const std::string where = in.table.where(*e.sample());
        throw station::UsageError(col.empty() ? fmt::format("{}: {}", where, e.what())
                                              : fmt::format("{}: column '{}': {}", where, col, e.what()));
    }
    throw station::UsageError(fmt::format("{}: {}", in.table.source(), e.what()));
}

json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

void put(json& j, const std::string& key, const models::Estimate& e) {
    j[key] = num(e.value);
    j["ci95"][key] = num(e.ci95);
    j["identifiable"][key] = e.identifiable;
}

std::string pm(const models::Estimate& e, double scale, int digits, const char* unit) {
    std::string s = fmt::format("{:.{}f}", e.value * scale, digits);
    s += std::isfinite(e.ci95) ? fmt::format(" ± {:.{}f}", e.ci95 * scale, digits) : " ± inf";
    s += " ";
    s += unit;
    if (!e.identifiable) s += "  (not identifiable)";
    return s;
}

// ---- fit ecm --------------------------------------------------------------------------------------

struct EcmCli {
    std::string csv, columns = "time,current,voltage";
    int rc = 2;
    bool discharge_negative = false, free_initial = false, json_out = false;
};

void run_ecm(const EcmCli& o) {
    const Input in = read_input(o.csv, o.columns, 3, false, o.discharge_negative);
    models::EcmOptions eo;
    eo.rc_pairs = o.rc;
    eo.free_initial_state = o.free_initial;
    models::EcmFit f;
    try {
        f = models::fit_ecm(in.series, eo);
    } catch (const models::InputError& e) {
        rethrow(e, in);
    }
    if (o.json_out) {
        json j = json::object();
        j["ci95"] = json::object();
        j["identifiable"] = json::object();
        put(j, "ocv_v", f.ocv_v);
        put(j, "r0_ohm", f.r0_ohm);
        for (std::size_t k = 0; k < f.rc.size(); ++k) {
            const std::string n = std::to_string(k + 1);
            put(j, "r" + n + "_ohm", f.rc[k].r_ohm);
            put(j, "tau" + n + "_s", f.rc[k].tau_s);
            put(j, "c" + n + "_f", f.rc[k].c_f);
        }
        for (std::size_t k = 0; k < f.v0_v.size(); ++k) put(j, "v" + std::to_string(k + 1) + "_initial_v", f.v0_v[k]);
        j["rmse_v"] = f.rmse_v;
        j["converged"] = f.converged;
        j["iterations"] = f.iterations;
        j["samples"] = f.samples;
        j["notes"] = f.notes;
        fmt::print("{}\n", j.dump(2));
        return;
    }
    fmt::print("ECM fit, OCV + R0 + {} RC, {}: {} samples, {} iterations, {}\n", f.rc.size(), o.csv, f.samples,
               f.iterations, f.converged ? "converged" : "NOT converged");
    fmt::print("  OCV   {}\n", pm(f.ocv_v, 1.0, 5, "V"));
    fmt::print("  R0    {}\n", pm(f.r0_ohm, 1e3, 3, "mOhm"));
    for (std::size_t k = 0; k < f.rc.size(); ++k) {
        fmt::print("  R{}    {}\n", k + 1, pm(f.rc[k].r_ohm, 1e3, 3, "mOhm"));
        fmt::print("  tau{}  {}\n", k + 1, pm(f.rc[k].tau_s, 1.0, 4, "s"));
        fmt::print("  C{}    {}\n", k + 1, pm(f.rc[k].c_f, 1.0, 1, "F"));
    }
    for (std::size_t k = 0; k < f.v0_v.size(); ++k) fmt::print("  V{}(t0) {}\n", k + 1, pm(f.v0_v[k], 1e3, 3, "mV"));
    fmt::print("  RMSE  {:.3f} mV\n", f.rmse_v * 1e3);
    for (const auto& n : f.notes) fmt::print("  note: {}\n", n);
}

// ---- fit thermal ----------------------------------------------------------------------------------

struct ThermalCli {
    std::string csv, columns = "time,current,voltage,cell_temp,ambient_temp";
    bool discharge_negative = false, json_out = false;
    std::optional<double> ambient, heating_ohm;
    std::string heating = "circuit";
    int heating_rc = 2;
    // The extended model (any of these set): see eol/models/thermal.hpp.
    bool reversible = false, offset_from_rest = false, ambient_drift = false;
    std::optional<double> sensor_offset;
    std::optional<double> entropic_v;         // a known reversible-heat coefficient, V
    std::optional<double> entropic_v_per_ah;  // and its change with the charge drawn, V/Ah
};

void run_thermal(const ThermalCli& o) {
    const bool default_cols = o.columns == ThermalCli{}.columns;
    const Input in = read_input(o.csv, o.columns, 4, default_cols, o.discharge_negative);
    models::ThermalOptions to;
    to.ambient_c = o.ambient;
    to.heating_rc_pairs = o.heating_rc;
    if (o.heating_ohm) {
        to.heating = models::HeatingSource::fixed;
        to.heating_ohm = *o.heating_ohm;
    } else if (o.heating == "overpotential") {
        to.heating = models::HeatingSource::overpotential;
    }
    to.reversible_heat = o.reversible;
    to.sensor_offset_c = o.sensor_offset;
    to.offset_from_rest = o.offset_from_rest;
    to.ambient_drift = o.ambient_drift;
    to.entropic_v = o.entropic_v;
    to.entropic_v_per_ah = o.entropic_v_per_ah;
    models::ThermalFit f;
    try {
        f = models::fit_thermal(in.series, to);
    } catch (const models::InputError& e) {
        rethrow(e, in);
    }
    if (o.json_out) {
        json j = json::object();
        j["ci95"] = json::object();
        j["identifiable"] = json::object();
        put(j, "c_th_j_per_k", f.c_th_j_per_k);
        put(j, "r_th_k_per_w", f.r_th_k_per_w);
        put(j, "tau_s", f.tau_s);
        put(j, "heating_ohm", f.heating_ohm);
        put(j, "p_extra_w", f.p_extra_w);
        put(j, "t0_c", f.t0_c);
        put(j, "ambient_c", f.ambient_c);
        j["rmse_k"] = f.rmse_k;
        j["heating_source"] = f.heating_source;
        j["ambient_source"] = f.ambient_source;
        j["heating_only"] = f.heating_only;
        j["heat_determined"] = f.heat_determined;
        j["mean_heat_w"] = f.mean_heat_w;
        j["converged"] = f.converged;
        j["iterations"] = f.iterations;
        j["samples"] = f.samples;
        j["extended"] = f.extended;
        j["p_extra_identifiable"] = f.p_extra_identifiable;
        j["corr_p_extra_r_th"] = num(f.corr_p_extra_r_th);
        j["entropic_source"] = f.entropic_source;
        if (f.entropic_source == "given") {
            put(j, "entropic_v", f.entropic_v);
            j["entropic_v_per_ah"] = f.entropic_v_per_ah;
        }
        if (f.extended) {
            if (f.entropic_source != "given") put(j, "entropic_v", f.entropic_v);
            put(j, "steady_offset_k", f.steady_offset_k);
            put(j, "sensor_offset_c", f.sensor_offset_c);
            put(j, "ambient_drift_k_per_s", f.ambient_drift_k_per_s);
            j["offset_source"] = f.offset_source;
            j["corr_entropic_r_th"] = num(f.corr_entropic_r_th);
        }
        j["notes"] = f.notes;
        fmt::print("{}\n", j.dump(2));
        return;
    }
    fmt::print("Thermal fit, {}: {} samples, heating from {}, ambient {}, {} iterations, {}\n", o.csv, f.samples,
               f.heating_source, f.ambient_source, f.iterations, f.converged ? "converged" : "NOT converged");
    fmt::print("  C_th     {}\n", pm(f.c_th_j_per_k, 1.0, 2, "J/K"));
    fmt::print("  R_th     {}\n", pm(f.r_th_k_per_w, 1.0, 3, "K/W"));
    fmt::print("  tau      {}\n", pm(f.tau_s, 1.0, 1, "s"));
    fmt::print("  heating  {}, mean heat {:.4f} W\n", pm(f.heating_ohm, 1e3, 3, "mOhm"), f.mean_heat_w);
    if (std::isfinite(f.p_extra_w.value))
        fmt::print("  P_x      {}{}, corr(P_x, R_th) {:.2f}\n", pm(f.p_extra_w, 1.0, 4, "W"),
                   f.p_extra_identifiable ? "" : " (assumes no sensor offset)", f.corr_p_extra_r_th);
    else if (!f.heat_determined)
        fmt::print("  P_x      not determined: the fit failed (the window's heat is not known, see the notes)\n");
    else
        fmt::print("  P_x      not identifiable from this window\n");
    if (f.entropic_source == "given")
        fmt::print("  k        {:.1f} mV {:+.1f} mV/Ah drawn, given (reversible heat k·I added to the heat)\n",
                   1e3 * f.entropic_v.value, 1e3 * f.entropic_v_per_ah);
    if (f.extended) {
        fmt::print("  c        {} (sensor offset + R_th·P_x)\n", pm(f.steady_offset_k, 1.0, 4, "K"));
        if (std::isfinite(f.sensor_offset_c.value))
            fmt::print("  offset   {:.4f} K ({})\n", f.sensor_offset_c.value, f.offset_source);
        if (f.entropic_source == "fitted" && std::isfinite(f.entropic_v.value))
            fmt::print("  k        {} (reversible heat k·I, k = −T·dU/dT), corr(k, R_th) {:.2f}\n",
                       pm(f.entropic_v, 1e3, 1, "mV"), f.corr_entropic_r_th);
        if (std::isfinite(f.ambient_drift_k_per_s.value))
            fmt::print("  drift    {}\n", pm(f.ambient_drift_k_per_s, 3600.0, 4, "K/h"));
    }
    fmt::print("  T0       {}\n  ambient  {}\n", pm(f.t0_c, 1.0, 3, "C"), pm(f.ambient_c, 1.0, 3, "C"));
    fmt::print("  RMSE     {:.2f} mK\n", f.rmse_k * 1e3);
    if (f.heating_only) fmt::print("  heating only: no cooling after the heat\n");
    for (const auto& n : f.notes) fmt::print("  note: {}\n", n);
}

// ---- fit dcir -------------------------------------------------------------------------------------

struct DcirCli {
    std::string csv, columns = "time,current,voltage";
    std::vector<double> at{0.01, 1.0, 10.0};
    bool iec = false, discharge_negative = false, json_out = false;
    double second = 1.0;
};

void run_dcir(const DcirCli& o) {
    const Input in = read_input(o.csv, o.columns, 3, false, o.discharge_negative);
    try {
        if (o.iec) {
            const auto r = models::dcir_iec61960(in.series, o.second);
            if (o.json_out) {
                fmt::print("{}\n", json{{"r_ohm", r.r_ohm},
                                        {"u1_v", r.u1_v},
                                        {"i1_a", r.i1_a},
                                        {"u2_v", r.u2_v},
                                        {"i2_a", r.i2_a},
                                        {"step_time_s", r.step_time_s}}
                                       .dump(2));
                return;
            }
            fmt::print("IEC 61960 DCIR, {}: R = (U1 − U2)/(I2 − I1) = {:.3f} mOhm\n", o.csv, r.r_ohm * 1e3);
            fmt::print("  U1 {:.5f} V at I1 {:.4f} A; U2 {:.5f} V at I2 {:.4f} A, {} s after the step at {} s\n",
                       r.u1_v, r.i1_a, r.u2_v, r.i2_a, o.second, r.step_time_s);
            return;
        }
        const auto r = models::dcir_at(in.series, o.at);
        if (o.json_out) {
            json pts = json::array();
            for (const auto& p : r.points)
                pts.push_back({{"after_s", p.after_s},
                               {"r_ohm", p.r_ohm},
                               {"v_before_v", p.v_before_v},
                               {"v_after_v", p.v_after_v},
                               {"i_before_a", p.i_before_a},
                               {"i_after_a", p.i_after_a}});
            fmt::print("{}\n", json{{"step_time_s", r.step_time_s}, {"points", pts}}.dump(2));
            return;
        }
        fmt::print("DCIR, {}: step at {} s ({})\n", o.csv, r.step_time_s, in.table.where(r.step_index));
        for (const auto& p : r.points)
            fmt::print("  {:>8} s after: {:.3f} mOhm  (ΔV {:.2f} mV, ΔI {:.4f} A)\n", p.after_s, p.r_ohm * 1e3,
                       (p.v_before_v - p.v_after_v) * 1e3, p.i_after_a - p.i_before_a);
    } catch (const models::InputError& e) {
        rethrow(e, in);
    }
}

}  // namespace

void add_fit_commands(CLI::App& app) {
    CLI::App* fit = app.add_subcommand("fit", "Fit the equivalent-circuit or thermal model to a CSV record, or read DCIR");
    fit->require_subcommand(1);
    const std::string sign = "Current in the file is negative on discharge (flip its sign; the models take discharge positive)";

    auto e = std::make_shared<EcmCli>();
    CLI::App* ecm = fit->add_subcommand(
        "ecm",
        "Fit OCV + R0 + N RC pairs to (time, current, voltage) by variable projection. Prints OCV, R0, Rk, tauk, Ck "
        "with 95 % intervals, RMSE and per-parameter identifiability. The RC branches are taken as relaxed at the "
        "first sample unless --free-initial-state.");
    ecm->add_option("--csv", e->csv, "CSV file with a header row")->required();
    ecm->add_option("--rc", e->rc, "Number of RC pairs")->check(CLI::Range(1, 3));
    ecm->add_option("--columns", e->columns, "Column names: time,current,voltage (s, A, V)");
    ecm->add_flag("--discharge-negative", e->discharge_negative, sign);
    ecm->add_flag("--free-initial-state", e->free_initial, "Also fit each RC branch voltage at the first sample");
    ecm->add_flag("--json", e->json_out, "Print JSON");
    ecm->callback([e] { run_ecm(*e); });

    auto t = std::make_shared<ThermalCli>();
    CLI::App* th = fit->add_subcommand(
        "thermal",
        "Fit C_th·dT/dt = P + P_x − (T − T_amb)/R_th to (time, current, voltage, cell temperature[, ambient]). "
        "Heat P = I²·R_heat with R_heat from a circuit fit of the same record (default), or I·(OCV0 − V) "
        "(--heating overpotential), or --heating-ohm. Without an ambient column or --ambient the steady "
        "temperature is fitted and P_x is not identifiable.");
    th->add_option("--csv", t->csv, "CSV file with a header row")->required();
    th->add_option("--columns", t->columns,
                   "Column names: time,current,voltage,cell_temp[,ambient_temp] (s, A, V, °C, °C); by default "
                   "ambient_temp is used when the file has it");
    th->add_flag("--discharge-negative", t->discharge_negative, sign);
    th->add_option("--ambient", t->ambient, "Constant ambient temperature in °C (instead of a column)")
        ->check(finite_range(-80.0, 200.0));
    th->add_option("--heating", t->heating, "Heat source: circuit or overpotential")
        ->check(CLI::IsMember({"circuit", "overpotential"}));
    th->add_option("--heating-ohm", t->heating_ohm, "Fixed effective heating resistance in ohm (P = I²·R)")
        ->check(finite_range(1e-9, 1e6));
    th->add_option("--heating-rc", t->heating_rc, "RC pairs of the circuit fit used for the heating")
        ->check(CLI::Range(1, 3));
    th->add_flag("--reversible", t->reversible,
                 "Extended model: fit a reversible (entropic) heat k·I beside the Joule heat (needs an ambient)");
    CLI::Option* given_offset = th->add_option("--sensor-offset", t->sensor_offset,
                   "Extended model: the calibrated offset of the cell's thermocouple against the ambient one, K; "
                   "without it (or --offset-from-rest) P_x is not identifiable")
        ->check(finite_range(-20.0, 20.0));
    th->add_flag("--offset-from-rest", t->offset_from_rest,
                 "Extended model: take the sensor offset from the rest before the current (≥ 60 s, at equilibrium)")
        ->excludes(given_offset);
    th->add_option("--entropic-v", t->entropic_v,
                   "A known reversible-heat coefficient k = −T·dU/dT in V (discharge positive): k·I is added to the "
                   "heat as known, not fitted (plain or extended model)")
        ->check(finite_range(-1.0, 1.0))
        ->excludes("--reversible");
    th->add_option("--entropic-v-per-ah", t->entropic_v_per_ah,
                   "With --entropic-v: how k changes with the charge drawn since the first sample, V/Ah")
        ->check(finite_range(-10.0, 10.0))
        ->needs("--entropic-v");
    th->add_flag("--ambient-drift", t->ambient_drift,
                 "Extended model: fit a linear drift of the cell's true surroundings against the ambient sensor");
    th->add_flag("--json", t->json_out, "Print JSON");
    th->callback([t] { run_thermal(*t); });

    auto d = std::make_shared<DcirCli>();
    CLI::App* dc = fit->add_subcommand(
        "dcir",
        "DC internal resistance R = ΔV/ΔI at stated times after the largest current step, or by the IEC 61960 "
        "two-level method (0.2 C then 1 C: R = (U1 − U2)/(I2 − I1)).");
    dc->add_option("--csv", d->csv, "CSV file with a header row")->required();
    dc->add_option("--columns", d->columns, "Column names: time,current,voltage");
    dc->add_option("--at", d->at, "Times after the step in s (comma separated)")->delimiter(',');
    dc->add_flag("--iec61960", d->iec, "IEC 61960 two-level method");
    dc->add_option("--second", d->second, "IEC 61960: time into the high level for U2 (s)");
    dc->add_flag("--discharge-negative", d->discharge_negative, sign);
    dc->add_flag("--json", d->json_out, "Print JSON");
    dc->callback([d] { run_dcir(*d); });
}

}  // namespace eol::cli
