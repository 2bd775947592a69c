// eol/station/record.hpp — the finished-test record: what the sequencer hands
// to its sinks (the results store, reports, the PLC) when a cell's test ends,
// in the spirit of an OpenHTF TestRecord.
//
// Plain values, built once by the sequencer and not changed afterwards.
// Conventions:
//   - times are UTC unix seconds (double: fractional seconds, µs resolution);
//   - production_date is "YYYY-MM-DD" (from the serial), empty when unknown;
//   - lot is the serial's lot id (see serial.hpp), empty when unknown;
//   - discharge current is positive; units are in the names;
//   - a Measurement's value may be NaN (not measured); low/high are optional;
//   - the trace is a models::Series (t_s, i_a, v_v, optional t_cell_c,
//     t_amb_c), so fits read it directly; every non-empty column has the
//     length of t_s.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eol/models/series.hpp"

namespace eol::station {

/// How a test ended. pass/fail: the test ran to completion and the limits
/// decided; abort: stopped on purpose (operator, safety interlock, held
/// unit), abort_reason says why; error: the station failed (instrument,
/// software), abort_reason says what.
enum class Verdict { pass, fail, abort, error };

/// "pass", "fail", "abort", "error".
std::string_view to_string(Verdict v);
/// Inverse of to_string; nullopt for anything else.
std::optional<Verdict> verdict_from_string(std::string_view text);

struct Measurement {
    std::string name;                     // e.g. "ocv_v", "dcir_ohm"
    double value = std::numeric_limits<double>::quiet_NaN();
    std::string unit;                     // e.g. "V", "ohm"
    std::optional<double> low;            // inclusive limits; nullopt = none
    std::optional<double> high;
    bool pass = true;
};

struct Interval {
    double low = 0.0;
    double high = 0.0;
    bool operator==(const Interval&) const = default;
};

struct ModelFit {
    std::string kind;                          // "ecm2", "thermal", …
    std::map<std::string, double> parameters;  // name (with unit suffix) → value
    std::map<std::string, Interval> ci95;      // 95 % confidence interval per parameter (subset of parameters)
    double rmse = std::numeric_limits<double>::quiet_NaN();  // in the fitted quantity's unit
    bool converged = false;
};

struct TestRecord {
    std::string serial;           // normalized
    std::string cell_model;       // e.g. "INR18650-30Q"
    std::string lot;
    std::string production_date;  // "YYYY-MM-DD" or ""
    std::string station_id;
    int channel = 0;              // fixture position / channel the cell was tested in
    std::string recipe_name;
    std::string recipe_version;
    double start_unix_s = 0.0;
    double end_unix_s = 0.0;
    Verdict verdict = Verdict::error;
    std::string abort_reason;     // empty unless abort or error
    std::vector<Measurement> measurements;
    models::Series trace;
    std::vector<ModelFit> fits;
};

}  // namespace eol::station
