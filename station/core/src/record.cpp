#include "eol/station/record.hpp"

#include <fmt/format.h>

#include <cmath>

namespace eol::station {

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::pass: return "pass";
        case Verdict::fail: return "fail";
        case Verdict::abort: return "abort";
        case Verdict::error: return "error";
    }
    return "error";
}

std::optional<Verdict> verdict_from_string(std::string_view t) {
    for (Verdict v : {Verdict::pass, Verdict::fail, Verdict::abort, Verdict::error})
        if (to_string(v) == t) return v;
    return std::nullopt;
}


std::string_view to_string(Outcome o) {
    switch (o) {
        case Outcome::unset: return "unset";
        case Outcome::pass: return "pass";
        case Outcome::fail: return "fail";
    }
    return "unset";
}

Outcome judge(double value, const std::optional<double>& low, const std::optional<double>& high) {
    if (!std::isfinite(value)) return Outcome::unset;
    if ((low && value < *low) || (high && value > *high)) return Outcome::fail;
    return Outcome::pass;
}

Measurement Measurement::judged(std::string name, double value, std::string unit, std::optional<double> low,
                                std::optional<double> high) {
    Measurement m;
    m.name = std::move(name);
    m.value = value;
    m.unit = std::move(unit);
    m.low = low;
    m.high = high;
    m.outcome = judge(value, low, high);
    return m;
}

std::string_view to_string(StepOutcome o) {
    switch (o) {
        case StepOutcome::pass: return "pass";
        case StepOutcome::fail: return "fail";
        case StepOutcome::aborted: return "aborted";
        case StepOutcome::timeout: return "timeout";
        case StepOutcome::error: return "error";
        case StepOutcome::skipped: return "skipped";
    }
    return "error";
}

std::optional<StepOutcome> step_outcome_from_string(std::string_view text) {
    for (StepOutcome o : {StepOutcome::pass, StepOutcome::fail, StepOutcome::aborted, StepOutcome::timeout,
                          StepOutcome::error, StepOutcome::skipped})
        if (to_string(o) == text) return o;
    return std::nullopt;
}

void decide_verdict(TestRecord& record) {
    if (record.verdict == Verdict::abort || record.verdict == Verdict::error) return;
    std::string failed, unset;
    for (const Measurement& m : record.measurements) {
        if (m.outcome == Outcome::fail) failed += (failed.empty() ? "" : ", ") + m.name;
        if (m.outcome == Outcome::unset) unset += (unset.empty() ? "" : ", ") + m.name;
    }
    record.verdict = failed.empty() && unset.empty() ? Verdict::pass : Verdict::fail;
    std::string why;
    if (!failed.empty()) why = "out of limits: " + failed;
    if (!unset.empty()) why += (why.empty() ? "" : "; ") + std::string("not measured: ") + unset;
    record.abort_reason = why;
}

}  // namespace eol::station
