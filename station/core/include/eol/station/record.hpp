// eol/station/record.hpp — the finished-test record: what the step engine
// (steps.hpp) hands to its sinks (the results store, the PLC result
// registers, the panel's event stream) when a cell's test ends, in the
// spirit of an OpenHTF TestRecord, and the one place a value is judged
// against its limits (judge()).
//
// Plain values, built once by the sequencer and not changed afterwards.
// Conventions:
//   - times are UTC unix seconds (double: fractional seconds, µs resolution);
//   - production_date is "YYYY-MM-DD" (from the serial), empty when unknown;
//   - lot is the serial's lot id (see serial.hpp), empty when unknown;
//   - discharge current is positive; units are in the names;
//   - a Measurement's value may be NaN (not measured: outcome unset, which
//     is never a pass); low/high are optional;
//   - a record's verdict is decided once, by decide_verdict(), from its
//     measurements (pass only when every one passed);
//   - the trace is a models::Series (t_s, i_a, v_v, optional t_cell_c,
//     t_amb_c), so fits read it directly; every non-empty column has the
//     length of t_s.
#pragma once

#include <cstddef>
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

/// A judged value: unset (not measured, NaN or infinite), pass or fail.
enum class Outcome { unset, pass, fail };
std::string_view to_string(Outcome o);

/// The one judgement of a value against inclusive limits (either optional):
/// unset when the value is not finite, else pass or fail.
Outcome judge(double value, const std::optional<double>& low, const std::optional<double>& high);

struct Measurement {
    std::string name;                     // e.g. "ocv_v", "dcir_ohm"
    double value = std::numeric_limits<double>::quiet_NaN();
    std::string unit;                     // e.g. "V", "ohm"
    std::optional<double> low;            // inclusive limits; nullopt = none
    std::optional<double> high;
    Outcome outcome = Outcome::unset;     // set by judge(); unset is not a pass

    /// A measurement judged now: outcome = judge(value, low, high).
    static Measurement judged(std::string name, double value, std::string unit, std::optional<double> low,
                              std::optional<double> high);
    bool passed() const { return outcome == Outcome::pass; }
};

/// How one recipe step ended. pass/fail: it ran and its measurements were
/// judged (fail: one did not pass, or was not measured); aborted: a safety
/// limit or an operator stopped it; timeout: an instrument or the step did
/// not finish in time; error: an instrument, data or fit failure; skipped:
/// not run because an earlier step ended the test.
enum class StepOutcome { pass, fail, aborted, timeout, error, skipped };
std::string_view to_string(StepOutcome o);
std::optional<StepOutcome> step_outcome_from_string(std::string_view text);

/// One step of a test: timing, outcome, and which of the record's
/// measurements and trace samples it produced (index ranges).
struct StepRecord {
    std::string name;                 // the recipe step's name
    std::string kind;                 // "rest", "ocv", "dcir", "pulse", "heat"
    double start_unix_s = 0.0;
    double end_unix_s = 0.0;
    StepOutcome outcome = StepOutcome::skipped;
    std::string message;              // why, unless pass
    std::size_t first_measurement = 0, measurement_count = 0;
    std::size_t first_sample = 0, sample_count = 0;
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
    std::string abort_reason;     // why the verdict is not pass (limits, not measured, abort, error); empty on pass
    std::vector<Measurement> measurements;
    std::vector<StepRecord> steps;  // in run order; empty for records made without the step engine
    models::Series trace;
    std::vector<ModelFit> fits;
};

/// Sets record.verdict from its measurements, unless it is already abort or
/// error: pass when every measurement passed, else fail with abort_reason
/// naming those out of limits and those not measured.
void decide_verdict(TestRecord& record);

/// Where finished records go (OpenHTF's output callbacks): the results store,
/// the PLC's result registers, the panel's event stream. consume() is called
/// once per finished record, from the thread that finished it; a sink that
/// fails throws (the caller decides whether the record is lost: the store
/// sink's failure is an error of the station, never ignored).
class RecordSink {
public:
    virtual ~RecordSink() = default;
    virtual void consume(const TestRecord& record) = 0;
};

}  // namespace eol::station
