// eol/station/report.hpp — what a quality engineer reads: the lot report and
// the unit page, each ONE self-contained HTML file (no scripts, no external
// assets, works offline) with SVG plots drawn here, plus the same tables as
// CSV (docs/reports.md).
//
// Lot report (build_lot_report) over the stored cells of a lot or a
// production window:
//   - summary: cells tested, passed, failed, held (now), outliers, and the
//     verdict of each lot (held / screen fails / ship);
//   - per screened feature a histogram with the spec limits (the recipe's)
//     and the PAT limits screening judged the lot by;
//   - R0 against the temperature rise per watt of I²R heating, held cells
//     marked (an internal short heats beyond I²R);
//   - per feature a control chart of daily medians (centre, ±3σ), the
//     points where a Nelson rule fired marked;
//   - the outlier table (serial, features, robust distance d², reasons);
//   - the holds and releases that apply to these cells, from the audit trail.
// The screening is models::screen() with the same settings as `eolstation
// screen` (screen_store.hpp: screening_settings) over the same feature table;
// a report never writes to the store.
//
// Unit page (build_unit_report) of one serial: its state (may it ship?),
// the measurements of its latest completed run against their limits, the
// fits with their 95 % intervals, the pulse trace with the fitted circuit's
// voltage and the heating trace with the thermal model's temperature over
// them, and its history (test runs, quarantine events, device, shipment).
//
// Every text from the store (serials, lots, reasons, actors, names) is HTML-
// escaped; numbers are formatted here. Empty data gives a page that says so,
// never a broken plot.
//
// Errors: UsageError (no cell matches, unknown serial, bad filter),
// StoreError. Writing files is the caller's (write_file_atomically).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::station {

/// One table of a report, also written as CSV.
struct ReportTable {
    std::string name;                          // file stem: "outliers" → outliers.csv
    std::vector<std::string> columns;
    std::vector<std::vector<std::string>> rows;
};

struct LotReportOptions {
    std::optional<std::string> lot;   // one lot (as typed; normalized like quarantine lots)
    std::string date_from, date_to;   // or a production window (inclusive YYYY-MM-DD)
    ScreeningConfig screening;        // features and settings (see screen_store.hpp)
    const Recipe* recipe = nullptr;   // spec limits, when given
    std::string generated_by;         // e.g. "eolstation 0.1.0", printed in the footer
    double generated_unix_s = 0.0;    // 0 = now
};

struct LotReport {
    std::string html;
    std::vector<ReportTable> tables;  // summary, lots, outliers, holds, cells
    std::size_t tested = 0, passed = 0, failed = 0, held = 0, outliers = 0;
    std::size_t svg_plots = 0;
};

LotReport build_lot_report(Store& store, const LotReportOptions& options);

struct UnitReport {
    std::string html;
    std::vector<ReportTable> tables;  // measurements, fits, history, pulse_trace, heat_trace
    std::size_t svg_plots = 0;
};

UnitReport build_unit_report(Store& store, std::string_view serial, const SerialScheme& scheme,
                             const std::string& generated_by = {}, double generated_unix_s = 0.0);

/// Text made safe inside HTML and SVG elements and attribute values: & < > " '
/// escaped, control characters (and invalid UTF-8 bytes) replaced.
std::string html_escape(std::string_view text);

/// RFC 4180 CSV of a table (header row, quoted fields where needed, CRLF-free:
/// "\n" line ends). A field starting with = + - @ gets a leading ' so a
/// spreadsheet does not run it as a formula.
std::string to_csv(const ReportTable& table);

}  // namespace eol::station
