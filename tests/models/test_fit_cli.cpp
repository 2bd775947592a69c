// `eolstation fit ecm|thermal` input errors through the real CLI: exit code 2
// and a message naming the file, the line and the column (or the option) for
// an empty file, a header without rows, a window too short to fit, a
// non-finite value, time going backwards, a constant current and a missing
// column; and a good file fits (exit 0, JSON).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "support/cli_test.hpp"

namespace {

using eol::test::run_cli;

/// A 1 Hz pulse record (header on line 1, sample k on line k + 2): rest, a
/// 6 A pulse from 5 s to 15 s, rest; the voltage of a 30 mΩ + 15 mΩ/5 s cell,
/// the temperature of a 100 J/K, 10 K/W body. `edit(k, row)` may change a row.
template <class Edit>
std::string write_csv(const std::string& name, int samples, Edit edit) {
    const std::string path = std::string(EOL_BINARY_DIR) + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("time,current,voltage,cell_temp,ambient_temp\n", f);
    double v1 = 0.0, temp = 25.0, ip = 0.0;
    for (int k = 0; k < samples; ++k) {
        const double i = (k >= 5 && k < 15) ? 6.0 : 0.0;
        if (k > 0) {
            const double a = std::exp(-1.0 / 5.0), at = std::exp(-1.0 / 1000.0);
            v1 = a * v1 + 0.015 * (1.0 - a) * ip;
            temp = at * temp + (1.0 - at) * (25.0 + 10.0 * ip * ip * 0.045);
        }
        const double noise = 1e-4 * std::sin(1.7 * k);  // deterministic, not on the model
        std::string row = std::to_string(k) + "," + std::to_string(i + 1e-3 * std::cos(2.3 * k)) + "," +
                          std::to_string(4.0 - 0.030 * i - v1 + noise) + "," + std::to_string(temp) + ",25.0";
        edit(k, row);
        std::fprintf(f, "%s\n", row.c_str());
        ip = i;
    }
    std::fclose(f);
    return path;
}

std::string write_csv(const std::string& name, int samples) {
    return write_csv(name, samples, [](int, std::string&) {});
}

}  // namespace

TEST_CASE("fit CLI: a good pulse file fits, and every input error names file, line and column") {
    std::string out;
    const std::string good = write_csv("cli_good.csv", 60);
    REQUIRE(run_cli("fit ecm --csv " + good + " --rc 1 --json", out) == 0);
    const auto j = nlohmann::json::parse(out);
    CHECK(j.at("r0_ohm").get<double>() == doctest::Approx(0.030).epsilon(0.05));

    // Empty file and a header without rows.
    const std::string empty = std::string(EOL_BINARY_DIR) + "/cli_empty.csv";
    std::fclose(std::fopen(empty.c_str(), "w"));
    CHECK(run_cli("fit ecm --csv " + empty, out) == 2);
    CHECK(out.find("cli_empty.csv") != std::string::npos);
    CHECK(out.find("empty") != std::string::npos);
    const std::string header = write_csv("cli_header.csv", 0);
    CHECK(run_cli("fit ecm --csv " + header, out) == 2);
    CHECK(out.find("cli_header.csv") != std::string::npos);
    CHECK(out.find("empty") != std::string::npos);

    // Too short for the parameters asked.
    const std::string shrt = write_csv("cli_short.csv", 4);
    CHECK(run_cli("fit ecm --csv " + shrt + " --rc 2", out) == 2);
    CHECK(out.find("cli_short.csv") != std::string::npos);
    CHECK(out.find("too short") != std::string::npos);

    // A non-finite value: the line (sample 20 is on line 22) and the column.
    const std::string nan = write_csv("cli_nan.csv", 60, [](int k, std::string& row) {
        if (k == 20) row = "20,6.0,nan,25.1,25.0";
    });
    CHECK(run_cli("fit ecm --csv " + nan, out) == 2);
    CHECK(out.find("cli_nan.csv:22: column 'voltage'") != std::string::npos);
    const std::string inf = write_csv("cli_inf.csv", 60, [](int k, std::string& row) {
        if (k == 7) row = "7,inf,3.8,25.1,25.0";
    });
    CHECK(run_cli("fit ecm --csv " + inf, out) == 2);
    CHECK(out.find("cli_inf.csv:9: column 'current'") != std::string::npos);

    // Time not increasing: the line where it goes back.
    const std::string back = write_csv("cli_back.csv", 60, [](int k, std::string& row) {
        if (k == 30) row.replace(0, 2, "28");
    });
    CHECK(run_cli("fit ecm --csv " + back, out) == 2);
    CHECK(out.find("cli_back.csv:32: column 'time': time is not increasing at sample 30") != std::string::npos);

    // Constant current: nothing to fit (for the circuit and for the heat).
    const std::string flat = write_csv("cli_flat.csv", 60, [](int k, std::string& row) {
        row = std::to_string(k) + ",2.0," + std::to_string(3.9 - 1e-4 * k) + ",25.0,25.0";
    });
    CHECK(run_cli("fit ecm --csv " + flat, out) == 2);
    CHECK(out.find("cli_flat.csv") != std::string::npos);
    CHECK(out.find("current is constant") != std::string::npos);
    CHECK(run_cli("fit thermal --csv " + flat, out) == 2);
    CHECK(out.find("current is constant") != std::string::npos);

    // Missing columns: a name the header lacks, and too few names for thermal.
    CHECK(run_cli("fit ecm --csv " + good + " --columns time,current,volts", out) == 2);
    CHECK(out.find("cli_good.csv") != std::string::npos);
    CHECK(out.find("no column 'volts'") != std::string::npos);
    CHECK(run_cli("fit thermal --csv " + good + " --columns time,current,voltage", out) == 2);
    CHECK(out.find("--columns") != std::string::npos);

    for (const auto& p : {good, empty, header, shrt, nan, inf, back, flat}) std::remove(p.c_str());
}

