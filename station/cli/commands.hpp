// station/cli/commands.hpp — how subcommands of `eolstation` are added.
//
// Each group of subcommands lives in its own cli_<group>.cpp and adds itself
// to the root CLI11 app through one function declared here. A callback that
// reaches a domain "no" (invalid serial, failed check, held unit) calls
// set_exit(ExitCode::domain_no); errors are thrown (UsageError and any other
// std::exception end with exit 2 and the message on stderr).
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstddef>
#include <istream>
#include <string>
#include <vector>

#include "eol/station/errors.hpp"

namespace eol::cli {

/// A number option in [lo, hi]: NaN, infinities and values outside are
/// refused with the allowed range (CLI::Range lets NaN through).
inline CLI::Validator finite_range(double lo, double hi) {
    return CLI::Validator(
        [lo, hi](std::string& text) -> std::string {
            double v = 0;
            if (!CLI::detail::lexical_cast(text, v)) return "'" + text + "' is not a number";
            if (!std::isfinite(v) || v < lo || v > hi)
                return "'" + text + "' is outside the allowed range [" + CLI::detail::to_string(lo) + ", " +
                       CLI::detail::to_string(hi) + "]";
            return {};
        },
        "NUMBER in [" + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]");
}

/// Longest line read from standard input by the interactive commands
/// (`sim` control lines, `serve` work lines): a line without end must not
/// grow memory without bound.
inline constexpr std::size_t kMaxInputLineBytes = 4096;

/// The next line of `in` without its newline (and a trailing CR), at most
/// kMaxInputLineBytes of it: `too_long` says the rest was skipped. False at
/// the end of input with nothing read.
inline bool read_bounded_line(std::istream& in, std::string& line, bool& too_long) {
    line.clear();
    too_long = false;
    std::streambuf* sb = in.rdbuf();
    bool any = false;
    for (;;) {
        const auto c = sb->sbumpc();
        if (c == std::char_traits<char>::eof()) {
            in.setstate(std::ios::eofbit);
            break;
        }
        any = true;
        if (c == '\n') break;
        if (line.size() < kMaxInputLineBytes) line += static_cast<char>(c);
        else too_long = true;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return any;
}

/// The features `screen --db` and `report` screen without a station file.
const std::vector<std::string>& default_db_features();

void set_exit(station::ExitCode code);
station::ExitCode current_exit();

void add_config_commands(CLI::App& app);       // config check
void add_serial_commands(CLI::App& app);       // serial check | make
void add_db_commands(CLI::App& app);           // db info
void add_fit_commands(CLI::App& app);          // fit ecm | thermal
void add_instruments_commands(CLI::App& app);  // instruments probe | load (and calls the next)
void add_instruments_modbus_commands(CLI::App& instruments);  // instruments thermo (cli_instruments_modbus.cpp)
void add_sim_commands(CLI::App& app);          // sim
void add_screen_commands(CLI::App& app);       // screen
void add_quarantine_commands(CLI::App& app);   // quarantine, lookup, recall (cli_quarantine.cpp)
void add_demo_commands(CLI::App& app);         // demo
void add_run_commands(CLI::App& app);          // run, serve (cli_run.cpp)
void add_genealogy_commands(CLI::App& app);    // genealogy link | import | unlink | show (cli_genealogy.cpp)
void add_user_commands(CLI::App& app);         // user add | list | passwd | disable | enable | login (cli_users.cpp)
void add_fixture_commands(CLI::App& app);      // fixture (cli_fixture.cpp)
void add_report_commands(CLI::App& app);       // report: lot report, unit page (cli_report.cpp)

}  // namespace eol::cli
