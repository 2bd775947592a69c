#include "eol/models/fixture_health.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common.hpp"
#include "eol/models/pat.hpp"  // median_inplace
#include "eol/models/series.hpp"

namespace eol::models {
namespace {

std::string fmt2(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", x);
    return b;
}

}  // namespace

FixtureMonitor::FixtureMonitor(FixtureHealthSettings settings) : s_(settings) {
    if (s_.window_readings == 0) throw InputError("fixture health: window_readings must be > 0");
    if (s_.reference_readings == 0 || s_.min_reference == 0 || s_.min_reference > s_.reference_readings)
        throw InputError("fixture health: need 0 < min_reference <= reference_readings");
    if (!(s_.contact_limit_ohm > 0) || !(s_.tc_drift_limit_k > 0))
        throw InputError("fixture health: contact_limit_ohm and tc_drift_limit_k must be > 0");
    if (s_.calibration_readings == 0) throw InputError("fixture health: calibration_readings must be > 0");
}

double FixtureMonitor::reference(const std::deque<Recent>& recent, int position) const {
    std::vector<double> v;
    v.reserve(recent.size());
    for (const auto& r : recent)
        if (r.position != position) v.push_back(r.value);
    if (v.size() < s_.min_reference) return std::numeric_limits<double>::quiet_NaN();
    return median_inplace(v);
}

void FixtureMonitor::update(Quantity& q, double residual) const {
    q.residuals.push_back(residual);
    if (q.residuals.size() > s_.window_readings) q.residuals.pop_front();
    if (q.first.size() < s_.window_readings) {
        q.first.push_back(residual);
        if (q.first.size() == s_.window_readings) q.baseline = median_inplace(q.first);  // (reorders it: only its size is read later)
    }
    if (q.residuals.size() == s_.window_readings) {
        std::vector<double> window(q.residuals.begin(), q.residuals.end());
        q.offset = median_inplace(window);
    }
}

std::optional<FixtureAlarm> FixtureMonitor::add(const FixtureReading& reading) {
    Position& p = pos_[reading.position];
    ++p.readings;
    auto feed = [&](std::deque<Recent>& recent, Quantity& q, double value) {
        if (!std::isfinite(value)) return;
        const double ref = reference(recent, reading.position);
        if (std::isfinite(ref)) update(q, value - ref);
        recent.push_back({reading.position, value});
        if (recent.size() > s_.reference_readings) recent.pop_front();
    };
    feed(recent_r_, p.contact, reading.resistance_ohm);
    feed(recent_t_, p.tc, reading.rest_offset_k);
    if (std::isfinite(reading.steady_offset_k) && p.steady.size() < s_.calibration_readings) {
        p.steady.push_back(reading.steady_offset_k);
        if (p.steady.size() == s_.calibration_readings) {
            std::vector<double> window = p.steady;
            p.calibration = median_inplace(window);
        }
    }
    if (p.alarm) return std::nullopt;

    FixtureAlarm a;
    a.position = reading.position;
    a.readings = p.readings;
    if (std::isfinite(p.contact.offset) && std::fabs(p.contact.offset) > s_.contact_limit_ohm) {
        a.quantity = "contact_resistance";
        a.value = p.contact.offset;
        a.limit = s_.contact_limit_ohm;
        a.reason = detail::cat("position ", reading.position, ": contact resistance ",
                               p.contact.offset >= 0 ? "+" : "", fmt2(p.contact.offset * 1e3),
                               " mOhm against the other positions (limit ", fmt2(s_.contact_limit_ohm * 1e3),
                               " mOhm, median of its last ", s_.window_readings, " cells)");
    } else if (std::isfinite(p.tc.offset) && std::isfinite(p.tc.baseline) &&
               std::fabs(p.tc.offset - p.tc.baseline) > s_.tc_drift_limit_k) {
        const double drift = p.tc.offset - p.tc.baseline;
        a.quantity = "thermocouple_offset";
        a.value = drift;
        a.limit = s_.tc_drift_limit_k;
        a.reason = detail::cat("position ", reading.position, ": thermocouple offset at rest drifted ",
                               drift >= 0 ? "+" : "", fmt2(drift), " K from its baseline ", fmt2(p.tc.baseline),
                               " K (limit ", fmt2(s_.tc_drift_limit_k), " K, median of its last ",
                               s_.window_readings, " cells)");
    } else {
        return std::nullopt;
    }
    p.alarm = a;
    return a;
}

void FixtureMonitor::reset(int position) {
    auto it = pos_.find(position);
    if (it != pos_.end()) it->second = Position{};
}

void FixtureMonitor::keep_alarm(const FixtureAlarm& a) {
    Position& p = pos_[a.position];
    if (!p.alarm) p.alarm = a;
}

double FixtureMonitor::contact_offset_ohm(int position) const {
    auto it = pos_.find(position);
    return it == pos_.end() || !std::isfinite(it->second.contact.offset) ? 0.0 : it->second.contact.offset;
}

double FixtureMonitor::contact_correction_ohm(int position) const {
    auto it = pos_.find(position);
    if (it == pos_.end() || !std::isfinite(it->second.contact.offset)) return 0.0;
    std::vector<double> all;
    for (const auto& [n, p] : pos_)
        if (std::isfinite(p.contact.offset)) all.push_back(p.contact.offset);
    return it->second.contact.offset - median_inplace(all);
}

double FixtureMonitor::tc_offset_k(int position) const {
    auto it = pos_.find(position);
    return it == pos_.end() || !std::isfinite(it->second.tc.offset) ? 0.0 : it->second.tc.offset;
}

double FixtureMonitor::thermo_calibration_k(int position) const {
    auto it = pos_.find(position);
    return it == pos_.end() ? std::numeric_limits<double>::quiet_NaN() : it->second.calibration;
}

std::optional<FixtureAlarm> FixtureMonitor::alarm(int position) const {
    auto it = pos_.find(position);
    return it == pos_.end() ? std::nullopt : it->second.alarm;
}

std::vector<PositionHealth> FixtureMonitor::positions() const {
    std::vector<PositionHealth> out;
    for (const auto& [n, p] : pos_) {
        PositionHealth h;
        h.position = n;
        h.readings = p.readings;
        h.contact_offset_ohm = p.contact.offset;
        h.tc_offset_k = p.tc.offset;
        h.tc_baseline_k = p.tc.baseline;
        h.tc_calibration_k = p.calibration;
        h.alarm = p.alarm;
        out.push_back(std::move(h));
    }
    return out;
}

}  // namespace eol::models
