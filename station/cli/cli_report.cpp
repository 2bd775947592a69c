// eolstation report — the lot report and the unit page (station/report,
// docs/reports.md):
//
//   eolstation report --db FILE (--lot L | --window A..B) --out report.html [--csv DIR] [--config STATION.toml]
//   eolstation report --db FILE --serial S --out unit.html [--csv DIR]
//
// Reads the store only. Everything is built in memory first; each file is
// then written whole or not at all (write_file_atomically). --csv DIR writes
// the report's tables (and a unit's traces) as CSV files in DIR (made when
// missing).
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "eol/station/config.hpp"
#include "eol/station/output.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/report.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::cli {
namespace {

using namespace eol::station;

struct ReportOptions {
    std::string db;
    std::string lot;
    std::string window;
    std::string serial;
    std::string out;
    std::string csv_dir;
    std::string config;
    std::string scheme;
};

void write_tables(const std::string& dir, const std::vector<ReportTable>& tables) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw UsageError(fmt::format("--csv {}: cannot make the folder: {}", dir, ec.message()));
    for (const auto& t : tables) write_file_atomically(std::filesystem::path(dir) / (t.name + ".csv"), to_csv(t));
}

void run_report(const ReportOptions& o) {
    const int given = (o.lot.empty() ? 0 : 1) + (o.window.empty() ? 0 : 1) + (o.serial.empty() ? 0 : 1);
    if (given != 1) throw UsageError("report: give exactly one of --lot L, --window A..B or --serial S");
    if (o.out.empty() || o.out == "-") throw UsageError("report: --out FILE is required (an .html file)");
    const SerialScheme scheme = o.scheme.empty() ? SerialScheme::default_scheme() : SerialScheme::load(o.scheme);
    OpenOptions oo;
    oo.read_only = true;
    Store store = Store::open(o.db, oo);
    const std::string by = std::string("eolstation ") + EOL_VERSION + " report";
    std::string html;
    std::vector<ReportTable> tables;
    std::string summary;
    if (!o.serial.empty()) {
        UnitReport u = build_unit_report(store, o.serial, scheme, by);
        html = std::move(u.html);
        tables = std::move(u.tables);
        summary = fmt::format("unit page of {} ({} plots)", o.serial, u.svg_plots);
    } else {
        LotReportOptions lo;
        std::optional<StationConfig> sc;
        if (!o.config.empty()) {
            sc = load_station_config(o.config);
            lo.screening = sc->screening;
            lo.recipe = &sc->recipe;
        } else {
            lo.screening.features = default_db_features();
        }
        if (!o.lot.empty()) lo.lot = o.lot;
        if (!o.window.empty()) {
            const auto [from, to] = parse_window(o.window);
            lo.date_from = from.iso();
            lo.date_to = to.iso();
        }
        lo.generated_by = by;
        LotReport r = build_lot_report(store, lo);
        html = std::move(r.html);
        tables = std::move(r.tables);
        summary = fmt::format("{} tested, {} passed, {} failed, {} held, {} outliers ({} plots)", r.tested, r.passed,
                              r.failed, r.held, r.outliers, r.svg_plots);
    }
    if (!o.csv_dir.empty()) write_tables(o.csv_dir, tables);
    write_file_atomically(o.out, html);
    write_stdout(fmt::format("{}: {}\n", o.out, summary));
}

}  // namespace

void add_report_commands(CLI::App& app) {
    auto o = std::make_shared<ReportOptions>();
    CLI::App* c = app.add_subcommand(
        "report",
        "A lot report (--lot or --window) or a unit page (--serial) as ONE self-contained HTML file with SVG plots "
        "(offline, no scripts); --csv DIR writes the same tables (docs/reports.md)");
    c->add_option("--db", o->db, "Results store (SQLite; read only)")->required();
    c->add_option("--lot", o->lot, "A lot id");
    c->add_option("--window", o->window, "A production window: 2023-03..2023-04, 2023-03-01..2023-03-15, 2023-03");
    c->add_option("--serial", o->serial, "One unit's page instead");
    c->add_option("--out", o->out, "The HTML file to write (whole or not at all)")->required();
    c->add_option("--csv", o->csv_dir, "Also write the tables (and a unit's traces) as CSV files into this folder");
    c->add_option("--config", o->config,
                  "Station TOML whose [screening] features and recipe spec limits to use (default: the built-in "
                  "features of `screen --db`, no spec limits)");
    c->add_option("--scheme", o->scheme, "Serial scheme TOML file (default: the built-in scheme)");
    c->callback([o] { run_report(*o); });
}

}  // namespace eol::cli
