// eolstation — entry point: builds the subcommand tree and maps outcomes to
// exit codes (0 ok, 1 domain "no", 2 usage or configuration error).
#include <fmt/core.h>

#include <cstdio>
#include <exception>
#include <string>

#include "commands.hpp"
#include "eol/station/auth.hpp"
#include "eol/station/output.hpp"

namespace eol::cli {
namespace {
station::ExitCode g_exit = station::ExitCode::ok;
}
void set_exit(station::ExitCode code) {
    if (static_cast<int>(code) > static_cast<int>(g_exit)) g_exit = code;
}
station::ExitCode current_exit() { return g_exit; }
}  // namespace eol::cli

namespace {
/// The error line on stderr; never throws (stderr itself may be full).
void report(const std::string& what) noexcept {
    std::fputs("eolstation: error: ", stderr);
    std::fputs(what.c_str(), stderr);
    std::fputc('\n', stderr);
}
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"eolstation — end-of-line battery test station", "eolstation"};
    app.set_version_flag("--version", std::string("eolstation ") + EOL_VERSION);
    app.require_subcommand(1);
    app.fallthrough(false);

    eol::cli::add_config_commands(app);
    eol::cli::add_serial_commands(app);
    eol::cli::add_db_commands(app);
    eol::cli::add_fit_commands(app);
    eol::cli::add_instruments_commands(app);
    eol::cli::add_sim_commands(app);
    eol::cli::add_screen_commands(app);
    eol::cli::add_quarantine_commands(app);
    eol::cli::add_genealogy_commands(app);
    eol::cli::add_demo_commands(app);
    eol::cli::add_run_commands(app);
    eol::cli::add_user_commands(app);
    eol::cli::add_report_commands(app);
    eol::cli::add_fixture_commands(app);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return static_cast<int>(eol::station::ExitCode::usage);
    } catch (const eol::station::AuthError& e) {
        // Not authenticated or not allowed: a domain "no", like a refused decision.
        eol::station::finish_stdout();
        report(std::string("not authenticated: ") + e.what());
        return static_cast<int>(eol::station::ExitCode::domain_no);
    } catch (const std::exception& e) {
        eol::station::finish_stdout();  // what was printed before the error goes out first
        report(e.what());
        return static_cast<int>(eol::station::ExitCode::usage);
    }
    // Output that did not arrive is a failure, not exit 0 (a full disk,
    // /dev/full, a closed pipe): the reader would take a cut list for whole.
    if (const auto why = eol::station::finish_stdout()) {
        report("writing standard output failed: " + *why);
        return static_cast<int>(eol::station::ExitCode::usage);
    }
    return static_cast<int>(eol::cli::current_exit());
}
