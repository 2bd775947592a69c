// eol/models/fixture_health.hpp — what a fixture's positions add to what they
// measure, learned from the cells they test: the contact resistance of a
// position's pins (its resistance readings against the other positions') and
// its thermocouple's offset at rest; a position whose contacts or sensor
// drift beyond a limit is flagged (out of service until serviced and reset).
//
// Method (docs/screening.md, "Fixture health"). Readings arrive one finished
// test at a time, in test order, each from one position:
//   - reference: the median of the same quantity over the last
//     `reference_readings` readings at the OTHER positions (cells of the same
//     lots, tested around the same time: the process and the lot cancel);
//   - residual: the reading minus that reference (none until
//     `min_reference` readings of other positions exist);
//   - the position's offset: the median of its last `window_readings`
//     residuals (robust: one shorted or odd cell does not move it);
//   - its baseline: the median of its first `window_readings` residuals since
//     commissioning or the last reset() (learned, not configured).
// Flags (once; the position stays flagged until reset()):
//   - contact: |offset| > contact_limit_ohm — the pins of one position should
//     add no more than the others' (a worn position drifts up);
//   - thermocouple: |offset − baseline| > tc_drift_limit_k — a static offset
//     of a type-K sensor (±0.5 K) is calibration, a change of it is drift.
// Detection delay: the median of the last W residuals crosses a limit once
// more than half of them are beyond it, so a drift that crosses the limit is
// flagged after about W/2 further readings at that position plus what the
// noise adds (docs and tests state the bound: at most W).
// Corrections: contact_offset_ohm(position) (to subtract from a resistance
// feature measured there) and tc_offset_k(position), each 0 until the
// position has `window_readings` residuals.
// Contact correction: contact_correction_ohm(position) = the position's
// offset minus the median offset of all positions — what one position adds
// beyond the others. The common part is not the pins (a fixture's positions
// wear apart, not together; a common shift is the golden cell's to see) but
// the lag of the reference when the lots' resistance steps (every position's
// offset then moves alike for a window), which must not be "corrected" into
// the features.
// Thermocouple calibration (absolute, not against the other positions):
// thermo_calibration_k(position) = the median of the thermal fits' steady
// offset c = o + R_th·P_x (K) over the position's FIRST
// `calibration_readings` tests since commissioning or reset(), then held — a
// calibration, not a running mean: it must not follow the process (a window
// of lots with more heat would otherwise be calibrated away, and its end read
// as a shift); a sensor that drifts later is the drift flag's. Good cells'
// P_x is ~0, so this is the position's sensor offset o (plus what every good
// cell's fit leaves there); a shorted cell's heat reads against it. NaN until
// that many readings.
//
// Pure computation, deterministic. Not thread-safe (one owner). Errors:
// InputError for settings out of range (window 0, limits ≤ 0).
#pragma once

#include <cstddef>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace eol::models {

struct FixtureHealthSettings {
    std::size_t window_readings = 15;      // per position: offset = median of its last W residuals
    std::size_t reference_readings = 64;   // the reference: last N readings at other positions
    std::size_t min_reference = 8;         // fewer other readings: no residual yet
    double contact_limit_ohm = 0.002;      // |offset| beyond this: contact resistance flag
    double tc_drift_limit_k = 1.0;         // |offset − baseline| beyond this: thermocouple flag
    std::size_t calibration_readings = 31; // thermocouple calibration: median of the first N steady offsets
};

/// One finished test at one position. NaN: not measured (skipped).
struct FixtureReading {
    int position = 0;
    double resistance_ohm = std::numeric_limits<double>::quiet_NaN();  // e.g. r0_ohm
    double rest_offset_k = std::numeric_limits<double>::quiet_NaN();   // T_cell − T_amb at rest
    double steady_offset_k = std::numeric_limits<double>::quiet_NaN(); // thermal fit's c = o + R_th·P_x
};

/// A position taken out of service.
struct FixtureAlarm {
    int position = 0;
    std::string quantity;   // "contact_resistance" or "thermocouple_offset"
    double value = 0.0;     // the offset (contact, Ω) or the drift from the baseline (thermocouple, K)
    double limit = 0.0;
    std::size_t readings = 0;  // readings at the position since its reset when flagged
    std::string reason;     // one line for an operator: what, how much, the limit
};

/// What is known of one position now.
struct PositionHealth {
    int position = 0;
    std::size_t readings = 0;                 // since commissioning or reset
    double contact_offset_ohm = std::numeric_limits<double>::quiet_NaN();  // NaN until W residuals
    double tc_offset_k = std::numeric_limits<double>::quiet_NaN();
    double tc_baseline_k = std::numeric_limits<double>::quiet_NaN();
    double tc_calibration_k = std::numeric_limits<double>::quiet_NaN();  // NaN until calibration_readings
    std::optional<FixtureAlarm> alarm;        // set: out of service
};

class FixtureMonitor {
public:
    explicit FixtureMonitor(FixtureHealthSettings settings = {});

    const FixtureHealthSettings& settings() const { return s_; }

    /// Feeds one finished test. Returns the alarm when this reading takes
    /// its position beyond a limit (once: later readings of a flagged
    /// position update its estimates but raise nothing).
    std::optional<FixtureAlarm> add(const FixtureReading& reading);

    /// The position serviced: its estimates and baseline are learned again
    /// from its next readings; the flag is cleared. The other positions'
    /// readings in the reference are kept.
    void reset(int position);

    /// A flag decided earlier (stored by the station) holds `a.position` out
    /// of service until reset(), unless it is flagged already (that alarm
    /// is kept).
    void keep_alarm(const FixtureAlarm& a);

    /// What to subtract from a resistance feature measured at `position` now
    /// (0 until known), and likewise from a thermocouple reading.
    double contact_offset_ohm(int position) const;
    /// The position's contact offset beyond the others' (see the top), Ω;
    /// 0 until known.
    double contact_correction_ohm(int position) const;
    double tc_offset_k(int position) const;
    /// The position's thermocouple calibration (see the top), K; NaN until
    /// it has `calibration_readings` steady offsets since reset, then held.
    double thermo_calibration_k(int position) const;

    std::optional<FixtureAlarm> alarm(int position) const;
    /// Every position seen, by number.
    std::vector<PositionHealth> positions() const;

private:
    struct Quantity {
        std::deque<double> residuals;  // last W
        double offset = std::numeric_limits<double>::quiet_NaN();
        std::vector<double> first;     // first W residuals since reset → baseline
        double baseline = std::numeric_limits<double>::quiet_NaN();
    };
    struct Position {
        std::size_t readings = 0;
        Quantity contact, tc;
        std::vector<double> steady;    // the first calibration_readings steady offsets since reset
        double calibration = std::numeric_limits<double>::quiet_NaN();
        std::optional<FixtureAlarm> alarm;
    };
    struct Recent {
        int position;
        double value;
    };

    double reference(const std::deque<Recent>& recent, int position) const;
    void update(Quantity& q, double residual) const;

    FixtureHealthSettings s_;
    std::map<int, Position> pos_;
    std::deque<Recent> recent_r_, recent_t_;
};

}  // namespace eol::models