TEST_CASE("fit CLI: thermal extended model — P_x missing without a sensor offset, right with the calibrated one") {
    // 300 s rest, 600 s at 3 A, 2400 s cooling, 1 Hz: a 50 J/K, 25 K/W cell
    // with 20 mW of extra heat, read through a cell thermocouple 0.3 K above
    // the ambient one. Heat I²·0.05 Ω (--heating-ohm).
    const double c_th = 50.0, r_th = 25.0, px = 0.020, off = 0.3;
    const std::string path = std::string(EOL_BINARY_DIR) + "/cli_thermal_offset.csv";
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("time,current,voltage,cell_temp,ambient_temp\n", f);
    double temp = 20.0 + r_th * px, ip = 0.0;
    for (int k = 0; k <= 3300; ++k) {
        const double i = (k >= 300 && k < 900) ? 3.0 : 0.0;
        if (k > 0) {
            const double a = std::exp(-1.0 / (r_th * c_th));
            temp = a * temp + (1.0 - a) * (20.0 + r_th * (ip * ip * 0.05 + px));
        }
        const double noise = 2e-3 * std::sin(1.7 * k);
        std::fprintf(f, "%d,%.6f,%.6f,%.6f,%.6f\n", k, i, 3.9 - 0.05 * i, temp + off + noise, 20.0 - noise);
        ip = i;
    }
    std::fclose(f);
    std::string out;
    const std::string base = "fit thermal --csv " + path + " --heating-ohm 0.05 --json";

    // Plain model: assumes no sensor offset, so P_x carries off/R_th (12 mW) and says so.
    REQUIRE(run_cli(base, out) == 0);
    auto j = nlohmann::json::parse(out);
    CHECK_FALSE(j.at("p_extra_identifiable").get<bool>());
    CHECK(j.at("p_extra_w").get<double>() == doctest::Approx(px + off / r_th).epsilon(0.1));
    CHECK(j.at("corr_p_extra_r_th").get<double>() < 0.0);

    // Extended, no offset known: P_x is missing (null), c = off + R_th·P_x is reported.
    REQUIRE(run_cli(base + " --reversible", out) == 0);
    j = nlohmann::json::parse(out);
    CHECK(j.at("extended").get<bool>());
    CHECK(j.at("p_extra_w").is_null());
    CHECK_FALSE(j.at("identifiable").at("p_extra_w").get<bool>());
    CHECK(j.at("steady_offset_k").get<double>() == doctest::Approx(off + r_th * px).epsilon(0.05));
    REQUIRE(run_cli("fit thermal --csv " + path + " --heating-ohm 0.05 --reversible", out) == 0);
    CHECK(out.find("P_x      not identifiable") != std::string::npos);

    // The channel's calibrated offset separates P_x.
    REQUIRE(run_cli(base + " --sensor-offset 0.3", out) == 0);
    j = nlohmann::json::parse(out);
    CHECK(j.at("p_extra_identifiable").get<bool>());
    CHECK(j.at("offset_source").get<std::string>() == "given");
    CHECK(j.at("p_extra_w").get<double>() == doctest::Approx(px).epsilon(0.15));

    // Bad use: both offsets, and the extended model without an ambient.
    CHECK(run_cli(base + " --sensor-offset 0.3 --offset-from-rest", out) == 2);
    CHECK(out.find("excludes") != std::string::npos);
    CHECK(run_cli("fit thermal --csv " + path + " --columns time,current,voltage,cell_temp --heating-ohm 0.05 "
                  "--reversible",
                  out) == 2);
    CHECK(out.find("needs the ambient temperature") != std::string::npos);
    std::remove(path.c_str());
}

// A known entropic coefficient through the CLI (`--entropic-v`, issue 16):
// a 50 J/K, 25 K/W cell heated by I²·0.05 Ω plus its reversible heat k·I
// (k = −60 mV at 3 A: −180 mW while the current flows, no extra heat, no
// sensor offset). Told k, the fit recovers R_th and reads P_x ≈ 0; not told,
// the reversible heat is missing from the balance and R_th and P_x move.
// Bad combinations are refused naming the option.
TEST_CASE("fit CLI: thermal with a known entropic coefficient recovers R_th and P_x, misuse is refused") {
    const double c_th = 50.0, r_th = 25.0, k_v = -0.060;
    const std::string path = std::string(EOL_BINARY_DIR) + "/cli_thermal_entropic.csv";
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("time,current,voltage,cell_temp,ambient_temp\n", f);
    double temp = 20.0, ip = 0.0;
    for (int k = 0; k <= 3300; ++k) {
        const double i = (k >= 300 && k < 900) ? 3.0 : 0.0;
        if (k > 0) {
            const double a = std::exp(-1.0 / (r_th * c_th));
            temp = a * temp + (1.0 - a) * (20.0 + r_th * (ip * ip * 0.05 + k_v * ip));
        }
        const double noise = 2e-3 * std::sin(1.7 * k);
        std::fprintf(f, "%d,%.6f,%.6f,%.6f,%.6f\n", k, i, 3.9 - 0.05 * i, temp + noise, 20.0 - noise);
        ip = i;
    }
    std::fclose(f);
    std::string out;
    const std::string base = "fit thermal --csv " + path + " --heating-ohm 0.05";

    REQUIRE(run_cli(base + " --entropic-v -0.060 --json", out) == 0);
    auto j = nlohmann::json::parse(out);
    CHECK(j.at("entropic_source").get<std::string>() == "given");
    CHECK(j.at("entropic_v").get<double>() == doctest::Approx(k_v));
    CHECK(j.at("r_th_k_per_w").get<double>() == doctest::Approx(r_th).epsilon(0.05));
    CHECK(j.at("tau_s").get<double>() == doctest::Approx(r_th * c_th).epsilon(0.05));
    CHECK(std::fabs(j.at("p_extra_w").get<double>()) < 0.003);
    REQUIRE(run_cli(base + " --entropic-v -0.060", out) == 0);
    CHECK(out.find("k        -60.0 mV +0.0 mV/Ah drawn, given") != std::string::npos);

    // Not told: the heat balance lacks 180 mW during the current.
    REQUIRE(run_cli(base + " --json", out) == 0);
    j = nlohmann::json::parse(out);
    CHECK(j.at("entropic_source").get<std::string>() != "given");
    const bool r_th_off = std::fabs(j.at("r_th_k_per_w").get<double>() / r_th - 1.0) > 0.2;
    const bool p_x_off = std::fabs(j.at("p_extra_w").get<double>()) > 0.02;
    CHECK_MESSAGE((r_th_off || p_x_off), out);

    // Misuse: fitted and given at once; a slope without k; k out of range.
    CHECK(run_cli(base + " --entropic-v -0.06 --reversible", out) == 2);
    CHECK(out.find("excludes") != std::string::npos);
    CHECK(run_cli(base + " --entropic-v-per-ah 0.05", out) == 2);
    CHECK(out.find("--entropic-v-per-ah") != std::string::npos);
    CHECK(run_cli(base + " --entropic-v 5", out) == 2);
    CHECK(out.find("--entropic-v") != std::string::npos);
    std::remove(path.c_str());
}
